"""A value set longer than MAX_INLINE_VALUE_SET (every invited id, every detractor) is checked as a
flag column: the check fails, sets aside and reads exactly as with the set written out, at the
boundary and above it, with missing values ignored and `mostly` kept; the responses check reads the
close's `invited` column."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from include.nps.wave import data_checks
from include.nps.wave.waves import CheckThresholds

OPEN = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def _frame(ids: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"contact_id": ids, "row": [f"R{n}" for n in range(len(ids))]})


def _failures(frame: pd.DataFrame, allowed: list[str], row_key: str | None, **extra) -> list[dict]:
    suite = [data_checks.expect("ExpectColumnValuesToBeInSet", "only the allowed", column="contact_id",
                                value_set=allowed, **extra)]  # fmt: skip
    return data_checks.validate(frame, "s", suite, row_key)[1]


@pytest.mark.parametrize("size", [data_checks.MAX_INLINE_VALUE_SET, data_checks.MAX_INLINE_VALUE_SET + 1, 5000])
@pytest.mark.parametrize("row_key", ["row", None])
def test_a_long_value_set_fails_and_reads_as_the_set_written_out(monkeypatch, size, row_key):
    allowed = [f"C{n}" for n in range(size)]
    frame = _frame(["C0", "X1", None, f"C{size - 1}", "X2", "C5"])
    long = _failures(frame, allowed, row_key)
    monkeypatch.setattr(data_checks, "MAX_INLINE_VALUE_SET", size)  # the same set, written out
    assert long == _failures(frame, allowed, row_key)
    (failure,) = long
    assert failure["unexpected_count"] == 2 and failure["kwargs"] == {"column": "contact_id"}
    assert failure["examples"] == (["R1: X1", "R4: X2"] if row_key else ["X1", "X2"])
    assert failure["rows"] == (["R1", "R4"] if row_key else [])


def test_mostly_counts_the_values_that_are_there(monkeypatch):
    allowed = [f"C{n}" for n in range(2000)]
    frame = _frame(["C1", "C2", "C3", "X1", None, None, None, None])  # 3 of the 4 values: 75%
    assert _failures(frame, allowed, "row", mostly=0.75) == []
    assert _failures(frame, allowed, "row", mostly=0.8)[0]["unexpected_count"] == 1


def test_the_responses_check_reads_the_invited_column():
    frame = pd.DataFrame(
        {
            "contact_id": ["C1", "C2", "C3"],
            "invited": [True, False, True],
            "score": [3, 10, 11],
            "answered_at": pd.Timestamp(OPEN + dt.timedelta(hours=1)),
            "comment": "",
        }
    )
    suite = data_checks.responses_suite([], None, (OPEN, OPEN + dt.timedelta(days=14)), CheckThresholds())
    failures = data_checks.validate(frame, "responses", suite, "contact_id")[1]
    assert data_checks.rejectable(failures, 3, 1.0) == {
        "C2": ["the respondent was invited to this wave"],
        "C3": ["score is a whole number from 0 to 10"],
    }
    assert [f["examples"] for f in failures] == [["C2: False"], ["C3: 11"]]
