"""Alerts: a failed task or data check, a late milestone, an overdue wave, a low response rate.

Data engineers hear about runs that need them (a task or data check that failed, a milestone not
reached in time, a wave run still going long after it started); CS ops hear about a wave whose
response rate after the reminder is far below the previous wave's. Every alert is an event with a
unique key in the `alerts` table: it is claimed there before it is sent and its outcome recorded
after, so an event is announced once, whoever notices it first.

Channels, through the providers' notifiers:

- chat: the `nps_alerts_chat` connection, a Slack-compatible incoming webhook
  (`SlackWebhookNotifier`; type slackwebhook, the webhook URL as its password);
- email: `SmtpNotifier` over the `nps_smtp` connection, to `NPS_ALERT_EMAILS` (data engineers)
  or the wave's CS ops recipients (low response), from `NPS_ALERT_SENDER`.

With no channel configured an alert is logged and kept in the `alerts` table, never dropped.
The wording of every alert is in `include/templates/alerts/`.

`nps_wave` imports this module when it is parsed (its callbacks live here): nothing heavy at
module level.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include.nps.core import storage

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHAT_CONN_ID = "nps_alerts_chat"
SMTP_CONN_ID = "nps_smtp"
DEFAULT_SENDER = "NPS alerts <nps-alerts@localhost>"
DEFAULT_GRACE_HOURS = 8.0  # a milestone planned at 09:00 and not done by 17:00 missed its business day
DEFAULT_LOW_RESPONSE_RATIO = 0.6  # of the previous wave's rate at the same point of its window
# A wave's run ends with its retrospective: one still running a business day's worth of hours after
# the retrospective was due has a milestone (flash results, the retrospective) that did not happen.
WAVE_DEADLINE_GRACE = dt.timedelta(hours=24)
REASON_LINES = 6
REASON_CHARS = 1500


@dataclass(frozen=True)
class Event:
    """One thing to announce once: `kind` of `subject` within `scope` (a DAG run or a wave)."""

    kind: str
    scope: str
    subject: str = ""
    attempt: int = 0
    wave_id: str | None = None

    def key(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "subject": self.subject, "attempt": self.attempt}


@dataclass
class Delivery:
    """Where an alert went and what failed on the way."""

    channels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.channels:
            return "partial" if self.errors else "sent"
        return "failed" if self.errors else "unsent"


@dataclass(frozen=True)
class Settings:
    """Who gets alerts and when a milestone or a response rate is worth one (environment)."""

    emails: list[str]
    sender: str
    grace: dt.timedelta
    low_response_ratio: float

    @classmethod
    def from_env(cls) -> Settings:
        emails = os.environ.get("NPS_ALERT_EMAILS", "").replace(";", ",").replace(" ", ",")
        return cls(
            emails=[address for address in emails.split(",") if address],
            sender=os.environ.get("NPS_ALERT_SENDER") or DEFAULT_SENDER,
            grace=dt.timedelta(hours=_number("NPS_MILESTONE_GRACE_HOURS", DEFAULT_GRACE_HOURS)),
            low_response_ratio=_number("NPS_LOW_RESPONSE_RATIO", DEFAULT_LOW_RESPONSE_RATIO),
        )


def _number(name: str, default: float) -> float:
    """A number from the environment; a bad value is logged and the default used (never lose an alert)."""
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        log.warning("%s=%r is not a number: using %s", name, value, default)
        return default


# --- the ledger -------------------------------------------------------------------------------


def claim(engine: Engine, events: list[Event]) -> list[Event]:
    """The events nobody announced yet, now claimed by this caller."""
    now = storage.utcnow()
    return [
        event
        for event in events
        if storage.execute(engine, storage.query("claim_alert"), {**event.key(), "wave_id": event.wave_id, "now": now})
    ]


def record(engine: Engine, events: list[Event], delivery: Delivery, message: str) -> None:
    outcome = {
        "status": delivery.status,
        "channels": ",".join(delivery.channels) or None,
        "message": message,
        "error": "; ".join(delivery.errors)[:1000] or None,
        "now": storage.utcnow(),
    }
    storage.execute(engine, storage.query("record_alert"), [{**event.key(), **outcome} for event in events])


def announce(
    engine: Engine | None,
    events: list[Event],
    template: str,
    context: dict[str, Any],
    emails: list[str],
    settings: Settings,
    sender: str | None = None,
) -> Delivery | None:
    """Claim `events` and send their alert; None when every one of them was announced already.

    Without a reachable ledger (`engine` None) the alert is sent unclaimed: twice beats never."""
    try:
        claimed = claim(engine, events) if engine is not None else events
    except Exception:
        log.exception("the alerts ledger is unreachable: the alert is sent without it")
        engine, claimed = None, events
    if not claimed:
        log.info("alert already sent: %s", ", ".join(f"{e.kind} {e.scope} {e.subject}".strip() for e in events))
        return None
    return deliver(engine, claimed, template, context, emails, settings, sender)


def deliver(
    engine: Engine | None,
    claimed: list[Event],
    template: str,
    context: dict[str, Any],
    emails: list[str],
    settings: Settings,
    sender: str | None = None,
) -> Delivery:
    """Send the alert rendered from `alerts/<template>.*` to the chat and to `emails`, log it, and
    record the outcome of the `claimed` events."""
    from include.nps.core.emails import render

    text = render(f"alerts/{template}.chat.txt", context).strip()
    subject = " ".join(render(f"alerts/{template}.subject.txt", context).split())
    html = render(f"alerts/{template}.html", context)
    delivery = Delivery()
    if _chat_configured(delivery):
        _attempt(delivery, "chat", lambda: _post_chat(text))
    if emails:
        wave_id = claimed[0].wave_id
        headers = {"X-NPS-Kind": f"alert_{claimed[0].kind}", **({"X-NPS-Wave": wave_id} if wave_id else {})}
        _attempt(delivery, "email", lambda: _send_email(emails, sender or settings.sender, subject, html, headers))
    if delivery.status == "unsent":
        log.warning(
            "NPS alert not sent: no channel configured (connection %s, NPS_ALERT_EMAILS); kept in the alerts "
            "table:\n%s",
            CHAT_CONN_ID,
            text,
        )
    elif delivery.errors:
        log.error("NPS alert not sent everywhere (%s):\n%s", "; ".join(delivery.errors), text)
    else:
        log.info("NPS alert sent by %s:\n%s", ", ".join(delivery.channels), text)
    if engine is not None:
        try:
            record(engine, claimed, delivery, text)
        except Exception:
            log.exception("could not record the alert's outcome")
    return delivery


def _attempt(delivery: Delivery, channel: str, send: Any) -> None:
    try:
        send()
    except Exception as exc:  # any failure of one channel must not stop the others
        delivery.errors.append(f"{channel}: {exc}"[:500])
    else:
        delivery.channels.append(channel)


def _chat_configured(delivery: Delivery) -> bool:
    """Whether the alerts chat connection exists (a connection that cannot be read is an error)."""
    from include.nps.core.connections import connection_defined

    try:
        return connection_defined(CHAT_CONN_ID)
    except Exception as exc:
        delivery.errors.append(f"chat: cannot read connection {CHAT_CONN_ID}: {exc}"[:500])
        return False


def _post_chat(text: str) -> None:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    # notify(), not __call__: the text is rendered already and must not go through Jinja again.
    notifier = SlackWebhookNotifier(
        slack_webhook_conn_id=CHAT_CONN_ID, text=text, unfurl_links=False, unfurl_media=False, timeout=30
    )
    notifier.notify({})


def _send_email(to: list[str], sender: str, subject: str, html: str, headers: dict[str, str]) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=to, from_email=sender, subject=subject, html_content=html, smtp_conn_id=SMTP_CONN_ID, custom_headers=headers
    )
    notifier.notify({})


def _engine() -> Engine | None:
    """The NPS DB, or None when it cannot be reached (the alert still goes out)."""
    try:
        from include.nps.core.connections import nps_engine

        return nps_engine()
    except Exception:
        log.exception("the NPS DB is unreachable: the alert is sent without its ledger")
        return None


# --- a failed task or data check (on_failure_callback) ---------------------------------------


def task_failed(context: Mapping[str, Any]) -> None:
    """`on_failure_callback` of nps_wave's tasks: one alert per task try that finally fails.

    Airflow calls it once per final failure (never for a try that will be retried); the ledger
    key (run, task, map index, try) keeps a second call for the same try silent. A task cleared
    and failing again is a new try, so a new alert."""
    try:
        _task_failed(context, Settings.from_env())
    except Exception:  # an alert must never hide the failure it reports
        log.exception("could not send the alert for a failed task")


def _task_failed(context: Mapping[str, Any], settings: Settings) -> Delivery | None:
    ti = context["ti"]
    engine = _engine()
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    wave_id = _wave_of_run(engine, ti.dag_id, ti.run_id, conf)
    map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
    step = ti.task_id if map_index is None else f"{ti.task_id}[{map_index}]"
    event = Event("task_failed", f"{ti.dag_id}/{ti.run_id}", step, int(ti.try_number or 0), wave_id)
    error = context.get("exception")
    check = _failed_check(engine, wave_id, ti.start_date) if _is_data_check(error) else None
    alert = {
        "wave_id": wave_id,
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "step": step,
        "try_number": ti.try_number,
        "check": check,
        "reason": check["summary"] if check else _reason(error),
        "log_url": _log_url(ti),
    }
    return announce(engine, [event], "task_failed", alert, settings.emails, settings)


def _wave_of_run(engine: Engine | None, dag_id: str, run_id: str, conf: Mapping[str, Any]) -> str | None:
    """The wave a run runs: as plan_wave stored it, else as the run's form names it."""
    from include.nps.wave import waves

    if engine is not None:
        try:
            row = storage.fetch_one(engine, storage.query("wave_of_run"), dag_id=dag_id, run_id=run_id)
        except Exception:
            log.exception("could not look up the wave of run %s", run_id)
            row = None
        if row:
            return row["wave_id"]
    if conf.get("wave_name"):
        return f"{waves.slug(str(conf.get('program') or 'customer-nps'))}-{waves.slug(str(conf['wave_name']))}"
    return None


