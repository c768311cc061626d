"""A wave's deadline for Airflow's deadline alerts: the moment its run should be over.

Airflow's built-in references are the same for every run of a DAG (queued at, logical date, a
fixed time), but every wave has its own calendar. `WaveRetrospective` is a custom reference
(registered by the project's plugin) that the scheduler evaluates when a run is created: the
wave's retrospective milestone, computed from the run's form values exactly as `plan_wave` will
(business days of the wave's country, explicit milestones win). Its deadline alert fires when the
run is still going that long after the retrospective was due: flash results or the retrospective
did not happen in time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk.definitions.deadline import BaseDeadlineReference

DEFAULT_COUNTRY = "US"  # the trigger form's default, for a run started through the API without one


class WaveRetrospective(BaseDeadlineReference):
    """The retrospective milestone of the wave a DagRun runs (None when its form values make no plan)."""

    required_kwargs = frozenset({"dag_id", "run_id"})

    def _evaluate_with(self, *, session: Any, dag_id: str, run_id: str, **_: Any) -> dt.datetime | None:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        conf = session.scalar(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        return retrospective_due(conf or {})


def retrospective_due(conf: dict[str, Any]) -> dt.datetime | None:
    """When the wave of these form values holds its retrospective (None when they make no plan:
    the run's first task fails on them with the reason)."""
    from include.nps.core import business_days
    from include.nps.wave import waves

    try:
        opened, closed = waves.parse_time(conf["open_at"]), waves.parse_time(conf["close_at"])
        if opened is None or closed is None:
            return None
        overrides = {name: waves.parse_time(conf.get(f"{name}_at")) for name in waves.OVERRIDABLE}
        country = str(conf.get("country") or DEFAULT_COUNTRY).strip().upper()
        return business_days.plan_milestones(opened, closed, country, overrides)["retrospective"]
    except (KeyError, TypeError, ValueError):
        return None
