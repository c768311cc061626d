"""An email's bytes as they go on the wire, written directly instead of through the email package.

`emails.build_mime` builds an `EmailMessage`, whose header folding and generator cost more than
the rest of a send; `build_wire` writes the same message (the same headers and parts, which a
parser reads back alike: tests/test_fast_mime.py) as ASCII bytes with CRLF lines: RFC 5322
folding at 76 characters, RFC 2047 encoded words for any header text that is not plain ASCII
(so a line break in a name or subject is encoded, never a new header), 7bit parts when they are
ASCII, else quoted-printable or base64, whichever is shorter. What it does not handle (an address
that is not ASCII, which needs SMTPUTF8; a group; an address the parser finds defects in) it
leaves to `build_mime`.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from include.nps.core.emails import Attachment, RenderedEmail

LINE = 76  # a folded line's length at most (RFC 2047's limit for lines with encoded words)
LONGEST_LINE = 998  # RFC 5322's hard limit
WORD = 75  # an encoded word's length at most (RFC 2047)
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
DOT_ATOM = re.compile(rf"{ATEXT}+(?:\.{ATEXT}+)*")
PLAIN_ADDRESS = re.compile(rf"{ATEXT}+(?:\.{ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
PLAIN_PHRASE = re.compile(rf"{ATEXT}+(?: {ATEXT}+)*\Z")
PRINTABLE = re.compile(r"[ -~]*\Z")  # printable ASCII and the space
Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post"})  # one line as written (see emails)
LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines splits on


@dataclass(frozen=True)
class WireMessage:
    """A message ready for SMTP: envelope sender and recipients, its bytes (CRLF lines), and the
    header values the ledger and the transports read (`get("Message-ID")`, `["To"]`)."""

    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class NotOnTheFastPath(Exception):
    """The message needs what only the email package does (SMTPUTF8 addresses, groups)."""


def build_wire(email: RenderedEmail, sender: str, msg_id: str) -> WireMessage | EmailMessage:
    """The message `emails.build_mime` builds, as wire bytes; its `EmailMessage` when the fast
    path does not cover it. Raises ValueError where `build_mime` does (a line break in a header)."""
    try:
        return _build(email, sender, msg_id)
    except NotOnTheFastPath:
        from include.nps.core.emails import build_mime

        return build_mime(email, sender, msg_id)


def _build(email: RenderedEmail, sender: str, msg_id: str) -> WireMessage:
    headers = [
        _address_header("From", sender),
        _address_header("To", email.to),
        _unstructured("Subject", email.subject),
        _message_id(msg_id),
        *(_header(name, value) for name, value in email.headers.items()),
        "MIME-Version: 1.0",
    ]
    part = _alternative(email)
    if email.attachments:
        part = _multipart("mixed", [part, *(_attachment(a) for a in email.attachments)])
    data = _rendered(Part([*headers, *part.headers], part.body)).encode("ascii")
    values = {"message-id": msg_id, "to": email.to, "from": sender}
    return WireMessage(_envelope(sender)[0], _envelope(email.to), data + b"\r\n", values)


# -- headers ------------------------------------------------------------------------------------


def _header(name: str, value: str) -> str:
    if name.lower() in UNFOLDED:
        return _one_line(name, value)
    if name.lower() in ("from", "to", "cc", "reply-to", "sender"):
        return _address_header(name, value)
    return _unstructured(name, value)


def _check(name: str, value: str) -> None:
    if not PRINTABLE.match(name) or ":" in name or " " in name or not name:
        raise ValueError(f"not a header name: {name!r}")
    if LINE_BREAKS.search(value):
        raise ValueError("Header values may not contain linefeed or carriage return characters")


def _one_line(name: str, value: str) -> str:
    _check(name, value)
    line = f"{name}: {value}"
    if not value.isascii() or len(line) > LONGEST_LINE:
        raise ValueError(f"{name} must be one ASCII line of at most 998 characters")
    return line


def _unstructured(name: str, value: str) -> str:
    """An unstructured header (Subject, X-...): ASCII as written, folded at spaces; any other text
    as encoded words, so no character of it can end the header."""
    _check(name, value)
    if _plain_text(value) and "  " not in value and value == value.strip():
        return _fold(name, value.split(" "))
    return _fold(name, _encoded_words(value, LINE - len(name) - 2))


def _plain_text(value: str) -> bool:
    return bool(PRINTABLE.match(value)) and "=?" not in value


def _address_header(name: str, value: str) -> str:
    """An address header: a plain address as written; a named one with its name as an atom phrase,
    a quoted string or encoded words. What needs more (groups, SMTPUTF8) is not on the fast path."""
    _check(name, value)
    if PLAIN_ADDRESS.match(value):
        return _fold(name, [value])
    tokens: list[str] = []
    addresses = _addresses(value)
    for index, (display_name, addr_spec) in enumerate(addresses):
        end = "," if index < len(addresses) - 1 else ""
        if display_name:
            tokens += _phrase(display_name, LINE - len(name) - 2 if not tokens else LINE - 1)
            tokens.append(f"<{addr_spec}>{end}")
        else:
            tokens.append(f"{addr_spec}{end}")
    return _fold(name, tokens)


@lru_cache(maxsize=4096)
def _addresses(value: str) -> tuple[tuple[str, str], ...]:
    """(display name, addr-spec) of each address in `value`, as the email package parses it."""
    header = default_policy.header_factory("To", value)
    groups = getattr(header, "groups", ())
    if header.defects or any(group.display_name is not None for group in groups):
        raise NotOnTheFastPath(value)
    found = tuple((a.display_name, a.addr_spec) for group in groups for a in group.addresses)
    if not found or any(not spec.isascii() or not PRINTABLE.match(spec) for _, spec in found):
        raise NotOnTheFastPath(value)
    return found


def _envelope(value: str) -> tuple[str, ...]:
    """The addresses of an address header, as SMTP's MAIL and RCPT name them."""
    if PLAIN_ADDRESS.match(value):
        return (value,)
    return tuple(addr_spec for _, addr_spec in _addresses(value))


