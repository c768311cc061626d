"""Benchmark: putting a wave-wide mailing in the ledger (`pipeline.prepare_mailing`) for N contacts,
and how many mapped send tasks it becomes, beside the plain alternative.

Prints figures; asserts nothing. `python -m benchmarks.scale_mailing N [sqlite|pg]`. The audience is
written straight into the NPS DB in bulk (untimed). Each run is a child process whose peak RSS is
its own. The plain alternative is what a data engineer would write with pandas: read the audience,
number the chunks, `to_sql` the rows into a ledger table of the same shape.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

KIND = "invitation"
CHUNK_SIZE = 500
BATCH = 50_000


def configure(home: str, db_url: str | None) -> None:
    os.environ.update({"NPS_HOME": home, "NPS_SECRET_KEY": "bench", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    if db_url:
        os.environ["NPS_DB_URL"] = db_url


def seed(home: str, db_url: str | None, size: int) -> dict[str, Any]:
    """A planned wave whose audience snapshot holds `size` included contacts."""
    configure(home, db_url)
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine
    from include.nps.wave import waves
    from tests.factories import wave_params

    engine = nps_engine()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    wave = waves.WaveParams.from_params(wave_params(Path(home) / "unused.csv", name="scale-mailing", start=start))
    waves.plan_wave(engine, wave)
    now = storage.utcnow()
    accounts = [{"a": f"A{n:07d}", "n": f"Account {n}", "t": now} for n in range(max(1, size // 4))]
    _bulk(engine, "INSERT INTO accounts (account_id, name, updated_at) VALUES (:a, :n, :t)", accounts)
    people = [
        {
            "c": f"C{n:08d}",
            "a": f"A{n // 4:07d}",
            "e": f"c{n}@a{n // 4}.example",
            "n": f"Name {n}",
            "t": now,
            "w": wave.wave_id,
        }
        for n in range(size)
    ]
    _bulk(
        engine,
        "INSERT INTO contacts (contact_id, account_id, email, name, updated_at) VALUES (:c, :a, :e, :n, :t)",
        people,
    )
    _bulk(
        engine,
        "INSERT INTO wave_audience (wave_id, contact_id, account_id, email, name, locale, included, snapshot_at) "
        "VALUES (:w, :c, :a, :e, :n, 'en', TRUE, :t)",
        people,
    )
    return {"wave_id": wave.wave_id}


def _bulk(engine: Any, sql: str, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import text

    for start in range(0, len(rows), BATCH):
        with engine.begin() as conn:
            conn.execute(text(sql), rows[start : start + BATCH])


def product(home: str, db_url: str | None, wave_id: str) -> dict[str, Any]:
    configure(home, db_url)
    from include.nps import pipeline
    from include.nps.core.connections import nps_engine

    nps_engine()  # connected and its schema checked, as the plain run's is before its clock starts
    started = time.perf_counter()
    chunks = pipeline.prepare_mailing(wave_id, KIND)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = pipeline.prepare_mailing(wave_id, KIND)  # a re-run of the task: adds nobody
    rerun = time.perf_counter() - started
    os.environ["AIRFLOW__CORE__MAX_MAP_LENGTH"] = "1024"
    tasks = len(pipeline.send_batches(chunks))
    return {"seconds": seconds, "rerun_seconds": rerun, "chunks": len(chunks), "tasks": tasks, "same": again == chunks}


def plain(home: str, db_url: str | None, wave_id: str) -> dict[str, Any]:
    """pandas: read the audience, number the chunks, append the rows to a ledger-shaped table."""
    configure(home, db_url)
    import pandas as pd
    from sqlalchemy import text

    from include.nps.core.connections import nps_engine

    engine = nps_engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE plain_outbox AS SELECT * FROM outbox WHERE 1 = 0"))
    started = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.read_sql(
            text("SELECT contact_id AS recipient, email AS address FROM wave_audience WHERE wave_id = :w AND included"),
            conn,
            params={"w": wave_id},
        )
    frame = frame.sort_values("recipient").reset_index(drop=True)
    frame = frame.assign(wave_id=wave_id, kind=KIND, channel="email", status="pending", attempts=0, doubts=0)
    frame["chunk"] = frame.index // CHUNK_SIZE
    frame["created_at"] = dt.datetime.now(dt.UTC)
    frame.to_sql("plain_outbox", engine, if_exists="append", index=False, chunksize=BATCH)
    return {"seconds": time.perf_counter() - started}


def measure(size: int, db: str = "sqlite") -> list[dict[str, Any]]:
    """Rows {step, seconds, peak_rss_mib, plain_seconds, plain_rss_mib} on SQLite or ("pg") a
    throwaway PostgreSQL cluster."""
    with harness.database(db) as db_url:
        return _measure(size, db_url)


def _measure(size: int, db_url: str | None) -> list[dict[str, Any]]:
    home = tempfile.mkdtemp(prefix="nps-bench-mailing-")
    wave_id = harness.in_child(seed, home, db_url, size)["wave_id"]
    ours = harness.in_child(product, home, db_url, wave_id)
    theirs = harness.in_child(plain, home, db_url, wave_id)
    step = f"prepare_mailing ({ours['chunks']} chunks, {ours['tasks']} send tasks)"
    return [
        {
            "step": step,
            "seconds": ours["seconds"],
            "peak_rss_mib": ours["peak_rss_mib"],
            "plain_seconds": theirs["seconds"],
            "plain_rss_mib": theirs["peak_rss_mib"],
        },
        {"step": "prepare_mailing again (a re-run: adds nobody)", "seconds": ours["rerun_seconds"]},
    ]


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    size = int(float(args[0])) if args else 100_000
    db = args[1] if len(args) > 1 else "sqlite"
    harness.print_rows(f"wave-wide mailing into the ledger, {size:,} contacts, {db}", measure(size, db))


if __name__ == "__main__":
    main()
