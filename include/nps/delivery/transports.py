"""Delivery channels, through Airflow connections: SMTP email, chat webhooks (Slack-compatible
JSON over HTTP; Slack through the Slack provider; Microsoft Teams) and CRM tasks over HTTP.

A transport sends one payload and says how it failed: `PermanentFailure` (never retried: the
address is rejected, the payload refused; `bounce` when the recipient's address itself is refused)
or `TransientFailure` (retried later with backoff).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import re
import smtplib
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from email.message import EmailMessage
from typing import Any, NoReturn, Protocol

from include.nps.core.fast_mime import WireMessage
from include.nps.core.rate_limits import Pacer


class PermanentFailure(Exception):
    """The message can never be delivered as it is (rejected, refused). `bounce`: the recipient's
    address itself is refused, so every later message to that contact is suppressed."""

    def __init__(self, message: str = "", *, bounce: bool = False) -> None:
        super().__init__(message)
        self.bounce = bounce


class TransientFailure(Exception):
    """The message may be delivered if tried again later; `retry_after`: not before these seconds
    (a server's Retry-After)."""

    def __init__(self, message: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transport(Protocol):
    def send(self, payload: Any) -> None: ...


ENHANCED_STATUS = re.compile(r"^[245]\.(\d{1,3})\.(\d{1,3})")  # RFC 3463 class.subject.detail
BOUNCE_REPLIES = (550, 551, 553)  # a refused mailbox at RCPT when the reply has no enhanced code
SLACK_POSTS_PER_SECOND = 1.0  # Slack's documented limit for incoming webhooks
SESSION_GONE = (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError, TimeoutError)


def is_bounce(code: int, reply: str) -> bool:
    """Whether a refusal at RCPT means the address itself is bad: 5yz with an enhanced status
    5.1.0 to 5.1.10 (mailbox, domain or address syntax), or, with no enhanced code, 550/551/553."""
    if not 500 <= code < 600:
        return False
    enhanced = ENHANCED_STATUS.match(reply.strip())
    if enhanced is None:
        return code in BOUNCE_REPLIES
    return int(enhanced.group(1)) == 1 and int(enhanced.group(2)) <= 10


def smtp_reply_failure(code: int, reply: str, at_rcpt: bool = False) -> Exception:
    """The failure an SMTP reply stands for (RFC 5321): 4yz at any stage may pass later
    (TransientFailure); 5yz never will (PermanentFailure, a bounce only for a bad address at RCPT)."""
    reason = f"{code} {reply}"
    if 500 <= code < 600:
        return PermanentFailure(reason, bounce=at_rcpt and is_bounce(code, reply))
    return TransientFailure(reason)


def smtp_refusal_failure(refused: dict[str, tuple[int, bytes]]) -> Exception:
    """The failure of recipients refused at RCPT: transient if any refusal is 4yz, a bounce only
    when every refusal is one."""
    replies = [(code, msg.decode(errors="replace")) for code, msg in refused.values()]
    reason = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in zip(refused, replies, strict=True))
    if any(not 500 <= code < 600 for code, _ in replies):
        return TransientFailure(reason)
    return PermanentFailure(reason, bounce=all(is_bounce(code, text) for code, text in replies))


class SmtpTransport(AbstractContextManager):
    """One SMTP session (from the `nps_smtp` connection) for many messages. A 421 or a dropped
    connection fails the message it hit (transiently: it may have arrived, so it is not resent
    here) and the next message opens a new session."""

    def __init__(self, conn_id: str = "nps_smtp") -> None:
        self.conn_id = conn_id
        self._hook: Any = None
        self.sessions = 0  # sessions opened, the first included
        self.pacer: Pacer | None = None

    def __enter__(self) -> SmtpTransport:
        self._open_session()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._close_session()

    def send(self, payload: EmailMessage | WireMessage) -> None:
        """Send one message (its bytes as they are, for a `WireMessage`) over the open session."""
        if self._hook is None:
            self._open_session()
        try:
            if isinstance(payload, WireMessage):
                refused = self._hook.send_bytes(payload.envelope_from, payload.recipients, payload.data)
            else:
                refused = self._hook.send_message(payload)
        except smtplib.SMTPRecipientsRefused as exc:
            if any(code == 421 for code, _ in exc.recipients.values()):
                self._close_session()
            raise smtp_refusal_failure(exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._close_session()
            raise smtp_reply_failure(exc.smtp_code, _text(exc.smtp_error)) from exc
        except SESSION_GONE as exc:
            self._close_session()
            raise TransientFailure(f"the SMTP session was lost: {exc or type(exc).__name__}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientFailure(str(exc) or type(exc).__name__) from exc
        if refused:  # some recipients took it: never retried, or they would get it twice
            failure = smtp_refusal_failure(refused)
            raise PermanentFailure(str(failure), bounce=getattr(failure, "bounce", False))

    def _open_session(self) -> None:
        """A new session through the provider's hook (connection, TLS and auth are the hook's); the
        connection's extra `rate_per_second` paces this session's sends."""
        from airflow.providers.common.compat.sdk import AirflowException

        hook = _ledger_smtp_hook()(smtp_conn_id=self.conn_id)
        try:
            self._hook = hook.__enter__()
        except (OSError, smtplib.SMTPException, AirflowException) as exc:
            _close_hook(hook)
            raise TransientFailure(f"cannot reach the SMTP server: {exc}") from exc
        self.sessions += 1
        if self.pacer is None:
            self.pacer = Pacer(_rate(self._hook.conn.extra_dejson))

    def _close_session(self) -> None:
        if self._hook is not None:
            _close_hook(self._hook)
            self._hook = None


def _rate(extra: dict[str, Any]) -> float | None:
    """Messages per second a connection's extra `rate_per_second` allows (None: no limit)."""
    rate = extra.get("rate_per_second")
    return float(rate) if rate not in (None, "", 0, "0") else None


@functools.cache
def _ledger_smtp_hook() -> type:
    """The SMTP provider's hook with a send for a ready-made message that reports refused recipients
    and does not retry (the ledger does): the provider's `send_email_smtp` builds its own HTML-only
    message and retries every error, rejections included."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class LedgerSmtpHook(SmtpHook):
        def send_message(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
            """Send `message` once over the open session; the recipients refused, by address."""
            if self._smtp_client is None:
                raise smtplib.SMTPServerDisconnected("the SMTP session is not open")
            assert isinstance(self._smtp_client, smtplib.SMTP)  # opened by get_conn(), not the async client
            return self._smtp_client.send_message(message)

        def send_bytes(self, sender: str, recipients: tuple[str, ...], data: bytes) -> dict[str, tuple[int, bytes]]:
            """Send a message's bytes once over the open session, its MAIL, RCPT and DATA commands
            in one write when the server offers PIPELINING; the recipients refused, by address."""
            client = self._smtp_client
            if client is None:
                raise smtplib.SMTPServerDisconnected("the SMTP session is not open")
            assert isinstance(client, smtplib.SMTP)
            client.ehlo_or_helo_if_needed()
            if client.has_extn("pipelining"):
                return pipelined_sendmail(client, sender, recipients, data)
            return client.sendmail(sender, list(recipients), data)

    return LedgerSmtpHook


def pipelined_sendmail(
    client: smtplib.SMTP, sender: str, recipients: tuple[str, ...], data: bytes
) -> dict[str, tuple[int, bytes]]:
    """`smtplib.SMTP.sendmail` with RFC 2920 pipelining: MAIL, RCPT and DATA go in one write and their
    replies are read in order, then the content: two round trips a message instead of four. Each
    refusal raises what `sendmail` raises for it (and a 421 closes the session), so it is classified
    alike."""
    size = f" size={len(data)}" if client.has_extn("size") else ""
    commands = [f"mail FROM:{smtplib.quoteaddr(sender)}{size}"]
    commands += [f"rcpt TO:{smtplib.quoteaddr(recipient)}" for recipient in recipients]
    client.send("".join(f"{command}\r\n" for command in [*commands, "data"]))
    mail = client.getreply()
    if mail[0] == 421:
        _closed(client, smtplib.SMTPSenderRefused(*mail, sender))
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        code, reply = client.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, reply)
        if code == 421:
            _closed(client, smtplib.SMTPRecipientsRefused(refused))
    code, reply = _reply(client, smtplib.SMTPDataError)
    if code == 354 and (mail[0] != 250 or len(refused) == len(recipients)):
        client.send(b".\r\n")  # a server that took DATA with nothing to send: an empty content, refused
        _reply(client, smtplib.SMTPDataError)
    if mail[0] != 250:
        _reset(client)
        raise smtplib.SMTPSenderRefused(*mail, sender)
    if len(refused) == len(recipients):
        _reset(client)
        raise smtplib.SMTPRecipientsRefused(refused)
    if code != 354:
        _reset(client)
        raise smtplib.SMTPDataError(code, reply)
    client.send(_dot_stuffed(data))
    code, reply = _reply(client, smtplib.SMTPDataError)
    if code != 250:
        _reset(client)
        raise smtplib.SMTPDataError(code, reply)
    return refused


def _reset(client: smtplib.SMTP) -> None:
    """RSET after a refused transaction, as `sendmail` does: a server already gone is the next
    message's to find."""
    with suppress(smtplib.SMTPServerDisconnected):
        client.rset()


def _reply(client: smtplib.SMTP, error: Callable[[int, bytes], Exception]) -> tuple[int, bytes]:
    """The next reply; a 421 (the server is closing) closes the session and raises `error`'s."""
    code, reply = client.getreply()
    if code == 421:
        _closed(client, error(code, reply))
    return code, reply


def _closed(client: smtplib.SMTP, error: Exception) -> NoReturn:
    client.close()
    raise error


def _dot_stuffed(data: bytes) -> bytes:
    """A message's content as SMTP's DATA carries it: a leading dot doubled, ended by CRLF.CRLF."""
    stuffed = DOT_AT_LINE_START.sub(b"..", data)
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def _close_hook(hook: Any) -> None:
    with suppress(OSError, smtplib.SMTPException, AttributeError):  # AttributeError: no client was built
        hook.__exit__(None, None, None)


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


class ChatTransport(AbstractContextManager):
    """A chat incoming webhook (Slack-compatible JSON) from an HTTP connection; its extra
    `rate_per_second` paces the posts."""

    def __init__(self, conn_id: str = "nps_chat") -> None:
        self.conn_id = conn_id
        self.pacer: Pacer | None = None

    def __enter__(self) -> ChatTransport:
        from airflow.providers.http.hooks.http import HttpHook

        self._hook = HttpHook(method="POST", http_conn_id=self.conn_id)
        self.pacer = Pacer(_rate(self._hook.get_connection(self.conn_id).extra_dejson))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def send(self, payload: dict) -> None:
        import requests

        try:
            response = self._hook.run(json=payload, extra_options={"check_response": False, "timeout": 30})
        except requests.RequestException as exc:
            raise TransientFailure(f"chat webhook unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise http_failure("chat webhook", response.status_code, response.text, response.headers)


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer with `status` may pass when tried again: 408, 425, 429 and 5xx."""
    return status in (408, 425, 429) or status >= 500


def http_failure(service: str, status: int, body: str, headers: Any = None) -> Exception:
    """The failure an HTTP answer stands for: 408, 425, 429 and 5xx may pass when tried again
    (TransientFailure, not before the answer's Retry-After); any other 4xx never will
    (PermanentFailure, recorded and not retried)."""
    if retryable_status(status):
        wait = retry_after_seconds((headers or {}).get("Retry-After"))
        return TransientFailure(f"{service} answered {status}", retry_after=wait)
    return PermanentFailure(f"{service} refused the request: {status} {body[:200]}")


def retry_after_seconds(value: str | None) -> float:
    """A Retry-After header (RFC 9110: seconds, or an HTTP date) as seconds from now; 0 when absent
    or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        return 0.0
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


class SlackWebhookTransport(AbstractContextManager):
    """A Slack incoming webhook through the Slack provider (`slackwebhook` connection: the webhook
    URL as its password, or the host plus the token path). The ledger owns retries: the client's
    own retry on a dropped connection is off, as it could post twice. Posts are paced to Slack's
    one per second (or the connection's extra `rate_per_second`), and a 429's Retry-After is honoured."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.pacer: Pacer | None = None

    def __enter__(self) -> SlackWebhookTransport:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        self._hook = SlackWebhookHook(slack_webhook_conn_id=self.conn_id, timeout=30, retry_handlers=[])
        extra = self._hook.get_connection(self.conn_id).extra_dejson
        self.pacer = Pacer(_rate(extra) or SLACK_POSTS_PER_SECOND)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def send(self, payload: dict) -> None:
        try:
            response = self._hook.client.send_dict(payload)
        except OSError as exc:  # URLError, timeouts, refused connections
            raise TransientFailure(f"Slack webhook {self.conn_id} unreachable: {exc}") from exc
        if response.status_code >= 300:
            service = f"Slack webhook {self.conn_id}"
            raise http_failure(service, response.status_code, str(response.body), response.headers)


class TeamsTransport(AbstractContextManager):
    """A Microsoft Teams incoming webhook (a Workflows or connector URL) through an HTTP
    connection, posting Adaptive Card messages. A legacy connector reports some failures as a 200
    whose body names the error; those are failures too."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def __enter__(self) -> TeamsTransport:
        from airflow.providers.http.hooks.http import HttpHook

        self._hook = HttpHook(method="POST", http_conn_id=self.conn_id)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def send(self, payload: dict) -> None:
        import requests

        service = f"Teams webhook {self.conn_id}"
        try:
            response = self._hook.run(json=payload, extra_options={"check_response": False, "timeout": 30})
        except requests.RequestException as exc:
            raise TransientFailure(f"{service} unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise http_failure(service, response.status_code, response.text, response.headers)
        if "delivery failed" in response.text.lower():  # legacy connectors: 200 "Webhook message delivery failed ..."
            status = 429 if "429" in response.text else 400
            raise http_failure(service, status, response.text)


class CrmTransport(AbstractContextManager):
    """Opens a task in the CRM: a JSON POST to `endpoint` of an HTTP connection (base URL, and the
    credentials as login/password or an Authorization header in the extras). The payload is
    {"body": ..., "idempotency_key": ...}; the task id the CRM returns (at `task_id_path`, dotted,
    list positions as numbers) is put in the payload's "Message-ID", which the ledger keeps."""

    def __init__(self, conn_id: str, endpoint: str, task_id_path: str) -> None:
        self.conn_id, self.endpoint, self.task_id_path = conn_id, endpoint, task_id_path

    def __enter__(self) -> CrmTransport:
        from airflow.providers.http.hooks.http import HttpHook

        self._hook = HttpHook(method="POST", http_conn_id=self.conn_id)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def send(self, payload: dict) -> None:
        import requests

        service = f"CRM {self.conn_id}"
        headers = {"Idempotency-Key": payload["idempotency_key"], "Accept": "application/json"}
        try:
            response = self._hook.run(
                self.endpoint,
                json=payload["body"],
                headers=headers,
                extra_options={"check_response": False, "timeout": 30},
            )
        except requests.RequestException as exc:
            raise TransientFailure(f"{service} unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise http_failure(service, response.status_code, response.text, response.headers)
        task_id = _at_path(_json_or_none(response), self.task_id_path)
        if task_id in (None, ""):
            raise PermanentFailure(
                f"{service} answered {response.status_code} without a task id at {self.task_id_path!r} "
                f"(the task may exist; not retried): {response.text[:200]}"
            )
        payload["Message-ID"] = str(task_id)


def _json_or_none(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _at_path(document: Any, path: str) -> Any:
    """The value at a dotted path (`data.records.0.Gsid`) of a JSON document, or None."""
    for part in path.split("."):
        if isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            return None
    return document
