"""The bounce mailbox: late bounces (RFC 3464 delivery status notifications) and complaints (RFC 5965
abuse reports) read over IMAP and applied as suppressions (`bounce_events.record`).

A DSN recipient whose Action is `failed` with a 5.1.x Status (a bad mailbox, domain or address, as
`transports.is_bounce` reads an SMTP reply) bounces the address; another 5.x.x is recorded as `other`
and suppresses nothing; 4.x.x statuses and `delayed`, `delivered`, `relayed` or `expanded` actions
are ignored. An abuse report (Feedback-Type `abuse`) is a complaint: an opt-out. Each report is
linked to the email it returns by that email's Message-ID.

A report read is flagged \\Seen (and moved to the connection's `processed_folder`, when set) after
its events are recorded; a crash in between only means it is read again, and its events have the
same keys. A message that is no report (an auto-reply, garbage) is left unread and counted.

The mailbox is an Airflow connection (`nps_bounces`, type imap or generic): host, port, login,
password, extra `{"folder": "INBOX", "ssl": true, "starttls": false, "processed_folder": null}`.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import logging
import re
import ssl as ssl_module
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any, cast

from sqlalchemy import Engine

from include.nps.delivery import bounce_events
from include.nps.delivery.bounce_events import BOUNCE, COMPLAINT, OTHER, DeliveryEvent

log = logging.getLogger(__name__)

BOUNCES_CONN_ID = "nps_bounces"
MAX_MESSAGES = 500  # read per poll; the rest waits for the next
STATUS_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")  # RFC 3463 class.subject.detail
COMPLAINT_TYPES = {"abuse", "fraud"}  # RFC 5965 feedback types that mean "this is spam to me"


class NotAReport(ValueError):
    """A mailbox message that is no delivery status notification or abuse report."""


@dataclass(frozen=True)
class MailboxSettings:
    """Where the bounce mailbox is: an IMAP server, its login and folders."""

    host: str
    login: str
    password: str = field(repr=False)
    port: int | None = None
    folder: str = "INBOX"
    ssl: bool = True
    starttls: bool = False
    processed_folder: str | None = None
    timeout: float = 60

    @classmethod
    def from_connection(cls, conn: Any) -> MailboxSettings:
        """From an Airflow connection: host, port, login, password and extra (folder, ssl, ...)."""
        extra = conn.extra_dejson or {}
        return cls(
            host=conn.host,
            login=conn.login or "",
            password=conn.password or "",
            port=conn.port,
            folder=extra.get("folder", "INBOX"),
            ssl=_flag(extra.get("ssl", True)),
            starttls=_flag(extra.get("starttls", False)),
            processed_folder=extra.get("processed_folder") or None,
            timeout=float(extra.get("timeout", 60)),
        )


@dataclass
class PollResult:
    """What one poll did: messages read, reports recorded, ignored and unparseable, and effects."""

    read: int = 0
    reports: int = 0
    ignored: int = 0
    unparseable: int = 0
    bounces: int = 0
    complaints: int = 0
    other: int = 0
    new_events: int = 0
    bounced_contacts: int = 0
    opted_out_contacts: int = 0


def poll_bounce_mailbox(engine: Engine, conn_id: str = BOUNCES_CONN_ID, max_messages: int = MAX_MESSAGES) -> dict:
    """Read the unread reports of the mailbox of Airflow connection `conn_id` and apply them."""
    from airflow.sdk import BaseHook

    settings = MailboxSettings.from_connection(BaseHook.get_connection(conn_id))
    return asdict(poll_mailbox(engine, settings, max_messages))


def poll_mailbox(engine: Engine, settings: MailboxSettings, max_messages: int = MAX_MESSAGES) -> PollResult:
    """Read up to `max_messages` unread messages, record their events, then mark the reports read."""
    result = PollResult()
    with _imap(settings) as imap:
        _check(imap.select(_quoted(settings.folder)), "SELECT")
        uids = _check(imap.uid("SEARCH", "UNSEEN"), "SEARCH")[0].split()[:max_messages]
        events, done = [], []
        for uid in uids:
            result.read += 1
            raw = _fetch(imap, uid)
            try:
                found = parse_report(raw)
            except Exception as exc:  # one bad message never stops the poll; it stays unread
                result.unparseable += 1
                log.warning("bounce mailbox: message UID %s left unread: %s", uid.decode(), exc)
                continue
            result.reports += 1
            result.ignored += int(not found)
            events.extend(found)
            done.append(uid)
        recorded = bounce_events.record(engine, events)
        _mark_processed(imap, done, settings.processed_folder)
    result.bounces = sum(e.event == BOUNCE for e in events)
    result.complaints = sum(e.event == COMPLAINT for e in events)
    result.other = sum(e.event == OTHER for e in events)
    result.new_events = recorded.new
    result.bounced_contacts, result.opted_out_contacts = recorded.bounced, recorded.opted_out
    log.info("bounce mailbox %s: %s", settings.folder, result)
    return result


def parse_report(raw: bytes) -> list[DeliveryEvent]:
    """The events of one mailbox message: a DSN's failed recipients or an abuse report's complaint;
    [] for a report with nothing to record (delayed, transient). Raises NotAReport otherwise."""
    message = email.message_from_bytes(raw)
    if message.get_content_type() != "multipart/report":
        raise NotAReport(f"content type {message.get_content_type()}")
    report_type = str(message.get_param("report-type") or "").lower()
    if report_type == "delivery-status":
        return _dsn_events(message, raw)
    if report_type == "feedback-report":
        return _complaint_events(message, raw)
    raise NotAReport(f"report type {report_type or 'missing'}")


def dsn_event(action: str, status: str) -> str | None:
    """What a DSN recipient's Action and Status mean: a bounce, another permanent failure, or None."""
    code = STATUS_CODE.match(status.strip())
    if action.strip().lower() != "failed" or code is None or code.group(1) != "5":
        return None
    return BOUNCE if int(code.group(2)) == 1 and int(code.group(3)) <= 10 else OTHER