def _message_id(value: str) -> str:
    if not MSG_ID.match(value):
        raise NotOnTheFastPath(value)
    return f"Message-ID: {value}"


MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")  # printable ASCII, no spaces, < or >


def _phrase(display_name: str, first: int) -> list[str]:
    """A display name's tokens: atoms as they are, printable ASCII quoted, anything else encoded."""
    if _plain_text(display_name) and PLAIN_PHRASE.match(display_name):
        return display_name.split(" ")
    if _plain_text(display_name) and len(display_name) < 60:
        return ['"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(display_name, first)


def _fold(name: str, tokens: Iterable[str]) -> str:
    """`name: tokens` joined by spaces, a line broken before a token that would pass LINE."""
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) > LINE and lines[-1] != f"{name}:" and token:
            lines.append(" " + token)
        else:
            lines[-1] += " " + token
    if any(len(line) > LONGEST_LINE for line in lines):
        raise NotOnTheFastPath(f"{name} has a word longer than a line")
    return "\r\n".join(lines)


def _encoded_words(text: str, first: int) -> list[str]:
    """`text` as RFC 2047 encoded words of whole characters (B or Q, whichever is shorter), the
    first at most `first` characters long, the others at most WORD."""
    data = text.encode("utf-8")
    q_length = sum(1 if byte in Q_SAFE or byte == 0x20 else 3 for byte in data)
    encode = _q_words if q_length <= len(data) * 4 // 3 + 4 else _b_words
    return list(encode(text, max(first, 20)))


def _b_words(text: str, first: int) -> Iterator[str]:
    limit, size, chunk = first, 0, list[str]()
    for char in text:
        width = len(char.encode("utf-8"))
        if chunk and _b_length(size + width) > limit:
            yield _b_word("".join(chunk))
            limit, size, chunk = WORD, 0, []
        chunk.append(char)
        size += width
    if chunk:
        yield _b_word("".join(chunk))


def _b_length(size: int) -> int:
    return 12 + (size + 2) // 3 * 4  # =?utf-8?b? + base64 + ?=


def _b_word(text: str) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii") + "?="


def _q_words(text: str, first: int) -> Iterator[str]:
    limit, size, chunk = first, 12, list[str]()
    for char in text:
        encoded = _q(char)
        if chunk and size + len(encoded) > limit:
            yield "=?utf-8?q?" + "".join(chunk) + "?="
            limit, size, chunk = WORD, 12, []
        chunk.append(encoded)
        size += len(encoded)
    if chunk:
        yield "=?utf-8?q?" + "".join(chunk) + "?="


@lru_cache(maxsize=4096)
def _q(char: str) -> str:
    if char == " ":
        return "_"
    return "".join(chr(byte) if byte in Q_SAFE else f"={byte:02X}" for byte in char.encode("utf-8"))


# -- parts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A MIME part: its header lines and its body (CRLF lines)."""

    headers: list[str]
    body: str


def _rendered(part: Part) -> str:
    return "\r\n".join(part.headers) + "\r\n\r\n" + part.body


