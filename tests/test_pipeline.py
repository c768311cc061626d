"""Steps called as the DAG's tasks call them: a bad input stops the wave with a readable reason."""

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.nps import outbox, pipeline, storage
from tests.factories import contact, wave_params, write_csv


def test_an_audience_with_no_valid_contact_stops_the_wave_before_any_email(engine, tmp_path, smtp):
    path = write_csv(tmp_path / "c.csv", [contact("C1", email="broken"), contact("C2", account_id="")])
    plan = pipeline.plan_wave(wave_params(path))
    with pytest.raises(AirflowFailException) as failure:
        pipeline.build_audience(plan["wave_id"])
    assert "audience suite FAILED" in str(failure.value)
    assert "expect_table_row_count_to_be_between(min_value=1): observed 0" in str(failure.value)
    assert storage.fetch_one(engine, "SELECT success FROM check_results WHERE step = 'audience'")["success"] in (
        0,
        False,
    )
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM quarantine")["n"] == 2
    assert smtp.spool.messages() == [] and outbox.counts(engine, plan["wave_id"]) == {}


def test_the_plan_is_stored_with_every_milestone(engine, tmp_path):
    plan = pipeline.plan_wave(wave_params(tmp_path / "c.csv"))
    stored = storage.fetch_all(engine, "SELECT milestone FROM wave_milestones WHERE wave_id = :w", w=plan["wave_id"])
    assert {m["milestone"] for m in stored} == set(plan["milestones"]) and len(stored) == 7
    assert plan["milestones"]["flash"] == "2026-03-19T09:00:00+00:00"  # close Mon 16 + 3 business days
