"""Responses as they arrive: a detractor reaches a person within minutes, not at the wave's close.

`dags/nps_responses.py` runs these steps every few minutes over the responses of open waves that
still need work (no score-band email settled yet, or a message waiting for a retry):

1. `check_new_responses`: the wave's responses suite (step `realtime_responses`) on them; a
   response that breaks it is set aside with its reason (`responses.quarantine_reason`), never
   alerted; the close-time check judges every response again.
2. `alert_new_responses`, per wave, as soon as a response is there:
   - each detractor (score <= the wave's detractor band) is routed by the routing rules to a
     follow-up with its owner, first-contact due time and escalation target (a sales decision wins);
   - every response is posted to the program's Slack channel (`nps_slack`) mentioning the
     account's CSM, and as an Adaptive Card to Microsoft Teams (`nps_teams`); each detractor also
     to the chat webhook (`nps_chat`, Slack-compatible JSON) in the same words as in Slack;
   - VIP accounts also to the escalation channel (`nps_slack_vip`), scores 0-1 also to the
     executive (`nps_slack_executive`);
   - each detractor gets a follow-up task in the CRM (`nps_crm`), whose id is stored.
3. `send_band_emails`: the score-band email, once the answer has been left alone for
   `NPS_BAND_EMAIL_DELAY_MINUTES` (default 5), so nobody is emailed while still editing.

The chat alert does not wait for that delay: the form records an answer only when it is sent, so
its first version already holds the comment; an edit made later is not posted again.

Every message is a row of the outbox ledger keyed (wave, kind, contact) before it is sent, and
a chat kind names its channel, so each configured channel gets an event once: `detractor_alert`
(Slack program channel), `response_alert`, `teams_alert`, `chat_alert` (`nps_chat`),
`vip_escalation`, `executive_alert`, `crm_task` and the band kinds `followup_*` (which the
close-time `send_followups` then skips). The wave's close-time alert (`alert_detractors`) posts
each routed detractor with the same context and templates to the detractor channels under the same
kinds, so it never repeats one sent here. A channel whose Airflow connection is not defined is
skipped, and nothing is queued for it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Engine

from include.nps.core import emails, storage
from include.nps.core.connections import connection_defined
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, SmtpTransport
from include.nps.realtime import crm
from include.nps.wave import responses, routing, routing_rules, sales_decisions, waves
from include.nps.wave.responses import BAND_KINDS, band

log = logging.getLogger(__name__)

STEP = "realtime_responses"
SLACK_CONN_ID = "nps_slack"
VIP_CONN_ID = "nps_slack_vip"
EXECUTIVE_CONN_ID = "nps_slack_executive"
TEAMS_CONN_ID = "nps_teams"
CHAT_CONN_ID = "nps_chat"
DETRACTOR_ALERT = "detractor_alert"
RESPONSE_ALERT = "response_alert"
TEAMS_ALERT = "teams_alert"
CHAT_ALERT = "chat_alert"
VIP_ESCALATION = "vip_escalation"
EXECUTIVE_ALERT = "executive_alert"
ALERT_KINDS = (DETRACTOR_ALERT, RESPONSE_ALERT, TEAMS_ALERT, CHAT_ALERT, VIP_ESCALATION, EXECUTIVE_ALERT, crm.KIND)
DETRACTOR_CHANNELS = (DETRACTOR_ALERT, TEAMS_ALERT, CHAT_ALERT)  # where a detractor's alert goes, one kind each
REALTIME_KINDS = (*ALERT_KINDS, *BAND_KINDS.values())
DEFAULT_DELAY_MINUTES = 5.0
DEFAULT_CHAT_USERS = storage.PROJECT_ROOT / "rules" / "chat_users.yaml"
PERSON_FIELDS = ("slack", "teams", "name", "crm_user_id")


class ChatUsersError(ValueError):
    """The chat users file cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Real-time settings, from the environment."""

    band_email_delay: dt.timedelta
    account_url_template: str
    chat_users_file: Path
    post_every_response: bool

    @classmethod
    def from_env(cls) -> Settings:
        """`NPS_BAND_EMAIL_DELAY_MINUTES` (5), `NPS_ACCOUNT_URL_TEMPLATE` (with `{account_id}`),
        `NPS_CHAT_USERS` (rules/chat_users.yaml), `NPS_CHAT_RESPONSES` (`all`, or `detractors`)."""
        users = os.environ.get("NPS_CHAT_USERS", "").strip()
        users_path = Path(users) if users else DEFAULT_CHAT_USERS
        return cls(
            band_email_delay=dt.timedelta(
                minutes=float(os.environ.get("NPS_BAND_EMAIL_DELAY_MINUTES") or DEFAULT_DELAY_MINUTES)
            ),
            account_url_template=os.environ.get("NPS_ACCOUNT_URL_TEMPLATE", "").strip(),
            chat_users_file=users_path if users_path.is_absolute() else storage.PROJECT_ROOT / users_path,
            post_every_response=os.environ.get("NPS_CHAT_RESPONSES", "all").strip().lower() != "detractors",
        )

    def account_url(self, account_id: str) -> str | None:
        if not self.account_url_template:
            return None
        return self.account_url_template.replace("{account_id}", quote(str(account_id), safe=""))


# --- who is who in chat ---------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """An account owner or CSM, as the alerts name them: mentioned when the chat users file knows them."""

    email: str
    slack: str | None = None
    teams: str | None = None
    name: str | None = None
    crm_user_id: str | None = None

    @property
    def slack_mention(self) -> str:
        return f"<@{self.slack}>" if self.slack else slack_text(self.email)

    @property
    def teams_mapped(self) -> bool:
        return bool(self.slack or self.teams or self.name)

    @property
    def teams_tag(self) -> str:
        return f"<at>{self.name or self.email}</at>" if self.teams_mapped else teams_text(self.email)

    def teams_entity(self) -> dict[str, Any]:
        return {
            "type": "mention",
            "text": self.teams_tag,
            "mentioned": {"id": self.teams or self.email, "name": self.name or self.email},
        }


def load_chat_users(path: Path) -> dict[str, Person]:
    """owner address: Person, from the chat users file (missing file: nobody is mentioned)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        log.info("no chat users file at %s: owners are named by address, not mentioned", path)
        return {}
    return _chat_users(str(path), stamp)


