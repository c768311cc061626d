"""Data checks: one named Great Expectations suite per step, results stored with the wave.

Suites are plain data (expectation name + arguments) so they read like a checklist; GX Core
is imported only when a check runs (it costs seconds). A failing check raises DataCheckFailed
with the failing expectations and example values, after its result is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps import storage
from include.nps.audience import EMAIL_PATTERN
from include.nps.i18n import SUPPORTED_LOCALES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Expectation = tuple[str, dict[str, Any]]
SENT_OR_SETTLED = ["sent", "suppressed", "failed"]


class DataCheckFailed(RuntimeError):
    """A step's data broke its suite; the message says which expectations and shows examples."""


@dataclass(frozen=True)
class CheckResult:
    step: str
    suite: str
    success: bool
    evaluated: int
    failed: int
    summary: str
    failures: list[dict[str, Any]]


def audience_suite(expected_size: int) -> list[Expectation]:
    return [
        ("ExpectTableRowCountToEqual", {"value": expected_size}),
        ("ExpectColumnValuesToBeUnique", {"column": "contact_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "contact_id"}),
        ("ExpectColumnValuesToMatchRegex", {"column": "email", "regex": EMAIL_PATTERN.pattern}),
        ("ExpectColumnValuesToBeUnique", {"column": "email"}),
        ("ExpectColumnValuesToBeInSet", {"column": "locale", "value_set": list(SUPPORTED_LOCALES)}),
        ("ExpectColumnValuesToNotBeNull", {"column": "account_id"}),
        ("ExpectColumnValuesToBeInSet", {"column": "opted_out_before_snapshot", "value_set": [0]}),
        ("ExpectColumnValuesToBeInSet", {"column": "bounced_before_snapshot", "value_set": [0]}),
    ]


def outbox_suite(expected_rows: int) -> list[Expectation]:
    """After a send: one row per recipient, every row settled, rows reconcile with the audience."""
    return [
        ("ExpectTableRowCountToEqual", {"value": expected_rows}),
        ("ExpectColumnValuesToBeUnique", {"column": "recipient"}),
        ("ExpectColumnValuesToBeInSet", {"column": "status", "value_set": SENT_OR_SETTLED}),
    ]


def responses_suite(pillars: list[dict[str, Any]]) -> list[Expectation]:
    suite: list[Expectation] = [
        ("ExpectColumnValuesToBeUnique", {"column": "contact_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "score"}),
        ("ExpectColumnValuesToBeBetween", {"column": "score", "min_value": 0, "max_value": 10}),
    ]
    for pillar in pillars:
        low, high = (0, 10) if pillar["scale"] == "0-10" else (1, 5)
        column = f"pillar_{pillar['id']}"
        suite.append(("ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high}))
    return suite


def drop_suite(expected_rows: int, columns: list[str]) -> list[Expectation]:
    return [
        ("ExpectTableRowCountToEqual", {"value": expected_rows}),
        ("ExpectTableColumnsToMatchSet", {"column_set": columns, "exact_match": True}),
    ]


def routing_suite(expected_detractors: int) -> list[Expectation]:
    return [
        ("ExpectTableRowCountToEqual", {"value": expected_detractors}),
        ("ExpectColumnValuesToBeUnique", {"column": "contact_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "owner"}),
        ("ExpectColumnValuesToBeInSet", {"column": "owner_type", "value_set": ["sales", "cs"]}),
    ]


def flash_suite(promoters: int, detractors: int, responses: int) -> list[Expectation]:
    """On a one-row frame of the published figures: NPS in range and consistent with counts."""
    expected = round(100.0 * (promoters - detractors) / responses, 1) if responses else None
    suite: list[Expectation] = [
        ("ExpectColumnValuesToBeBetween", {"column": "nps", "min_value": -100, "max_value": 100})
    ]
    if expected is not None:
        suite.append(("ExpectColumnValuesToBeBetween", {"column": "nps", "min_value": expected, "max_value": expected}))
    return suite


def retrospective_suite() -> list[Expectation]:
    return [
        ("ExpectColumnValuesToNotBeNull", {"column": "owner"}),
        ("ExpectColumnValuesToBeInSet", {"column": "priority", "value_set": ["high", "medium", "low"]}),
        ("ExpectColumnValuesToNotBeNull", {"column": "due_date"}),
        ("ExpectColumnValuesToBeUnique", {"column": "item_key"}),
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


def validate(frame: pd.DataFrame, suite_name: str, expectations: list[Expectation]) -> tuple[bool, int, list[dict]]:
    """Run a suite on a frame; return (success, evaluated, failures with examples)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(
        name=suite_name, expectations=[getattr(gxe, name)(**kwargs) for name, kwargs in expectations]
    )
    result = _batch_definition().get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    failures = [
        {
            "expectation": r.expectation_config.type,
            "kwargs": {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"},
            "observed": r.result.get("observed_value"),
            "unexpected_count": r.result.get("unexpected_count"),
            "examples": [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]],
            "error": _exception_message(r.exception_info),
        }
        for r in result.results
        if not r.success
    ]
    return bool(result.success), len(result.results), failures


def _exception_message(info: Any) -> str | None:
    """GX reports a check that could not run (a missing column, say) inside exception_info."""
    entries = info.values() if isinstance(info, dict) and "raised_exception" not in info else [info or {}]
    messages = {e.get("exception_message") for e in entries if isinstance(e, dict) and e.get("raised_exception")}
    return "; ".join(sorted(m for m in messages if m)) or None


def describe(failure: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in failure["kwargs"].items())
    if failure.get("error"):
        return f"{failure['expectation']}({args}) could not run: {failure['error']}"
    detail = (
        f"observed {failure['observed']}"
        if failure["observed"] is not None
        else f"{failure['unexpected_count']} unexpected"
    )
    examples = f", e.g. {', '.join(failure['examples'])}" if failure["examples"] else ""
    return f"{failure['expectation']}({args}): {detail}{examples}"


def run_check(
    engine: Engine, wave_id: str, step: str, suite_name: str, frame: pd.DataFrame, expectations: list[Expectation]
) -> CheckResult:
    """Validate, store the result with the wave and step, log it, and raise when it fails."""
    success, evaluated, failures = validate(frame, suite_name, expectations)
    if success:
        summary = f"{step}: {suite_name} suite passed ({evaluated} expectations on {len(frame)} rows)"
    else:
        summary = f"{step}: {suite_name} suite FAILED {len(failures)} of {evaluated}: " + "; ".join(
            map(describe, failures)
        )
    result = CheckResult(step, suite_name, success, evaluated, len(failures), summary, failures)
    storage.execute(
        engine,
        storage.query("upsert_check_result"),
        {
            "wave_id": wave_id,
            "step": step,
            "suite": suite_name,
            "success": success,
            "evaluated": evaluated,
            "failed": len(failures),
            "summary": summary,
            "details": storage.dumps(failures),
            "now": storage.utcnow(),
        },
    )
    log.info(summary)
    if not success:
        raise DataCheckFailed(summary)
    return result


def results_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(
        engine,
        "SELECT step, suite, success, evaluated, failed, summary FROM check_results "
        "WHERE wave_id = :w ORDER BY checked_at",
        w=wave_id,
    )
