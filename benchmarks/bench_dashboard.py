"""Benchmark: the wave dashboard over many waves, on the embedded default (SQLite).

Prints figures; asserts nothing. `make bench-dashboard` (or `python -m benchmarks.bench_dashboard W C`)
seeds W finished waves of C contacts each (every contact invited, reminded and sent the flash
results, 40% answering, a follow-up per detractor, twelve data checks per wave), then times the
overview figures, the whole HTML page and one wave's page, each the median of five.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def seed(engine, waves_count: int, contacts: int) -> None:
    from include.nps.core import storage
    from include.nps.wave import waves

    now = storage.utcnow()
    storage.execute(
        engine,
        "INSERT INTO accounts (account_id, name, updated_at) VALUES (:a, :n, :t)",
        [{"a": f"A{i}", "n": f"Account {i}", "t": now} for i in range(contacts // 4 + 1)],
    )
    storage.execute(
        engine,
        "INSERT INTO contacts (contact_id, account_id, email, name, updated_at) VALUES (:c, :a, :e, :n, :t)",
        [
            {"c": f"C{i}", "a": f"A{i // 4}", "e": f"c{i}@a{i // 4}.example", "n": f"C {i}", "t": now}
            for i in range(contacts)
        ],
    )
    for w in range(waves_count):
        opened = now - dt.timedelta(days=30 * (waves_count - w))
        params = {
            "wave_name": f"W{w:04d}",
            "program": f"program-{w % 5}",
            "product": "Acme",
            "country": "US",
            "audience_csv": "contacts.csv",
            "open_at": opened.isoformat(),
            "close_at": (opened + dt.timedelta(days=14)).isoformat(),
            "sender": "cs@vendor.example",
            "executive_sender": "ceo@vendor.example",
        }
        wave = waves.WaveParams.from_params(params)
        waves.plan_wave(engine, wave, ("nps_wave", f"manual__{opened.isoformat()}"))
        _seed_wave(engine, wave.wave_id, contacts, opened)


def _seed_wave(engine, wave_id: str, contacts: int, opened: dt.datetime) -> None:
    from include.nps.core import storage

    ids = [f"C{i}" for i in range(contacts)]
    storage.execute(
        engine,
        "INSERT INTO wave_audience (wave_id, contact_id, account_id, email, name, locale, included, snapshot_at)"
        " VALUES (:w, :c, :a, :e, :c, 'en', TRUE, :t)",
        [{"w": wave_id, "c": c, "a": f"A{i // 4}", "e": f"{c}@x.example", "t": opened} for i, c in enumerate(ids)],
    )
    storage.execute(
        engine,
        "INSERT INTO outbox (wave_id, kind, recipient, address, status, created_at, sent_at)"
        " VALUES (:w, :k, :c, :c, 'sent', :t, :t)",
        [{"w": wave_id, "k": k, "c": c, "t": opened} for k in ("invitation", "reminder", "flash_results") for c in ids],
    )
    answered = [(c, (i * 7) % 11) for i, c in enumerate(ids) if i % 5 < 2]
    storage.execute(
        engine,
        "INSERT INTO responses (wave_id, contact_id, score, answered_at, updated_at) VALUES (:w, :c, :s, :t, :t)",
        [{"w": wave_id, "c": c, "s": s, "t": opened} for c, s in answered],
    )
    storage.execute(
        engine,
        "INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, created_at)"
        " VALUES (:w, :c, 'A0', :s, 'cs', 'csm@vendor.example', :t)",
        [{"w": wave_id, "c": c, "s": s, "t": opened} for c, s in answered if s <= 6],
    )
    storage.execute(
        engine,
        "INSERT INTO check_results (wave_id, step, suite, success, evaluated, failed, summary, details, checked_at)"
        " VALUES (:w, :s, :s, TRUE, 5, 0, 'passed', '{}', :t)",
        [{"w": wave_id, "s": f"step{i}", "t": opened} for i in range(12)],
    )
    storage.execute(engine, "UPDATE wave_milestones SET done_at = due_at WHERE wave_id = :w", {"w": wave_id})


def median_ms(fn, repeat: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), max(times) - min(times)


def main(waves_count: int = 300, contacts: int = 200) -> None:
    home = Path(tempfile.mkdtemp(prefix="nps-bench-dashboard-"))
    os.environ["NPS_HOME"] = str(home)
    from fastapi.testclient import TestClient

    from include.nps.core.connections import nps_engine
    from include.nps.web import dashboard_figures
    from include.nps.web.dashboard_app import create_app

    engine = nps_engine()
    start = time.perf_counter()
    seed(engine, waves_count, contacts)
    rows = waves_count * contacts
    print(f"seeded {waves_count} waves x {contacts} contacts ({3 * rows} messages, {rows * 2 // 5} answers)", end="")
    print(f" in {time.perf_counter() - start:.1f} s")
    client = TestClient(create_app(lambda: engine, authorize=lambda: None))
    wave_id = dashboard_figures.overview(engine, limit=1)[0]["wave_id"]
    for label, fn in (
        (f"overview figures, all {waves_count} waves", lambda: dashboard_figures.overview(engine, limit=waves_count)),
        (f"HTML page, all {waves_count} waves", lambda: client.get(f"/?limit={waves_count}").raise_for_status()),
        ("HTML page, default 200 latest waves", lambda: client.get("/").raise_for_status()),
        ("one wave's page", lambda: client.get(f"/waves/{wave_id}").raise_for_status()),
    ):
        median, spread = median_ms(fn)
        print(f"{label:<40} median {median:7.1f} ms  (spread {spread:.1f} ms)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
