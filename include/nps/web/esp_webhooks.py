"""ESP event webhooks: late bounces and complaints posted by SendGrid and by Amazon SES (through SNS),
served by the survey form's app and applied as suppressions (`bounce_events.record`).

Each endpoint is off until its secret is configured: it answers 404 ("not configured") and records
nothing, so nobody can post made-up bounces or complaints and suppress customers. Which endpoints are
off, and the variable that turns each on, is logged when the app starts.

- `POST /hooks/sendgrid`, on with `NPS_SENDGRID_WEBHOOK_PUBLIC_KEY` (the base64 public key SendGrid
  shows for its signed Event Webhook): a JSON array of events. `bounce` of type `bounce` is a bounce
  (type `blocked`: recorded as other), `dropped` is recorded as other, `spamreport` is a complaint;
  every other event is ignored. A request is refused (403, nothing applied) unless its ECDSA
  signature (`X-Twilio-Email-Event-Webhook-Signature` over the `...-Timestamp` header and the raw
  body) verifies and that timestamp is within 10 minutes of now (a replayed old request is refused;
  one replayed sooner applies nothing new, as every event is recorded once).
- `POST /hooks/ses`, on with `NPS_SES_WEBHOOK_TOKEN`: an SNS HTTP(S) subscription whose URL carries
  `?token=<it>` (without it, or with another, 403). With `NPS_SES_TOPIC_ARNS` (comma-separated) other
  topics are refused. A `Notification` whose Message is an SES notification (or event) `Bounce` with
  bounceType Permanent is a bounce (Transient is ignored, Undetermined recorded as other);
  `Complaint` is a complaint, unless its feedback type is not-spam. A `SubscriptionConfirmation` is
  logged with its SubscribeURL for an operator to open: this app never fetches a URL a request names.

Bodies are limited to `NPS_BOUNCE_HOOK_MAX_BYTES` (default 2 MiB); each request is recorded in one
transaction and answered at once. This module never imports Airflow (the web app runs without it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from include.nps.delivery import bounce_events
from include.nps.delivery.bounce_events import BOUNCE, COMPLAINT, OTHER, DeliveryEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SNS_TYPE_HEADER = "x-amz-sns-message-type"
SENDGRID_WEBHOOK_ENV = "NPS_SENDGRID_WEBHOOK_PUBLIC_KEY"
SES_WEBHOOK_ENV = "NPS_SES_WEBHOOK_TOKEN"


class BodyTooLarge(Exception):
    """A webhook body over the limit."""


@dataclass(frozen=True)
class HookSettings:
    """The webhooks' limits and secrets, from the environment."""

    max_body_bytes: int = 2 * 1024 * 1024
    sendgrid_public_key: str | None = field(default=None, repr=False)
    ses_token: str | None = field(default=None, repr=False)
    ses_topic_arns: frozenset[str] = frozenset()
    sendgrid_max_skew_seconds: int = 600

    @classmethod
    def from_env(cls) -> HookSettings:
        env = os.environ.get
        topics = frozenset(t.strip() for t in env("NPS_SES_TOPIC_ARNS", "").split(",") if t.strip())
        return cls(
            max_body_bytes=int(env("NPS_BOUNCE_HOOK_MAX_BYTES", cls.max_body_bytes)),
            sendgrid_public_key=env(SENDGRID_WEBHOOK_ENV) or None,
            ses_token=env(SES_WEBHOOK_ENV) or None,
            ses_topic_arns=topics,
        )


def router(engine: Engine, settings: HookSettings | None = None) -> APIRouter:
    """The webhook routes, for `app.include_router`."""
    settings = settings or HookSettings.from_env()
    routes = APIRouter(prefix="/hooks")
    for name, secret, variable in (
        ("/hooks/sendgrid", settings.sendgrid_public_key, SENDGRID_WEBHOOK_ENV),
        ("/hooks/ses", settings.ses_token, SES_WEBHOOK_ENV),
    ):
        if secret is None:
            log.warning("ESP webhook %s is off (404); set %s to turn it on", name, variable)

    @routes.post("/sendgrid")
    async def sendgrid(request: Request) -> JSONResponse:
        if settings.sendgrid_public_key is None:
            return _answer(404, "not configured")
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, "body too large")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not sendgrid_timestamp_fresh(timestamp, time.time(), settings.sendgrid_max_skew_seconds):
            log.warning("SendGrid webhook: timestamp %r missing or too far from now; request refused", timestamp[:40])
            return _answer(403, "timestamp missing or too far from now")
        if not sendgrid_signature_ok(
            settings.sendgrid_public_key, request.headers.get(SIGNATURE_HEADER, ""), timestamp, body
        ):
            log.warning("SendGrid webhook: signature does not verify; request refused")
            return _answer(403, "signature does not verify")
        payload = _json(body)
        if not isinstance(payload, list):
            return _answer(400, "expected a JSON array of events")
        events = [e for item in payload if isinstance(item, dict) for e in sendgrid_events(item)]
        recorded = bounce_events.record(engine, events)
        return _answer(200, "ok", received=len(payload), **asdict(recorded))

    @routes.post("/ses")
    async def ses(request: Request, token: str | None = None) -> JSONResponse:
        if settings.ses_token is None:
            return _answer(404, "not configured")
        if not hmac.compare_digest((token or "").encode(), settings.ses_token.encode()):
            return _answer(403, "token missing or wrong")
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, "body too large")
        envelope = _json(body)
        if not isinstance(envelope, dict) or "Type" not in envelope:
            return _answer(400, "expected an SNS message")
        if settings.ses_topic_arns and envelope.get("TopicArn") not in settings.ses_topic_arns:
            return _answer(403, "topic not allowed")
        if envelope["Type"] in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
            log.warning(
                "SES webhook: %s for topic %s; to confirm, open %s",
                envelope["Type"],
                envelope.get("TopicArn"),
                envelope.get("SubscribeURL"),
            )
            return _answer(200, "logged")
        if envelope["Type"] != "Notification":
            return _answer(400, "unknown SNS message type")
        message = _json(str(envelope.get("Message", "")).encode())
        if not isinstance(message, dict):
            return _answer(400, "Message is not an SES notification")
        recorded = bounce_events.record(engine, ses_events(message, str(envelope.get("MessageId", ""))))
        return _answer(200, "ok", **asdict(recorded))

    return routes


