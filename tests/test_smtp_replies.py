"""SMTP replies classified as RFC 5321 says, against a real fault-injecting aiosmtpd server on loopback:
4yz at any stage is retried, 5yz is recorded and never retried, only a refused address is a bounce, and
a 421 or a dropped connection opens a new session for the rest of the batch."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, SmtpTransport, TransientFailure, is_bounce
from tests.factories import contact, plain_email, planned_wave, write_csv
from tests.faulty_smtp import GREYLISTED, FaultyServer


@pytest.fixture
def faulty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyServer]:
    server = FaultyServer(tmp_path / "mail")
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", server.connection_uri())
    yield server
    server.stop()


@pytest.fixture
def wave(engine, tmp_path):
    from include.nps.wave import audience

    path = write_csv(tmp_path / "c.csv", [contact(f"C{n}") for n in range(1, 7)])
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    return wave


def _row(engine, recipient: str) -> dict:
    row = storage.fetch_one(
        engine,
        "SELECT o.status, o.attempts, o.last_error, c.bounced_at FROM outbox o "
        "JOIN contacts c ON c.contact_id = o.recipient WHERE o.recipient = :r",
        r=recipient,
    )
    return dict(row)


def _delivered(server: FaultyServer) -> list[str]:
    return sorted(m["To"] for m in server.spool.messages())


@pytest.mark.parametrize(
    ("local", "failure", "bounce"),
    [
        ("grey", TransientFailure, None),  # 451 at RCPT
        ("greydata", TransientFailure, None),  # 451 at DATA
        ("nouser", PermanentFailure, True),  # 550 5.1.1 at RCPT
        ("plain", PermanentFailure, True),  # 550 with no enhanced code at RCPT
        ("norelay", PermanentFailure, False),  # 550 5.7.1: policy, the address may be fine
        ("policy", PermanentFailure, False),  # 554 5.7.1 at DATA
        ("shutdown", TransientFailure, None),  # 421 at RCPT
        ("cut", TransientFailure, None),  # connection dropped at DATA
        ("mailgrey", TransientFailure, None),  # 451 at MAIL
        ("mailbad", PermanentFailure, False),  # 553 5.1.8 at MAIL: the sender, not the recipient, is refused
    ],
)
def test_each_reply_is_classified_as_rfc_5321_says(faulty, local, failure, bounce):
    with SmtpTransport() as transport, pytest.raises((PermanentFailure, TransientFailure)) as raised:
        message = plain_email({"address": f"{local}@a1.example"})
        message.replace_header("From", f"{local}@vendor.example")  # the MAIL stage answers by the sender
        transport.send(message)
    assert type(raised.value) is failure
    if bounce is not None:
        assert raised.value.bounce is bounce


@pytest.mark.parametrize(
    ("code", "reply", "bounce"),
    [
        (550, "5.1.1 No such user", True),
        (553, "5.1.3 Bad destination address syntax", True),
        (550, "5.1.10 Recipient address has null MX", True),
        (550, "5.1.11 unassigned", False),
        (550, "5.2.2 Mailbox full", False),
        (552, "5.3.4 Message too big", False),
        (551, "User not local", True),
        (554, "Transaction failed", False),
        (450, "4.1.1 Mailbox busy", False),
    ],
)
def test_only_a_refused_address_is_a_bounce(code, reply, bounce):
    assert is_bounce(code, reply) is bounce


def test_a_greylisted_recipient_stays_pending_unbounced_and_is_delivered_on_the_next_try(
    engine, wave, faulty, monkeypatch
):
    outbox.enqueue(engine, wave.wave_id, "invitation", [("C1", "grey@a1.example"), ("C2", "ok@a1.example")])
    with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete):
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    first = _row(engine, "C1")
    assert (first["status"], first["attempts"], first["bounced_at"]) == ("pending", 1, None)
    assert first["last_error"] == f"grey@a1.example: {GREYLISTED}"
    _clock_moved(monkeypatch, hours=1)  # its retry time has come
    with SmtpTransport() as transport:
        again = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (again.sent, again.failed, again.retry) == (1, 0, 0)
    assert (_row(engine, "C1")["status"], _row(engine, "C1")["bounced_at"]) == ("sent", None)
    assert _delivered(faulty) == ["grey@a1.example", "ok@a1.example"]


def test_permanent_refusals_are_failed_never_retried_and_only_bad_addresses_bounce(engine, wave, faulty):
    refused = {"C1": "nouser@a1.example", "C2": "policy@a1.example", "C3": "norelay@a1.example"}
    outbox.enqueue(engine, wave.wave_id, "invitation", [*refused.items(), ("C4", "ok@a1.example")])
    for _ in range(2):
        with SmtpTransport() as transport:
            outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    rows = {c: _row(engine, c) for c in refused}
    assert {c: r["status"] for c, r in rows.items()} == {"C1": "failed", "C2": "failed", "C3": "failed"}
    assert {c: r["bounced_at"] is not None for c, r in rows.items()} == {"C1": True, "C2": False, "C3": False}
    assert rows["C1"]["last_error"].startswith("nouser@a1.example: 550 5.1.1")
    assert rows["C2"]["last_error"].startswith("554 5.7.1")
    assert (outcome.sent, outcome.failed) == (0, 0)  # the second run sends nothing again
    assert faulty.spool.tries["nouser@a1.example"] == faulty.spool.tries["policy@a1.example"] == 1
    assert _delivered(faulty) == ["ok@a1.example"]


@pytest.mark.parametrize("local", ["shutdown", "cut"])  # 421 and close at RCPT; dropped at DATA, no reply
def test_after_a_lost_session_the_rest_of_the_batch_goes_over_a_new_one(engine, wave, faulty, local):
    lost = f"{local}@a1.example"
    rows = [("C1", "c1@a1.example"), ("C2", lost), ("C3", "c3@a1.example"), ("C4", "c4@a1.example")]
    outbox.enqueue(engine, wave.wave_id, "invitation", rows)
    with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete):
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert transport.sessions == 2
    assert {c: _row(engine, c)["status"] for c, _ in rows} == {
        "C1": "sent",
        "C2": "pending",
        "C3": "sent",
        "C4": "sent",
    }
    assert _row(engine, "C2")["bounced_at"] is None
    peers = faulty.spool.peers
    assert peers["c1@a1.example"] == peers[lost] != peers["c3@a1.example"] == peers["c4@a1.example"]
    assert faulty.spool.tries[lost] == 1  # not resent within the call: it may have arrived
    assert _delivered(faulty) == ["c1@a1.example", "c3@a1.example", "c4@a1.example"]


def test_a_session_that_cannot_be_reopened_fails_the_next_message_transiently(faulty):
    with SmtpTransport() as transport:
        with pytest.raises(TransientFailure):
            transport.send(plain_email({"address": "shutdown@a1.example"}))
        faulty.stop()
        with pytest.raises(TransientFailure, match="cannot reach the SMTP server"):
            transport.send(plain_email({"address": "c1@a1.example"}))
    assert transport.sessions == 1


GREY_EVERY = 7  # one recipient in 7 is greylisted: 451 at RCPT the first time, accepted later
MAILING = 300  # more than one claim batch


@pytest.fixture(params=["sqlite", "postgres"])
def mailing(request, tmp_path) -> tuple[Any, str, dict[str, str]]:
    """A wave of MAILING contacts and their invitations enqueued: (engine, wave id, {contact: address})."""
    from include.nps.wave import audience

    engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    ids = [f"C{n:03d}" for n in range(1, MAILING + 1)]
    path = write_csv(tmp_path / "c.csv", [contact(c) for c in ids])
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    addresses = {
        c: f"grey@d{n}.example" if n % GREY_EVERY == 0 else f"{c.lower()}@a1.example" for n, c in enumerate(ids)
    }
    outbox.enqueue(engine, wave.wave_id, "invitation", addresses.items())
    return engine, wave.wave_id, addresses


def _ledger(engine, wave_id: str) -> dict[str, dict]:
    rows = storage.fetch_all(
        engine,
        "SELECT recipient, address, status, attempts, last_error, next_attempt_at FROM outbox WHERE wave_id = :w",
        w=wave_id,
    )
    return {row["recipient"]: dict(row) for row in rows}


def test_one_call_tries_every_row_once_and_greylisted_ones_wait_for_their_retry_time(mailing, faulty, monkeypatch):
    engine, wave_id, addresses = mailing
    assert MAILING > outbox.PAGE_SIZE
    grey = {c for c, a in addresses.items() if a.startswith("grey@")}
    start = storage.utcnow()
    with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete, match=f"^{len(grey)} invitation"):
        outbox.deliver(engine, wave_id, "invitation", plain_email, transport)
    assert sorted(faulty.spool.tries) == sorted(addresses.values())
    assert set(faulty.spool.tries.values()) == {1}  # every row tried, and only once
    assert _delivered(faulty) == sorted(a for c, a in addresses.items() if c not in grey)
    ledger = _ledger(engine, wave_id)
    waiting = {c: row for c, row in ledger.items() if row["status"] == "pending"}
    assert set(waiting) == grey
    for row in waiting.values():
        retry_at = storage.as_utc(row["next_attempt_at"])
        assert start + outbox.BACKOFF_FIRST <= retry_at <= storage.utcnow() + outbox.BACKOFF_FIRST * 1.2
        assert (row["attempts"], row["last_error"]) == (1, f"{row['address']}: {GREYLISTED}")

    with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete, match=f"^{len(grey)} invitation"):
        outbox.deliver(engine, wave_id, "invitation", plain_email, transport)  # a task retry before their time
    assert set(faulty.spool.tries.values()) == {1}

    _clock_moved(monkeypatch, minutes=2)
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave_id, "invitation", plain_email, transport)
    assert (outcome.sent, outcome.failed, outcome.retry) == (len(grey), 0, 0)
    assert all(faulty.spool.tries[addresses[c]] == 2 for c in grey)
    bounced = storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM contacts WHERE bounced_at IS NOT NULL")
    assert bounced["n"] == 0
    received = Counter(m["To"] for m in faulty.spool.messages())
    ledger = _ledger(engine, wave_id)
    assert {c: (row["status"], received[row["address"]]) for c, row in ledger.items()} == {
        c: ("sent", 1) for c in addresses
    }
    assert all(row["next_attempt_at"] is None for row in ledger.values())


def test_a_message_greylisted_on_every_try_fails_with_its_last_reply_after_max_attempts(
    engine, wave, faulty, monkeypatch
):
    original = faulty.spool.handle_RCPT

    async def always_grey(server, session, envelope, address, options):
        if address == "grey@a1.example":  # greylisted on every try
            faulty.spool.tries[address] += 1
            return GREYLISTED
        return await original(server, session, envelope, address, options)

    monkeypatch.setattr(faulty.spool, "handle_RCPT", always_grey)
    outbox.enqueue(engine, wave.wave_id, "invitation", [("C1", "grey@a1.example")])
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete):
            outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
        _clock_moved(monkeypatch, hours=attempt)
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (outcome.sent, outcome.failed, outcome.retry) == (0, 1, 0)
    row = _row(engine, "C1")
    assert (row["status"], row["attempts"], row["bounced_at"]) == ("failed", outbox.MAX_ATTEMPTS, None)
    assert row["last_error"] == f"grey@a1.example: {GREYLISTED}"
    assert faulty.spool.tries["grey@a1.example"] == outbox.MAX_ATTEMPTS


def _clock_moved(monkeypatch: pytest.MonkeyPatch, **delta: float) -> dt.datetime:
    """Move storage.utcnow ahead by `delta` (timedelta keywords); the new now."""
    now = storage.utcnow() + dt.timedelta(**delta)
    monkeypatch.setattr(storage, "utcnow", lambda: now)
    return now
