"""Data checks: one named Great Expectations suite per step, results stored with the wave.

Suites are plain data (expectation name + arguments) so they read like a checklist; GX Core
is imported only when a check runs (it costs seconds). A failing check raises DataCheckFailed
with the failing expectations and example values, after its result is stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.core.i18n import SUPPORTED_LOCALES
from include.nps.wave.audience import EMAIL_PATTERN
from include.nps.wave.waves import CheckThresholds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Expectation = tuple[str, dict[str, Any]]
SETTLED = ["sent", "suppressed", "failed", "in_doubt"]  # a message no sender will touch again
EXAMPLES = 5
HIDDEN_KWARGS = ("batch_id", "value_set", "description", "severity")  # shown otherwise, or too long
INVITED = "invited"  # the responses frame's flag: an invitation was sent to the respondent
# A value set longer than this is checked as a flag column computed by pandas (`_flagged`): Great
# Expectations serialises an expectation's arguments each time it reads its configuration (hundreds
# of times a validation), which for a set of a million ids costs hours.
MAX_INLINE_VALUE_SET = 1000


class DataCheckFailed(RuntimeError):
    """A step's data broke its suite; the message says which expectations and shows examples."""


@dataclass(frozen=True)
class CheckResult:
    step: str
    suite: str
    success: bool
    evaluated: int
    failed: int
    warnings: int
    summary: str
    failures: list[dict[str, Any]]
    rejected: dict[str, list[str]] = field(default_factory=dict)  # row key: reasons, when rows were set aside
    duration_ms: int = 0


def expect(name: str, description: str, *, warning: bool = False, **kwargs: Any) -> Expectation:
    """One expectation, with the plain-words rule it stands for; `warning` ones never stop a wave."""
    return name, {**kwargs, "description": description, **({"severity": "warning"} if warning else {})}


def audience_suite(size: int, previous_size: int | None, thresholds: CheckThresholds) -> list[Expectation]:
    """On the included audience, one row per contact."""
    suite = [
        expect("ExpectTableRowCountToBeBetween", "the audience is not empty", min_value=1),
        expect("ExpectColumnValuesToBeUnique", "each contact once", column="contact_id"),
        expect("ExpectColumnValuesToNotBeNull", "each contact has an id", column="contact_id"),
        expect(
            "ExpectColumnValuesToMatchRegex", "email is a valid address", column="email", regex=EMAIL_PATTERN.pattern
        ),
        expect("ExpectColumnValuesToBeUnique", "each email address once", column="email"),
        expect(
            "ExpectColumnValuesToBeInSet", "locale is supported", column="locale", value_set=list(SUPPORTED_LOCALES)
        ),
        expect("ExpectColumnValuesToNotBeNull", "the contact's account is known", column="account_name"),
        expect("ExpectColumnValuesToNotBeNull", "the account has a sales owner or CSM", column="owner", warning=True),
        expect(
            "ExpectColumnValuesToBeInSet", "no contact opted out", column="opted_out_before_snapshot", value_set=[0]
        ),
        expect("ExpectColumnValuesToBeInSet", "no contact bounced", column="bounced_before_snapshot", value_set=[0]),
    ]
    if previous_size:
        low = math.ceil(previous_size * thresholds.audience_min_ratio)
        high = math.floor(previous_size * thresholds.audience_max_ratio)
        rule = (
            f"the audience is within {thresholds.audience_min_ratio:.0%}-{thresholds.audience_max_ratio:.0%} "
            f"of the previous wave's {previous_size} contacts ({low}-{high}); a sudden change is a broken extract"
        )
        suite.append(expect("ExpectTableRowCountToBeBetween", rule, min_value=low, max_value=high))
    return suite


