"""Benchmark: the set-based steps of a wave on a large audience, on the embedded default.

Prints figures; asserts nothing. `make bench` (or `python -m benchmarks.bench_wave_steps N M`)
loads N contacts, snapshots the audience and sends M rendered invitations to a local SMTP server.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path


def timed(label: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    print(f"{label:<42} {seconds:8.2f} s", flush=True)
    return result, seconds


def main(contacts: int = 20000, messages: int = 2000) -> None:
    home = Path(tempfile.mkdtemp(prefix="nps-bench-"))
    os.environ.update({"NPS_HOME": str(home), "NPS_SECRET_KEY": "bench"})
    from devkit.servers import SmtpServer
    from devkit.simulate import write_population
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine
    from include.nps.delivery.transports import SmtpTransport
    from include.nps.wave import audience, mailings, waves

    accounts = max(1, contacts // 4)
    csv_path = write_population(home / "contacts.csv", accounts=accounts, seed="bench")
    engine = nps_engine()
    start = dt.datetime.now(dt.UTC)
    wave = waves.WaveParams.from_params(
        {
            "wave_name": "bench",
            "program": "bench",
            "product": "Acme",
            "country": "US",
            "audience_csv": str(csv_path),
            "open_at": start.isoformat(),
            "close_at": (start + dt.timedelta(days=14)).isoformat(),
            "sender": "cs@vendor.example",
            "executive_sender": "ceo@vendor.example",
        }
    )
    waves.plan_wave(engine, wave)
    rows = sum(1 for _ in csv_path.open()) - 1
    print(f"contacts file: {rows} rows in {accounts} accounts")
    loaded, _ = timed("load + validate + upsert contacts", audience.load_contacts, engine, wave.wave_id, csv_path)
    timed("snapshot audience", audience.snapshot_audience, engine, wave.wave_id, loaded.contact_ids, 90, wave.open_at)
    included = audience.audience_frame(engine, wave.wave_id)
    included = included[included["included"].astype(bool)].head(messages).to_dict("records")
    with SmtpServer(home / "mail") as smtp:
        os.environ["AIRFLOW_CONN_NPS_SMTP"] = smtp.connection_uri()
        with SmtpTransport() as transport:
            outcome, seconds = timed(
                f"render + send {len(included)} invitations",
                mailings.send_to_contacts,
                engine,
                wave,
                "invitation",
                included,
                transport,
            )
    print(
        f"  {outcome.sent / seconds:.0f} messages/s over one SMTP session; outbox rows: "
        f"{storage.fetch_one(engine, 'SELECT COUNT(*) AS n FROM outbox')['n']}"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
