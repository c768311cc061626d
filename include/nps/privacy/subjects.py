"""A person whose data is asked for: found by address or contact id, with everything that names them.

`find` gathers, from the inventory's tables, every address the person was known by, their names,
and the free text they wrote or that was written about them (comments, call notes, root causes).
`rows` reads a person's rows of one inventory table; `needles` are the strings that betray them
in free text elsewhere, and `mentions` finds and replaces them.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, bindparam, text

from include.nps.core import storage, subject_keys
from include.nps.privacy.inventory import ERASED_MARK, Table
from include.nps.wave import contact_rules

MIN_TEXT_CHARS = 6  # shorter comments and notes ("ok", "great") identify nobody and are not hunted


class SubjectError(ValueError):
    """The request names no one (neither an address nor a contact id)."""


@dataclass
class Subject:
    contact_id: str | None
    emails: list[str]  # lower case
    names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def params(self, pseudo: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {"contact_id": self.contact_id, "emails": self.emails, "names": self.names}
        if pseudo:
            found |= {"pseudo_id": self.pseudo_id, "pseudo_email": f"{self.pseudo_id}@erased.invalid"}
        return found

    @property
    def pseudo_id(self) -> str:
        """A salted pseudonym, the same on every run: what the person's kept rows are keyed by."""
        basis = self.contact_id or (self.emails[0] if self.emails else "")
        return "erased-" + subject_keys.digests(subject_keys.CONTACT_ID, [basis])[0][:20]

    def hashes(self) -> list[tuple[str, str]]:
        """(digest, kind) of each address and the contact id: the suppression list's rows."""
        keys = [(d, subject_keys.EMAIL) for d in subject_keys.digests(subject_keys.EMAIL, map(_email_key, self.emails))]
        if self.contact_id:
            keys.append((subject_keys.digests(subject_keys.CONTACT_ID, [self.contact_id])[0], subject_keys.CONTACT_ID))
        return keys

    def needles(self) -> list[str]:
        """What betrays the person in free text: addresses, names, contact id, what they wrote."""
        texts = [t for t in self.texts if len(t.strip()) >= MIN_TEXT_CHARS]
        found = [*self.emails, *self.names, *([self.contact_id] if self.contact_id else []), *texts]
        return sorted({n for n in found if n and n.strip()}, key=len, reverse=True)


def _email_key(address: str) -> str:
    return contact_rules.email_key(address)


LISTS = ("emails", "names")  # the parameters that are lists


def bound(sql: str) -> Any:
    """A statement whose `:emails` and `:names` are lists."""
    statement = text(sql)
    lists = [bindparam(name, expanding=True, type_=String()) for name in LISTS if f":{name}" in sql]
    return statement.bindparams(*lists) if lists else statement


def find(conn: Connection, email: str | None = None, contact_id: str | None = None) -> Subject:
    """The person by address and/or contact id, with every address, name and text that is theirs."""
    if not (email and email.strip()) and not (contact_id and contact_id.strip()):
        raise SubjectError("give an email address or a contact id")
    emails = {email.strip().lower()} if email else set()
    cid = contact_id.strip() if contact_id else None
    if cid is None:
        row = conn.execute(
            bound("SELECT contact_id FROM contacts WHERE LOWER(email) IN :emails"), {"emails": sorted(emails)}
        ).first()
        cid = row[0] if row else None
    params = {"contact_id": cid}
    for sql in (
        "SELECT email FROM contacts WHERE contact_id = :contact_id",
        "SELECT DISTINCT email FROM wave_audience WHERE contact_id = :contact_id",
    ):
        emails |= {row[0].lower() for row in conn.execute(text(sql), params).all()}
    names: set[str] = set()
    for sql in (
        "SELECT name FROM contacts WHERE contact_id = :contact_id OR LOWER(email) IN :emails",
        "SELECT DISTINCT name FROM wave_audience WHERE contact_id = :contact_id OR LOWER(email) IN :emails",
    ):
        names |= {row[0] for row in conn.execute(bound(sql), {**params, "emails": sorted(emails)}).all() if row[0]}
    texts: set[str] = set()
    for sql in (
        "SELECT comment FROM responses WHERE contact_id = :contact_id",
        "SELECT comment FROM response_history WHERE contact_id = :contact_id",
        "SELECT text FROM comment_parts WHERE contact_id = :contact_id",
        "SELECT note FROM followup_events WHERE contact_id = :contact_id",
        "SELECT root_cause_other FROM followups WHERE contact_id = :contact_id",
    ):
        texts |= {row[0] for row in conn.execute(text(sql), params).all() if row[0]}
    return Subject(cid, sorted(emails), sorted(names), sorted(texts))


def rows(conn: Connection, table: Table, subject: Subject) -> list[dict[str, Any]]:
    """The person's rows of a pseudonymised or deleted table, whole."""
    sql = f"SELECT * FROM {table.name} t WHERE {table.find}"
    return [dict(row._mapping) for row in conn.execute(bound(sql), subject.params()).all()]


def mentions(conn: Connection, table: Table, subject: Subject) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Rows of a scrubbed table that mention the person: (key, {column: text with them replaced})."""
    needles = subject.needles()
    if not needles:
        return
    forms = sorted({form for needle in needles for form in _forms(needle)}, key=len, reverse=True)
    # LOWER() folds only ASCII on SQLite, all of Unicode on PostgreSQL: a pattern for each
    lowered = sorted({variant for form in forms for variant in (form.lower(), _ascii_lower(form))})
    patterns = {f"p{i}": f"%{_like(form)}%" for i, form in enumerate(lowered)}
    for column in table.personal:
        any_form = " OR ".join(f"LOWER(t.{column}) LIKE :{name} ESCAPE '!'" for name in patterns)
        keys = ", ".join(f"t.{k}" for k in table.key)
        sql = f"SELECT {keys}, t.{column} AS value FROM {table.name} t WHERE {any_form}"
        pattern = _pattern(forms)
        for row in conn.execute(text(sql), patterns).all():
            found = dict(row._mapping)
            value = found.pop("value")
            replaced = pattern.sub(ERASED_MARK, value)
            if replaced != value:
                yield found, {column: replaced}


def _forms(needle: str) -> set[str]:
    """A string as it may be stored: as is, inside JSON (either escaping) and in HTML."""
    return {needle, json.dumps(needle)[1:-1], json.dumps(needle, ensure_ascii=False)[1:-1], html.escape(needle)}


def _ascii_lower(value: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in value)


def _like(value: str) -> str:
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _pattern(forms: list[str]) -> re.Pattern[str]:
    """Any of the forms, case aside; a plain-ASCII word only as a whole word (not inside another)."""
    parts = [rf"(?<!\w){re.escape(f)}(?!\w)" if f.isascii() and f[:1].isalnum() else re.escape(f) for f in forms]
    return re.compile("|".join(parts), re.IGNORECASE)


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON holds it: times in ISO 8601 (UTC), everything else plain."""
    out = {}
    for column, value in row.items():
        if isinstance(value, dt.datetime):
            utc = storage.as_utc(value)
            value = utc.isoformat() if utc else None
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        out[column] = value
    return out
