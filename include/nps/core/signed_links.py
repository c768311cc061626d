"""Signed personal links and form tokens: HMAC-SHA256 with a deployment secret.

A link token names an invitation (wave, contact) and, optionally, when it expires; it is only
valid for the purpose it was signed for (survey or unsubscribe). A CSRF token is bound to one
link token and to the time the form was served.

The secret comes from the environment (`NPS_SECRET_KEY`); `NPS_SECRET_KEY_PREVIOUS` is still
accepted so a secret can be rotated without breaking links already sent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass

SECRET_ENV = "NPS_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
PREVIOUS_SECRET_ENV = "NPS_SECRET_KEY_PREVIOUS"  # noqa: S105
PURPOSES = ("survey", "unsubscribe")
CSRF_PURPOSE = "csrf"


class InvalidToken(ValueError):
    """A link that was not issued by this deployment, or was altered."""


class ExpiredToken(InvalidToken):
    """A genuine link whose validity has ended."""


@dataclass(frozen=True)
class Invitation:
    wave_id: str
    contact_id: str


def _secrets() -> list[bytes]:
    previous = os.environ.get(PREVIOUS_SECRET_ENV)
    return [_current_secret(), *([previous.encode()] if previous else [])]


def _current_secret() -> bytes:
    current = os.environ.get(SECRET_ENV)
    if not current:
        raise RuntimeError(f"{SECRET_ENV} is not set: survey links cannot be signed or checked")
    return current.encode()


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(URL_SAFE).rstrip(b"=").decode()


URL_SAFE = bytes.maketrans(b"+/", b"-_")  # base64's alphabet for URLs (RFC 4648 section 5)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, purpose: str, payload: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(payload)
    return mac.digest()[:18]


@functools.lru_cache(maxsize=16)
def _keyed(secret: bytes, purpose: str) -> hmac.HMAC:
    """HMAC-SHA256 keyed with `secret`, the purpose already fed: copied for each token, so the key
    is prepared once per process, not once per link."""
    return hmac.new(secret, purpose.encode() + b"\x00", hashlib.sha256)


def _signed_by_us(purpose: str, payload: bytes, signature: bytes) -> bool:
    return any(hmac.compare_digest(_signature(s, purpose, payload), signature) for s in _secrets())


def sign(purpose: str, wave_id: str, contact_id: str, expires_at: dt.datetime | None = None) -> str:
    """A link token for (wave, contact), valid for `purpose` until `expires_at` (or for good)."""
    expiry = str(int(expires_at.timestamp())) if expires_at else ""
    payload = f"{wave_id}\x00{contact_id}\x00{expiry}".encode()
    return f"{_b64(payload)}.{_b64(_signature(_current_secret(), purpose, payload))}"


def verify(purpose: str, token: str, now: dt.datetime | None = None) -> Invitation:
    """The invitation a token names; InvalidToken if forged or altered, ExpiredToken if too old."""
    try:
        payload_part, signature_part = token.split(".", 1)
        payload, signature = _unb64(payload_part), _unb64(signature_part)
        wave_id, contact_id, expiry = payload.decode().split("\x00")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not _signed_by_us(purpose, payload, signature):
        raise InvalidToken("bad signature")
    if expiry and int(expiry) <= (now or dt.datetime.now(dt.UTC)).timestamp():
        raise ExpiredToken("link expired")
    return Invitation(wave_id=wave_id, contact_id=contact_id)


def csrf_token(link_token: str, now: dt.datetime | None = None) -> str:
    """A token for the form served under `link_token`, stamped with the time it was served."""
    issued = str(int((now or dt.datetime.now(dt.UTC)).timestamp()))
    payload = f"{link_token}\x00{issued}".encode()
    return f"{issued}.{_b64(_signature(_current_secret(), CSRF_PURPOSE, payload))}"


def csrf_valid(link_token: str, value: str | None, max_age: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Whether `value` was issued for this link's form within `max_age`."""
    try:
        issued, signature = (value or "").split(".", 1)
        age = (now or dt.datetime.now(dt.UTC)).timestamp() - int(issued)
        return 0 <= age <= max_age.total_seconds() and _signed_by_us(
            CSRF_PURPOSE, f"{link_token}\x00{issued}".encode(), _unb64(signature)
        )
    except (ValueError, TypeError):
        return False
