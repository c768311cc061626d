"""Render customer-facing and internal messages from templates, per locale.

Every word a person reads lives in `include/templates/` (English source text in `{% trans %}`
blocks) and its translations in the catalogs of `include/translations/`; this module renders a
template in a locale and builds the MIME message.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formataddr, make_msgid, parseaddr
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, pass_eval_context, select_autoescape
from jinja2.ext import Extension
from markupsafe import Markup

from include.nps.core import clean_text, i18n

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
MISSING = "–"  # what a template shows for a figure that has no value (no answers yet)
FIRST_STRONG_ISOLATE, POP_DIRECTIONAL_ISOLATE = "\u2068", "\u2069"
END_OF_TRANS_LINE = re.compile(r"\{%(-?)\s*endtrans\s*%\}(?=\r?\n)")


@dataclass
class Attachment:
    filename: str
    content: bytes
    mime_type: str = ""
    content_id: str = ""  # an image the HTML part shows inline as <img src="cid:...">

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
    inline_images: list[Attachment] = field(default_factory=list)


class TransKeepsItsLine(Extension):
    """In a plain-text template, a `{% trans %}` block that ends a line keeps that line's break.

    `trim_blocks` drops the newline after every block tag, which is right for a line holding only
    `{% if %}` or `{% for %}`, but joined a sentence to the next ("Thank you,The ... team")."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name and name.endswith(".txt"):
            return END_OF_TRANS_LINE.sub(r"{%\1 endtrans +%}", source)
        return source


@cache
def environment(locale: str = i18n.DEFAULT_LOCALE) -> Environment:
    """The template environment of one locale: its catalog installed for `{% trans %}` blocks.

    Times and dates are written in the reader's zone, `contact.zone` of the rendering context
    (UTC when the context has no contact, as in emails to colleagues)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n", TransKeepsItsLine],
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(lang=locale, dir=i18n.direction(locale))
    env.globals["localized_text"] = lambda item: localized_text(item, locale)
    env.filters["chat_escape"] = chat_escape
    env.filters["markdown_escape"] = markdown_escape
    env.filters["markdown_code"] = markdown_code
    env.filters["markdown_block"] = markdown_block
    env.filters["signed"] = signed
    env.filters["change"] = lambda current, previous: signed(_change(current, previous, 0))
    env.filters["decimal_change"] = lambda current, previous: _decimal_change(current, previous, locale)
    env.filters["datetime"] = pass_context(lambda ctx, value: i18n.format_datetime(value, locale, context_zone(ctx)))
    env.filters["date"] = pass_context(lambda ctx, value: i18n.format_date(value, locale, context_zone(ctx)))
    env.filters["decimal"] = lambda value: i18n.format_decimal(value, locale)
    env.filters["isolate"] = pass_eval_context(lambda eval_ctx, value: isolate(value, eval_ctx.autoescape, locale))
    return env


def context_zone(context: Any) -> str:
    """The zone of the rendering context's reader (`contact.zone`), else UTC."""
    contact = context.get("contact")
    zone = contact.get("zone") if isinstance(contact, dict) else None
    return zone or "UTC"


def signed(value: float | None) -> str:
    """A score with its sign (+12, -3, +0), or `MISSING` when there is none."""
    return f"{value:+.0f}" if value is not None else MISSING


def _change(current: float | None, previous: float | None, digits: int) -> float | None:
    """The change between two figures as the reader sees them: each rounded to `digits` decimals
    half to even, as `signed` and Babel round them for display."""
    if current is None or previous is None:
        return None
    step = Decimal(1).scaleb(-digits)
    shown = [Decimal(str(value)).quantize(step, rounding=ROUND_HALF_EVEN) for value in (current, previous)]
    return float(shown[0] - shown[1])


def _decimal_change(current: float | None, previous: float | None, locale: str) -> str:
    change = _change(current, previous, 1)
    if change is None:
        return MISSING
    return ("+" if change >= 0 else "-") + i18n.format_decimal(abs(change), locale)


def isolate(value: Any, html: bool, locale: str) -> str:
    """Customer text (a name, a quote) set apart from the sentence around it, so that text of
    another direction keeps its punctuation on its own side: `<bdi>` in HTML; FSI ... PDI in the
    plain text of right-to-left languages (left-to-right ones do without invisible characters)."""
    if html:
        return Markup("<bdi>{}</bdi>").format(value)
    if i18n.direction(locale) == "rtl":
        return f"{FIRST_STRONG_ISOLATE}{value}{POP_DIRECTIONAL_ISOLATE}"
    return str(value)