def _dsn_events(message: Message, raw: bytes) -> list[DeliveryEvent]:
    status_part = _part(message, "message/delivery-status")
    blocks = status_part.get_payload() if status_part is not None else None
    if not isinstance(blocks, list) or not blocks:
        raise NotAReport("delivery-status part missing or empty")
    blocks = cast(list[Message], blocks)  # the parser gives a message/* part's payload as Messages
    recipients = [block for block in blocks if block.get("Action")]
    if not recipients:
        raise NotAReport("delivery-status names no recipient")
    original_id = _original_message_id(message)
    report_id = message.get("Message-ID") or hashlib.sha256(raw).hexdigest()
    events = []
    for block in recipients:
        address = bounce_events.clean_address(block.get("Original-Recipient")) or bounce_events.clean_address(
            block.get("Final-Recipient")
        )
        status = (block.get("Status") or "").strip()
        kind = dsn_event(block.get("Action", ""), status)
        if kind is None or address is None:
            continue
        events.append(
            DeliveryEvent(
                source="dsn",
                event=kind,
                address=address,
                key=bounce_events.event_key("dsn", report_id, address.lower(), status),
                message_id=original_id,
                status=status,
                reason=block.get("Diagnostic-Code"),
                occurred_at=_date(block.get("Last-Attempt-Date") or message.get("Date")),
            )
        )
    return events


def _complaint_events(message: Message, raw: bytes) -> list[DeliveryEvent]:
    part = _part(message, "message/feedback-report")
    payload = part.get_payload() if part is not None else None
    # The parser gives a message/* part's payload as Messages.
    fields = cast(Message, payload[0]) if isinstance(payload, list) and payload else None
    if fields is None or not fields.get("Feedback-Type"):
        raise NotAReport("feedback-report part missing or without Feedback-Type")
    original = _original_headers(message)
    original_id = bounce_events.clean_message_id(original.get("Message-ID")) if original else None
    # Feedback loops often redact the recipient: with a Message-ID, the email's own address is used.
    address = bounce_events.clean_address(fields.get("Original-Rcpt-To"))
    if address is None and original_id is None and original is not None:
        address = bounce_events.clean_address(original.get("To"))
    if address is None and original_id is None:
        raise NotAReport("feedback report names neither the recipient nor the Message-ID")
    feedback_type = fields["Feedback-Type"].strip().lower()
    report_id = message.get("Message-ID") or hashlib.sha256(raw).hexdigest()
    return [
        DeliveryEvent(
            source="arf",
            event=COMPLAINT if feedback_type in COMPLAINT_TYPES else OTHER,
            address=address,
            key=bounce_events.event_key("arf", report_id, (address or "").lower()),
            message_id=original_id,
            status=feedback_type,
            reason=fields.get("User-Agent"),
            occurred_at=_date(fields.get("Arrival-Date") or fields.get("Received-Date") or message.get("Date")),
        )
    ]


def _part(message: Message, content_type: str) -> Message | None:
    return next((part for part in message.walk() if part.get_content_type() == content_type), None)


def _original_headers(message: Message) -> Message | None:
    """The headers of the email a report returns: a message/rfc822 part or a text/rfc822-headers one."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])  # the parser gives a message/* part's payload as Messages
        if kind == "text/rfc822-headers":
            body = part.get_payload(decode=True)  # bytes, or None when empty
            text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def _original_message_id(message: Message) -> str | None:
    original = _original_headers(message)
    return bounce_events.clean_message_id(original.get("Message-ID")) if original is not None else None


def _date(value: str | None) -> Any:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: tuple[str, list], command: str) -> list:
    status, data = response
    if status != "OK":
        raise imaplib.IMAP4.error(f"{command} refused: {data!r}")
    return data


@contextmanager
def _imap(settings: MailboxSettings) -> Iterator[imaplib.IMAP4]:
    if settings.ssl:
        context = ssl_module.create_default_context()
        imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            settings.host, settings.port or 993, ssl_context=context, timeout=settings.timeout
        )
    else:
        imap = imaplib.IMAP4(settings.host, settings.port or 143, timeout=settings.timeout)
        if settings.starttls:
            imap.starttls(ssl_module.create_default_context())
    try:
        imap.login(settings.login, settings.password)
        yield imap
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            log.debug("bounce mailbox: logout failed", exc_info=True)


def _fetch(imap: imaplib.IMAP4, uid: bytes) -> bytes:
    """The whole message, without setting \\Seen (BODY.PEEK): only a recorded report is marked read."""
    data = _check(imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])"), "FETCH")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return b""


def _mark_processed(imap: imaplib.IMAP4, uids: list[bytes], processed_folder: str | None) -> None:
    if not uids:
        return
    uid_set = b",".join(uids).decode()
    _check(imap.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Seen)"), "STORE")
    if not processed_folder:
        return
    folder = _quoted(processed_folder)
    imap.create(folder)  # refused (NO) when it exists already: either way it is there
    if "MOVE" in imap.capabilities:
        _check(imap.uid("MOVE", uid_set, folder), "MOVE")
        return
    _check(imap.uid("COPY", uid_set, folder), "COPY")
    _check(imap.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
    _check(imap.expunge(), "EXPUNGE")
