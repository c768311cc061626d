"""The ledger against a real SMTP server on loopback: once, and only once."""

import datetime as dt

import pytest

from include.nps import outbox, storage
from include.nps.delivery import SmtpTransport, TransientFailure
from tests.factories import contact, plain_email, planned_wave, write_csv


@pytest.fixture
def wave(engine, tmp_path):
    from include.nps import audience

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
    claimed before its send, so a row read by both is sent by whichever claims it first."""
    _enqueue_all(engine, wave)
    claim = outbox._claim_batch

    def other_task_claims_first(engine_, scope):
        storage.execute(engine_, "UPDATE outbox SET status = 'sending' WHERE recipient = 'C1'")
        monkeypatch.setattr(outbox, "_claim_batch", claim)
        return claim(engine_, scope)  # after the other task claimed C1, between this task's start and claim

    monkeypatch.setattr(outbox, "_claim_batch", other_task_claims_first)
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    assert (outcome.sent, outcome.failed) == (1, 1)  # C2 sent, C3 refused; C1 left to its claimer
    assert [m["To"] for m in smtp.spool.messages()] == ["c2@a1.example"]


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


def test_an_interrupted_send_is_not_retried(engine, wave, smtp):
    _enqueue_all(engine, wave)
    storage.execute(engine, "UPDATE outbox SET status = 'sending' WHERE recipient = 'C1'")
    with SmtpTransport() as transport:
        outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    row = storage.fetch_one(engine, "SELECT status, last_error FROM outbox WHERE recipient = 'C1'")
    assert row["status"] == "failed" and "outcome unknown" in row["last_error"]
    assert "c1@a1.example" not in [m["To"] for m in smtp.spool.messages()]


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