def outbox_suite(
    expected_rows: int, window: tuple[dt.datetime | None, dt.datetime | None], max_undelivered_share: float
) -> list[Expectation]:
    """After a send, on the ledger rows of one kind: audience = sent + suppressed + failed + in doubt,
    and at most `max_undelivered_share` of the messages not suppressed failed or are in doubt (the
    `delivered` column: 1 sent, 0 failed or in doubt, empty otherwise)."""
    start, end = window
    bounds = " and ".join(
        part
        for part in (start and f"not before {start:%Y-%m-%d %H:%M}", end and f"not after {end:%Y-%m-%d %H:%M}")
        if part
    )
    suite = [
        expect("ExpectTableRowCountToEqual", f"one ledger row per recipient ({expected_rows})", value=expected_rows),
        expect("ExpectColumnValuesToBeUnique", "no recipient twice", column="recipient"),
        expect(
            "ExpectColumnValuesToBeInSet",
            "every message sent, suppressed, failed or in doubt (none left pending or mid-send)",
            column="status",
            value_set=SETTLED,
        ),
        expect(
            "ExpectColumnValuesToBeInSet",
            f"at most {max_undelivered_share:.0%} of the messages not suppressed failed or are in doubt",
            column="delivered",
            value_set=[1],
            mostly=1 - max_undelivered_share,
        ),
        expect(
            "ExpectColumnValuesToBeInSet",
            "nothing sent to a contact who had opted out or bounced",
            column="sent_to_suppressed",
            value_set=[0],
        ),
    ]
    if bounds:
        suite.append(
            expect(
                "ExpectColumnValuesToBeBetween",
                f"sent inside the wave's window: {bounds} UTC",
                column="sent_at",
                min_value=start,
                max_value=end,
            )
        )
    return suite


def responses_suite(
    pillars: list[dict[str, Any]],
    invited: list[str] | None,
    window: tuple[dt.datetime, dt.datetime],
    thresholds: CheckThresholds,
    *,
    counted_lengths: bool = False,
) -> list[Expectation]:
    """On the wave's responses, one row per respondent. Whether each respondent was invited is the
    frame's boolean `invited` column (`invited` None: the close reads it with an anti-join against
    the invitations sent), else membership of contact_id in the `invited` ids. With
    `counted_lengths`, the frame holds each comment's length (`comment_length`, counted in the
    database), not the comment."""
    opened, closed = window
    rule = "the respondent was invited to this wave"
    suite = [
        expect("ExpectColumnValuesToBeUnique", "one response per contact", column="contact_id"),
        expect("ExpectColumnValuesToBeInSet", rule, column=INVITED, value_set=[True])
        if invited is None
        else expect("ExpectColumnValuesToBeInSet", rule, column="contact_id", value_set=invited),
        expect("ExpectColumnValuesToNotBeNull", "a score is given", column="score"),
        expect(
            "ExpectColumnValuesToBeInSet",
            "score is a whole number from 0 to 10",
            column="score",
            value_set=list(range(11)),
        ),
        expect(
            "ExpectColumnValuesToBeBetween",
            f"answered while the wave was open ({opened:%Y-%m-%d %H:%M} to {closed:%Y-%m-%d %H:%M} UTC)",
            column="answered_at",
            min_value=opened,
            max_value=closed,
        ),
        expect(
            "ExpectColumnValuesToBeBetween" if counted_lengths else "ExpectColumnValueLengthsToBeBetween",
            f"comment at most {thresholds.max_comment_chars} characters",
            column="comment_length" if counted_lengths else "comment",
            max_value=thresholds.max_comment_chars,
            warning=True,
        ),
    ]
    for pillar in pillars:
        low, high = (0, 10) if pillar["scale"] == "0-10" else (1, 5)
        column = f"pillar_{pillar['id']}"
        rule = f"answer to '{pillar['id']}' within its {pillar['scale']} scale"
        suite.append(expect("ExpectColumnValuesToBeBetween", rule, column=column, min_value=low, max_value=high))
    return suite


def drop_suite(expected_rows: int, columns: list[str]) -> list[Expectation]:
    """On the complete drop sheet."""
    return [
        expect(
            "ExpectTableRowCountToEqual",
            f"one row per response given by the cutoff ({expected_rows})",
            value=expected_rows,
        ),
        expect("ExpectTableColumnsToMatchSet", "only the allowed columns", column_set=columns, exact_match=True),
    ]


