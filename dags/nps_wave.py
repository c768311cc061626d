"""
### NPS wave: one run is one survey wave, end to end

Triggered by CS ops from the trigger form (or by the wave planner). The run plans the wave's
milestones from its open and close times and the country's business days, then waits for each
one without holding a worker:

The customer timeline is the spine; each of its steps waits only for the one it needs:

1. **plan_wave**: store the wave and its milestones;
2. **build_audience**: load the contacts file, quarantine bad rows, drop opted-out, bounced and
   recently surveyed contacts, snapshot the audience ⇒ check;
3. **send_preannouncement** (a few business days before open) ⇒ check;
4. **send_invitations**: personal signed links, the 0-10 scale clickable in the email ⇒ check;
5. **send_reminders** to non-respondents ⇒ check;
6. **close_wave**: freeze responses ⇒ check;
7. **send_followups**: score-band emails (9-10, 7-8, 2-6, 0-1) ⇒ check;
8. **send_flash_results** to all audience contacts at close + 3 business days ⇒ check;
9. **run_retrospective**: figures and action items, emailed to CS ops ⇒ check (it runs once the
   wave is closed, whatever became of the flash results, and reports them).

   Each wave-wide email is a group: `prepare` writes the ledger rows in chunks, `send` is one
   mapped task per chunk (one SMTP session each), `check` reconciles the ledger with the audience.

What colleagues get hangs off the spine as branches of their own. A branch that fails alerts,
retries and can be cleared and re-run, but the close and the flash results never wait for it:

- **share_midwave_drop** (after the invitations, at the mid-wave milestone): responses so far to
  sales ⇒ check;
- **share_postwave_drop** (after close) ⇒ check;
- **route_detractors** (after close): one follow-up owner each, chat alerts, CRM tasks ⇒ check.

Every message goes through a ledger keyed by (wave, kind, recipient): re-running any task, or
the whole wave with the same name, sends nothing twice. Data-check results are stored in the
NPS DB (`check_results`). Connections: `nps_db` (default: SQLite), `nps_smtp`, `nps_chat`.

Alerts (`include/nps/alerts.py`, chat `nps_alerts_chat` and/or `NPS_ALERT_EMAILS`): a task or data
check that fails (with the step, the reason and the log link), a milestone not done in time, and a
response rate after the reminder far below the previous wave's (to CS ops); each event once.

#### Owner
CS operations (waves), data engineering (runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import Param, TriggerRule, chain, dag, task, task_group

from include.nps import alerts
from include.nps.pillars import DEFAULT_PILLARS

WAIT_TIMEOUT = dt.timedelta(days=120)
WAIT_RETRY_DELAY = dt.timedelta(seconds=10)
PARALLEL_SENDS = 4  # mapped send tasks of one mailing running at once, per wave
OPTIONAL_TIME = {"type": ["null", "string"], "format": "date-time"}


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


def wave_step(name: str):
    """The task `name`: `include.nps.pipeline.<name>` for the run's wave, imported when it runs."""

    @task(task_id=name)
    def run_step(plan: dict) -> dict:
        from include.nps import pipeline

        return getattr(pipeline, name)(plan["wave_id"])

    return run_step


def mass_mailing(group_id: str, kind: str, plan):
    """prepare (ledger rows, in chunks) -> send (one mapped task per chunk) -> check (reconcile)."""

    @task_group(group_id=group_id)
    def mailing() -> None:
        @task
        def prepare(plan: dict) -> list[int]:
            from include.nps import pipeline

            return pipeline.prepare_mailing(plan["wave_id"], kind)

        @task(max_active_tis_per_dagrun=PARALLEL_SENDS)
        def send(plan: dict, chunk: int) -> dict:
            from include.nps import pipeline

            return pipeline.send_mailing_chunk(plan["wave_id"], kind, chunk)

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def check(plan: dict) -> dict:
            from include.nps import pipeline

            return pipeline.check_mailing(plan["wave_id"], kind)

        chunks = prepare(plan)
        chain(chunks, send.partial(plan=plan).expand(chunk=chunks), check(plan))

    return mailing()