def _is_data_check(error: BaseException | None) -> bool:
    from include.nps.wave.data_checks import DataCheckFailed

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DataCheckFailed):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _failed_check(engine: Engine | None, wave_id: str | None, since: dt.datetime | None) -> dict[str, Any] | None:
    """The stored result of the data check that failed this try."""
    if engine is None or wave_id is None:
        return None
    since = since or dt.datetime.min.replace(tzinfo=dt.UTC)
    try:
        return storage.fetch_one(engine, storage.query("failed_check"), wave_id=wave_id, since=since)
    except Exception:
        log.exception("could not read the failed check of %s", wave_id)
        return None


def _reason(error: BaseException | None) -> str:
    """The first lines of the error, as the task log shows them."""
    if error is None:
        return ""
    name = type(error).__name__
    text = str(error).strip() or name
    if not name.startswith("Airflow") and not text.startswith(name):  # AirflowFailException says it all
        text = f"{name}: {text}"
    lines = text.splitlines()
    short = "\n".join(lines[:REASON_LINES])
    if len(short) > REASON_CHARS:
        short = short[:REASON_CHARS].rstrip()
    return short + (" …" if short != text else "")


def _log_url(ti: Any) -> str:
    """The task try's page in the Airflow UI (`[api] base_url`), as Airflow's own emails link it."""
    try:
        return ti.log_url
    except Exception:
        return _run_url(ti.dag_id, ti.run_id) + f"/tasks/{ti.task_id}"


