"""The ledger against a real SMTP server on loopback: once, and only once."""

import datetime as dt

import pytest
from sqlalchemy import text

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport, TransientFailure
from tests.factories import contact, plain_email, planned_wave, write_csv


@pytest.fixture
def wave(engine, tmp_path):
    from include.nps.wave import audience

    rows = [contact("C1"), contact("C2"), contact("C3", email="bounce@a1.example")]
    path = write_csv(tmp_path / "c.csv", rows)
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    return wave


def _enqueue_all(engine, wave) -> None:
    outbox.enqueue(
        engine,
        wave.wave_id,
        "invitation",
        [("C1", "c1@a1.example"), ("C2", "c2@a1.example"), ("C3", "bounce@a1.example")],
    )


def test_each_message_is_sent_once_even_when_delivered_again(engine, wave, smtp):
    _enqueue_all(engine, wave)
    with SmtpTransport() as transport:
        first = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    _enqueue_all(engine, wave)
    with SmtpTransport() as transport:
        second = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (first.sent, first.failed) == (2, 1)
    assert (second.sent, second.failed) == (0, 0)
    assert sorted(m["To"] for m in smtp.spool.messages()) == ["c1@a1.example", "c2@a1.example"]


def test_two_tasks_delivering_one_kind_at_once_send_each_message_once(engine, wave, smtp, monkeypatch):
    """The real-time DAG and the wave's close can work the same kind at the same time: each row is
    claimed just before its send, so a row read by both is sent by whichever claims it first, and a
    row another live task is sending is left to it."""
    _enqueue_all(engine, wave)
    claim = outbox._claim

    def other_task_claims_c1_first(conn, row, sender, due):
        if row["recipient"] == "C1":
            conn.execute(
                text(
                    "UPDATE outbox SET status = 'sending', claimed_by = 'airflow:other', claimed_at = :t"
                    " WHERE recipient = 'C1'"
                ),
                {"t": storage.utcnow()},
            )
        return claim(conn, row, sender, due)

    monkeypatch.setattr(outbox, "_claim", other_task_claims_c1_first)
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
        again = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (outcome.sent, outcome.failed, again.in_doubt) == (1, 1, 0)  # C2 sent, C3 refused; C1 the other's
    assert [m["To"] for m in smtp.spool.messages()] == ["c2@a1.example"]
    assert storage.fetch_one(engine, "SELECT status FROM outbox WHERE recipient = 'C1'")["status"] == "sending"


def test_a_refused_address_is_recorded_as_bounced_and_suppressed_later(engine, wave, smtp):
    _enqueue_all(engine, wave)
    with SmtpTransport() as transport:
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
        row = storage.fetch_one(engine, "SELECT status, last_error FROM outbox WHERE recipient = 'C3'")
        assert row["status"] == "failed" and "550" in row["last_error"]
        assert storage.fetch_one(engine, "SELECT bounced_at FROM contacts WHERE contact_id = 'C3'")["bounced_at"]
        outbox.enqueue(engine, wave.wave_id, "flash_results", [("C3", "bounce@a1.example")])
        later = outbox.deliver(engine, wave.wave_id, "flash_results", plain_email, transport)
    assert later.suppressed == 1
    assert (
        storage.fetch_one(engine, "SELECT last_error FROM outbox WHERE kind = 'flash_results'")["last_error"]
        == "bounced"
    )


def test_opted_out_contacts_are_suppressed_at_send_time(engine, wave, smtp):
    _enqueue_all(engine, wave)
    storage.execute(engine, "UPDATE contacts SET opted_out_at = :t WHERE contact_id = 'C1'", {"t": storage.utcnow()})
    with SmtpTransport() as transport:
        result = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert result.suppressed == 1
    assert "c1@a1.example" not in [m["To"] for m in smtp.spool.messages()]


def _interrupted(engine, recipient: str, sender: str, minutes_ago: int = 0) -> None:
    """`recipient`'s row as a sender killed mid-send left it."""
    claimed_at = storage.utcnow() - dt.timedelta(minutes=minutes_ago)
    storage.execute(
        engine,
        "UPDATE outbox SET status = 'sending', attempts = 1, claimed_by = :s, claimed_at = :t WHERE recipient = :r",
        {"s": sender, "t": claimed_at, "r": recipient},
    )