@lru_cache(maxsize=4)
def _chat_users(path: str, _stamp: int) -> dict[str, Person]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ChatUsersError(f"{path}: not valid YAML: {exc}") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise ChatUsersError(f"{path}: expected `users:` mapping each owner address to slack, teams, name")
    people = {}
    for email, entry in users.items():
        if not isinstance(entry, dict) or set(entry) - set(PERSON_FIELDS):
            unknown = sorted(set(entry) - set(PERSON_FIELDS)) if isinstance(entry, dict) else entry
            raise ChatUsersError(f"{path}: users.{email}: expected {', '.join(PERSON_FIELDS)}, got {unknown!r}")
        key = str(email).strip().lower()
        people[key] = Person(email=key, **{k: str(v) for k, v in entry.items() if v not in (None, "")})
    return people


def person(people: dict[str, Person], email: str | None) -> Person | None:
    if not email:
        return None
    key = str(email).strip().lower()
    return people.get(key) or Person(email=key)


# --- chat text: escaping and templates --------------------------------------------------------

TEAMS_SPECIALS = "\\`*_~[]"  # inline markdown; line-start markers (# - + 1.) are handled apart
TEAMS_LINE_START = re.compile(r"^(\s*)(#|-|\+|\d+(?=\.))(\.?)", re.MULTILINE)


def slack_text(value: Any) -> str:
    """Customer text for Slack mrkdwn: `&`, `<`, `>` as entities, so `<!channel>`, `<@U1>` or
    `<http://x|y>` stay text (no mention, no link)."""
    return emails.chat_escape(value)


def slack_quote(value: Any) -> str:
    """A comment as a Slack block quote, every line escaped and quoted."""
    return "\n".join(f"> {slack_text(line)}" for line in str(value).splitlines() or [""])