def _run_url(dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    return f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}"


# --- milestones: the watchdog and the wave's deadline alert -----------------------------------


def late_milestones(engine: Engine, wave_id: str, now: dt.datetime, grace: dt.timedelta) -> list[dict[str, Any]]:
    """The wave's milestones not done by their planned time plus `grace`: done late, or not yet."""
    late = []
    for row in storage.fetch_all(engine, storage.query("wave_milestones"), wave_id=wave_id):
        due, done = storage.as_utc(row["due_at"]), storage.as_utc(row["done_at"])
        assert due is not None  # wave_milestones.due_at is NOT NULL
        limit = due + grace
        if (done or now) > limit:
            late.append({"milestone": row["milestone"], "due_at": due, "done_at": done, "late_by": (done or now) - due})
    return late


def watch_milestones(engine: Engine, wave_id: str, now: dt.datetime | None = None) -> Delivery | None:
    """Alert data engineers once about each milestone of the wave that missed its time."""
    settings = Settings.from_env()
    late = late_milestones(engine, wave_id, now or storage.utcnow(), settings.grace)
    return _announce_milestones(engine, wave_id, late, settings, overdue=None)


def _announce_milestones(
    engine: Engine,
    wave_id: str,
    late: list[dict[str, Any]],
    settings: Settings,
    overdue: dict[str, Any] | None,
) -> Delivery | None:
    events = [Event("milestone_late", wave_id, m["milestone"], 0, wave_id) for m in late]
    if overdue:
        events.append(Event("wave_overdue", f"{overdue['dag_id']}/{overdue['run_id']}", "", 0, wave_id))
    claimed = claim(engine, events)
    if not claimed:
        return None
    new = {e.subject for e in claimed if e.kind == "milestone_late"}
    context = {
        "wave_id": wave_id,
        "late": [m for m in late if m["milestone"] in new],
        "grace_hours": settings.grace.total_seconds() / 3600,
        "overdue": overdue if any(e.kind == "wave_overdue" for e in claimed) else None,
    }
    return deliver(engine, claimed, "milestones", context, settings.emails, settings)


