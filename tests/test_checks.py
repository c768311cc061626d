"""Data checks run Great Expectations for real: a failure names the rule, the rows and the
expectation; warnings never stop a wave; results and their cost are stored with the wave."""

import datetime as dt

import pandas as pd
import pytest

from include.nps.core import storage
from include.nps.wave import data_checks
from include.nps.wave.waves import CheckThresholds

OPEN = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
WINDOW = (OPEN, OPEN + dt.timedelta(days=14))


def _responses(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contact_id": list(scores),
            "score": list(scores.values()),
            "answered_at": pd.Timestamp(OPEN + dt.timedelta(hours=1)),
            "comment": "",
        }
    )


def _suite(invited: list[str], pillars: list | None = None) -> list[data_checks.Expectation]:
    return data_checks.responses_suite(pillars or [], invited, WINDOW, CheckThresholds())


def test_a_passing_suite_is_stored_with_its_cost(engine):
    frame = _responses({"C1": 3, "C2": 10})
    result = data_checks.run_check(engine, "w", "responses", "responses", frame, _suite(["C1", "C2"]), "contact_id")
    assert result.success and result.evaluated == 6 and result.failed == 0
    row = storage.fetch_one(
        engine, "SELECT suite, success, failed, warnings, duration_ms, summary FROM check_results WHERE wave_id = 'w'"
    )
    assert row["suite"] == "responses" and row["success"] and row["failed"] == 0 and row["warnings"] == 0
    assert row["duration_ms"] > 0
    assert row["summary"] == "responses: responses suite passed (6 expectations on 2 rows)"


def test_a_failing_suite_raises_with_rules_rows_and_expectations_and_is_stored(engine):
    frame = _responses({"C1": 3, "C2": 11, "C3": 12})
    with pytest.raises(data_checks.DataCheckFailed) as failure:
        data_checks.run_check(engine, "w", "responses", "responses", frame, _suite(["C1", "C2"]), "contact_id")
    message = str(failure.value)
    assert message.startswith("responses: responses suite FAILED 2 of 6 on 3 rows: ")
    assert "the respondent was invited to this wave: 1 row(s) fail, e.g. C3: C3" in message
    assert "score is a whole number from 0 to 10: 2 row(s) fail, e.g. C2: 11; C3: 12" in message
    assert "[expect_column_values_to_be_in_set(column=score)]" in message
    row = storage.fetch_one(engine, "SELECT success, failed, details FROM check_results WHERE step = 'responses'")
    assert not row["success"] and row["failed"] == 2 and '"rows": ["C2", "C3"]' in row["details"]


def test_a_missing_column_is_reported_as_a_check_that_could_not_run(engine):
    suite = _suite(["C1"], [{"id": "support", "scale": "1-5"}])
    with pytest.raises(
        data_checks.DataCheckFailed, match=r'could not run: .*"pillar_support" in BatchData does not exist'
    ):
        data_checks.run_check(engine, "w", "responses", "responses", _responses({"C1": 9}), suite)


def test_rows_are_set_aside_only_when_every_blocking_failure_is_about_rows(engine):
    frame = _responses({f"C{i}": 5 for i in range(40)} | {"C40": 11})
    suite = _suite([f"C{i}" for i in range(41)])
    result = data_checks.run_check(engine, "w", "responses", "responses", frame, suite, "contact_id", 0.05)
    assert result.success and result.rejected == {"C40": ["score is a whole number from 0 to 10"]}
    table_level = [*suite, data_checks.expect("ExpectTableRowCountToEqual", "forty responses", value=40)]
    with pytest.raises(data_checks.DataCheckFailed, match="forty responses: observed 41"):
        data_checks.run_check(engine, "w", "responses", "responses", frame, table_level, "contact_id", 0.05)


def test_gx_is_not_imported_when_the_checks_module_is(tmp_path):
    import subprocess
    import sys

    code = "import sys, include.nps.wave.data_checks, include.nps.pipeline; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.strip() == "False"
