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
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.core.connections import connection_defined
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, SmtpTransport
from include.nps.realtime import crm
from include.nps.realtime.channels import ALERT_KINDS, DETRACTOR_CHANNELS, Channel, Settings, channels
from include.nps.realtime.chat_people import Person, load_chat_users, person
from include.nps.wave import responses, routing, routing_rules, sales_decisions, waves
from include.nps.wave.responses import BAND_KINDS, band

log = logging.getLogger(__name__)

STEP = "realtime_responses"
REALTIME_KINDS = (*ALERT_KINDS, *BAND_KINDS.values())


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
    whose answer has not changed for the delay; each contact once (see `band_emails`)."""
    from include.nps.wave import band_emails

    now = now or storage.utcnow()
    settings = settings or Settings.from_env()
    wave = waves.load_params(engine, wave_id)
    rows = new_responses(engine, wave_id, cutoff)
    quiet_since = min(cutoff, now - settings.band_email_delay)
    if not band_emails.anything_due(engine, wave_id, rows, quiet_since):  # no SMTP session for nothing
        return {"waiting": len(rows)}
    with transport or SmtpTransport() as smtp:
        return band_emails.send_settled(engine, wave, rows, quiet_since, smtp)


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
