"""
### NPS planner: starts each wave of the wave calendar when it is due, exactly once

Every hour the planner reads the wave calendar (`calendar/waves.yaml`, or the file named by the
`nps_wave_calendar` Variable or `NPS_WAVE_CALENDAR`), checks every wave as the `nps_wave` trigger
form would and against the other waves, and starts the waves that are due:

1. **find_due_waves**: a wave is due one business day before its pre-announcement (so its contacts
   file is loaded and checked while there is time to fix it) and until it opens. A wave already
   started, from here or by hand from the trigger form, is left alone. Each due wave is claimed in
   the NPS DB's `wave_starts` ledger before it is started. A calendar with any problem starts
   nothing and fails this task with every problem listed (file, wave, field, reason);
2. **start_wave** (one per due wave): triggers `nps_wave` with the wave's fields as the run's conf
   and the run id `wave__<wave id>`; a run with that id that already exists is left as it is;
3. **record_started_waves**: confirms in the ledger each start whose run Airflow has.

Running the planner again, or any of its tasks, starts nothing twice. `nps_wave` must be switched
on: while it is paused, `start_wave` fails and the next planner run tries again.

#### Owner
CS operations (the calendar), data engineering (the planner).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from airflow.sdk import TriggerRule, chain, dag, task

from include.nps.monitoring import alerts
from include.nps.planner.start_wave import StartWaveOperator

WAVE_DAG_ID = "nps_wave"


@dag(
    dag_id="nps_planner",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["nps", "planner"],
    default_args={
        "owner": "cs-ops",
        "retries": 2,
        "on_failure_callback": alerts.task_failed,
        "retry_delay": dt.timedelta(minutes=1),
    },
)
def nps_planner() -> None:
    @task
    def find_due_waves(dag_run=None) -> list[dict]:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from include.nps.core import storage
        from include.nps.core.connections import nps_engine
        from include.nps.planner import wave_calendar

        path = wave_calendar.calendar_path(Variable.get(wave_calendar.CALENDAR_VARIABLE, default=None))
        try:
            return wave_calendar.claim_due_waves(nps_engine(), path, storage.utcnow(), dag_run.run_id)
        except wave_calendar.CalendarFileError as exc:
            raise AirflowFailException(str(exc)) from exc  # fixing the file is the only cure

    starts = find_due_waves()
    start_wave = StartWaveOperator.partial(task_id="start_wave", trigger_dag_id=WAVE_DAG_ID).expand_kwargs(starts)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def record_started_waves(starts: list[dict], ti=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from include.nps.core import storage
        from include.nps.core.connections import nps_engine
        from include.nps.planner import wave_calendar

        exists = {s["trigger_run_id"]: ti.get_dr_count(WAVE_DAG_ID, run_ids=[s["trigger_run_id"]]) > 0 for s in starts}
        try:
            return wave_calendar.record_started(nps_engine(), exists, storage.utcnow())
        except wave_calendar.WaveStartError as exc:
            raise AirflowFailException(str(exc)) from exc

    # At parse time `starts` is the XComArg of find_due_waves; the task receives the list it returned.
    chain(start_wave, record_started_waves(cast(list[dict], starts)))


nps_planner()
