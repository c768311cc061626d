"""Delivery channels: SMTP email and chat webhooks, through Airflow connections.

A transport sends one payload and says how it failed: `PermanentFailure` (never retried: the
address is rejected, the payload refused) or `TransientFailure` (retried later with backoff).
"""

from __future__ import annotations

import smtplib
from contextlib import AbstractContextManager, suppress
from email.message import EmailMessage
from typing import Any, Protocol


class PermanentFailure(Exception):
    """The message can never be delivered as it is (bounced, rejected)."""


class TransientFailure(Exception):
    """The message may be delivered if tried again later."""


class Transport(Protocol):
    def send(self, payload: Any) -> None: ...


class SmtpTransport(AbstractContextManager):
    """One SMTP session (from the `nps_smtp` connection) for many messages."""

    def __init__(self, conn_id: str = "nps_smtp") -> None:
        self.conn_id = conn_id
        self._hook: Any = None

    def __enter__(self) -> SmtpTransport:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        try:
            self._hook = SmtpHook(smtp_conn_id=self.conn_id).__enter__()
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientFailure(f"cannot reach the SMTP server: {exc}") from exc
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with suppress(OSError, smtplib.SMTPException):
            self._hook.__exit__(*exc_info)

    def send(self, payload: EmailMessage) -> None:
        # The provider's send_email_smtp retries every error, rejections included, and cannot
        # carry a text part or List-Unsubscribe; the hook still owns connection, TLS and auth.
        client: smtplib.SMTP = self._hook._smtp_client
        try:
            refused = client.send_message(payload)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(_smtp_reason(exc.recipients)) from exc
        except smtplib.SMTPResponseException as exc:
            error = f"{exc.smtp_code} {exc.smtp_error!r}"
            raise (PermanentFailure if 500 <= exc.smtp_code < 600 else TransientFailure)(error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientFailure(str(exc) or type(exc).__name__) from exc
        if refused:
            raise PermanentFailure(_smtp_reason(refused))


def _smtp_reason(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {msg.decode(errors='replace')}" for addr, (code, msg) in refused.items())


class ChatTransport(AbstractContextManager):
    """A chat incoming webhook (Slack-compatible JSON) from an HTTP connection."""

    def __init__(self, conn_id: str = "nps_chat") -> None:
        self.conn_id = conn_id

    def __enter__(self) -> ChatTransport:
        from airflow.providers.http.hooks.http import HttpHook

        self._hook = HttpHook(method="POST", http_conn_id=self.conn_id)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def send(self, payload: dict) -> None:
        import requests

        try:
            response = self._hook.run(json=payload, extra_options={"check_response": False, "timeout": 30})
        except requests.RequestException as exc:
            raise TransientFailure(f"chat webhook unreachable: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientFailure(f"chat webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentFailure(f"chat webhook refused the message: {response.status_code} {response.text[:200]}")
