"""Benchmark: building a wave's audience from a contacts file of N rows, beside the plain alternative.

Prints figures; asserts nothing. `python -m benchmarks.scale_audience N [sqlite|pg|POSTGRES_URL]`:

- product: `audience.load_contacts` (read in chunks, validate, quarantine, upsert) and
  `audience.snapshot_audience` (the opt-out, bounce and frequency rules), as `pipeline.build_audience`
  runs them, for the first wave of a program, its second and its tenth. Before the second and the
  tenth wave, the earlier waves' sent invitations are written into the outbox in bulk (each earlier
  wave invited a third of the contacts, 30 days apart; the frequency rule's window is 90 days);
- plain: what a data engineer would write with pandas: `read_csv` + `to_sql` of the same file (no
  checks); for the later waves also the frequency rule as `read_sql` of the outbox's recent sent
  invitations, `isin` and `to_sql` of the audience.

The file has a few bad rows (0.1%: bad or duplicate addresses, empty names), as real extracts do.
Each run is a child process ('spawn'); its peak RSS is the child's own
`resource.getrusage(RUSAGE_SELF).ru_maxrss` at its end, and the CPU seconds of that process are
printed too (on a shared machine they vary less than wall time; on PostgreSQL the server's work is
not in them). "pg" starts a throwaway PostgreSQL cluster
(benchmarks.harness, fsync on); a PostgreSQL URL gets a fresh database on that server.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

FREQUENCY_DAYS = 90
WAVE_SPACING = dt.timedelta(days=30)
FIRST_OPEN = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
HEADER = [
    "contact_id", "email", "name", "locale", "role", "account_id", "account_name", "account_tier",
    "account_country", "sales_owner", "csm", "vip", "timezone",
]  # fmt: skip
LOCALES = ["en-US", "en", "ja-JP", "de", "he", "nb", "zh"]
ZONES = ["America/New_York", "Europe/Oslo", "Asia/Tokyo", ""]


def write_contacts(path: Path, size: int, seed: int = 21) -> Path:
    """A contacts export of `size` rows, four contacts per account, 0.1% of them bad. Streamed: it
    writes a million rows in seconds (devkit.simulate.write_population builds every row in memory)."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(size):
            a = n // 4
            email, name = f"contact{n}@account{a}.example", f"Contact {n} of Account {a}"
            if rng.random() < 0.001:  # what real extracts get wrong, now and then
                email, name = rng.choice([("not an address", name), (f"contact{n - 1}@account{a}.example", name)])
                name = "" if rng.random() < 0.3 else name
            writer.writerow(
                [
                    f"C{n:08d}", email, name, rng.choice(LOCALES), "admin", f"A{a:07d}", f"Account {a} Ltd",
                    "smb", "US", f"seller{a % 40}@vendor.example", f"csm{a % 30}@vendor.example",
                    "true" if a % 50 == 0 else "false", rng.choice(ZONES),
                ]
            )  # fmt: skip
    return path


def configure(home: str, db_url: str | None) -> None:
    os.environ.update({"NPS_HOME": home, "NPS_SECRET_KEY": "bench", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    if db_url:
        os.environ["NPS_DB_URL"] = db_url


def _wave(engine: Any, csv_path: Path, number: int) -> Any:
    """The program's wave `number` (1 first), planned in the NPS DB."""
    from include.nps.wave import waves
    from tests.factories import wave_params

    opens = FIRST_OPEN + (number - 1) * WAVE_SPACING
    params = wave_params(csv_path, name=f"wave {number}", start=opens, program="scale", frequency_days=FREQUENCY_DAYS)
    wave = waves.WaveParams.from_params(params)
    waves.plan_wave(engine, wave)
    return wave


def product(home: str, db_url: str | None, csv_path: Path, number: int) -> dict[str, Any]:
    """build_audience's work for wave `number`: load the file, snapshot the audience."""
    configure(home, db_url)
    import pandas  # noqa: F401  (imported before the clock starts, as the plain run's)

    from include.nps.core.connections import nps_engine
    from include.nps.wave import audience

    engine = nps_engine()
    wave = _wave(engine, csv_path, number)
    started, cpu = time.perf_counter(), time.process_time()
    loaded = audience.load_contacts(engine, wave.wave_id, csv_path, max_rejected_share=0.01)
    snapshot_started = time.perf_counter()
    counts = audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, wave.frequency_days, wave.open_at)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "cpu_seconds": time.process_time() - cpu,
        "snapshot_seconds": done - snapshot_started,
        "rows": loaded.rows,
        "quarantined": loaded.quarantined,
        "counts": counts,
    }


