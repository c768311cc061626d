"""Steps called as the DAG's tasks call them: a bad input stops the wave with a readable reason."""

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from include.nps import pipeline
from include.nps.core import storage
from include.nps.delivery import outbox
from tests.factories import contact, wave_params, write_csv


def test_a_contacts_file_with_too_many_bad_rows_stops_the_wave_before_any_email(engine, tmp_path, smtp, nps_home):
    path = write_csv(tmp_path / "c.csv", [contact("C1", email="broken"), contact("C2", account_id="")])
    plan = pipeline.plan_wave(wave_params(path))
    with pytest.raises(AirflowFailException) as failure:
        pipeline.build_audience(plan["wave_id"])
    assert "2 of 2 rows rejected (100.0%, above the 5% threshold)" in str(failure.value)
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM quarantine")["n"] == 2
    rejected = nps_home / "reports" / plan["wave_id"] / "quarantine" / "contacts-rejected.csv"
    assert rejected.read_text(encoding="utf-8-sig").splitlines()[1].startswith("2,email,not a valid email address")
    assert smtp.spool.messages() == [] and outbox.counts(engine, plan["wave_id"]) == {}


def test_an_empty_audience_fails_its_check_and_a_fixed_file_gets_a_fresh_snapshot(engine, tmp_path, smtp):
    path = write_csv(tmp_path / "c.csv", [contact("C1"), contact("C2")])
    plan = pipeline.plan_wave(wave_params(path))
    pipeline.audience.load_contacts(engine, "earlier", path)
    storage.execute(engine, "UPDATE contacts SET opted_out_at = :t", {"t": storage.utcnow()})  # everyone opted out
    with pytest.raises(AirflowFailException) as failure:
        pipeline.build_audience(plan["wave_id"])
    assert "audience suite FAILED 1 of 10 on 0 rows: the audience is not empty: observed 0" in str(failure.value)
    check = storage.fetch_one(engine, "SELECT success, summary FROM check_results WHERE step = 'audience'")
    assert not check["success"] and "the audience is not empty" in check["summary"]
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM wave_audience")["n"] == 0  # snapshot discarded
    storage.execute(engine, "UPDATE contacts SET opted_out_at = NULL WHERE contact_id = 'C1'")
    assert pipeline.build_audience(plan["wave_id"])["included"] == 1
    assert smtp.spool.messages() == []


def test_the_plan_is_stored_with_every_milestone(engine, tmp_path):
    plan = pipeline.plan_wave(wave_params(tmp_path / "c.csv"))
    stored = storage.fetch_all(engine, "SELECT milestone FROM wave_milestones WHERE wave_id = :w", w=plan["wave_id"])
    assert {m["milestone"] for m in stored} == set(plan["milestones"]) and len(stored) == 7
    # Close Mon 16 (05:00 in New York) + 3 business days, at the opening of business hours there.
    assert plan["milestones"]["flash"] == "2026-03-19T13:00:00+00:00"


def test_a_send_task_retries_deliveries_for_long_but_a_bug_only_as_often_as_any_task(monkeypatch):
    from include.nps.delivery.transports import TransientFailure

    @pipeline.retries_for_deliveries
    def send(error: Exception) -> None:
        raise error

    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", str(pipeline.OTHER_ERROR_TRIES))
    with pytest.raises(outbox.DeliveryIncomplete):  # deferred messages: the task's next retry sends them
        send(outbox.DeliveryIncomplete("1 invitation message(s) still pending"))
    with pytest.raises(TransientFailure):  # the mail server is unreachable: waited out
        send(TransientFailure("cannot reach the SMTP server"))
    with pytest.raises(AirflowFailException, match=r"'name' .*no more tries"):  # a bug: no hours of retries
        send(KeyError("name"))
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "1")
    with pytest.raises(KeyError):  # retried, as any task's error is
        send(KeyError("name"))
    assert pipeline.send_mailing_chunk.__wrapped__  # the send task's function is wrapped so


# --- mailings of any size: mapped send tasks from a budget ------------------------------------------


@given(chunks=st.integers(0, 3000), budget=st.integers(1, 1100))
def test_send_batches_cover_every_chunk_once_in_at_most_the_budget_of_tasks(chunks, budget):
    batches = pipeline.send_batches(list(range(chunks)), budget)
    assert [chunk for batch in batches for chunk in batch] == list(range(chunks))  # each once, in order
    assert len(batches) == min(budget, chunks) and all(batches)
    assert max(map(len, batches), default=0) - min(map(len, batches), default=0) <= 1


def test_the_send_budget_never_exceeds_airflows_max_map_length(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    assert len(pipeline.send_batches(list(range(2000)))) == 3
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "100000")
    assert len(pipeline.send_batches(list(range(2000)))) == pipeline.MAX_SEND_TASKS


def test_one_send_task_sends_its_chunks_of_one_and_a_deferred_chunk_does_not_stop_the_others(
    engine, tmp_path, monkeypatch
):
    """Chunks of one contact each; the task takes five of them in one session. A greylisted
    recipient (451 on the first try) is left for the retry while the chunks after it are sent;
    the retry sends only it. Every message once."""
    from tests.faulty_smtp import FaultyServer

    server = FaultyServer(tmp_path / "mail")
    server.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", server.connection_uri())
        addresses = ["c0@a1.example", "grey-1@a1.example", "c2@a1.example", "c3@a1.example", "c4@a1.example"]
        rows = [contact(f"C{n}", email=address) for n, address in enumerate(addresses)]
        plan = pipeline.plan_wave(wave_params(write_csv(tmp_path / "c.csv", rows), chunk_size=1))
        pipeline.build_audience(plan["wave_id"])
        chunks = pipeline.prepare_mailing(plan["wave_id"], "invitation")
        assert chunks == [0, 1, 2, 3, 4]
        monkeypatch.setattr(pipeline, "DEFERRED_WAIT_IN_TASK", dt.timedelta(0))  # the test does not wait

        with pytest.raises(outbox.DeliveryIncomplete, match="chunks 1 "):
            pipeline.send_mailing_chunks(plan["wave_id"], "invitation", chunks)
        assert sorted(m["To"] for m in server.spool.messages()) == sorted(set(addresses) - {"grey-1@a1.example"})

        storage.execute(engine, "UPDATE outbox SET next_attempt_at = NULL WHERE status = 'pending'")  # time passes
        assert pipeline.send_mailing_chunks(plan["wave_id"], "invitation", chunks)["sent"] == 1
        assert sorted(m["To"] for m in server.spool.messages()) == sorted(addresses)
    finally:
        server.stop()