def seller_files_suite(owner_column: str) -> list[Expectation]:
    """On the rows of every salesperson's file, with the file's salesperson in `file_for`."""
    return [
        expect(
            "ExpectColumnPairValuesToBeEqual",
            "each salesperson's file holds only their own accounts",
            column_A="file_for",
            column_B=owner_column,
        )
    ]


def routing_suite(detractors: list[str], changed: list[str] | tuple[str, ...] = ()) -> list[Expectation]:
    """On the wave's follow-ups: exactly one per detractor, each with one owner. `changed` are
    follow-ups opened in real time for an answer that is no longer a detractor's: they stay."""
    expected = len(detractors) + len(changed)
    allowed = [*detractors, *changed]
    return [
        expect("ExpectTableRowCountToEqual", f"one follow-up per detractor ({expected})", value=expected),
        expect("ExpectColumnValuesToBeUnique", "no detractor followed up twice", column="contact_id"),
        expect("ExpectColumnValuesToBeInSet", "follow-ups are for detractors", column="contact_id", value_set=allowed),
        expect("ExpectColumnValuesToNotBeNull", "every detractor has an owner", column="owner"),
        expect(
            "ExpectColumnValuesToBeInSet", "the owner is sales or CS", column="owner_type", value_set=["sales", "cs"]
        ),
    ]


def flash_suite(promoters: int, detractors: int, responses: int) -> list[Expectation]:
    """On a one-row frame of the published figures: NPS in range and consistent with the counts."""
    suite = [
        expect(
            "ExpectColumnValuesToBeBetween", "NPS between -100 and 100", column="nps", min_value=-100, max_value=100
        ),
        expect(
            "ExpectColumnValuesToBeInSet",
            "promoters, passives and detractors add up to the responses",
            column="count_gap",
            value_set=[0],
        ),
    ]
    if responses:
        expected = round(100.0 * (promoters - detractors) / responses, 1)
        rule = f"NPS equals (promoters - detractors) / responses = {expected}"
        suite.append(
            expect("ExpectColumnValuesToBeBetween", rule, column="nps", min_value=expected, max_value=expected)
        )
    return suite


def retrospective_suite() -> list[Expectation]:
    return [
        expect("ExpectColumnValuesToNotBeNull", "every action item has an owner", column="owner"),
        expect(
            "ExpectColumnValuesToBeInSet",
            "priority is high, medium or low",
            column="priority",
            value_set=["high", "medium", "low"],
        ),
        expect("ExpectColumnValuesToNotBeNull", "every action item has a due date", column="due_date"),
        expect("ExpectColumnValuesToBeUnique", "no action item twice", column="item_key"),
    ]


@cache
def _batch_definition() -> Any:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # pragma: no cover - cosmetic only
        pass
    asset = context.data_sources.add_pandas(name="nps").add_dataframe_asset(name="step")
    return asset.add_batch_definition_whole_dataframe("whole")


