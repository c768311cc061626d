"""Erase a person: every row that names them is deleted or anonymised, by the inventory.

In one transaction: the rows kept for the waves' figures (the contact, the audience snapshots, the
ledger, responses and their history, follow-ups and their events, sales decisions) are copied under
a salted pseudonym with every personal column emptied, and the originals deleted (parents' copies
first, originals' deletion children first, so foreign keys hold on both databases); the rows nothing
needs any more (comment parts, delivery events, quarantined input rows) are deleted; free text about
many people (data-check examples, alert messages, the flash results' quotes, action items) has every
mention of the person replaced. The address and contact id go on the suppression list as salted
hashes. Scores, bands, waves and accounts stay, so every count and NPS is what it was.

Files already delivered (raw-data drops, reports, rejected-rows CSVs) cannot be reached from here:
they are listed (`delivered_files`) with where they went, so they can be recalled. Running it again
finds nothing more to do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from include.nps.core import storage
from include.nps.privacy import audit, delivered, inventory, subjects
from include.nps.privacy.subjects import Subject, bound


@dataclass
class Erasure:
    erasure_id: str
    counts: dict[str, int] = field(default_factory=dict)  # rows changed per table
    suppressed: int = 0  # salted hashes added to the suppression list
    files: list[dict[str, Any]] = field(default_factory=list)  # delivered files that held the person

    def summary(self) -> dict[str, Any]:
        """What the audit trail and the task's log keep: counts and file kinds, no personal data."""
        kinds: dict[str, int] = {}
        for f in self.files:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        return {
            "rows": self.counts,
            "rows_total": sum(self.counts.values()),
            "suppressed": self.suppressed,
            "files": kinds,
        }


def erase(
    engine: Engine, actor: str, email: str | None = None, contact_id: str | None = None, reason: str = ""
) -> Erasure:
    """Erase the person with this address or contact id; record who asked in the audit trail."""
    with engine.begin() as conn:
        subject = subjects.find(conn, email, contact_id)
        files = delivered.files_of(conn, subject)
        result = Erasure(uuid.uuid4().hex, files=files)
        result.counts = erase_rows(conn, subject)
        result.suppressed = _suppress(conn, subject, result.erasure_id)
    audit.record(engine, actor, "erasure", result.erasure_id, details={**result.summary(), "reason": reason})
    return result


def erase_rows(conn: Connection, subject: Subject) -> dict[str, int]:
    """Every inventory table's rows of the person, pseudonymised, deleted or scrubbed; counts per table."""
    params = {**subject.params(pseudo=True), "now": storage.utcnow()}
    counts: dict[str, int] = {}
    kept = inventory.pseudonymised()
    for table in kept:  # parents first: each copy's parent copy exists already
        counts[table.name] = _copy(conn, table, params)
    for table in [*reversed(kept), *inventory.deleted()]:  # children first
        deleted = conn.execute(bound(f"DELETE FROM {table.name} AS t WHERE {table.find}"), params).rowcount
        if table.mode == "delete":
            counts[table.name] = deleted
    for table in inventory.scrubbed():
        counts[table.name] = counts.get(table.name, 0) + _scrub(conn, table, subject)
    return {name: n for name, n in counts.items() if n}


def _copy(conn: Connection, table: inventory.Table, params: dict[str, Any]) -> int:
    """Copy the person's rows under the pseudonym, personal columns as the inventory says."""
    columns = _columns(conn, table.name)
    values = ", ".join(table.anonymise.get(c, f"t.{c}") for c in columns)
    names = ", ".join(columns)
    sql = f"INSERT INTO {table.name} ({names}) SELECT {values} FROM {table.name} t WHERE {table.find}"
    return int(conn.execute(bound(sql), params).rowcount or 0)


def _columns(conn: Connection, table: str) -> list[str]:
    from sqlalchemy import inspect

    return [c["name"] for c in inspect(conn).get_columns(table)]


def _scrub(conn: Connection, table: inventory.Table, subject: Subject) -> int:
    changed = 0
    for key, values in list(subjects.mentions(conn, table, subject)):
        sets = ", ".join(f"{c} = :v_{c}" for c in values)
        where = " AND ".join(f"{k} = :k_{k}" for k in key)
        bindings = {**{f"v_{c}": v for c, v in values.items()}, **{f"k_{k}": v for k, v in key.items()}}
        changed += conn.execute(text(f"UPDATE {table.name} SET {sets} WHERE {where}"), bindings).rowcount
    return changed


def _suppress(conn: Connection, subject: Subject, erasure_id: str) -> int:
    now = storage.utcnow()
    rows = [(digest, kind, erasure_id, now) for digest, kind in subject.hashes()]
    before = conn.execute(text("SELECT COUNT(*) FROM erased_subjects")).scalar_one()
    storage.bulk_upsert(
        conn, "erased_subjects", ("subject_hash", "key_kind", "erasure_id", "erased_at"), rows, ("subject_hash",)
    )
    return int(conn.execute(text("SELECT COUNT(*) FROM erased_subjects")).scalar_one() - before)