def sendgrid_timestamp_fresh(timestamp: str, now: float, max_skew_seconds: int) -> bool:
    """Whether SendGrid's timestamp header (Unix seconds) is within `max_skew_seconds` of `now`."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    return abs(int(timestamp) - now) <= max_skew_seconds


def sendgrid_signature_ok(public_key: str, signature: str, timestamp: str, body: bytes) -> bool:
    """Whether SendGrid's ECDSA (P-256, SHA-256) signature of timestamp + body verifies with the key
    (base64 DER, as SendGrid shows it, or PEM)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    if not signature or not timestamp:
        return False
    try:
        key = (
            load_pem_public_key(public_key.encode())
            if "BEGIN" in public_key
            else load_der_public_key(base64.b64decode(public_key))
        )
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def sendgrid_events(item: dict[str, Any]) -> list[DeliveryEvent]:
    """The delivery event of one SendGrid webhook event, if it is a bounce, a drop or a spam report."""
    name = str(item.get("event", "")).lower()
    if name == "bounce":
        kind = OTHER if str(item.get("type", "bounce")).lower() == "blocked" else BOUNCE
    elif name == "dropped":
        kind = OTHER
    elif name == "spamreport":
        kind = COMPLAINT
    else:
        return []
    address = bounce_events.clean_address(str(item.get("email", "")))
    if address is None:
        return []
    own_id = str(item.get("sg_event_id") or json.dumps(item, sort_keys=True, default=str))
    return [
        DeliveryEvent(
            source="sendgrid",
            event=kind,
            address=address,
            key=bounce_events.event_key("sendgrid", own_id),
            message_id=bounce_events.clean_message_id(item.get("smtp-id")),
            status=str(item.get("status") or item.get("type") or name),
            reason=item.get("reason"),
            occurred_at=_unix_time(item.get("timestamp")),
        )
    ]


def ses_events(message: dict[str, Any], sns_message_id: str = "") -> list[DeliveryEvent]:
    """The delivery events of one SES notification (notificationType) or event (eventType)."""
    kind = str(message.get("notificationType") or message.get("eventType") or "")
    mail = message.get("mail")
    if not isinstance(mail, dict):
        mail = {}
    message_id = bounce_events.clean_message_id(_ses_message_id(mail))
    if kind == "Bounce":
        report = message.get("bounce") or {}
        bounce_type = str(report.get("bounceType", ""))
        if bounce_type == "Transient":
            return []
        event, people, status = (BOUNCE if bounce_type == "Permanent" else OTHER), "bouncedRecipients", bounce_type
    elif kind == "Complaint":
        report = message.get("complaint") or {}
        feedback = str(report.get("complaintFeedbackType") or "")
        event, people, status = (OTHER if feedback == "not-spam" else COMPLAINT), "complainedRecipients", feedback
    else:
        return []
    own_id = str(report.get("feedbackId") or sns_message_id)
    events = []
    for person in report.get(people) or []:
        person = person if isinstance(person, dict) else {}
        address = bounce_events.clean_address(str(person.get("emailAddress", "")))
        if address is None:
            continue
        events.append(
            DeliveryEvent(
                source="ses",
                event=event,
                address=address,
                key=bounce_events.event_key("ses", own_id, address.lower()),
                message_id=message_id,
                status=person.get("status") or status or None,
                reason=person.get("diagnosticCode") or report.get("bounceSubType"),
                occurred_at=_iso_time(report.get("timestamp")),
            )
        )
    return events


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    """The Message-ID header of the email SES sent (not SES's own `mail.messageId`)."""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return header.get("value")
    common = mail.get("commonHeaders")
    return common.get("messageId") if isinstance(common, dict) else None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _answer(status: int, detail: str, **counts: int) -> JSONResponse:
    return JSONResponse({"detail": detail, **counts}, status_code=status)


def _unix_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _iso_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