def _alternative(email: RenderedEmail) -> Part:
    html = _text_part("html", email.html)
    if email.inline_images:
        html = _multipart("related", [html, *(_inline_image(image) for image in email.inline_images)])
    return _multipart("alternative", [_text_part("plain", email.text), html])


def _multipart(subtype: str, parts: list[Part]) -> Part:
    """A multipart part, its parts after a boundary none of them contains."""
    rendered = [_rendered(part) for part in parts]
    boundary = "=_" + os.urandom(12).hex()  # "=_" never starts a base64 or quoted-printable line
    while any(boundary in text for text in rendered):
        boundary = "=_" + os.urandom(12).hex()
    body = "".join(f"--{boundary}\r\n{text}\r\n" for text in rendered) + f"--{boundary}--"
    return Part([f'Content-Type: multipart/{subtype}; boundary="{boundary}"'], body)


def _text_part(subtype: str, text: str) -> Part:
    """A text part whose content parses back as `text`, each line ended by a line break (as
    `EmailMessage.set_content` makes it): 7bit when it is ASCII, else quoted-printable when it is
    mostly ASCII, else base64."""
    if "\r" in text:
        text = TEXT_LINE_BREAKS.sub("\n", text)
    body = text.replace("\n", "\r\n") if text.endswith("\n") else text.replace("\n", "\r\n") + "\r\n"
    headers = [f'Content-Type: text/{subtype}; charset="utf-8"']
    if text.isascii() and not CONTROL.search(text) and (len(text) <= LONGEST_LINE or _short_lines(text)):
        return Part([*headers, "Content-Transfer-Encoding: 7bit"], body)
    data = body.encode("utf-8")
    if (len(data) - len(data.translate(None, HIGH_BYTES))) * 4 <= len(data):  # at most a quarter not ASCII
        encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).decode("ascii")
        return Part([*headers, "Content-Transfer-Encoding: quoted-printable"], encoded)
    encoded = _base64_lines(binascii.b2a_base64(data, newline=False))
    return Part([*headers, "Content-Transfer-Encoding: base64"], encoded)


def _short_lines(text: str) -> bool:
    return max(map(len, text.split("\n"))) <= LONGEST_LINE


TEXT_LINE_BREAKS = re.compile(r"\r\n|\r")  # with \n, what bytes.splitlines splits on, as set_content does
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HIGH_BYTES = bytes(range(128, 256))


def _base64_lines(encoded: bytes) -> str:
    text = encoded.decode("ascii")
    return "".join(text[i : i + LINE] + "\r\n" for i in range(0, len(text), LINE))


def _inline_image(image: Attachment) -> Part:
    headers = [
        f"Content-Type: {_mime_type(image.mime_type)}",
        "Content-Transfer-Encoding: base64",
        _disposition("inline", image.filename),
        _unstructured("Content-ID", f"<{image.content_id}>"),
    ]
    return Part(headers, _base64_of(image.content))


def _attachment(attachment: Attachment) -> Part:
    headers = [
        f"Content-Type: {_mime_type(attachment.mime_type)}",
        "Content-Transfer-Encoding: base64",
        _disposition("attachment", attachment.filename),
    ]
    return Part(headers, _base64_of(attachment.content))


def _mime_type(value: str) -> str:
    if not MIME_TYPE.match(value):
        raise NotOnTheFastPath(value)
    return value


MIME_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+\Z")


@lru_cache(maxsize=32)
def _base64_of(content: bytes) -> str:
    """A file's base64 lines, once per file (the flash chart goes to every reader)."""
    return _base64_lines(binascii.b2a_base64(content, newline=False))


def _disposition(kind: str, filename: str) -> str:
    """Content-Disposition with the file name quoted, or RFC 2231-encoded when it is not plain."""
    if PRINTABLE.match(filename) and not set(filename) & set('"\\') and len(filename) < 50:
        return f'Content-Disposition: {kind}; filename="{filename}"'
    encoded = "".join(
        chr(byte) if byte < 128 and (chr(byte).isalnum() or chr(byte) in "-._~") else f"%{byte:02X}"
        for byte in filename.encode("utf-8")
    )
    pieces = [encoded[i : i + 60] for i in range(0, len(encoded), 60)] or [""]
    if len(pieces) == 1:
        return f"Content-Disposition: {kind};\r\n filename*=utf-8''{encoded}"
    charset = "utf-8''"
    named = [f" filename*{n}*={charset if n == 0 else ''}{piece}" for n, piece in enumerate(pieces)]
    return f"Content-Disposition: {kind};\r\n" + ";\r\n".join(named)