def test_a_send_interrupted_in_an_earlier_try_is_resent_once_with_its_message_id(engine, wave, smtp):
    _enqueue_all(engine, wave)
    _interrupted(engine, "C1", outbox.sender_identity())
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", messages_with_ids, transport)
    row = storage.fetch_one(engine, "SELECT status, doubts, attempts, message_id FROM outbox WHERE recipient = 'C1'")
    assert (outcome.in_doubt, outcome.sent) == (1, 2)
    assert row == {"status": "sent", "doubts": 1, "attempts": 2, "message_id": "<invitation.C1@nps.test>"}
    assert [m["Message-ID"] for m in smtp.spool.messages() if m["To"] == "c1@a1.example"] == [row["message_id"]]


def test_the_hold_policy_keeps_an_interrupted_send_in_doubt_for_a_person(engine, wave, smtp):
    _enqueue_all(engine, wave)
    _interrupted(engine, "C1", outbox.sender_identity())
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport, policy=HOLD)
    row = storage.fetch_one(engine, "SELECT status, last_error FROM outbox WHERE recipient = 'C1'")
    assert outcome.in_doubt == 1 and row["status"] == "in_doubt" and "outcome unknown" in row["last_error"]
    assert "c1@a1.example" not in [m["To"] for m in smtp.spool.messages()]
    assert outbox.counts(engine, wave.wave_id)["invitation"] == {"in_doubt": 1, "sent": 1, "failed": 1}


def test_a_person_decides_a_message_held_in_doubt(engine, wave, smtp, nps_home, capsys):
    _enqueue_all(engine, wave)
    _interrupted(engine, "C1", outbox.sender_identity())
    _interrupted(engine, "C2", outbox.sender_identity())
    with SmtpTransport() as transport:
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport, policy=HOLD)
        outbox.main([wave.wave_id])
        assert capsys.readouterr().out.splitlines() == [
            "invitation\tC1\tc1@a1.example\t",
            "invitation\tC2\tc2@a1.example\t",
        ]
        outbox.main([wave.wave_id, "invitation", "C1", "arrived"])  # the relay's log shows it went out
        assert outbox.decide_in_doubt(engine, wave.wave_id, "invitation", "C2", "resend")
        assert not outbox.decide_in_doubt(engine, wave.wave_id, "invitation", "C3", "resend")  # not in doubt
        with pytest.raises(SystemExit, match="no invitation message to C1"):
            outbox.main([wave.wave_id, "invitation", "C1", "resend"])
        again = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport, policy=HOLD)
    assert (again.sent, again.in_doubt) == (1, 0)
    assert outbox.counts(engine, wave.wave_id)["invitation"] == {"sent": 2, "failed": 1}
    assert [m["To"] for m in smtp.spool.messages()] == ["c2@a1.example"]


