"""
### NPS wave: one run is one survey wave, end to end

Triggered by CS ops from the trigger form (or by the wave planner). The run plans the wave's
milestones from its open and close times and the country's business days, then waits for each
one without holding a worker. The customer timeline is the spine; each of its steps waits only
for the one it needs:

1. **plan_wave**: store the wave and its milestones;
2. **build_audience**: load the contacts file, quarantine bad rows, drop opted-out, bounced and
   recently surveyed contacts, snapshot the audience ⇒ check;
3. **send_preannouncement** (a few business days before open) ⇒ check;
4. **send_invitations**: personal signed links, the 0-10 scale clickable in the email ⇒ check;
5. **send_reminders** to non-respondents ⇒ check;
6. **close_wave**: freeze responses ⇒ check;
7. **send_followups**: score-band emails (9-10, 7-8, 2-6, 0-1) ⇒ check, once the close's
   detractor routing has run (succeeded or failed);
8. **approve_flash_results** (only when the form's "Approve the flash results first" is on):
   a person approves or rejects them in Required Actions, seeing the figures and a sample email;
   nobody by the flash-results time: the form's timeout policy; a rejection sends nothing and is
   recorded (the retrospective still runs);
   **send_flash_results** to all audience contacts at close + 3 business days ⇒ check;
9. **run_retrospective**: figures and action items, emailed to CS ops ⇒ check (it runs once the
   wave is closed, whatever became of the flash results, and reports them).

   Each wave-wide email is a group: `prepare` writes the ledger rows in chunks, `send` is a mapped
   task per range of chunks (one SMTP session each; at most 256 tasks, and never more than Airflow's
   `[core] max_map_length`, so a mailing of any size runs), `check` reconciles the ledger with the
   audience.

What colleagues get hangs off the spine as branches of their own. A branch that fails alerts,
retries and can be cleared and re-run, but the close and the flash results never wait for it:

- **share_midwave_drop** (after the invitations, at the mid-wave milestone): responses so far to
  sales ⇒ check;
- **share_postwave_drop** (after close) ⇒ check; then **decide_followup_owner**, one
  human-in-the-loop task per detractor the routing rules' `decide_in_airflow` names, assigned to
  the account's salesperson in Required Actions (sales / cs; the rule's proposal stands at the
  flash-results time) and applied to routing as a returned drop file's decision is;
- **route_detractors** (after close): one follow-up owner each, chat alerts, CRM tasks ⇒ check;
- **export_contact_results** (after the routing): one row per audience contact (score, band,
  follow-up state, churn signal) as CSV in the reports folder and the drop location, for BI.

The wave's outputs are Airflow assets that BI or CRM DAGs can schedule on, each event carrying the
wave id and the step's counts (`include/nps/core/assets.py`): `nps_wave_responses` (close),
`nps_wave_drops` (each drop), `nps_flash_figures` (checked before the flash results go out),
`nps_wave_followups` (routing) and `nps_contact_results` (the file's path).

Every message goes through a ledger keyed by (wave, kind, recipient): re-running any task, or
the whole wave with the same name, sends nothing twice. Data-check results are stored in the
NPS DB (`check_results`). Connections: `nps_db` (default: SQLite), `nps_smtp`, `nps_chat`.

Alerts (`include/nps/monitoring/alerts.py`, chat `nps_alerts_chat` and/or `NPS_ALERT_EMAILS`): a task or data
check that fails (with the step, the reason and the log link), a milestone not done in time, and a
response rate after the reminder far below the previous wave's (to CS ops); each event once.

#### Owner
CS operations (waves), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import TriggerRule, chain, dag, task, task_group

from include.nps.core import assets
from include.nps.core.assets import AssetName
from include.nps.human_tasks import ApproveFlashResults, DecideFollowupOwner
from include.nps.monitoring import alerts
from include.nps.wave.trigger_form import wave_form_params

WAIT_TIMEOUT = dt.timedelta(days=120)
WAIT_RETRY_DELAY = dt.timedelta(seconds=10)
PARALLEL_SENDS = 4  # mapped send tasks of one mailing running at once, per wave
# Every wave's send tasks share this Airflow pool (created by `make airflow` and the compose
# airflow-init): its slots times the nps_smtp connection's `rate_per_second` is the most the mail
# relay ever sees, however many waves send at once.
SEND_POOL = "nps_email"
# A deferred message (greylisting, a busy server) is retried on its own schedule within the
# wave's delivery window (at most 6 hours): the send task's retries, 1, 2, 4 ... up to 30 minutes
# apart, span that window.
SEND_RETRIES = 16
SEND_MAX_RETRY_DELAY = dt.timedelta(minutes=30)


@task
def sales_decision_requests(plan: Any) -> list[dict]:
    """The decisions to ask in Airflow: one small dict per detractor (the mapped task's kwargs)."""
    from include.nps import pipeline

    return pipeline.sales_decision_requests(plan["wave_id"])


def decide_followup_owners(requests):
    """One human-in-the-loop task per detractor whose follow-up owner a person decides (mapped over
    `requests`; skipped when there is none): sales or cs, in Airflow's Required Actions."""
    return DecideFollowupOwner.partial(
        task_id="decide_followup_owner",
        options=["sales", "cs"],
        map_index_template="{{ task.request_label }}",
    ).expand_kwargs(requests)


def wait_for(milestone: str, trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS) -> DateTimeSensorAsync:
    """A deferrable wait until the planned time of `milestone` (no worker slot held)."""
    return DateTimeSensorAsync(
        trigger_rule=trigger_rule,
        task_id=f"wait_for_{milestone}",
        target_time=f"{{{{ ti.xcom_pull(task_ids='plan_wave')['milestones']['{milestone}'] }}}}",
        timeout=WAIT_TIMEOUT.total_seconds(),
        # A wait that is retried (for example after Airflow's race between a deferral's exit and
        # a trigger firing seconds later) only has to defer again: no backoff.
        retry_delay=WAIT_RETRY_DELAY,
        retry_exponential_backoff=False,
    )


def wave_step(name: str, trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS, produces: AssetName | None = None):
    """The task `name`: `include.nps.pipeline.<name>` for the run's wave, imported when it runs;
    when it `produces` an asset, its event carries the wave id and the step's summary."""
    outlets = [produces.asset] if produces else []

    @task(task_id=name, trigger_rule=trigger_rule, outlets=outlets)
    def run_step(plan: dict, outlet_events=None) -> dict:
        from include.nps import pipeline

        summary = getattr(pipeline, name)(plan["wave_id"])
        for asset in outlets:
            outlet_events[asset].extra = assets.event_extra(plan["wave_id"], summary)
        return summary

    return run_step


def mass_mailing(group_id: str, kind: str, plan, produces: AssetName | None = None):
    """prepare (ledger rows, in chunks; the flash figures, checked, for the flash results: it
    `produces` their asset) -> send (mapped: each task a range of chunks, at most
    `pipeline.MAX_SEND_TASKS` tasks and never more than `[core] max_map_length`) -> check (reconcile)."""
    outlets = [produces.asset] if produces else []

    @task_group(group_id=group_id)
    def mailing() -> None:
        @task(outlets=outlets)
        def prepare(plan: dict, outlet_events=None) -> list[list[int]]:
            from include.nps import pipeline

            batches = pipeline.send_batches(pipeline.prepare_mailing(plan["wave_id"], kind))
            for asset in outlets:
                outlet_events[asset].extra = assets.event_extra(plan["wave_id"], {"kind": kind, "chunks": len(batches)})
            return batches

        @task(
            max_active_tis_per_dagrun=PARALLEL_SENDS,
            pool=SEND_POOL,
            retries=SEND_RETRIES,
            max_retry_delay=SEND_MAX_RETRY_DELAY,
        )
        def send(plan: dict, chunks: list[int]) -> dict:
            from include.nps import pipeline

            return pipeline.send_mailing_chunks(plan["wave_id"], kind, chunks)

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def check(plan: dict) -> dict:
            from include.nps import pipeline

            return pipeline.check_mailing(plan["wave_id"], kind)

        batches = prepare(plan)
        chain(batches, send.partial(plan=plan).expand(chunks=batches), check(plan))

    return mailing()


@dag(
    dag_id="nps_wave",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    doc_md=__doc__,
    tags=["nps", "wave"],
    default_args={
        "owner": "cs-ops",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=1),
        "retry_exponential_backoff": True,
        # One alert per task try that finally fails (a failed data check included); none per retry.
        "on_failure_callback": alerts.task_failed,
    },
    # A run still going a day after its wave's retrospective was due alerts (Airflow's deadline
    # alerts, with the plugin's WaveRetrospective reference); each mailing's check watches milestones.
    deadline=alerts.wave_deadline(),
    render_template_as_native_obj=False,
    params=wave_form_params(),
)
def nps_wave() -> None:
    @task
    def plan_wave(params: dict | None = None, dag_run=None) -> dict:
        from include.nps import pipeline

        assert params is not None  # Airflow always passes the run's params
        from include.nps.privacy.audit import run_actor

        return pipeline.plan_wave(dict(params), (dag_run.dag_id, dag_run.run_id), run_actor(dag_run))

    plan = plan_wave()
    invitations = mass_mailing("send_invitations", "invitation", plan)
    close = wave_step("close_wave", produces=assets.RESPONSES)(plan)
    flash = mass_mailing("send_flash_results", "flash_results", plan, produces=assets.FLASH_FIGURES)
    # The customer timeline: each step waits only for the one it needs.
    chain(
        plan,
        wave_step("build_audience")(plan),
        wait_for("preannounce"),
        mass_mailing("send_preannouncement", "preannouncement", plan),
        wait_for("open"),
        invitations,
        wait_for("reminder"),
        mass_mailing("send_reminders", "reminder", plan),
        wait_for("close"),
        close,
    )
    # The optional approval (a form field, off by default) waits from the close until the flash
    # results' time at most; a rejection skips the wait and the mailing (not the retrospective).
    approval = ApproveFlashResults(task_id="approve_flash_results", runs_anyway=("wait_for_retrospective",))
    chain(close, approval, wait_for("flash", trigger_rule=TriggerRule.NONE_FAILED), flash)
    # What colleagues get hangs off it: a failing branch alerts and can be cleared and re-run,
    # but the close and the flash results never wait for it.
    chain(invitations, wait_for("midwave"), wave_step("share_midwave_drop", produces=assets.DROPS)(plan))
    postwave = wave_step("share_postwave_drop", produces=assets.DROPS)(plan)
    requests = sales_decision_requests(plan)
    chain(close, postwave, requests, decide_followup_owners(requests))
    route = wave_step("route_detractors", produces=assets.FOLLOWUPS)(plan)
    # Band emails go once the close's catch-up has alerted the last answers (VIP, executive, CRM:
    # it picks answers without a band email yet), whether that branch succeeded or failed.
    # It reads the wave from the close's result: no run at all unless the close succeeded.
    followups = wave_step("send_followups", TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)(close)
    chain(close, route, followups)
    # The per-contact results for BI (score, band, follow-up, churn signal) once the detractors are
    # routed, whether that branch succeeded or failed; like the band emails, only after a close.
    contact_results = wave_step("export_contact_results", TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, assets.CONTACT_RESULTS)
    chain(route, contact_results(close))
    # The retrospective reviews a closed wave, whatever became of its flash results.
    retrospective_wait = wait_for("retrospective", trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    chain([close, flash], retrospective_wait, wave_step("run_retrospective")(plan))


nps_wave()
