"""Signed personal survey links: an HMAC over (wave, contact) with a deployment secret.

The secret comes from the environment (`NPS_SECRET_KEY`); `NPS_SECRET_KEY_PREVIOUS` is still
accepted so a secret can be rotated without breaking links already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

SECRET_ENV = "NPS_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
PREVIOUS_SECRET_ENV = "NPS_SECRET_KEY_PREVIOUS"  # noqa: S105
PURPOSES = ("survey", "unsubscribe")


class InvalidToken(ValueError):
    """A link that was not issued by this deployment, or was altered."""


@dataclass(frozen=True)
class Invitation:
    wave_id: str
    contact_id: str


def _secrets() -> list[bytes]:
    current = os.environ.get(SECRET_ENV)
    if not current:
        raise RuntimeError(f"{SECRET_ENV} is not set: survey links cannot be signed or checked")
    previous = os.environ.get(PREVIOUS_SECRET_ENV)
    return [s.encode() for s in (current, previous) if s]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:18]


def sign(purpose: str, wave_id: str, contact_id: str) -> str:
    payload = f"{wave_id}\x00{contact_id}".encode()
    return f"{_b64(payload)}.{_b64(_signature(_secrets()[0], purpose, payload))}"


def verify(purpose: str, token: str) -> Invitation:
    """The invitation a token names, or InvalidToken."""
    try:
        payload_part, signature_part = token.split(".", 1)
        payload, signature = _unb64(payload_part), _unb64(signature_part)
        wave_id, contact_id = payload.decode().split("\x00", 1)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not any(hmac.compare_digest(_signature(s, purpose, payload), signature) for s in _secrets()):
        raise InvalidToken("bad signature")
    return Invitation(wave_id=wave_id, contact_id=contact_id)
