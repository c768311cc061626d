"""Emails to customers and to colleagues, through the outbox.

One function sends one kind of email to a set of recipients: the rows go into the ledger first,
then every pending one is rendered in the recipient's locale and sent in one SMTP session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from include.nps.core import email_stencils, emails, fast_mime, i18n, signed_links, storage
from include.nps.core.connections import survey_base_url
from include.nps.core.emails import Attachment
from include.nps.delivery import outbox
from include.nps.delivery.transports import Transport
from include.nps.wave import data_checks, waves
from include.nps.wave.responses import BAND_KINDS
from include.nps.wave.waves import WaveParams

SURVEY_LINK_LIFETIME_AFTER_CLOSE = dt.timedelta(days=30)
MASS_MAILINGS = {  # wave-wide email kind: the milestone it completes
    "preannouncement": "preannounce",
    "invitation": "open",
    "reminder": "reminder",
    "flash_results": "flash",
}
SEND_WINDOWS = {  # kind: the milestones it must be sent after and before (None: open-ended)
    "preannouncement": (None, "close_at"),
    "invitation": ("open_at", "close_at"),
    "reminder": ("open_at", "close_at"),
    "flash_results": ("close_at", None),
    # Band emails go out in real time (nps_responses) while the wave is open, and at close.
    **{kind: ("open_at", None) for kind in BAND_KINDS.values()},
}


def survey_links(wave: WaveParams, contact_id: str) -> dict[str, Any]:
    """The personal survey link, one link per score, and the unsubscribe link.

    The survey link says "closed" after the wave closes and expires a while later; an
    unsubscribe link works for good."""
    base = survey_base_url()
    expires_at = wave.close_at + SURVEY_LINK_LIFETIME_AFTER_CLOSE
    survey_url = f"{base}/s/{signed_links.sign('survey', wave.wave_id, contact_id, expires_at)}"
    return {
        "survey_url": survey_url,
        "score_urls": [(score, f"{survey_url}?score={score}") for score in range(11)],
        "unsubscribe_url": f"{base}/u/{signed_links.sign('unsubscribe', wave.wave_id, contact_id)}",
    }


def trace_headers(wave_id: str, kind: str) -> dict[str, str]:
    """Headers that let support and mail filters tell which wave and step sent a message."""
    return {"X-NPS-Wave": wave_id, "X-NPS-Kind": kind}


def wave_context(wave: WaveParams) -> dict[str, Any]:
    return {
        "wave_id": wave.wave_id,
        "name": wave.wave_name,
        "product": wave.product,
        "open_at": wave.open_at,
        "close_at": wave.close_at,
        "pillars": wave.pillar_questions,
    }


def send_to_contacts(
    engine: Engine,
    wave: WaveParams,
    kind: str,
    contacts: list[dict[str, Any]],
    transport: Transport,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    sender: str | None = None,
) -> outbox.Outcome:
    """Send `kind` to each contact (dicts with contact_id, email, name, locale) once."""
    enqueue_contacts(engine, wave.wave_id, kind, contacts)
    return deliver_to_contacts(engine, wave, kind, contacts, transport, extra, sender)


def enqueue_contacts(
    engine: Engine, wave_id: str, kind: str, contacts: list[dict[str, Any]], chunk_size: int = outbox.CHUNK_SIZE
) -> list[int]:
    """Put `kind` for each contact in the ledger; return the chunks (one mapped send task each)."""
    outbox.enqueue(engine, wave_id, kind, [(c["contact_id"], c["email"]) for c in contacts], chunk_size=chunk_size)
    return outbox.chunks(engine, wave_id, kind)


def deliver_to_contacts(
    engine: Engine,
    wave: WaveParams,
    kind: str,
    contacts: list[dict[str, Any]],
    transport: Transport,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    sender: str | None = None,
    chunk: int | None = None,
    policy: outbox.DeliveryPolicy = outbox.DEFAULT_POLICY,
) -> outbox.Outcome:
    """Render and send the pending `kind` messages (of one chunk, when given) to these contacts,
    under the mailing's delivery `policy`. Each contact's name and links fill the stencil of their
    variant of the email (`email_stencils`), whose bytes are written directly (`fast_mime`)."""
    by_id = {c["contact_id"]: c for c in contacts}
    from_address = sender or wave.sender
    wave_id, shared = wave.wave_id, wave_context(wave)
    trace = trace_headers(wave_id, kind)

    def render(row: dict[str, Any]) -> Any:
        contact = reader(by_id.get(row["recipient"]) or _missing(row), wave)
        links = survey_links(wave, contact["contact_id"])
        own = {"contact": _personal(contact), **_personal_links(links)}
        context = {"wave": shared, **own, **(extra(contact) if extra else {})}
        email = email_stencils.render_email(kind, contact["locale"], row["address"], context)
        email.inline_images = context.get("inline_images", [])
        email.headers = {
            "List-Unsubscribe": f"<{links['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            **trace,
        }
        msg_id = emails.message_id(from_address, wave_id, kind, contact["contact_id"])
        return fast_mime.build_wire(email, from_address, msg_id)

    return outbox.deliver(engine, wave.wave_id, kind, render, transport, chunk, policy)


VARIANT_FIELDS = frozenset({"locale", "zone"})  # a contact's that choose their email's variant


def _personal(contact: dict[str, Any]) -> dict[str, Any]:
    """The contact with its own text (name, id, address, the time zone and country the zone was
    chosen by) marked `Personal` for the stencils; the language and the zone their times are written
    in, which choose the email's variant, as they are."""
    return {
        name: email_stencils.Personal(value)
        if isinstance(value, str) and value and name not in VARIANT_FIELDS
        else value
        for name, value in contact.items()
    }


