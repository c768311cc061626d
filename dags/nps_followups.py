"""
### NPS follow-ups: the closed loop, every day, and its report to management, every month

Runs every day at 06:00 UTC over every follow-up of every wave (`include/nps/closed_loop/`):

1. **sync_crm_status**: each follow-up in progress with a CRM task (`followups.crm_task_id`) takes
   the state of its task's status (`GET <nps_crm host>/tasks/<task id>`, mapped by
   `crm_status_map` in `rules/followups.yaml`), forward only. Skipped without an `nps_crm`
   connection;
2. **sweep_sla**: a follow-up still `open` (nobody contacted the customer) past its first-contact
   SLA (`sla_due_at`, else `first_contact_sla_business_days` of the rules) is escalated by email
   to its escalation target (else the wave's first CS ops recipient), once, ever;
3. **check_report_due**: the monthly report is due on the first run of a month (normally the
   1st), or for the month given in the trigger form; otherwise the report task is skipped;
4. **send_closed_loop_report**: the closed-loop report of the month before (`include/nps/closed_loop/monthly_report.py`)
   is kept as HTML in `reports/closed-loop/` and emailed once to `NPS_MANAGEMENT_RECIPIENTS` (Airflow
   Variable, else the environment variable of that name).

Re-running any task, or the whole run, emails nobody twice: escalations and reports are rows of
the outbox ledger. Connections: `nps_db`, `nps_smtp`, `nps_crm` (optional, type http).

#### Owner
CS operations (follow-up owners and the report), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from airflow.sdk import Param, TriggerRule, chain, dag, task

from include.nps.monitoring import alerts


@dag(
    dag_id="nps_followups",
    schedule="0 6 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["nps", "followups", "closed-loop"],
    default_args={
        "owner": "cs-ops",
        "retries": 2,
        "on_failure_callback": alerts.task_failed,
        "retry_delay": dt.timedelta(minutes=5),
    },
    params={
        "report_month": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
            title="Report month",
            description=(
                "Make and send the closed-loop report of this month (YYYY-MM) in this run, for example "
                "to re-send it to new recipients after clearing its ledger row. Empty: the month before, "
                "on the first run of a month."
            ),
        ),
    },
)
def nps_followups() -> None:
    @task
    def sync_crm_status() -> dict:
        from include.nps.closed_loop import crm_sync

        return crm_sync.run_crm_sync()

    @task
    def sweep_sla() -> dict:
        from include.nps.closed_loop import sla_sweep

        return sla_sweep.run_sla_sweep()

    @task.short_circuit
    def check_report_due(params=None, dag_run=None) -> str | None:
        from airflow.sdk.exceptions import AirflowFailException

        from include.nps.closed_loop import monthly_report
        from include.nps.core.connections import nps_engine

        try:
            return monthly_report.report_due(nps_engine(), dag_run.run_after, params.get("report_month"))
        except monthly_report.ReportError as exc:  # a month not ended yet: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def send_closed_loop_report(month: str) -> dict:
        from airflow.sdk import Variable

        from include.nps.closed_loop import monthly_report

        recipients = Variable.get(monthly_report.RECIPIENTS_SETTING, default=None)
        return monthly_report.run_monthly_report(month, recipients)

    month = check_report_due()
    swept = sweep_sla()
    chain(sync_crm_status(), swept)
    # At parse time `month` is the XComArg of the check; the report task runs only with a month (short circuit).
    chain([month, swept], send_closed_loop_report(cast(str, month)))


nps_followups()
