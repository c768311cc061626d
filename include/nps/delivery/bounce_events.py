"""Late bounces and complaints: events that arrive after the SMTP session, recorded once and applied.

Sources: delivery status notifications and abuse reports in the bounce mailbox (`bounce_mailbox.py`) and
ESP webhooks (`web/esp_webhooks.py`). A bounce sets `contacts.bounced_at`, a complaint
`contacts.opted_out_at`, for every contact with that address (case-insensitive), so the outbox
suppresses every later customer email to it. Each event has a key of its source's own id: an event
received twice (a mailbox read again, a webhook retried) is recorded and applied once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from email.utils import getaddresses

from sqlalchemy import Engine, text

from include.nps.core import storage

BOUNCE, COMPLAINT, OTHER = "bounce", "complaint", "other"
EVENTS = (BOUNCE, COMPLAINT, OTHER)
MAX_REASON = 1000


@dataclass(frozen=True)
class DeliveryEvent:
    """One recipient's late bounce, complaint or other permanent failure, as a source reported it.

    `message_id` is the Message-ID of the email it is about (angle brackets included), when the
    report carries it; `address` may be None when a complaint report hides the recipient."""

    source: str
    event: str
    address: str | None
    key: str
    message_id: str | None = None
    status: str | None = None
    reason: str | None = None
    occurred_at: dt.datetime | None = None


@dataclass(frozen=True)
class Recorded:
    """What recording a batch did: events new to the DB, contacts newly bounced or opted out."""

    new: int = 0
    bounced: int = 0
    opted_out: int = 0


def event_key(source: str, *parts: str | None) -> str:
    """A fixed-length key for an event: its source and a digest of the source's own identifiers."""
    digest = hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()
    return f"{source}:{digest}"


def clean_address(value: str | None) -> str | None:
    """The bare address in a recipient field (`rfc822; a@b`, `Name <a@b>`), or None when there is none."""
    if not value:
        return None
    value = value.rpartition(";")[2] if ";" in value else value
    found = [addr for _, addr in getaddresses([value]) if "@" in addr]
    return found[0].strip()[:254] if found else None


def clean_message_id(value: str | None) -> str | None:
    """A Message-ID as the outbox keeps it: `<local@domain>`, or None."""
    if not value:
        return None
    value = " ".join(str(value).split())
    start, end = value.find("<"), value.find(">")
    if 0 <= start < end:
        return value[start : end + 1][:254]
    return f"<{value}>"[:254] if value and " " not in value else None


def clean_text(value: object, limit: int = MAX_REASON) -> str | None:
    """Free text of a report (a diagnostic, a reason) on one line, cut at `limit`."""
    if value is None:
        return None
    collapsed = " ".join(str(value).split())
    return collapsed[:limit] or None


def record(engine: Engine, events: Iterable[DeliveryEvent]) -> Recorded:
    """Record new events, link each to the email it is about and apply bounces and complaints to
    contacts, all in one transaction; events already recorded are left alone."""
    now = storage.utcnow()
    rows = [_row(event, now) for event in events if event.event in EVENTS and (event.address or event.message_id)]
    if not rows:
        return Recorded()
    with engine.begin() as conn:
        conn.execute(text(storage.query("record_delivery_event")), rows)
        conn.execute(text(storage.query("address_from_outbox")))
        for statement in storage.split_statements(storage.query("link_delivery_events")):
            conn.execute(text(statement))
        bounced = conn.execute(text(storage.query("apply_bounce_events")), {"now": now}).rowcount
        opted_out = conn.execute(text(storage.query("apply_complaint_events")), {"now": now}).rowcount
        new = conn.execute(text(storage.query("mark_delivery_events_applied")), {"now": now}).rowcount
    return Recorded(new=new, bounced=bounced, opted_out=opted_out)


def _row(event: DeliveryEvent, now: dt.datetime) -> dict:
    row = asdict(event)
    return {
        "event_key": row.pop("key"),
        **row,
        "status": clean_text(event.status, 32),
        "reason": clean_text(event.reason),
        "occurred_at": storage.as_utc(event.occurred_at),
        "received_at": now,
    }
