"""The one inventory of personal data in the NPS DB: which tables hold it, how a person's rows are
found in each, and what becomes of them when the person is erased or their data ages out.

Erasure (`erasure`), export (`export`) and retention (`retention`) are all driven by this list, so
they cannot disagree; `tests/test_privacy.py` reads the live schema and fails when a table with a
text column is neither listed here nor in `NO_PERSONAL_DATA`.

How a person's rows are found (`find`, SQL over the table aliased `t`), with these parameters:
`:contact_id` (their contact id, or None), `:emails` (every address they were known by, lower
case), `:names` (every name they were known by). Rows are then either

- `pseudonymised`: kept for the wave's figures (counts, NPS, response rates), with the contact id
  replaced by a salted pseudonym and every personal column set by `anonymise` (SQL expressions that
  may use `:pseudo_id` and `:pseudo_email`);
- `deleted`: nothing of them is needed once the person is gone;
- `scrubbed` (tables of free text about many people, e.g. data-check examples, alert messages,
  the flash results' quotes): every occurrence of the person's address, name, contact id or
  comment text in `columns` is replaced by `ERASED_MARK`; the rows stay.

Order matters: pseudonymised tables are listed parents first (foreign keys), copies are made in
that order and the originals deleted in the reverse one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ERASED_MARK = "[erased]"
Mode = Literal["pseudonymise", "delete", "scrub"]
BY_CONTACT = "t.contact_id = :contact_id"


@dataclass(frozen=True)
class Table:
    """One table holding personal data of customers."""

    name: str
    mode: Mode
    personal: tuple[str, ...]  # the columns holding personal data (what export shows, what a test searches)
    find: str = BY_CONTACT  # SQL condition on `t` selecting one person's rows (not for `scrub`)
    anonymise: dict[str, str] = field(default_factory=dict)  # column -> SQL value kept (`pseudonymise`)
    key: tuple[str, ...] = ()  # primary key columns (`scrub`: rows are updated by it)
    age: str | None = None  # the timestamp column retention ages a row by
    free_text: tuple[str, ...] = ()  # comments and call notes: emptied by retention after N days


PSEUDO = {"contact_id": ":pseudo_id"}

TABLES: tuple[Table, ...] = (
    Table(
        "contacts",
        "pseudonymise",
        ("contact_id", "email", "name", "role", "timezone"),
        find="t.contact_id = :contact_id OR LOWER(t.email) IN :emails",
        anonymise={
            **PSEUDO,
            "email": ":pseudo_email",
            "name": "''",
            "role": "NULL",
            "timezone": "NULL",
            # never emailed again, whatever a later load says (loads leave it out anyway)
            "opted_out_at": "COALESCE(t.opted_out_at, :now)",
            "updated_at": ":now",
        },
    ),
    Table(
        "wave_audience",
        "pseudonymise",
        ("contact_id", "email", "name"),
        anonymise={**PSEUDO, "email": ":pseudo_email", "name": "''"},
    ),
    Table(
        "responses",
        "pseudonymise",
        ("contact_id", "comment"),
        anonymise={**PSEUDO, "comment": "NULL"},
        age="answered_at",
        free_text=("comment",),
    ),
    Table(
        "response_history",
        "pseudonymise",
        ("contact_id", "comment"),
        anonymise={**PSEUDO, "comment": "NULL"},
        age="submitted_at",
        free_text=("comment",),
    ),
    Table(
        "followups",
        "pseudonymise",
        ("contact_id", "root_cause_other", "crm_task_id"),
        anonymise={**PSEUDO, "root_cause_other": "NULL", "crm_task_id": "NULL"},
        age="created_at",
        free_text=("root_cause_other",),
    ),
    Table(
        "followup_events",
        "pseudonymise",
        ("contact_id", "note"),
        anonymise={**PSEUDO, "note": "NULL"},
        age="event_at",
        free_text=("note",),
    ),
    Table("sales_decisions", "pseudonymise", ("contact_id",), anonymise=dict(PSEUDO)),
    Table(
        "outbox",
        "pseudonymise",
        ("recipient", "address", "last_error"),
        find="t.recipient = :contact_id OR LOWER(t.address) IN :emails",
        anonymise={
            "recipient": ":pseudo_id",
            "address": ":pseudo_email",
            "claimed_by": "NULL",
            # a message not sent yet never will be (counted as suppressed, as an opt-out is)
            "status": "CASE WHEN t.status = 'pending' THEN 'suppressed' ELSE t.status END",
            "last_error": "CASE WHEN t.status = 'pending' THEN 'erased on request' END",
        },
    ),
    Table("comment_parts", "delete", ("contact_id", "matched", "text")),
    Table("survey_link_probes", "delete", ("contact_id",)),  # a link scanners fetched: who it was for
    Table(
        "delivery_events",
        "delete",
        ("address", "recipient", "reason"),
        find="t.recipient = :contact_id OR LOWER(t.address) IN :emails",
    ),
    Table(
        "quarantine",
        "delete",
        ("value",),
        # every cell of an input row that held their contact id, address or name
        find=(
            "EXISTS (SELECT 1 FROM quarantine q WHERE q.wave_id = t.wave_id AND q.source = t.source "
            "AND q.row_number = t.row_number "
            "AND (q.value = :contact_id OR LOWER(q.value) IN :emails OR q.value IN :names))"
        ),
    ),
    Table("check_results", "scrub", ("summary", "details"), key=("wave_id", "step")),
    Table("flash_contents", "scrub", ("content",), key=("wave_id",)),
    Table("alerts", "scrub", ("message", "error"), key=("kind", "scope", "subject", "attempt")),
    Table(
        "action_items",
        "scrub",
        ("title", "reason", "public_note", "checkpoints"),
        key=("wave_id", "item_key"),
    ),
    Table("responses", "scrub", ("quarantine_reason",), key=("wave_id", "contact_id")),
)

# Tables whose text columns hold no customer's personal data, and why (the inventory test reads it).
NO_PERSONAL_DATA: dict[str, str] = {
    "accounts": "companies; sales_owner and csm are colleagues' work addresses",
    "waves": "the wave's settings; addresses in params are colleagues' (recipients, senders)",
    "wave_milestones": "milestone names and times",
    "wave_starts": "the planner's claim of a wave: calendar file and the wave's settings",
    "erased_subjects": "salted hashes only (the suppression list)",
    "audit_events": "who among colleagues did what, with counts; never a customer's data",
    "alembic_version": "the schema revision",
}


def pseudonymised() -> list[Table]:
    return [t for t in TABLES if t.mode == "pseudonymise"]


def deleted() -> list[Table]:
    return [t for t in TABLES if t.mode == "delete"]


def scrubbed() -> list[Table]:
    return [t for t in TABLES if t.mode == "scrub"]


def with_free_text() -> list[Table]:
    return [t for t in TABLES if t.free_text]


def listed_tables() -> set[str]:
    return {t.name for t in TABLES}


def personal_columns() -> dict[str, set[str]]:
    """Every (table, column) the inventory says holds personal data."""
    found: dict[str, set[str]] = {}
    for t in TABLES:
        found.setdefault(t.name, set()).update(t.personal)
    return found