def milestone_override(name: str, when: str) -> Param:
    return Param(
        None,
        **OPTIONAL_TIME,
        title=f"{name} at (optional)",
        description=f"Overrides the computed time: {when}.",
        section="Timeline overrides",
    )


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
    params={
        "wave_name": Param(
            type="string",
            minLength=1,
            maxLength=100,
            title="Wave name",
            description="Unique within the program, e.g. 2026-Q4. Re-using a name re-runs that wave.",
        ),
        "program": Param(
            "customer-nps",
            type="string",
            minLength=1,
            title="Program",
            description="Waves of one program are compared with each other.",
        ),
        "product": Param(
            "Acme Cloud",
            type="string",
            minLength=1,
            title="Product or company name",
            description="Used in 'How likely are you to recommend …'.",
        ),
        "country": Param(
            "US",
            type="string",
            pattern="^[A-Z]{2}$",
            title="Country",
            description="ISO code whose business days count (flash results at close + 3 business days).",
        ),
        "audience_csv": Param(
            type="string",
            minLength=1,
            title="Contacts file",
            description=(
                "Path of the contacts CSV. Columns: contact_id, email, name, account_id, account_name; "
                "optional: locale, role, account_tier, account_country, sales_owner, csm, vip."
            ),
        ),
        "open_at": Param(
            type="string",
            format="date-time",
            title="Survey opens",
            description="Invitations go out at this time (UTC).",
        ),
        "close_at": Param(
            type="string",
            format="date-time",
            title="Survey closes",
            description="Responses are frozen at this time (UTC).",
        ),
        "pillar_questions": Param(
            DEFAULT_PILLARS,
            type="array",
            minItems=0,
            maxItems=5,
            items={
                "type": "object",
                "required": ["id", "text", "scale"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "text": {"type": "string", "minLength": 1},
                    "scale": {"enum": ["0-10", "1-5"]},
                    "translations": {
                        "type": "object",
                        "propertyNames": {"enum": ["ja", "zh", "he", "nb"]},
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                },
            },
            title="Pillar questions",
            description=(
                "About three headline questions, each with a 0-10 or 1-5 scale; shown in the flash results. "
                'Optional "translations": {"ja": "...", "zh": "...", "he": "...", "nb": "..."}; '
                "the default questions are translated already."
            ),
        ),
        "sales_recipients": Param(
            [],
            type="array",
            items={"type": "string", "format": "email"},
            title="Sales recipients",
            description="Who receives the mid-wave and post-wave raw-data drops.",
        ),
        "cs_ops_recipients": Param(
            [],
            type="array",
            items={"type": "string", "format": "email"},
            title="CS ops recipients",
            description="Who receives the retrospective; the first one owns unassigned items.",
        ),
        "sender": Param(
            "Acme Customer Success <cs@acme.example>",
            type="string",
            title="Sender",
            description="From address of customer emails.",
        ),
        "executive_sender": Param(
            "Acme CEO Office <ceo-office@acme.example>",
            type="string",
            title="Executive sender",
            description="From address of the follow-up to scores 0-1.",
        ),
        "detractor_max": Param(
            6,
            type="integer",
            minimum=0,
            maximum=6,
            title="Detractor band: highest score",
            description=(
                "Scores from 0 to this value are routed as detractors (6 by default; 4 when alerts are too many)."
            ),
        ),
        "frequency_days": Param(
            90,
            type="integer",
            minimum=0,
            title="Contact frequency (days)",
            description="Contacts invited by another wave within this many days are left out.",
        ),
        "share_quotes": Param(
            False,
            type="boolean",
            title="Quote promoters in the flash results",
            description=(
                "Up to two promoter comments per language, anonymised (names, addresses and numbers removed). "
                "Only when your customers agreed to it."
            ),
        ),
        "chunk_size": Param(
            500,
            type="integer",
            minimum=1,
            title="Messages per send task",
            description="Wave-wide emails go out in chunks of this size, one mapped task each (more workers, faster).",
            section="Advanced",
        ),
        "drop_channels": Param(
            ["email"],
            type="array",
            items={"enum": ["email", "storage"]},
            minItems=1,
            uniqueItems=True,
            title="Deliver drops by",
            description="email: attached (linked above the size limit); storage: written to the drop location.",
            section="Raw-data drops",
        ),
        "drop_formats": Param(
            ["xlsx"],
            type="array",
            items={"enum": ["xlsx", "csv"]},
            minItems=1,
            uniqueItems=True,
            title="File formats",
            description="XLSX (filters, highlighted detractors) and/or CSV (UTF-8 with BOM for Excel).",
            section="Raw-data drops",
        ),
        "drop_location": Param(
            "",
            type="string",
            title="Drop location",
            description="Folder URL for the files and their manifest: file:///..., s3://bucket/path or gs://...",
            section="Raw-data drops",
        ),
        "drop_storage_conn_id": Param(
            "",
            type="string",
            title="Storage connection",
            description="Airflow connection of the drop location (e.g. aws_default); empty for a local folder.",
            section="Raw-data drops",
        ),
        "drop_allow_list": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 3},
            title="Allowed drop recipients",
            description=(
                "Addresses or domains (vendor.example) that may receive raw data; empty = the sender's domain. "
                "Any other recipient stops the drop before anything is sent."
            ),
            section="Raw-data drops",
        ),
        "mail_size_limit_mb": Param(
            10,
            type="number",
            exclusiveMinimum=0,
            title="Mail size limit (MB)",
            description="Files above this are sent as a link to the drop location instead of attached.",
            section="Raw-data drops",
        ),
        "max_rejected_share": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            title="Rejected rows that stop the wave (share)",
            description="Bad contact rows and responses are set aside; above this share of them the wave stops.",
            section="Data checks",
        ),
        "audience_min_ratio": Param(
            0.5,
            type="number",
            minimum=0,
            maximum=1,
            title="Smallest audience, as a share of the previous wave's",
            description="A sudden drop in audience size is a broken extract: the wave stops before any email.",
            section="Data checks",
        ),
        "audience_max_ratio": Param(
            2.0,
            type="number",
            minimum=1,
            title="Largest audience, as a multiple of the previous wave's",
            description="A sudden jump in audience size is a broken extract too (duplicated rows, a wrong filter).",
            section="Data checks",
        ),
        "max_comment_chars": Param(
            5000,
            type="integer",
            minimum=1,
            title="Longest expected comment (characters)",
            description="Longer comments are reported as a warning; they do not stop the wave.",
            section="Data checks",
        ),
        "preannounce_at": milestone_override("Pre-announcement", "3 business days before open"),
        "reminder_at": milestone_override("Reminder", "40% of the way from open to close"),
        "midwave_at": milestone_override("Mid-wave drop", "halfway from open to close"),
        "flash_at": milestone_override("Flash results", "close + 3 business days"),
        "retrospective_at": milestone_override("Retrospective", "flash results + 1 business day"),
    },
)
def nps_wave() -> None:
    @task
    def plan_wave(params: dict | None = None, dag_run=None) -> dict:
        from include.nps import pipeline

        return pipeline.plan_wave(dict(params), (dag_run.dag_id, dag_run.run_id))

    plan = plan_wave()
    invitations = mass_mailing("send_invitations", "invitation", plan)
    close = wave_step("close_wave")(plan)
    flash = mass_mailing("send_flash_results", "flash_results", plan)
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
        wave_step("send_followups")(plan),
    )
    chain(close, wait_for("flash"), flash)
    # What colleagues get hangs off it: a failing branch alerts and can be cleared and re-run,
    # but the close and the flash results never wait for it.
    chain(invitations, wait_for("midwave"), wave_step("share_midwave_drop")(plan))
    chain(close, wave_step("share_postwave_drop")(plan))
    chain(close, wave_step("route_detractors")(plan))
    # The retrospective reviews a closed wave, whatever became of its flash results.
    retrospective_wait = wait_for("retrospective", trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    chain([close, flash], retrospective_wait, wave_step("run_retrospective")(plan))


nps_wave()