def wave_deadline(grace: dt.timedelta = WAVE_DEADLINE_GRACE) -> Any:
    """Airflow's deadline alert for a wave's run: still running `grace` after the wave's own
    retrospective was due (`deadlines.WaveRetrospective`, evaluated when the run is created), the
    scheduler has the triggerer await `wave_overdue`, which names the late milestones."""
    # task-sdk 1.3.2's airflow/sdk/__init__.pyi omits both, which the module exports (its __all__).
    from airflow.sdk import AsyncCallback, DeadlineAlert  # type: ignore[attr-defined]

    from include.nps.monitoring.deadlines import WaveRetrospective

    return DeadlineAlert(
        reference=WaveRetrospective(),
        interval=grace,
        callback=AsyncCallback(wave_overdue),
        name="wave_overdue",
    )


async def wave_overdue(context: dict[str, Any] | None = None, **_: Any) -> None:
    """Deadline-alert callback of nps_wave (runs in the triggerer): the run is not finished by its
    deadline. Announces the wave's late milestones and that the run is overdue, once."""
    import asyncio

    await asyncio.to_thread(run_overdue, context or {})


def run_overdue(context: Mapping[str, Any], now: dt.datetime | None = None) -> Delivery | None:
    """What `wave_overdue` does, with the simple context Airflow gives deadline callbacks
    (`dag_run` as the REST API shows it, `deadline` with its `deadline_time`)."""
    settings = Settings.from_env()
    run = context.get("dag_run") or {}
    dag_id, run_id = run.get("dag_id", ""), run.get("dag_run_id") or run.get("run_id", "")
    engine = _engine()
    wave_id = _wave_of_run(engine, dag_id, run_id, run.get("conf") or {})
    overdue = {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": run.get("state"),
        "queued_at": run.get("queued_at"),
        "deadline_time": storage.as_utc((context.get("deadline") or {}).get("deadline_time")),
        "run_url": _run_url(dag_id, run_id),
    }
    if engine is None or wave_id is None:
        event = Event("wave_overdue", f"{dag_id}/{run_id}", "", 0, wave_id)
        alert: dict[str, Any] = {"wave_id": wave_id, "late": [], "grace_hours": 0, "overdue": overdue}
        return announce(engine, [event], "milestones", alert, settings.emails, settings)
    late = late_milestones(engine, wave_id, now or storage.utcnow(), settings.grace)
    return _announce_milestones(engine, wave_id, late, settings, overdue)


