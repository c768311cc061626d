"""
### NPS retention: personal data kept only as long as each program says

Runs daily for the data protection officer. For each program, by its latest wave's settings
(trigger form, section "Retention"; empty keeps everything, the default):

- comments and call notes older than `retention_comment_days` are emptied (scores stay);
- responses older than `retention_response_days` are deleted with their follow-ups and history;
- quarantined input rows, raw-data drop files and rejected-rows CSVs older than
  `retention_quarantine_days` are deleted.

What it did is logged and counted per program in the task's result and the audit trail. Trigger it
with `dry_run` on to see what is due without changing anything. See `include/nps/privacy/retention.py`.

#### Owner
Data protection officer (policy), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from include.nps.monitoring import alerts


@dag(
    dag_id="nps_retention",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["nps", "privacy"],
    default_args={
        "owner": "data-protection",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=5),
        "on_failure_callback": alerts.task_failed,
    },
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Count what is due without deleting or emptying anything.",
        ),
    },
)
def nps_retention() -> None:
    @task
    def apply_retention(params: dict | None = None, dag_run=None) -> dict:
        from include.nps.core.connections import nps_engine
        from include.nps.privacy import retention
        from include.nps.privacy.audit import run_actor

        assert params is not None
        return retention.apply(nps_engine(), dry_run=bool(params.get("dry_run")), actor=run_actor(dag_run))

    apply_retention()


nps_retention()