def validate(
    frame: pd.DataFrame, suite_name: str, expectations: list[Expectation], row_key: str | None = None
) -> tuple[int, list[dict]]:
    """Run a suite on a frame; return how many expectations ran and the failures, each with its
    severity, the rule in plain words, and the offending rows (by `row_key`) or values."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    frame, expectations, flags = _flagged(frame, expectations)
    suite = gx.ExpectationSuite(
        name=suite_name, expectations=[getattr(gxe, name)(**kwargs) for name, kwargs in expectations]
    )
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "partial_unexpected_count": EXAMPLES}
    if row_key and row_key in frame.columns:
        result_format["unexpected_index_column_names"] = list(dict.fromkeys([row_key, *flags.values()]))
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format=result_format)
    failures = [_failure(r, row_key, flags, frame) for r in result.results if not r.success]
    return len(result.results), failures


def _flagged(
    frame: pd.DataFrame, expectations: list[Expectation]
) -> tuple[pd.DataFrame, list[Expectation], dict[str, str]]:
    """`frame` and `expectations` with each value set longer than MAX_INLINE_VALUE_SET checked as a
    flag column instead: True where the value is in the set, missing where the value is missing
    (as Great Expectations ignores missing values), expected in [True]. Returns the flag columns'
    names and the columns they stand for: failures name the column and show its values as before."""
    flags: dict[str, str] = {}
    checked: list[Expectation] = []
    for name, kwargs in expectations:
        values = kwargs.get("value_set") or []
        column = str(kwargs.get("column"))
        if name != "ExpectColumnValuesToBeInSet" or column not in frame.columns or len(values) <= MAX_INLINE_VALUE_SET:
            checked.append((name, kwargs))
            continue
        flag = f"__in_set_{len(flags)}_{column}"
        if not flags:
            frame = frame.copy(deep=False)
        inside = frame[column].isin(set(values))
        frame[flag] = inside.astype(object).where(frame[column].notna(), None)
        flags[flag] = column
        checked.append((name, {**kwargs, "column": flag, "value_set": [True]}))
    return frame, checked, flags


def _failure(
    result: Any, row_key: str | None, flags: dict[str, str] | None = None, frame: pd.DataFrame | None = None
) -> dict[str, Any]:
    config = result.expectation_config
    indexed = [e for e in result.result.get("unexpected_index_list") or [] if isinstance(e, dict) and row_key]
    kwargs = dict(config.kwargs)
    examples = [str(_plain(v)) for v in (result.result.get("partial_unexpected_list") or [])[:EXAMPLES]]
    flag = kwargs.get("column")
    if flags and flag in flags:  # a long value set checked as a flag: named and shown as written
        kwargs["column"] = flags[flag]
        if frame is not None:
            examples = [str(_plain(v)) for v in frame.loc[frame[flag].eq(False), flags[flag]].head(EXAMPLES)]
    return {
        "expectation": config.type,
        "rule": config.description,
        "severity": getattr(config.severity, "value", str(config.severity)),
        "kwargs": {k: _plain(v) for k, v in kwargs.items() if k not in HIDDEN_KWARGS},
        "observed": _plain(result.result.get("observed_value")),
        "unexpected_count": result.result.get("unexpected_count"),
        "rows": [str(entry.get(row_key)) for entry in indexed],
        "examples": [_example(entry, row_key, kwargs) for entry in indexed[:EXAMPLES]] or examples,
        "error": _exception_message(result.exception_info),
    }


def _example(entry: dict[str, Any], row_key: str | None, kwargs: dict[str, Any]) -> str:
    """`C2: 11`: the row's key and its offending value."""
    assert row_key is not None  # only the rows indexed by the key column are shown
    if "column_A" in kwargs:
        first, second = kwargs["column_A"], kwargs["column_B"]
        return f"{entry.get(row_key)}: {second}={entry.get(second)} but {first}={entry.get(first)}"
    value = _plain(entry.get(str(kwargs.get("column"))))
    shown = (
        "empty"
        if value is None
        else str(value)
        if not isinstance(value, str) or len(value) <= 40
        else f"{len(value)} characters"
    )
    return f"{entry.get(row_key)}: {shown}"


