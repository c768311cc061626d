"""The fast wire bytes (`fast_mime.build_wire`) against the email package's message (`emails.build_mime`),
both read back by `BytesParser(policy=policy.default)`: the same headers, in the same order, with
the same values; the same parts with the same content, for hostile input (names in any script,
emoji, very long names and subjects, line breaks and header text smuggled into names and subjects,
text that looks like an encoded word). A line break in a header raises, as it does in
`build_mime`; no input adds a header."""

from __future__ import annotations

import io
import re
import smtplib
from email import generator, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from include.nps.core import emails, fast_mime
from include.nps.core.emails import Attachment, RenderedEmail

HOSTILE = [
    "山田 太郎",
    "דוד כהן",
    "王小明",
    "Zoë O'Brien-Smith 🎉",
    "👩‍👩‍👧‍👦" * 30,
    "Ada\r\nBcc: evil@attacker.example",
    "Ada\nX-Injected: yes",
    "Ada\u2028Bcc: evil@attacker.example",
    "=?utf-8?q?forged?=",
    '"Quoted" \\ name, with comma',
    "a" * 300,
    "Jean-Baptiste " * 20,
    "   spaced   out  ",
    "tab\there",
    "\x00\x07\x1b[31m",
    "",
]
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)
NAMES = st.one_of(st.sampled_from(HOSTILE), TEXT)
BODIES = st.one_of(
    st.sampled_from(["", "\n", "line\r\nline\rline\n", ".\n..\n.", "From me\n", "x" * 2000, "é" * 1000]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=400),
)
HEADERS = {
    "List-Unsubscribe": "<https://survey.example/u/" + "t" * 150 + ">",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "X-NPS-Wave": "acme:2026-Q1",
    "X-NPS-Kind": "invitation",
}
CHART = Attachment("nps-chart.png", bytes(range(256)) * 40, "image/png", content_id="nps-chart@nps")
FILES = [Attachment("report.csv", b"a,b\r\n1,2\r\n"), Attachment("レポート 2026.pdf", b"%PDF" * 100)]


def _named(name: str, address: str) -> str:
    return emails.named_address(name, address) if name else address


def _email(to_name: str, subject: str, text: str, html: str, images: bool, files: bool) -> RenderedEmail:
    email = RenderedEmail(to=_named(to_name, "ada@a1.example"), subject=subject, text=text, html=html)
    email.headers = dict(HEADERS)
    email.inline_images = [CHART] if images else []
    email.attachments = list(FILES) if files else []
    return email


def _stdlib_bytes(message: EmailMessage) -> bytes:
    """The bytes smtplib's `send_message` writes for `message`."""
    out = io.BytesIO()
    generator.BytesGenerator(out, policy=message.policy).flatten(message, linesep="\r\n")
    return out.getvalue()


def _parsed(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)  # type: ignore[return-value]


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [(name, _value(name, value)) for name, value in message.items()]


def _value(name: str, value: object) -> str:
    if name.lower() == "content-type":
        return value.content_type  # type: ignore[attr-defined]  # its boundary is random
    if name.lower() in ("from", "to"):  # compared with what they were given: see `_addresses`
        return "(address)"
    return str(value)


def _addresses(data: bytes, name: str) -> tuple[str, str]:
    """(display name, address) of a one-address header as RFC 2047 reads it: whitespace between
    encoded words is not part of the name. (The email package's parser keeps it in a display name,
    so it reads a long name, folded into several words, with spaces that are not there: its own
    `build_mime` output too.)"""
    raw = re.sub(r"\r\n([ \t])", r"\1", BytesParser(policy=policy.compat32).parsebytes(data)[name])
    named = re.fullmatch(r"(.*) <([^<>]*)>", raw)
    if named is None:
        return "", raw
    phrase, address = named.groups()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1]), address
    return str(make_header(decode_header(phrase))), address


def _unusual(value: str) -> bool:
    """An address header the fast path leaves to the email package: one the parser finds defects
    in, or whose address is not ASCII (SMTPUTF8)."""
    header = policy.default.header_factory("To", value)
    return bool(header.defects) or not all(a.addr_spec.isascii() for a in header.addresses)


def _meaning(value: str) -> tuple[str, str]:
    """What the email package reads in an address header's value."""
    [address] = policy.default.header_factory("To", value).addresses
    return address.display_name, address.addr_spec


def _parts(message: EmailMessage) -> list[tuple]:
    parts = []
    for part in message.walk():
        params = {k: v for k, v in part["Content-Type"].params.items() if k != "boundary"}
        item = (
            part.get_content_type(),
            params,
            part.get_content_disposition(),
            part.get_filename(),
            part["Content-ID"],
        )
        if not part.is_multipart():
            content = part.get_content()
            item += (content.replace("\r\n", "\n") if isinstance(content, str) else content,)
        parts.append(item)
    return parts