def teams_text(value: Any) -> str:
    """Customer text for a Teams Adaptive Card TextBlock (which renders markdown): HTML specials
    as entities (no `<at>` mention, no tag) and every markdown special behind a backslash."""
    escaped = emails.chat_escape(value)
    inline = "".join(f"\\{char}" if char in TEAMS_SPECIALS else char for char in escaped)
    return TEAMS_LINE_START.sub(_escape_line_start, inline)


def _escape_line_start(found: re.Match[str]) -> str:
    """`# `, `- `, `+ ` and `1. ` at a line's start would make a heading or a list."""
    indent, marker, dot = found.groups()
    return f"{indent}{marker}\\." if dot else f"{indent}\\{marker}"


def utc_minute(value: dt.datetime | None) -> str:
    return "n/a" if value is None else f"{storage.as_utc(value):%Y-%m-%d %H:%M} UTC"


@cache
def templates() -> Environment:
    """Chat messages (Slack mrkdwn, Teams cards as JSON): internal, in English."""
    env = Environment(
        loader=FileSystemLoader(emails.TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(slack_text=slack_text, slack_quote=slack_quote, teams_text=teams_text, utc=utc_minute)
    return env


def slack_message(context: dict[str, Any]) -> dict[str, Any]:
    return {"text": templates().get_template("chat/response_alert.slack.txt").render(**context).strip()}


def teams_message(context: dict[str, Any]) -> dict[str, Any]:
    return json.loads(templates().get_template("chat/response_alert.teams.json.j2").render(**context))


# --- which responses ------------------------------------------------------------------------


def new_responses(engine: Engine, wave_id: str | None, cutoff: dt.datetime) -> list[dict[str, Any]]:
    """Responses of open waves (of one wave, when given, also closed) answered by `cutoff` that
    still need work."""
    rows = storage.fetch_all(
        engine, storage.query("realtime_responses"), wave_id=wave_id, cutoff=cutoff, kinds=list(REALTIME_KINDS)
    )
    for row in rows:
        row["score"] = int(row["score"])
        row["vip"] = bool(row["vip"])
        row["updated_at"] = storage.as_utc(row["updated_at"])
        row["answered_at"] = storage.as_utc(row["answered_at"])
    return rows


def check_new_responses(engine: Engine, now: dt.datetime | None = None) -> list[dict[str, str]]:
    """Check the new responses of every open wave; set aside those that break the wave's
    responses suite. Returns the waves with work, each with the cutoff its responses were checked at."""
    now = now or storage.utcnow()
    by_wave: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in new_responses(engine, None, now):
        by_wave[row["wave_id"]].append(row)
    work = []
    for wave_id, rows in by_wave.items():
        rejected = _check(engine, waves.load_params(engine, wave_id), rows)
        if len(rejected) < len(rows):
            work.append({"wave_id": wave_id, "cutoff": now.isoformat()})
    return work


def _check(engine: Engine, wave: waves.WaveParams, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    import pandas as pd

    from include.nps.wave import data_checks

    frame = pd.DataFrame(rows)
    frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True)
    answers = [json.loads(a or "{}") for a in frame.pop("pillar_answers")]
    for pillar in wave.pillar_questions:
        frame[f"pillar_{pillar['id']}"] = pd.array([a.get(pillar["id"]) for a in answers], dtype="Int64")
    invited = storage.fetch_all(engine, storage.query("ledger_check"), wave_id=wave.wave_id, kind="invitation")
    suite = data_checks.responses_suite(
        wave.pillar_questions,
        [i["recipient"] for i in invited if i["status"] == "sent"],
        (wave.open_at, wave.close_at),
        wave.thresholds,
    )
    result = data_checks.run_check(engine, wave.wave_id, STEP, "responses", frame, suite, "contact_id", 1.0)
    storage.execute(
        engine,
        storage.query("set_aside_response"),
        [
            {
                "wave_id": wave.wave_id,
                "contact_id": contact_id,
                "reason": f"real-time check: {'; '.join(reasons)}"[:1000],
            }
            for contact_id, reasons in result.rejected.items()
        ],
    )
    return result.rejected


# --- routing and alerts ---------------------------------------------------------------------


def route_new_detractors(
    engine: Engine, wave: waves.WaveParams, rows: list[dict[str, Any]], now: dt.datetime
) -> dict[str, dict[str, Any]]:
    """A follow-up for each new detractor, by the routing rules (a sales decision already
    returned wins); returns every follow-up of the wave by contact id."""
    detractors = [r for r in rows if r["score"] <= wave.detractor_max]
    if detractors:
        rules = routing_rules.load()
        fallback = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else "cs-ops"
        decided = sales_decisions.stored(engine, wave.wave_id)
        facts = routing.routing_facts(engine, wave.wave_id)
        followups = []
        for r in detractors:
            cid = r["contact_id"]
            route = rules.route(routing.facts_of(r, facts.get(cid)), fallback, now, wave.country)
            followups.append(routing.followup_row(wave.wave_id, r, route, decided.get(cid), fallback, now))
        routing.store_followups(engine, followups)
    return wave_followups(engine, wave.wave_id)


def wave_followups(engine: Engine, wave_id: str) -> dict[str, dict[str, Any]]:
    """Every follow-up of a wave, by contact id, as the alerts and CRM tasks show them."""
    stored = storage.fetch_all(engine, storage.query("realtime_followups"), wave_id=wave_id)
    return {f["contact_id"]: {**f, "sla_due_at": storage.as_utc(f["sla_due_at"])} for f in stored}


def alert_context(
    wave: waves.WaveParams,
    row: dict[str, Any],
    followup: dict[str, Any] | None,
    people: dict[str, Person],
    settings: Settings,
) -> dict[str, Any]:
    """What every alert and CRM task of one response shows."""
    csm = person(people, row["csm"])
    owner = person(people, followup["owner"]) if followup else None
    mentioned = [p for p in (csm, owner) if p and p.teams_mapped]
    return {
        "r": row,
        "wave": {"wave_id": wave.wave_id, "name": wave.wave_name},
        "band": band(row["score"]),
        "detractor": row["score"] <= wave.detractor_max,
        "f": followup,
        "csm": csm,
        "owner": owner,
        "mentions": list({p.email: p for p in mentioned}.values()),
        "account_url": settings.account_url(row["account_id"]),
        "followup_url": _followup_url(wave.wave_id, followup),
        "channel": "program",
    }


def _followup_url(wave_id: str, followup: dict[str, Any] | None) -> str | None:
    """The owner's signed link to the follow-up form, the same for every alert of one follow-up."""
    if not followup:
        return None
    from include.nps.closed_loop import followups

    created_at = storage.as_utc(followup["created_at"])
    assert created_at is not None  # followups.created_at is NOT NULL
    return followups.followup_url(wave_id, followup["contact_id"], created_at)


@dataclass(frozen=True)
class Channel:
    kind: str
    conn_id: str
    ledger_channel: str
    wants: Callable[[dict[str, Any]], bool]  # does this response (its alert context) go here?
    render: Callable[[dict[str, Any]], dict[str, Any]]
    transport: Callable[[], Any]


def channels(settings: Settings) -> list[Channel]:
    """Where each response goes, the program channel first; the CRM only when `nps_crm` is defined."""
    from include.nps.delivery.transports import ChatTransport, CrmTransport, SlackWebhookTransport, TeamsTransport

    def slack(conn_id: str) -> Callable[[], Any]:
        return lambda: SlackWebhookTransport(conn_id)

    def slack_post(channel: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda context: slack_message({**context, "channel": channel})

    def posted(context: dict[str, Any]) -> bool:
        return settings.post_every_response or context["detractor"]

    listed = [
        Channel(
            DETRACTOR_ALERT,
            SLACK_CONN_ID,
            "chat",
            lambda c: c["detractor"],
            slack_post("program"),
            slack(SLACK_CONN_ID),
        ),
        Channel(
            RESPONSE_ALERT,
            SLACK_CONN_ID,
            "chat",
            lambda c: posted(c) and not c["detractor"],
            slack_post("program"),
            slack(SLACK_CONN_ID),
        ),
        Channel(TEAMS_ALERT, TEAMS_CONN_ID, "chat", posted, teams_message, lambda: TeamsTransport(TEAMS_CONN_ID)),
        Channel(
            CHAT_ALERT,
            CHAT_CONN_ID,
            "chat",
            lambda c: c["detractor"],
            slack_post("program"),
            lambda: ChatTransport(CHAT_CONN_ID),
        ),
        Channel(VIP_ESCALATION, VIP_CONN_ID, "chat", lambda c: c["r"]["vip"], slack_post("vip"), slack(VIP_CONN_ID)),
        Channel(
            EXECUTIVE_ALERT,
            EXECUTIVE_CONN_ID,
            "chat",
            lambda c: c["band"] == "critical",
            slack_post("executive"),
            slack(EXECUTIVE_CONN_ID),
        ),
    ]
    if connection_defined(crm.CRM_CONN_ID):
        profile = crm.Profile.from_env()
        listed.append(
            Channel(
                crm.KIND,
                crm.CRM_CONN_ID,
                "crm",
                lambda c: c["f"] is not None,
                lambda c: crm.task_request(profile, c),
                lambda: CrmTransport(crm.CRM_CONN_ID, profile.endpoint, profile.task_id_path),
            )
        )
    return listed


def alert_new_responses(
    engine: Engine,
    wave_id: str,
    cutoff: dt.datetime,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Route, post and open CRM tasks for one wave's new responses, each message once.

    Messages hit by a transient failure stay pending: after every channel was tried,
    `outbox.DeliveryIncomplete` asks for the task's retry (bounded by `outbox.MAX_ATTEMPTS`)."""
    now = now or storage.utcnow()
    settings = settings or Settings.from_env()
    wave = waves.load_params(engine, wave_id)
    rows = new_responses(engine, wave_id, cutoff)
    if not rows:
        return {}
    followups = route_new_detractors(engine, wave, rows, now)
    people = load_chat_users(settings.chat_users_file)
    contexts = {r["contact_id"]: alert_context(wave, r, followups.get(r["contact_id"]), people, settings) for r in rows}
    summary: dict[str, Any] = {"responses": len(rows)}
    incomplete: list[str] = []
    for channel in channels(settings):
        if not connection_defined(channel.conn_id):
            continue
        wanted = [cid for cid, context in contexts.items() if channel.wants(context)]
        try:
            summary[channel.kind] = _deliver(engine, wave_id, channel, wanted, contexts)
        except outbox.DeliveryIncomplete as exc:
            incomplete.append(str(exc))
        finally:
            if channel.kind == crm.KIND:
                storage.execute(engine, storage.query("store_crm_task_ids"), {"wave_id": wave_id})
    log.info("real-time alerts for %s: %s", wave_id, summary)
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return summary


def _deliver(
    engine: Engine, wave_id: str, channel: Channel, wanted: Iterable[str], contexts: dict[str, dict[str, Any]]
) -> dict[str, int]:
    outbox.enqueue(engine, wave_id, channel.kind, [(cid, channel.conn_id) for cid in wanted], channel.ledger_channel)

    def render(row: dict[str, Any]) -> dict[str, Any]:
        context = contexts.get(row["recipient"])
        if context is None:
            raise PermanentFailure(f"response of {row['recipient']} was set aside or is no longer new")
        return channel.render(context)

    with channel.transport() as transport:
        return outbox.deliver(engine, wave_id, channel.kind, render, transport).__dict__


def alert_detractors(engine: Engine, wave_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The wave's close-time detractor alert: every routed detractor posted, with the same context
    and templates as in real time, to each configured detractor channel (program Slack `nps_slack`,
    Teams `nps_teams`, the chat webhook `nps_chat`) once; the ledger's kind names the channel, so
    an alert already sent in real time, or by an earlier run, is not sent again."""
    settings = settings or Settings.from_env()
    contexts = wave_alert_contexts(engine, wave_id, settings)
    summary: dict[str, Any] = {}
    incomplete: list[str] = []
    for channel in channels(settings):
        if channel.kind not in DETRACTOR_CHANNELS or not connection_defined(channel.conn_id):
            continue
        wanted = [cid for cid, c in contexts.items() if c["detractor"] and c["f"] and channel.wants(c)]
        try:
            summary[channel.kind] = _deliver(engine, wave_id, channel, wanted, contexts)
        except outbox.DeliveryIncomplete as exc:
            incomplete.append(str(exc))
    log.info("close-time detractor alerts for %s: %s", wave_id, summary)
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return summary


def wave_alert_contexts(engine: Engine, wave_id: str, settings: Settings) -> dict[str, dict[str, Any]]:
    """The alert context of every response of a wave (not set aside), by contact id, with its follow-up."""
    wave = waves.load_params(engine, wave_id)
    followups = wave_followups(engine, wave_id)
    people = load_chat_users(settings.chat_users_file)
    return {
        r["contact_id"]: alert_context(wave, r, followups.get(r["contact_id"]), people, settings)
        for r in response_records(engine, wave_id)
    }


def response_records(engine: Engine, wave_id: str) -> list[dict[str, Any]]:
    """Every response of a wave (not set aside), as records with the fields the alerts show."""
    rows = storage.records(responses.responses_frame(engine, wave_id, []))
    for row in rows:
        row["vip"] = bool(row["vip"])
    return rows


# --- score-band emails ----------------------------------------------------------------------


def send_band_emails(
    engine: Engine,
    wave_id: str,
    cutoff: dt.datetime,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
    transport: SmtpTransport | None = None,
) -> dict[str, Any]:
    """The score-band email (9-10, 7-8, 2-6, 0-1 from the executive) to each new respondent
    whose answer has not changed for the delay; each contact once."""
    from include.nps.wave import mailings

    now = now or storage.utcnow()
    settings = settings or Settings.from_env()
    wave = waves.load_params(engine, wave_id)
    rows = new_responses(engine, wave_id, cutoff)
    quiet_since = min(cutoff, now - settings.band_email_delay)
    due = [r for r in rows if r["updated_at"] <= quiet_since]
    pending = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n FROM outbox WHERE wave_id = :w AND kind IN :kinds AND status = 'pending'",
        w=wave_id,
        kinds=list(BAND_KINDS.values()),
    )
    assert pending is not None  # COUNT(*) always gives a row
    if not due and not pending["n"]:
        return {"waiting": len(rows)}
    # Every candidate, so that a retry pending from an earlier run renders too.
    contacts = [
        {"contact_id": r["contact_id"], "email": r["email"], "name": r["contact_name"], "locale": r["locale"]}
        for r in rows
    ]
    scores = {r["contact_id"]: r["score"] for r in rows}
    summary: dict[str, Any] = {"waiting": len(rows) - len(due)}
    incomplete: list[str] = []
    due_ids = {r["contact_id"] for r in due}
    with transport or SmtpTransport() as smtp:
        for band_name, kind in BAND_KINDS.items():
            members = [c for c in contacts if c["contact_id"] in due_ids and band(scores[c["contact_id"]]) == band_name]
            mailings.enqueue_contacts(engine, wave_id, kind, members)
            sender = wave.executive_sender if band_name == "critical" else None
            try:
                outcome = mailings.deliver_to_contacts(
                    engine, wave, kind, contacts, smtp, lambda c: {"score": scores[c["contact_id"]]}, sender
                )
                summary[kind] = outcome.__dict__
            except outbox.DeliveryIncomplete as exc:
                incomplete.append(str(exc))
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return summary


# --- one pass, as the DAG runs it -----------------------------------------------------------


def process_new_responses(
    engine: Engine, now: dt.datetime | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Check, alert and email every open wave's new responses once (what one `nps_responses`
    run does); a transient failure anywhere is raised after every wave was handled."""
    now = now or storage.utcnow()
    settings = settings or Settings.from_env()
    summary: dict[str, Any] = {}
    incomplete: list[str] = []
    for batch in check_new_responses(engine, now):
        cutoff = dt.datetime.fromisoformat(batch["cutoff"])
        for name, step in (("alerts", alert_new_responses), ("emails", send_band_emails)):
            try:
                summary.setdefault(batch["wave_id"], {})[name] = step(engine, batch["wave_id"], cutoff, now, settings)
            except outbox.DeliveryIncomplete as exc:
                incomplete.append(f"{batch['wave_id']}: {exc}")
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return summary