def _plain(value: Any) -> Any:
    """Numpy scalars and timestamps as plain JSON-able values; missing ones (NaN, NA, NaT) as None."""
    import pandas as pd

    if isinstance(value, list | tuple | dict):
        return value
    if value is None or pd.isna(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def _exception_message(info: Any) -> str | None:
    """GX reports a check that could not run (a missing column, say) inside exception_info."""
    entries = info.values() if isinstance(info, dict) and "raised_exception" not in info else [info or {}]
    messages = {e.get("exception_message") for e in entries if isinstance(e, dict) and e.get("raised_exception")}
    return "; ".join(sorted(m for m in messages if m)) or None


def describe(failure: dict[str, Any]) -> str:
    """One failure in plain words, then the expectation it comes from."""
    args = ", ".join(f"{k}={v}" for k, v in failure["kwargs"].items())
    source = f"[{failure['expectation']}({args})]"
    rule = failure.get("rule") or source
    if failure.get("error"):
        return f"{rule}: could not run: {failure['error']} {source}"
    if failure["unexpected_count"] is not None:
        detail = f"{failure['unexpected_count']} row(s) fail"
    else:
        detail = f"observed {failure['observed']}"
    examples = f", e.g. {'; '.join(failure['examples'])}" if failure["examples"] else ""
    return f"{rule}: {detail}{examples} {source}"


def rejectable(failures: list[dict[str, Any]], rows: int, max_share: float | None) -> dict[str, list[str]]:
    """The rows to set aside when every blocking failure is about single rows and they are few
    enough (at most `max_share` of `rows`); else {} and the check fails."""
    blocking = _blocking(failures)
    if max_share is None or not blocking or any(not f["rows"] for f in blocking):
        return {}
    rejected: dict[str, list[str]] = {}
    for failure in blocking:
        for key in failure["rows"]:
            rejected.setdefault(key, []).append(failure["rule"])
    return rejected if len(rejected) <= max_share * rows else {}


def run_check(
    engine: Engine,
    wave_id: str,
    step: str,
    suite_name: str,
    frame: pd.DataFrame,
    expectations: list[Expectation],
    row_key: str | None = None,
    max_rejected_share: float | None = None,
) -> CheckResult:
    """Validate, store the result with the wave and step, log it, and raise when it fails.

    Warning-level failures are reported and stored but never fail. With `max_rejected_share`,
    rows breaking row-level expectations are set aside (`CheckResult.rejected`) instead of failing
    the check, as long as they are at most that share of the rows.
    """
    started = time.perf_counter()
    evaluated, failures = validate(frame, suite_name, expectations, row_key)
    duration_ms = round((time.perf_counter() - started) * 1000)
    rejected = rejectable(failures, len(frame), max_rejected_share)
    blocking = _blocking(failures)
    success = not blocking or bool(rejected)
    result = CheckResult(
        step=step,
        suite=suite_name,
        success=success,
        evaluated=evaluated,
        failed=len(blocking),
        warnings=len(failures) - len(blocking),
        summary=_summary(step, suite_name, len(frame), evaluated, failures, rejected, success),
        failures=failures,
        rejected=rejected,
        duration_ms=duration_ms,
    )
    _store(engine, wave_id, result)
    (log.info if success and not failures else log.warning)(result.summary)
    if not success:
        raise DataCheckFailed(result.summary)
    return result


def _summary(
    step: str,
    suite: str,
    rows: int,
    evaluated: int,
    failures: list[dict[str, Any]],
    rejected: dict[str, list[str]],
    success: bool,
) -> str:
    blocking = _blocking(failures)
    warnings = [f for f in failures if f not in blocking]
    if not success:
        head = f"{step}: {suite} suite FAILED {len(blocking)} of {evaluated} on {rows} rows: "
        return head + "; ".join(map(describe, blocking + warnings))
    head = f"{step}: {suite} suite passed ({evaluated} expectations on {rows} rows)"
    if rejected:
        head += f"; {len(rejected)} row(s) set aside: " + "; ".join(map(describe, blocking))
    if warnings:
        head += f"; {len(warnings)} warning(s): " + "; ".join(map(describe, warnings))
    return head


def _blocking(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failures that stop a wave (critical severity); the others are warnings."""
    return [f for f in failures if f["severity"] == "critical"]


def _store(engine: Engine, wave_id: str, result: CheckResult) -> None:
    details = [{**failure, "rows": failure["rows"][: EXAMPLES * 4]} for failure in result.failures]
    storage.execute(
        engine,
        storage.query("upsert_check_result"),
        {
            "wave_id": wave_id,
            "step": result.step,
            "suite": result.suite,
            "success": result.success,
            "evaluated": result.evaluated,
            "failed": result.failed,
            "warnings": result.warnings,
            "duration_ms": result.duration_ms,
            "summary": result.summary,
            "details": storage.dumps(details),
            "now": storage.utcnow(),
        },
    )


def results_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(
        engine,
        "SELECT step, suite, success, evaluated, failed, warnings, duration_ms, summary FROM check_results "
        "WHERE wave_id = :w ORDER BY checked_at",
        w=wave_id,
    )
