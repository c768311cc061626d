"""
### NPS responses: every detractor reaches a person within a minute

Runs as soon as the survey form announces new answers (the `nps_survey_answers` asset, posted
through Airflow's REST API, a few seconds apart at most), and every 5 minutes anyway (the cron
`NPS_RESPONSES_TIMER` when set): the timer picks up what an announcement missed (Airflow down,
the form's service account not configured).
Never two runs at once: answers announced during a run make one run after it. Each run works over
the responses of open waves that still need work, for CS ops and the account teams:

1. **check_new_responses**: the wave's responses data check on the new ones (step
   `realtime_responses`); a response that breaks it is set aside with its reason, never alerted;
2. **alert_new_responses** (one task per wave): each detractor routed by `rules/routing.yaml` to a
   follow-up owner with a first-contact due time; every response posted to the program's Slack
   channel (`nps_slack`) tagging the account's CSM, and to Teams (`nps_teams`); VIP accounts also
   to the escalation channel (`nps_slack_vip`), scores 0-1 also to the executive
   (`nps_slack_executive`); a follow-up task in the CRM (`nps_crm`) for each detractor;
3. **send_band_emails** (one task per wave, after the alerts): the score-band email (9-10, 7-8, 2-6, 0-1 from the
   executive) once the answer has been left alone for `NPS_BAND_EMAIL_DELAY_MINUTES` (default 5).

Every message is a row of the wave's ledger keyed (wave, kind, contact) before it is sent, so a
re-run or a retry sends nothing twice, and the wave's close-time alert and band emails skip what
went out here. A webhook or CRM answering 5xx/429 is retried (three attempts); a 4xx is recorded
as failed and not retried. A channel whose connection is not defined is skipped.

The follow-ups it opens are announced as the `nps_followups` asset (wave ids and counts in the
event's extra), for CRM or BI DAGs that schedule on it.

#### Owner
CS operations (routing rules, channels), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from include.nps.core import assets
from include.nps.monitoring import alerts

PARALLEL_WAVES = 4
# The fallback when no answer is announced: every 5 minutes, or the cron in NPS_RESPONSES_TIMER (with
# the form's service account configured, a deployment may poll less often).
TIMER = CronTriggerTimetable(os.environ.get("NPS_RESPONSES_TIMER") or "*/5 * * * *", timezone="UTC")


@dag(
    dag_id="nps_responses",
    schedule=AssetOrTimeSchedule(timetable=TIMER, assets=[assets.ANSWERS.asset]),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    doc_md=__doc__,
    tags=["nps", "responses", "alerts"],
    default_args={
        "owner": "cs-ops",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "on_failure_callback": alerts.task_failed,
    },
)
def nps_responses() -> None:
    @task
    def check_new_responses() -> list[dict[str, str]]:
        from include.nps.core.connections import nps_engine
        from include.nps.realtime import new_responses

        return new_responses.check_new_responses(nps_engine())

    followups = assets.FOLLOWUPS.asset

    @task(max_active_tis_per_dagrun=PARALLEL_WAVES, outlets=[followups])
    def alert_new_responses(batch: dict[str, str], outlet_events=None) -> dict:
        from include.nps.core.connections import nps_engine
        from include.nps.realtime import new_responses

        summary = new_responses.alert_new_responses(
            nps_engine(), batch["wave_id"], dt.datetime.fromisoformat(batch["cutoff"])
        )
        outlet_events[followups].extra = assets.event_extra(batch["wave_id"], summary)
        return summary

    @task(max_active_tis_per_dagrun=PARALLEL_WAVES)
    def send_band_emails(batch: dict[str, str]) -> dict:
        from include.nps.core.connections import nps_engine
        from include.nps.realtime import new_responses

        return new_responses.send_band_emails(
            nps_engine(), batch["wave_id"], dt.datetime.fromisoformat(batch["cutoff"])
        )

    batches = check_new_responses()
    # Band emails only once the alerts went out: a response whose band email is settled is no
    # longer picked up, so its alerts must not be left behind.
    alert_new_responses.expand(batch=batches) >> send_band_emails.expand(batch=batches)


nps_responses()
