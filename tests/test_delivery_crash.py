"""A mailing's send task killed mid-work (SIGKILL, several times) against a real SMTP server that
greylists, refuses and drops connections, then retried as Airflow retries it: nothing never tried
is written off, at most one message per kill is in doubt, duplicates come only from those (and
from a server that accepted then hung up, which SMTP cannot tell from a loss), and the ledger
matches what the server received, row by row."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from include.nps import pipeline
from include.nps.core import storage
from tests.crash_sender import kill_mid_send, retry_until_done, start_try
from tests.factories import contact, wave_params, write_csv
from tests.faulty_smtp import FaultyServer, fault

pytestmark = pytest.mark.processes
CONTACTS = 300
KILLS = 5
FAULTS = ((10, 3, "grey"), (15, 7, "greydata"), (25, 11, "nouser"), (37, 5, "acceptdrop"))  # (every, at, fault)


def _address(n: int) -> str:
    for every, at, name in FAULTS:
        if n % every == at:
            return f"{name}-{n}@a1.example"
    return f"c{n}@a1.example"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    faulty = FaultyServer(tmp_path / "mail", delay=0.01)  # slow replies: a kill lands mid-transaction
    faulty.start()
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", faulty.connection_uri())
    yield faulty
    faulty.stop()


@pytest.fixture
def mailing(engine, tmp_path, server) -> str:
    rows = [contact(f"C{n:03d}", email=_address(n)) for n in range(CONTACTS)]
    plan = pipeline.plan_wave(wave_params(write_csv(tmp_path / "c.csv", rows)))
    pipeline.build_audience(plan["wave_id"])
    assert pipeline.prepare_mailing(plan["wave_id"], "invitation") == [0]
    return plan["wave_id"]


def _time_passes(engine) -> None:
    """The deferred messages' retry time comes (the test does not wait minutes for it)."""
    storage.execute(engine, "UPDATE outbox SET next_attempt_at = NULL WHERE status = 'pending'")


def test_a_send_task_killed_again_and_again_loses_nothing_and_doubles_at_most_its_in_doubt(engine, mailing, server):
    rng = random.Random(17)
    kills = 0
    while kills < KILLS:
        kills += kill_mid_send(start_try(mailing), server.spool.tries, after=rng.randint(10, 40))
        _time_passes(engine)
    tries = kills + retry_until_done(mailing, lambda: _time_passes(engine))

    ledger = {
        row["address"]: row
        for row in storage.fetch_all(
            engine,
            "SELECT o.address, o.status, o.attempts, o.doubts, o.last_error, o.message_id, c.bounced_at "
            "FROM outbox o JOIN contacts c ON c.contact_id = o.recipient WHERE o.wave_id = :w",
            w=mailing,
        )
    }
    copies: dict[str, list[str]] = {}
    for message in server.spool.messages():
        copies.setdefault(message["To"], []).append(message["Message-ID"])
    received = Counter({address: len(ids) for address, ids in copies.items()})
    in_doubt = sum(row["doubts"] for row in ledger.values())
    by_fault = {name: [a for a in ledger if fault(a) == name] for name in ("grey", "greydata", "nouser", "acceptdrop")}
    doubled = [a for a, n in received.items() if n > 1 and fault(a) != "acceptdrop"]
    written_off = [r for r in ledger.values() if r["status"] == "failed" and "interrupted" in (r["last_error"] or "")]
    dropped_twice = sum(received[a] > 1 for a in by_fault["acceptdrop"])
    print(
        f"\n{CONTACTS} invitations, {kills} kills, {tries} tries: {dict(Counter(r['status'] for r in ledger.values()))}"
        f", in doubt {in_doubt}, duplicates {len(doubled)} (+{dropped_twice} accepted-then-dropped)"
        f", never-tried written off {len(written_off)}"
    )

    assert len(ledger) == CONTACTS
    assert in_doubt <= kills  # at most one message in doubt per kill
    assert len(doubled) <= in_doubt  # a duplicate only where a kill left a message in doubt
    assert {a: r["status"] for a, r in ledger.items() if r["status"] != "sent"} == {
        a: "failed" for a in by_fault["nouser"]
    }  # nothing written off: every row sent, but the refused addresses
    for address in by_fault["grey"] + by_fault["greydata"]:  # 4xx: delivered on a later try, never bounced
        assert received[address] >= 1 and ledger[address]["bounced_at"] is None, address
    for address in by_fault["nouser"]:  # 5xx: recorded, the contact suppressed, never retried
        row = ledger[address]
        assert received[address] == 0 and row["bounced_at"] is not None and "550 5.1.1" in row["last_error"]
        assert server.spool.tries[address] == 1 + row["doubts"]  # tried again only if a kill left it in doubt
    for address in by_fault["acceptdrop"]:  # taken, then the server hung up before its 250: SMTP cannot tell
        assert ledger[address]["status"] == "sent" and 1 <= received[address] <= 2 + ledger[address]["doubts"]
    for address, row in ledger.items():  # the ledger matches the server, row by row
        if row["status"] == "sent":
            assert copies.get(address) and set(copies[address]) == {row["message_id"]}, address
