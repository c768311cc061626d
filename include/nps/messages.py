"""Render customer-facing and internal messages from templates, per locale.

Every word a person reads lives in `include/templates/`; this module only picks the template
for a locale (falling back to English), renders it, and builds the MIME message.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
FALLBACK_LOCALE = "en"


@dataclass
class Attachment:
    filename: str
    content: bytes
    mime_type: str = ""

    def __post_init__(self) -> None:
        if not self.mime_type:
            self.mime_type = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"


@dataclass
class RenderedEmail:
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["chat_escape"] = chat_escape
    env.filters["signed"] = lambda value: f"{value:+.0f}" if value is not None else "n/a"
    return env


def chat_escape(value: Any) -> str:
    """Escape text for Slack/Teams mrkdwn: customer text must not ping or link."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(path: str, context: dict[str, Any]) -> str:
    return environment().get_template(path).render(**context)


def localized_path(folder: str, locale: str, name: str) -> str:
    """`folder/<locale>/<name>`, or the English one when the locale has no such template."""
    for candidate in (locale, FALLBACK_LOCALE):
        path = f"{folder}/{candidate}/{name}"
        try:
            environment().get_template(path)
        except TemplateNotFound:
            continue
        return path
    raise TemplateNotFound(f"{folder}/{FALLBACK_LOCALE}/{name}")


def render_email(kind: str, locale: str, to: str, context: dict[str, Any]) -> RenderedEmail:
    """Subject, plain-text and HTML parts of one email of `kind` in the contact's locale."""
    parts = {
        part: render(localized_path("email", locale, f"{kind}.{part}"), context)
        for part in ("subject.txt", "txt", "html")
    }
    subject = " ".join(parts["subject.txt"].split())
    return RenderedEmail(to=to, subject=subject, text=parts["txt"], html=parts["html"])


def message_id(sender: str, *key: str) -> str:
    """A Message-ID that is the same for the same (wave, kind, recipient)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "nps.invalid"
    digest = hashlib.sha256("\x00".join(key).encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>" if key else make_msgid(domain=domain)


def build_mime(email: RenderedEmail, sender: str, msg_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = msg_id
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    for attachment in email.attachments:
        maintype, subtype = attachment.mime_type.split("/", 1)
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message


def named_address(name: str, address: str) -> str:
    return formataddr((name, address))