def plain(home: str, db_url: str | None, csv_path: Path, number: int) -> dict[str, Any]:
    """pandas: read_csv + to_sql of the file; from the second wave on, the frequency rule too."""
    configure(home, db_url)
    import pandas as pd
    from sqlalchemy import text

    from include.nps.core.connections import nps_engine

    engine = nps_engine()
    started = time.perf_counter()
    contacts = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    contacts.to_sql("plain_contacts", engine, if_exists="replace", index=False, chunksize=50_000)
    if number > 1:
        since = FIRST_OPEN + (number - 1) * WAVE_SPACING - dt.timedelta(days=FREQUENCY_DAYS)
        sql = (
            "SELECT DISTINCT o.recipient FROM outbox o JOIN waves w ON w.wave_id = o.wave_id "
            "WHERE o.kind = 'invitation' AND o.status = 'sent' AND w.open_at > :since"
        )
        with engine.connect() as conn:
            recent = pd.read_sql(text(sql), conn, params={"since": since})
        audience = contacts[["contact_id"]].assign(included=~contacts["contact_id"].isin(recent["recipient"]))
        audience.to_sql("plain_audience", engine, if_exists="replace", index=False, chunksize=50_000)
    return {"seconds": time.perf_counter() - started}


def history(home: str, db_url: str | None, csv_path: Path, size: int, numbers: list[int]) -> dict[str, Any]:
    """Waves `numbers`, planned, each with sent invitations to a third of the contacts, in bulk."""
    configure(home, db_url)
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine

    engine = nps_engine()
    columns = ("wave_id", "kind", "recipient", "address", "status", "attempts", "created_at", "sent_at")
    for number in numbers:
        wave = _wave(engine, csv_path, number)
        sent = wave.open_at + dt.timedelta(hours=1)
        rows = (
            (wave.wave_id, "invitation", f"C{n:08d}", f"contact{n}@account{n // 4}.example", "sent", 1, sent, sent)
            for n in range(number % 3, size, 3)
        )
        with engine.begin() as conn:
            storage.copy_rows(conn, "outbox", columns, rows)
    return {}


def measure(size: int, db: str = "sqlite") -> list[dict[str, Any]]:
    """Rows {step, seconds, peak_rss_mib, plain_seconds, plain_rss_mib}: on SQLite, on ("pg") a
    throwaway PostgreSQL cluster, or on a fresh database of the PostgreSQL server at a URL."""
    with harness.database(db) as db_url:
        return _measure(size, db_url)


def _measure(size: int, db_url: str | None) -> list[dict[str, Any]]:
    home = tempfile.mkdtemp(prefix="nps-bench-audience-")
    try:
        csv_path = write_contacts(Path(home) / "contacts.csv", size)
        rows = []
        for number, earlier in ((1, []), (2, [1]), (10, list(range(2, 10)))):
            if earlier:
                harness.in_child(history, home, db_url, csv_path, size, earlier)
            ours = harness.in_child(product, home, db_url, csv_path, number)
            theirs = harness.in_child(plain, home, db_url, csv_path, number)
            before = f"{(number - 1) * size // 3:,} invitations before" if number > 1 else "first"
            if number == 1:
                before += f", {ours['quarantined']:,} rows quarantined"
            counts = {key: f"{n:,}" for key, n in ours["counts"].items()}
            rows += [
                {
                    "step": f"build_audience, wave {number} ({before})",
                    "seconds": ours["seconds"],
                    "peak_rss_mib": ours["peak_rss_mib"],
                    "plain_seconds": theirs["seconds"],
                    "plain_rss_mib": theirs["peak_rss_mib"],
                },
                {
                    "step": f"  snapshot: {counts.get('included', 0)} in, {counts.get('surveyed_recently', 0)} recent",
                    "seconds": ours["snapshot_seconds"],
                },
                {"step": "  CPU seconds of the step's own process", "seconds": ours["cpu_seconds"]},
            ]
        return rows
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    size = int(float(args[0])) if args else 100_000
    db = args[1] if len(args) > 1 else "sqlite"
    where = "PostgreSQL" if db != "sqlite" else "SQLite"
    harness.print_rows(f"audience of a contacts file, {size:,} rows, {where}", measure(size, db))


if __name__ == "__main__":
    main()