# --- response rate after the reminder ---------------------------------------------------------


def response_rate_at(engine: Engine, wave_id: str, cutoff: dt.datetime) -> dict[str, Any]:
    """Invited contacts and those who had answered by `cutoff`, and the rate (None: nobody invited)."""
    row = storage.fetch_one(engine, storage.query("response_rate_at"), wave_id=wave_id, cutoff=cutoff) or {}
    invited, answered = int(row.get("invited") or 0), int(row.get("answered") or 0)
    return {"invited": invited, "answered": answered, "rate": answered / invited if invited else None}


def compare_response(engine: Engine, wave_id: str, now: dt.datetime) -> dict[str, Any] | None:
    """This wave's response rate now and the previous wave's at the same share of its window
    (None without a previous wave to compare with)."""
    from include.nps.wave import waves

    previous_id = waves.previous_wave_id(engine, wave_id)
    if previous_id is None:
        return None
    wave, previous = waves.load_params(engine, wave_id), waves.load_params(engine, previous_id)
    share = min(max((now - wave.open_at) / (wave.close_at - wave.open_at), 0.0), 1.0)
    then = previous.open_at + (previous.close_at - previous.open_at) * share
    current, earlier = response_rate_at(engine, wave_id, now), response_rate_at(engine, previous_id, then)
    if current["rate"] is None or not earlier["rate"]:
        return None
    return {
        "wave_id": wave_id,
        "previous_wave_id": previous_id,
        "share": share,
        "current": current,
        "previous": earlier,
        "ratio": current["rate"] / earlier["rate"],
        "cs_ops": wave.cs_ops_recipients,
        "sender": wave.sender,
    }


def warn_low_response(engine: Engine, wave_id: str, now: dt.datetime | None = None) -> Delivery | None:
    """Warn CS ops (their emails and the alerts chat) once when the wave's response rate is far
    below the previous wave's at the same point of its window (`NPS_LOW_RESPONSE_RATIO`)."""
    settings = Settings.from_env()
    comparison = compare_response(engine, wave_id, now or storage.utcnow())
    if comparison is None:
        log.info("response rate of %s: no previous wave with invitations to compare with", wave_id)
        return None
    log.info(
        "response rate of %s: %.1f%% vs %.1f%% for %s at the same point (ratio %.2f, warning below %.2f)",
        wave_id,
        100 * comparison["current"]["rate"],
        100 * comparison["previous"]["rate"],
        comparison["previous_wave_id"],
        comparison["ratio"],
        settings.low_response_ratio,
    )
    if comparison["ratio"] >= settings.low_response_ratio:
        return None
    context = {**comparison, "threshold": settings.low_response_ratio}
    event = Event("low_response", wave_id, "reminder", 0, wave_id)
    return announce(engine, [event], "low_response", context, comparison["cs_ops"], settings, comparison["sender"])


def after_mailing_check(engine: Engine, wave_id: str, kind: str) -> None:
    """Run by each wave-wide mailing's `check` task: the milestone watchdog, and after the
    reminder the response-rate comparison. Never fails the wave."""
    try:
        watch_milestones(engine, wave_id)
    except Exception:
        log.exception("milestone watchdog of %s failed", wave_id)
    if kind == "reminder":
        try:
            warn_low_response(engine, wave_id)
        except Exception:
            log.exception("response-rate comparison of %s failed", wave_id)
