"""The program's Airflow assets, named once: what the survey form announces and what a wave
produces, so that `nps_responses` runs on new answers and BI or CRM DAGs run on a wave's outputs.

Importing this module is cheap and imports no Airflow (the survey form uses the names); a DAG
file takes each one's `Asset` with `.asset`. Another DAG schedules on one by name, e.g.
`schedule=Asset.ref(name="nps_contact_results")`, or imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Asset

GROUP = "nps"
MAX_EXTRA_ITEMS = 50  # list values in an event's `extra` are cut to this many


@dataclass(frozen=True)
class AssetName:
    """An asset's stable name and URI (what Airflow keys it by)."""

    name: str
    uri: str

    @property
    def asset(self) -> Asset:
        from airflow.sdk import Asset

        return Asset(name=self.name, uri=self.uri, group=GROUP)


# Posted by the survey form (coalesced) when answers are recorded: nps_responses runs on it.
ANSWERS = AssetName("nps_survey_answers", "nps://survey/answers")
# A wave's outputs; each event's `extra` holds the wave id and what the step reports.
RESPONSES = AssetName("nps_wave_responses", "nps://wave/responses")  # frozen at close, checked
DROPS = AssetName("nps_wave_drops", "nps://wave/drops")  # mid-wave and post-wave drops to sales
FLASH_FIGURES = AssetName("nps_flash_figures", "nps://wave/flash-figures")  # checked, kept in flash_contents
FOLLOWUPS = AssetName("nps_wave_followups", "nps://wave/followups")  # detractor follow-ups routed
CONTACT_RESULTS = AssetName("nps_contact_results", "nps://bi/contact-results")  # the per-contact file for BI

WAVE_OUTPUTS = (RESPONSES, DROPS, FLASH_FIGURES, FOLLOWUPS, CONTACT_RESULTS)


def event_extra(wave_id: str | None, summary: Any) -> dict[str, Any]:
    """An asset event's `extra`: the wave id and the step's summary, kept to JSON scalars, small
    dicts and lists cut to `MAX_EXTRA_ITEMS`."""
    extra: dict[str, Any] = {"wave_id": wave_id} if wave_id else {}
    if isinstance(summary, dict):
        extra.update({str(k): _json_value(v) for k, v in summary.items() if k != "wave_id"})
    elif summary is not None:
        extra["result"] = _json_value(summary)
    return extra


def _json_value(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth >= 2:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v, depth + 1) for k, v in list(value.items())[:MAX_EXTRA_ITEMS]}
    if isinstance(value, (list, tuple, set)):
        return [_json_value(v, depth + 1) for v in list(value)[:MAX_EXTRA_ITEMS]]
    return str(value)