def _personal_links(links: dict[str, Any]) -> dict[str, Any]:
    personal = email_stencils.Personal
    return {
        "survey_url": personal(links["survey_url"]),
        "score_urls": [(score, personal(url)) for score, url in links["score_urls"]],
        "unsubscribe_url": personal(links["unsubscribe_url"]),
    }


def reader(contact: dict[str, Any], wave: WaveParams) -> dict[str, Any]:
    """A contact as the templates read them: a blank name as None (the templates then greet without
    one), and `zone`, the time zone their times are written in (their own `timezone`, else their
    account's country's, else the wave country's)."""
    name = contact.get("name")
    zone = i18n.reader_zone(contact.get("timezone"), contact.get("account_country"), wave.country)
    return {**contact, "name": name.strip() or None if isinstance(name, str) else None, "zone": zone}


def send_internal(
    engine: Engine,
    wave: WaveParams,
    kind: str,
    recipients: list[str],
    context: dict[str, Any],
    transport: Transport,
    attachments: list[Attachment] | None = None,
    template: str | None = None,
    personal: Callable[[str], tuple[dict[str, Any], list[Attachment]]] | None = None,
    inline_images: list[Attachment] | None = None,
) -> outbox.Outcome:
    """Send `kind` (in English, from the `template` emails, by default named as the kind) to colleagues.

    `personal(address)` adds each recipient's own context and attachments to the shared ones;
    `inline_images` are shown in the HTML part (`<img src="cid:...">`)."""
    outbox.enqueue(engine, wave.wave_id, kind, [(address, address) for address in recipients])

    def render(row: dict[str, Any]) -> Any:
        own_context, own_attachments = personal(row["address"]) if personal else ({}, [])
        full_context = {"wave": wave_context(wave), "recipient": row["address"], **context, **own_context}
        email = emails.render_email(template or kind, i18n.DEFAULT_LOCALE, row["address"], full_context)
        email.attachments = [*(attachments or []), *own_attachments]
        email.inline_images = list(inline_images or [])
        email.headers = trace_headers(wave.wave_id, kind)
        msg_id = emails.message_id(wave.sender, wave.wave_id, kind, row["address"])
        return emails.build_mime(email, wave.sender, msg_id)

    return outbox.deliver(engine, wave.wave_id, kind, render, transport)


def _missing(row: dict[str, Any]) -> dict[str, Any]:
    from include.nps.delivery.transports import PermanentFailure

    raise PermanentFailure(f"contact {row['recipient']} is no longer in the wave's audience")


def mailing_recipients(engine: Engine, wave_id: str, kind: str) -> list[dict[str, Any]]:
    """Who a wave-wide mailing goes to: the reminder to those invited who have not answered, the
    others to the whole audience."""
    return storage.fetch_all(engine, _recipients_query(kind), wave_id=wave_id)


def count_recipients(engine: Engine, wave_id: str, kind: str) -> int:
    """How many `mailing_recipients` there are, counted by the database."""
    row = storage.fetch_one(engine, f"SELECT COUNT(*) AS n FROM ({_recipients_query(kind)}) r", wave_id=wave_id)
    return int(row["n"]) if row else 0


def enqueue_mailing(engine: Engine, wave_id: str, kind: str, chunk_size: int) -> list[int]:
    """Put a wave-wide email in the ledger for every recipient, in one statement (no row goes
    through Python), numbered into chunks of `chunk_size`; return the chunks."""
    sql = storage.query("enqueue_recipients").replace("{recipients}", _recipients_query(kind))
    params = {"wave_id": wave_id, "kind": kind, "chunk_size": chunk_size, "created_at": storage.utcnow()}
    storage.execute(engine, sql, params)
    return outbox.chunks(engine, wave_id, kind)


def _recipients_query(kind: str) -> str:
    return storage.query("reminder_recipients" if kind == "reminder" else "audience_recipients")


def delivery_window_end(engine: Engine, wave: WaveParams, kind: str) -> dt.datetime:
    """When a mailing stops retrying deferred messages: its window's length after its planned time,
    or after its ledger rows were prepared when that was later (a mailing run late gets its window)."""
    planned = waves.milestone_due(engine, wave.wave_id, MASS_MAILINGS[kind])
    row = storage.fetch_one(
        engine, "SELECT MIN(created_at) AS at FROM outbox WHERE wave_id = :w AND kind = :k", w=wave.wave_id, k=kind
    )
    prepared = (storage.as_utc(row["at"]) if row and row["at"] else None) or planned
    return max(planned, prepared) + dt.timedelta(hours=wave.delivery_window_hours)


def check_outbox(engine: Engine, wave_id: str, kind: str, expected: int) -> None:
    """One settled ledger row per recipient, sent within the kind's window, few enough undelivered
    (the wave's `max_undelivered_share`): checked and kept."""
    import pandas as pd

    wave = waves.load_params(engine, wave_id)
    columns = ["recipient", "status", "sent_at", "delivered", "sent_to_suppressed"]
    ledger = storage.fetch_all(engine, storage.query("ledger_check"), wave_id=wave_id, kind=kind)
    frame = pd.DataFrame(ledger, columns=columns)
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True, format="mixed")
    frame["delivered"] = frame["delivered"].astype("Int64")
    start, end = (getattr(wave, name) if name else None for name in SEND_WINDOWS.get(kind, (None, None)))
    suite = data_checks.outbox_suite(expected, (start, end), wave.thresholds.max_undelivered_share)
    data_checks.run_check(engine, wave_id, kind, "outbox", frame, suite, row_key="recipient")