def test_another_senders_row_is_in_doubt_only_once_its_lease_is_over(engine, wave, smtp):
    _enqueue_all(engine, wave)
    _interrupted(engine, "C1", "airflow:another/run/task", minutes_ago=1)
    _interrupted(engine, "C2", "airflow:another/run/task", minutes_ago=int(outbox.LEASE.total_seconds() // 60) + 1)
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport, policy=HOLD)
    statuses = {r["recipient"]: r["status"] for r in storage.fetch_all(engine, "SELECT recipient, status FROM outbox")}
    assert outcome.in_doubt == 1 and statuses == {"C1": "sending", "C2": "in_doubt", "C3": "failed"}


def test_a_render_error_releases_the_claim_so_the_row_is_sent_by_the_retry(engine, wave, smtp):
    _enqueue_all(engine, wave)

    def broken(row):
        raise KeyError("a template bug")

    with SmtpTransport() as transport:
        with pytest.raises(KeyError):
            outbox.deliver(engine, wave.wave_id, "invitation", broken, transport)
        assert (
            storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending' AND attempts = 0")["n"]
            == 3
        )
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (outcome.sent, outcome.failed, outcome.in_doubt) == (2, 1, 0)


HOLD = outbox.DeliveryPolicy(in_doubt="hold")


def messages_with_ids(row):
    message = plain_email(row)
    message["Message-ID"] = f"<{row['kind']}.{row['recipient']}@nps.test>"
    return message


class FlakyTransport:
    """Fails transiently for one address, like a greylisting server."""

    def __init__(self, inner, flaky: str) -> None:
        self.inner, self.flaky = inner, flaky

    def send(self, payload) -> None:
        if payload["To"] == self.flaky:
            raise TransientFailure("451 try again later")
        self.inner.send(payload)


def _clock_moved(monkeypatch, hours: int) -> None:
    """Move storage.utcnow `hours` ahead: past any backoff of a transiently refused message."""
    start = storage.utcnow()
    monkeypatch.setattr(storage, "utcnow", lambda: start + dt.timedelta(hours=hours))


def test_transient_failures_stay_pending_for_the_retry_then_give_up(engine, wave, smtp, monkeypatch):
    _enqueue_all(engine, wave)
    with SmtpTransport() as transport:
        flaky = FlakyTransport(transport, "c2@a1.example")
        for attempt in range(1, outbox.MAX_ATTEMPTS):
            with pytest.raises(outbox.DeliveryIncomplete, match="1 invitation message"):
                outbox.deliver(engine, wave.wave_id, "invitation", plain_email, flaky)
            assert storage.fetch_one(engine, "SELECT status, attempts FROM outbox WHERE recipient = 'C2'") == {
                "status": "pending",
                "attempts": attempt,
            }
            _clock_moved(monkeypatch, hours=1)  # its retry time has come
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, flaky)
    assert storage.fetch_one(engine, "SELECT status FROM outbox WHERE recipient = 'C2'")["status"] == "failed"
    assert [m["To"] for m in smtp.spool.messages()].count("c1@a1.example") == 1


def test_an_unreachable_smtp_server_is_a_transient_failure(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_NPS_SMTP",
        '{"conn_type": "smtp", "host": "127.0.0.1", "port": 9, '
        '"extra": {"disable_tls": true, "disable_ssl": true, "retry_limit": 0, "timeout": 2}}',
    )
    with pytest.raises(TransientFailure, match="cannot reach the SMTP server"), SmtpTransport():
        pass


def test_the_email_backoff_doubles_from_one_minute_up_to_its_cap_with_a_small_jitter():
    minutes = [outbox.backoff(attempts) / dt.timedelta(minutes=1) for attempts in range(1, 9)]
    for wait, expected in zip(minutes, [1, 2, 4, 8, 16, 30, 30, 30], strict=True):
        assert expected <= wait <= expected * (1 + outbox.BACKOFF_JITTER)
    assert outbox.backoff(1, "slack") == dt.timedelta(0)  # a chat post is due again at the task's retry


def test_a_chunk_with_a_deferred_row_reports_it_and_sends_it_once_due(engine, wave, smtp, monkeypatch):
    _enqueue_all(engine, wave)
    with SmtpTransport() as transport:
        flaky = FlakyTransport(transport, "c2@a1.example")
        with pytest.raises(outbox.DeliveryIncomplete, match="1 invitation message") as first:
            outbox.deliver(engine, wave.wave_id, "invitation", plain_email, flaky, chunk=0)
        retry_at = storage.as_utc(
            storage.fetch_one(engine, "SELECT next_attempt_at FROM outbox WHERE recipient = 'C2'")["next_attempt_at"]
        )
        assert retry_at.isoformat(timespec="seconds") in str(first.value)
        monkeypatch.setattr(storage, "utcnow", lambda: retry_at)  # due exactly now
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport, chunk=0)
    assert (outcome.sent, outcome.failed, outcome.retry) == (1, 0, 0)
    assert sorted(m["To"] for m in smtp.spool.messages()) == ["c1@a1.example", "c2@a1.example"]
