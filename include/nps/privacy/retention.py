"""Retention: per program, personal data is kept only as long as its program says.

Three day counts, set on the wave's trigger form (and calendar files) and read from each program's
latest wave (None keeps everything, the default):

- `retention_comment_days` (N): comments and call notes older than N days are emptied (the
  response's comment and its history's, the follow-up's root cause in words and its events' notes)
  and their classified parts deleted; scores and bands stay, so figures do not move;
- `retention_response_days` (M): responses answered more than M days ago are deleted with all that
  hangs off them (history, comment parts, follow-up and its events, sales decision);
- `retention_quarantine_days` (K): quarantined input rows of waves created more than K days ago are
  deleted, and the wave's raw-data drop files (and those sales returned) and rejected-rows CSVs
  written more than K days ago.

The columns come from the inventory (`Table.free_text`, `Table.age`). `apply` does it all in one
transaction per program (a dry run rolls it back) and returns the counts; each run is audited.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from include.nps.core import storage
from include.nps.privacy import audit, delivered, inventory

log = logging.getLogger(__name__)
SETTINGS = ("retention_comment_days", "retention_response_days", "retention_quarantine_days")
# What hangs off a response, children first: deleted with it.
RESPONSE_PARTS = ("followup_events", "followups", "response_history", "comment_parts", "sales_decisions")
FILE_KINDS = ("drop_midwave", "drop_postwave", "rejected_rows", "returned_decisions")
IN_PROGRAM = "t.wave_id IN (SELECT wave_id FROM waves WHERE program = :program)"


@dataclass(frozen=True)
class Policy:
    program: str
    comment_days: int | None = None
    response_days: int | None = None
    quarantine_days: int | None = None

    @classmethod
    def from_params(cls, program: str, params: dict[str, Any]) -> Policy:
        days = [params.get(name) for name in SETTINGS]
        return cls(program, *(None if d in (None, "") else int(d) for d in days))

    @property
    def active(self) -> bool:
        return any(d is not None for d in (self.comment_days, self.response_days, self.quarantine_days))


def policies(engine: Engine) -> list[Policy]:
    """Each program's policy, from the settings of its most recently created wave."""
    rows = storage.fetch_all(
        engine, "SELECT program, params, created_at FROM waves ORDER BY program, created_at, wave_id"
    )
    latest = {row["program"]: json.loads(row["params"] or "{}") for row in rows}
    return [Policy.from_params(program, params) for program, params in sorted(latest.items())]


def apply(
    engine: Engine, now: dt.datetime | None = None, dry_run: bool = False, actor: str | None = None
) -> dict[str, Any]:
    """Apply every program's policy as of `now`; counts per program and action (what would be done
    on a dry run, which changes nothing)."""
    now = now or storage.utcnow()
    counts: dict[str, dict[str, int]] = {}
    for policy in policies(engine):
        if not policy.active:
            continue
        with engine.connect() as conn:
            done = apply_policy(conn, policy, now)
            if dry_run:
                conn.rollback()
            else:
                done |= remove_files(conn, policy, now, dry_run=False)
                conn.commit()
            if dry_run:
                done |= remove_files(conn, policy, now, dry_run=True)
        counts[policy.program] = {action: n for action, n in done.items() if n}
        log.info(
            "retention of program %s%s: %s",
            policy.program,
            " (dry run)" if dry_run else "",
            counts[policy.program] or "nothing due",
        )
    if not dry_run:
        audit.record(engine, actor, "retention", None, details={"counts": counts})
    return {"dry_run": dry_run, "as_of": now.isoformat(), "programs": counts}


def apply_policy(conn: Connection, policy: Policy, now: dt.datetime) -> dict[str, int]:
    """The policy's rows as of `now`, in `conn`'s transaction; counts per action."""
    done: dict[str, int] = {}
    program = {"program": policy.program}
    if policy.comment_days is not None:
        cutoff = now - dt.timedelta(days=policy.comment_days)
        done["comment_parts_deleted"] = _run(
            conn,
            f"DELETE FROM comment_parts AS t WHERE {IN_PROGRAM} AND EXISTS (SELECT 1 FROM responses r WHERE "
            "r.wave_id = t.wave_id AND r.contact_id = t.contact_id AND r.answered_at < :cutoff)",
            {**program, "cutoff": cutoff},
        )
        for table in inventory.with_free_text():
            for column in table.free_text:
                done[f"{table.name}.{column}_emptied"] = _run(
                    conn,
                    f"UPDATE {table.name} AS t SET {column} = NULL "
                    f"WHERE {IN_PROGRAM} AND t.{table.age} < :cutoff AND t.{column} IS NOT NULL",
                    {**program, "cutoff": cutoff},
                )
    if policy.response_days is not None:
        cutoff = now - dt.timedelta(days=policy.response_days)
        old = (
            "EXISTS (SELECT 1 FROM responses r WHERE r.wave_id = t.wave_id AND r.contact_id = t.contact_id "
            "AND r.answered_at < :cutoff)"
        )
        for name in RESPONSE_PARTS:
            done[f"{name}_deleted"] = _run(
                conn, f"DELETE FROM {name} AS t WHERE {IN_PROGRAM} AND {old}", {**program, "cutoff": cutoff}
            )
        done["responses_deleted"] = _run(
            conn,
            f"DELETE FROM responses AS t WHERE {IN_PROGRAM} AND t.answered_at < :cutoff",
            {**program, "cutoff": cutoff},
        )
    if policy.quarantine_days is not None:
        cutoff = now - dt.timedelta(days=policy.quarantine_days)
        done["quarantine_deleted"] = _run(
            conn,
            "DELETE FROM quarantine AS t WHERE t.wave_id IN "
            "(SELECT wave_id FROM waves WHERE program = :program AND created_at < :cutoff)",
            {**program, "cutoff": cutoff},
        )
    return done


def remove_files(conn: Connection, policy: Policy, now: dt.datetime, dry_run: bool) -> dict[str, int]:
    """Drop files and rejected-rows CSVs of the program's waves written more than K days ago."""
    if policy.quarantine_days is None:
        return {}
    cutoff = (now - dt.timedelta(days=policy.quarantine_days)).timestamp()
    rows = conn.execute(text("SELECT wave_id, params FROM waves WHERE program = :p"), {"p": policy.program}).all()
    removed = 0
    for wave_id, params in rows:
        root = delivered.drop_root({**json.loads(params or "{}"), "wave_id": wave_id})
        for kind, path, _ in list(delivered.wave_files(wave_id, root)):
            if kind in FILE_KINDS and _written(path) < cutoff:
                removed += 1
                if not dry_run:
                    path.unlink()
    return {"files_deleted": removed}


def _written(path: Any) -> float:
    return float(path.stat().st_mtime)


def _run(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    return int(conn.execute(text(sql), params).rowcount or 0)
