"""Steps called as the DAG's tasks call them: a bad input stops the wave with a readable reason."""

import pytest
from airflow.sdk.exceptions import AirflowFailException

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
