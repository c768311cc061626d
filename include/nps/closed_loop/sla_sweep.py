"""The daily SLA sweep: every follow-up nobody contacted in time is escalated, once, by email to
its escalation target (else the wave's first CS ops recipient), through the outbox ledger, and the
escalation is written in its call log.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from include.nps.closed_loop import followups
from include.nps.core import emails, storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, Transport
from include.nps.wave import waves

log = logging.getLogger(__name__)

ESCALATION_KIND = "followup_escalation"


def sweep_sla(engine: Engine, transport: Transport, rules: followups.Rules, now: dt.datetime) -> dict[str, Any]:
    """Escalate, once, every follow-up still open (nobody contacted the customer) past its SLA:
    an email to its `escalation_target` (else the wave's first CS ops recipient) through the
    ledger (kind `followup_escalation`, recipient the contact id), then `escalated_at` and a
    call-log row. Re-running escalates nothing twice."""
    candidates = storage.fetch_all(engine, storage.query("followups_awaiting_contact"))
    wave_params: dict[str, waves.WaveParams] = {}
    overdue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    no_target = []
    for row in map(followups.typed, candidates):
        due = followups.sla_due(row, rules)
        if due > now:
            continue
        wave = wave_params.get(row["wave_id"]) or waves.load_params(engine, row["wave_id"])
        wave_params[row["wave_id"]] = wave
        target = (row["escalation_target"] or "").strip() or next(iter(wave.cs_ops_recipients), "")
        if not target:
            no_target.append(row["contact_id"])
            continue
        overdue[row["wave_id"]].append({**row, "due": due, "target": target})
    if no_target:
        log.warning("follow-ups past their SLA with nobody to escalate to: %s", ", ".join(no_target))
    incomplete: list[str] = []
    for wave_id, rows in overdue.items():
        outbox.enqueue(engine, wave_id, ESCALATION_KIND, [(r["contact_id"], r["target"]) for r in rows])
        try:
            outbox.deliver(
                engine, wave_id, ESCALATION_KIND, _escalation_email(wave_params[wave_id], rows, now), transport
            )
        except outbox.DeliveryIncomplete as exc:
            incomplete.append(str(exc))
    escalated = _record_escalations(engine, [r for rows in overdue.values() for r in rows], now)
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return {"overdue": sum(map(len, overdue.values())), "escalated": escalated, "without_target": len(no_target)}


def _escalation_email(wave: waves.WaveParams, rows: list[dict[str, Any]], now: dt.datetime) -> Callable[[dict], Any]:
    by_contact = {r["contact_id"]: r for r in rows}

    def render(ledger_row: dict[str, Any]) -> Any:
        followup = by_contact.get(ledger_row["recipient"])
        if followup is None:  # pending from an earlier run, contacted since: no escalation needed
            raise PermanentFailure("the follow-up was contacted before its escalation went out")
        context = {
            "f": followup,
            "hours_late": round((now - followup["due"]).total_seconds() / 3600, 1),
            "followup_url": followups.followup_url(wave.wave_id, followup["contact_id"], now),
            "wave": {"name": wave.wave_name, "product": wave.product},
        }
        email = emails.render_email(ESCALATION_KIND, "en", ledger_row["address"], context)
        email.headers = {"X-NPS-Wave": wave.wave_id, "X-NPS-Kind": ESCALATION_KIND}
        msg_id = emails.message_id(wave.sender, wave.wave_id, ESCALATION_KIND, followup["contact_id"])
        return emails.build_mime(email, wave.sender, msg_id)

    return render


def _record_escalations(engine: Engine, rows: list[dict[str, Any]], now: dt.datetime) -> int:
    """Mark as escalated each follow-up whose escalation the ledger says was sent."""
    if not rows:
        return 0
    sent = storage.fetch_all(
        engine,
        "SELECT wave_id, recipient, address FROM outbox WHERE kind = :k AND status = 'sent' AND recipient IN :r",
        k=ESCALATION_KIND,
        r=sorted({row["contact_id"] for row in rows}),
    )
    addresses = {(s["wave_id"], s["recipient"]): s["address"] for s in sent}
    recorded = 0
    for row in rows:
        address = addresses.get((row["wave_id"], row["contact_id"]))
        if address is None:
            continue
        followup = followups.load(engine, row["wave_id"], row["contact_id"])
        if followup["escalated_at"] is not None:
            continue
        note = f"first contact was due {row['due']:%Y-%m-%d %H:%M} UTC; escalated to {address}"
        event = {"actor": "sla-sweep", "source": "sweep", "action": "escalation", "note": note}
        changes = {"escalated_at": now, "escalated_to": address}
        try:
            followups.apply_change(engine, followup, changes, event, None, now)
        except followups.StaleFollowup:
            continue  # changed meanwhile: the next sweep records it (the email is never sent twice)
        recorded += 1
    return recorded


def run_sla_sweep() -> dict[str, Any]:
    from include.nps.core.connections import nps_engine
    from include.nps.delivery.transports import SmtpTransport

    with SmtpTransport() as transport:
        return sweep_sla(nps_engine(), transport, followups.load_rules(), storage.utcnow())
