"""Data checks run Great Expectations for real; a failure names the expectation and shows rows."""

import pandas as pd
import pytest

from include.nps import checks, storage


def test_a_passing_suite_is_stored(engine):
    frame = pd.DataFrame({"contact_id": ["C1", "C2"], "score": [3, 10]})
    result = checks.run_check(engine, "w", "responses", "responses", frame, checks.responses_suite([]))
    assert result.success and result.evaluated == 3
    row = storage.fetch_one(engine, "SELECT suite, success, failed, summary FROM check_results WHERE wave_id = 'w'")
    assert row["suite"] == "responses" and row["success"] and row["failed"] == 0


def test_a_failing_suite_raises_with_expectations_and_examples_and_is_stored(engine):
    frame = pd.DataFrame({"contact_id": ["C1", "C1", "C3"], "score": [3, 11, 12]})
    with pytest.raises(checks.DataCheckFailed) as failure:
        checks.run_check(engine, "w", "responses", "responses", frame, checks.responses_suite([]))
    message = str(failure.value)
    assert "responses suite FAILED 2 of 3" in message
    assert "expect_column_values_to_be_unique(column=contact_id): 2 unexpected, e.g. C1, C1" in message
    assert "expect_column_values_to_be_between(column=score, min_value=0.0, max_value=10.0)" in message
    assert "e.g. 11, 12" in message
    row = storage.fetch_one(engine, "SELECT success, failed, details FROM check_results WHERE step = 'responses'")
    assert not row["success"] and row["failed"] == 2 and "expect_column_values_to_be_unique" in row["details"]


def test_a_missing_column_is_reported_as_a_check_that_could_not_run(engine):
    frame = pd.DataFrame({"contact_id": ["C1"], "score": [9]})
    suite = checks.responses_suite([{"id": "support", "scale": "1-5"}])
    with pytest.raises(checks.DataCheckFailed, match=r'could not run: .*"pillar_support" in BatchData does not exist'):
        checks.run_check(engine, "w", "responses", "responses", frame, suite)


def test_flash_figures_must_match_their_counts(engine):
    good = pd.DataFrame([{"nps": 20.0}])
    checks.run_check(engine, "w", "flash", "flash_results", good, checks.flash_suite(3, 1, 10))
    with pytest.raises(checks.DataCheckFailed, match=r"min_value=20.0, max_value=20.0\): 1 unexpected, e.g. 25.0"):
        checks.run_check(
            engine, "w", "flash", "flash_results", pd.DataFrame([{"nps": 25.0}]), checks.flash_suite(3, 1, 10)
        )
