"""Email addresses that people type (recipients, senders, the drop allow-list), parsed strictly.

A recipient item is exactly one bare address (`name@example.com`): RFC 5322's addr-spec, parsed by
`email.headerregistry.Address`, with a dot-atom local part and a full domain name, in ASCII. Lists
(a comma, semicolon, space or newline), display names, quotes and comments are refused, so one item
can never carry a second recipient. A sender may carry a display name (`Acme CS <cs@acme.example>`)
but is still exactly one mailbox.

The drop allow-list matches whole addresses or whole domains: the entry `vendor.example` (or
`@vendor.example`) allows `a@vendor.example` only. Subdomains are not included
(`a@eu.vendor.example` needs its own entry `eu.vendor.example`): a subdomain can be another
organisation (a tenant of a hosting provider, a customer's instance), so raw data goes to exactly
the domains someone wrote down. There are no wildcards.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import Address, AddressHeader, HeaderRegistry

SEPARATORS = {
    ",": "a comma",
    ";": "a semicolon",
    " ": "a space",
    "\n": "a newline",
    "\r": "a line break",
    "\t": "a tab",
}
QUOTING = '<>"()[]\\'
DOT_ATOM = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$", re.IGNORECASE)
DOMAIN = re.compile(
    r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$", re.IGNORECASE
)
EXAMPLE = "like name@example.com"
_HEADERS = HeaderRegistry()


class AddressError(ValueError):
    """The text is not what the field needs (one bare address, one mailbox, an allow-list entry)."""


def _character_problem(text: str, one: str = "one address") -> str | None:
    """A list separator, a control or a non-ASCII character in `text`, named."""
    if separator := next((SEPARATORS[c] for c in text if c in SEPARATORS), None):
        return f"holds {separator}: give {one} per item, each in its own item"
    if other_space := next((c for c in text if c.isspace()), None):
        return f"holds the space character U+{ord(other_space):04X}: give {one} per item"
    if control := next((c for c in text if ord(c) < 32 or ord(c) == 127), None):
        return f"holds the control character U+{ord(control):04X}"
    if foreign := next((c for c in text if ord(c) > 127), None):
        return f"holds the non-ASCII character U+{ord(foreign):04X} ({unicodedata.name(foreign, 'unnamed')})"
    return None


def _domain_problem(domain: str) -> str | None:
    if "*" in domain:
        return "holds a wildcard (*): list each domain itself (subdomains are not included)"
    if not DOMAIN.match(domain):
        return f"the domain {domain!r} is not a full domain name like example.com"
    return None


def bare_address(item: object) -> str:
    """The one address `item` is, lower-cased; AddressError says why it is not exactly one bare address."""
    if not isinstance(item, str):
        raise AddressError(f"is {type(item).__name__}, not an address {EXAMPLE}")
    text = item.strip()
    if not text:
        raise AddressError(f"is empty; give an address {EXAMPLE}")
    if any(c in QUOTING for c in text):
        raise AddressError(f"has a display name, quotes or a comment: give the bare address only, {EXAMPLE}")
    if problem := _character_problem(text):
        raise AddressError(problem)
    if text.count("@") != 1:
        raise AddressError(f"is not exactly one email address {EXAMPLE}")
    try:
        parsed = Address(addr_spec=text)
    except (HeaderParseError, IndexError, ValueError) as exc:  # IndexError: the stdlib parser on "a@"
        raise AddressError(f"is not an email address {EXAMPLE} ({exc})") from exc
    if parsed.addr_spec != text or not DOT_ATOM.match(parsed.username):
        raise AddressError(f"is not exactly one email address {EXAMPLE}")
    if problem := _domain_problem(parsed.domain):
        raise AddressError(problem)
    return text.lower()


def mailbox(value: object) -> str:
    """A sender: one address, with or without a display name (`Acme CS <cs@acme.example>`)."""
    if not isinstance(value, str) or not value.strip():
        raise AddressError('is not an address; write it like "Acme Customer Success <cs@acme.example>"')
    text = value.strip()
    if control := next((c for c in text if ord(c) < 32 or ord(c) == 127), None):
        raise AddressError(f"holds the control character U+{ord(control):04X}")
    header = _HEADERS("From", text)
    assert isinstance(header, AddressHeader)  # the registry's From header class is an address header
    if header.defects or len(header.addresses) != 1:
        raise AddressError(
            'is not one address: write it like "Acme Customer Success <cs@acme.example>" or cs@acme.example '
            "(put a display name with a comma in double quotes)"
        )
    bare_address(header.addresses[0].addr_spec)
    return text


def allow_entry(entry: object) -> str:
    """An allow-list entry as matched: a whole address, or a whole domain (`vendor.example`, `@vendor.example`)."""
    if not isinstance(entry, str) or not entry.strip():
        raise AddressError("is empty; give an address or a domain like vendor.example")
    text = entry.strip().lower()
    if problem := _character_problem(text, "one address or domain"):
        raise AddressError(problem)
    if text.startswith("@") or "@" not in text:
        domain = text.removeprefix("@")
        if problem := _domain_problem(domain):
            raise AddressError(problem)
        return domain
    return bare_address(text)


def is_allowed(address: str, entries: Iterable[str]) -> bool:
    """`address` is one bare address whose whole address or whole domain is an entry (no subdomains)."""
    try:
        address = bare_address(address)
    except AddressError:
        return False
    matched = set()
    for entry in entries:
        try:
            matched.add(allow_entry(entry))
        except AddressError:
            continue  # an entry that is neither an address nor a domain allows no one
    return address in matched or address.rpartition("@")[2] in matched


def refusal(address: str, entries: Iterable[str]) -> str | None:
    """Why `address` may not receive what the allow-list guards, or None when it may."""
    try:
        bare_address(address)
    except AddressError as exc:
        return f"not one address: it {exc}"
    return None if is_allowed(address, entries) else "not on the allow-list"


def entry_problems(entries: Iterable[str]) -> list[str]:
    """Each allow-list entry that is neither an address nor a domain, with why."""
    problems = []
    for entry in entries:
        try:
            allow_entry(entry)
        except AddressError as exc:
            problems.append(f"{entry!r} {exc}")
    return problems