def _wire_is_clean(data: bytes) -> None:
    """ASCII, CRLF line ends only, no line over 998 characters."""
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def _compare(email: RenderedEmail, sender: str) -> None:
    msg_id = emails.message_id(sender, "w", "invitation", "C1")
    if any(fast_mime.LINE_BREAKS.search(value) for value in (sender, email.to, email.subject)):
        event("a line break in a header: refused")  # build_mime refuses most, and writes the others raw
        with pytest.raises(ValueError):
            fast_mime.build_wire(email, sender, msg_id)
        return
    try:
        expected = _parsed(_stdlib_bytes(emails.build_mime(email, sender, msg_id)))
    except ValueError:  # an encoded line break in a name, say
        event("build_mime refused it")
        with pytest.raises(ValueError):
            fast_mime.build_wire(email, sender, msg_id)
        return
    wire = fast_mime.build_wire(email, sender, msg_id)
    if isinstance(wire, EmailMessage):  # left to the email package, as before
        event("left to build_mime")
        assert any(_unusual(value) for value in (sender, email.to))
        return
    _wire_is_clean(wire.data)
    fast = _parsed(wire.data)
    assert not fast.defects and not any(value.defects for value in fast.values())
    headers = _headers(expected)
    if str(expected["Subject"]) != email.subject:  # the email package's own bytes do not read back as given
        event("build_mime's subject does not read back as written")
        headers = [(name, email.subject if name == "Subject" else value) for name, value in headers]
    assert str(fast["Subject"]) == email.subject
    assert _headers(fast) == headers
    assert _addresses(wire.data, "From") == _meaning(sender) and _addresses(wire.data, "To") == _meaning(email.to)
    for name, value in (("From", sender), ("To", email.to)):
        if [(a.display_name, a.addr_spec) for a in expected[name].addresses] != [_meaning(value)]:
            event(f"build_mime's {name} does not read back as given")  # a long name with spaces added, or worse
    assert _parts(fast) == _parts(expected)
    assert wire.get("Message-ID") == msg_id and wire.recipients == ("ada@a1.example",)
    assert wire.envelope_from == "cs@vendor.example"


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    to_name=NAMES,
    from_name=NAMES,
    subject=NAMES,
    text=BODIES,
    html=BODIES,
    images=st.booleans(),
    files=st.booleans(),
)
@example(
    to_name="山田 太郎",
    from_name="顧客成功チーム",
    subject="Acme Cloud を薦める可能性は？",
    text="",
    html="",
    images=True,
    files=True,
)
@example(
    to_name="Ada\r\nBcc: evil@attacker.example", from_name="", subject="hi", text="", html="", images=False, files=False
)
@example(
    to_name="", from_name="", subject="Hi\r\nBcc: evil@attacker.example", text="", html="", images=False, files=False
)
def test_the_fast_bytes_read_back_as_the_email_packages_message(to_name, from_name, subject, text, html, images, files):
    _compare(_email(to_name, subject, text, html, images, files), _named(from_name, "cs@vendor.example"))


@pytest.mark.parametrize("name", HOSTILE)
def test_no_name_or_subject_can_add_a_header(name):
    email = _email(name, name, "hello", "<p>hello</p>", images=False, files=False)
    sender = _named(name, "cs@vendor.example")
    try:
        wire = fast_mime.build_wire(email, sender, "<1@vendor.example>")
    except ValueError:
        assert re.search("[\r\n\u2028]", name)  # a line break, refused as build_mime refuses it
        return
    message = _parsed(wire.data if isinstance(wire, fast_mime.WireMessage) else _stdlib_bytes(wire))
    assert [h.lower() for h in message] == [
        "from", "to", "subject", "message-id", *(h.lower() for h in HEADERS), "mime-version", "content-type"
    ]  # fmt: skip
    assert message["To"].addresses[0].addr_spec == "ada@a1.example"


def test_every_address_of_the_to_header_is_a_recipient():
    email = _email("", "hello", "hello", "<p>hello</p>", images=False, files=False)
    email.to = 'Ada <ada@a1.example>, bob@b2.example, "Lovelace, Ada" <ada2@a1.example>'
    wire = fast_mime.build_wire(email, "cs@vendor.example", "<1@vendor.example>")
    assert isinstance(wire, fast_mime.WireMessage)
    assert wire.recipients == ("ada@a1.example", "bob@b2.example", "ada2@a1.example")
    assert [a.addr_spec for a in _parsed(wire.data)["To"].addresses] == list(wire.recipients)


def test_an_address_that_is_not_ascii_is_left_to_the_email_package():
    email = _email("", "hello", "hello", "<p>hello</p>", images=False, files=False)
    email.to = "山田@例え.jp"
    assert isinstance(fast_mime.build_wire(email, "cs@vendor.example", "<1@vendor.example>"), EmailMessage)


def test_the_fast_bytes_go_through_smtp_as_they_are(smtp):
    email = _email("山田 太郎", "Acme Cloud を薦める可能性は？", "こんにちは\n", "<p>こんにちは</p>", True, False)
    wire = fast_mime.build_wire(email, "CS <cs@vendor.example>", "<1@vendor.example>")
    with smtplib.SMTP("127.0.0.1", smtp.port) as session:
        session.sendmail(wire.envelope_from, list(wire.recipients), wire.data)
    [received] = smtp.spool.messages()
    assert received["Subject"] == "Acme Cloud を薦める可能性は？" and received["Message-ID"] == "<1@vendor.example>"
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == "こんにちは\n"
