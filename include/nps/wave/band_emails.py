"""The score-band emails: 9-10, 7-8, 2-6, and 0-1 from an executive, one per respondent.

Sent in real time once an answer has been left alone for a while (`send_settled`, called by the
`nps_responses` DAG), and at the wave's close to everyone the real time did not reach
(`send_at_close`). A respondent's first band email stands, also when their answer changed band.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import Transport
from include.nps.wave import mailings, responses, waves
from include.nps.wave.responses import BAND_KINDS, band

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd


def send_at_close(engine: Engine, wave: waves.WaveParams, transport: Transport) -> dict[str, Any]:
    """Every respondent's band email not sent yet, each mailing checked (one row per respondent)."""
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    frame["band"] = frame["score"].map(band)
    earlier = {
        r["contact_id"]: r["kind"]
        for r in storage.fetch_all(
            engine, storage.query("band_emails"), wave_id=wave.wave_id, kinds=list(BAND_KINDS.values())
        )
    }
    scores = dict(zip(frame["contact_id"], frame["score"], strict=True))
    sent: dict[str, Any] = {}
    for band_name, kind in BAND_KINDS.items():
        due = frame[(frame["band"] == band_name) & frame["contact_id"].map(lambda c, k=kind: earlier.get(c, k) == k)]
        contacts = recipients(due)
        sender = wave.executive_sender if band_name == "critical" else None
        outcome = mailings.send_to_contacts(engine, wave, kind, contacts, transport, score_of(scores), sender)
        sent[kind] = outcome.__dict__
        kept = {c for c, k in earlier.items() if k == kind} - set(due["contact_id"])  # an earlier answer's
        mailings.check_outbox(engine, wave.wave_id, kind, len(contacts) + len(kept))
    return sent


def send_settled(
    engine: Engine,
    wave: waves.WaveParams,
    rows: list[dict[str, Any]],
    quiet_since: dt.datetime,
    transport: Transport,
) -> dict[str, Any]:
    """The band email of each answer in `rows` (new responses) not changed since `quiet_since`,
    and any retry pending from an earlier run; raises `DeliveryIncomplete` after every band was
    tried when some message waits for a retry."""
    if not anything_due(engine, wave.wave_id, rows, quiet_since):
        return {"waiting": len(rows)}
    due = [r for r in rows if r["updated_at"] <= quiet_since]
    # Every candidate, so that a retry pending from an earlier run renders too.
    contacts = [
        {"contact_id": r["contact_id"], "email": r["email"], "name": r["contact_name"], "locale": r["locale"]}
        for r in rows
    ]
    scores = {r["contact_id"]: r["score"] for r in rows}
    summary: dict[str, Any] = {"waiting": len(rows) - len(due)}
    incomplete: list[str] = []
    due_ids = {r["contact_id"] for r in due}
    for band_name, kind in BAND_KINDS.items():
        members = [c for c in contacts if c["contact_id"] in due_ids and band(scores[c["contact_id"]]) == band_name]
        mailings.enqueue_contacts(engine, wave.wave_id, kind, members)
        sender = wave.executive_sender if band_name == "critical" else None
        try:
            outcome = mailings.deliver_to_contacts(engine, wave, kind, contacts, transport, score_of(scores), sender)
            summary[kind] = outcome.__dict__
        except outbox.DeliveryIncomplete as exc:
            incomplete.append(str(exc))
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return summary


def recipients(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The respondents of `frame` as the band emails' recipients (a blank name or locale is None)."""
    return storage.records(frame.rename(columns={"contact_name": "name"})[["contact_id", "email", "name", "locale"]])


def score_of(scores: dict[str, Any]) -> Any:
    """The template context giving each contact their score."""
    return lambda contact: {"score": int(scores[contact["contact_id"]])}


def anything_due(engine: Engine, wave_id: str, rows: list[dict[str, Any]], quiet_since: dt.datetime) -> bool:
    """Whether an answer in `rows` has been left alone since `quiet_since`, or a band email waits
    for a retry."""
    return any(r["updated_at"] <= quiet_since for r in rows) or _pending(engine, wave_id) > 0


def _pending(engine: Engine, wave_id: str) -> int:
    row = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n FROM outbox WHERE wave_id = :w AND kind IN :kinds AND status = 'pending'",
        w=wave_id,
        kinds=list(BAND_KINDS.values()),
    )
    return int(row["n"]) if row else 0