def localized_text(item: dict[str, Any], locale: str) -> str:
    """A wave-defined text (a pillar question) in `locale`: its own `translations` entry, else the
    catalog's translation (the default questions have one), else the text as written."""
    own = (item.get("translations") or {}).get(locale)
    return own or i18n.translations(i18n.normalize_locale(locale)).gettext(item["text"])


def chat_escape(value: Any) -> str:
    """Escape text for Slack/Teams mrkdwn: customer text must not ping or link."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def markdown_escape(value: Any) -> str:
    """Text shown inside Markdown (Airflow's Required Actions) as written: on one line, control
    characters made visible, every ASCII punctuation backslash-escaped, so customer text cannot
    make a link, an image, a heading, HTML or emphasis."""
    line = clean_text.visible(" ".join(str(value).split()))
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", line)


BACKTICKS = re.compile(r"`+")


def _fence(text: str, least: int) -> str:
    """Backticks longer than any run of them in `text` (at least `least`): a code delimiter it cannot close."""
    return "`" * max(least, max((len(run) for run in BACKTICKS.findall(text)), default=0) + 1)


def markdown_code(value: Any) -> str:
    """Customer text as an inline code span for a Markdown table cell: shown as written, never a
    link (not even a bare URL or address), HTML or formatting; a `|` cannot end the cell."""
    text = clean_text.visible(" ".join(str(value).split())).replace("|", "\\|")
    fence = _fence(text, 1)
    return f"{fence} {text} {fence}"


def markdown_block(value: Any) -> str:
    """Customer text (a comment) as a fenced code block: its lines as written, nothing rendered."""
    lines = [clean_text.visible(line) for line in clean_text.LINE_BREAKS.split(str(value))]
    text = "\n".join(lines).strip("\n")
    fence = _fence(text, 3)
    return f"{fence}text\n{text}\n{fence}"


def render(path: str, context: dict[str, Any], locale: str = i18n.DEFAULT_LOCALE) -> str:
    """Render `include/templates/<path>` in `locale` (unsupported locales get English)."""
    return environment(i18n.normalize_locale(locale)).get_template(path).render(**context)


EMAIL_PARTS = ("subject.txt", "txt", "html")  # the templates of one email: email/<kind>.<part>


def render_email(kind: str, locale: str, to: str, context: dict[str, Any]) -> RenderedEmail:
    """Subject, plain-text and HTML parts of one email of `kind` in the contact's locale."""
    return email_of(to, {part: render(f"email/{kind}.{part}", context, locale) for part in EMAIL_PARTS})


def email_of(to: str, parts: dict[str, str]) -> RenderedEmail:
    """The email of its rendered parts (EMAIL_PARTS), the subject on one line."""
    subject = " ".join(parts["subject.txt"].split())
    return RenderedEmail(to=to, subject=subject, text=parts["txt"], html=parts["html"])


def message_id(sender: str, *key: str) -> str:
    """A Message-ID that is the same for the same (wave, kind, recipient)."""
    domain = _domain(sender)
    digest = hashlib.sha256("\x00".join(key).encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>" if key else make_msgid(domain=domain)


@cache
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "nps.invalid"


class UnfoldedLinksPolicy(EmailPolicy):
    """The email package's default policy, except that the one-click unsubscribe headers go out as
    written: a link longer than a line cannot be folded, and the default policy then writes it as an
    RFC 2047 encoded-word (`=?utf-8?q?=3Chttps=3A//...`), which Gmail and Yahoo do not read as a
    `List-Unsubscribe` link. RFC 5322 allows lines up to 998 characters."""

    UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

    def fold(self, name: str, value: str) -> str:
        if name.lower() in self.UNFOLDED:
            return f"{name}: {_one_line(name, value)}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in self.UNFOLDED:
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


def _one_line(name: str, value: str) -> str:
    """A header value written as is: ASCII, one line, within RFC 5322's 998 characters."""
    text = str(value)
    if not text.isascii() or "\r" in text or "\n" in text or len(name) + 2 + len(text) > 998:
        raise ValueError(f"{name} must be one ASCII line of at most 998 characters")
    return text


MESSAGE_POLICY = UnfoldedLinksPolicy()


def build_mime(email: RenderedEmail, sender: str, msg_id: str) -> EmailMessage:
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = msg_id
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    if email.inline_images:
        html_part = list(message.iter_parts())[-1]
        for image in email.inline_images:
            maintype, subtype = image.mime_type.split("/", 1)
            html_part.add_related(
                image.content,
                maintype,
                subtype,
                cid=f"<{image.content_id}>",
                filename=image.filename,
                disposition="inline",  # shown in the HTML part, not listed as an attachment
            )
    for attachment in email.attachments:
        maintype, subtype = attachment.mime_type.split("/", 1)
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message


def named_address(name: str, address: str) -> str:
    return formataddr((name, address))
