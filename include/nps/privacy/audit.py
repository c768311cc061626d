"""The audit trail: who triggered a wave, a drop, an erasure, an export, a retention run, or applied
sales decisions; when, on what, with which counts. Kept in the NPS DB (`audit_events`).

An event never holds a customer's personal data: the actor is a colleague (an Airflow user, or the
operator named on the command line), the object is a wave, run or request id, and details are
counts. An event with an `event_id` is recorded once, however often its task is re-run.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine

from include.nps.core import storage

SYSTEM = "airflow"  # the actor of what a scheduled run does on its own
ACTIONS = ("wave_triggered", "drop_sent", "decisions_applied", "erasure", "export", "retention")
INSERT = (
    "INSERT INTO audit_events (event_id, occurred_at, actor, action, object_id, wave_id, details) "
    "VALUES (:event_id, :occurred_at, :actor, :action, :object_id, :wave_id, :details) "
    "ON CONFLICT (event_id) DO NOTHING"
)


def record(
    engine: Engine,
    actor: str | None,
    action: str,
    object_id: str | None = None,
    wave_id: str | None = None,
    details: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> bool:
    """Record one event; False when an event with this id was recorded already."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    row = {
        "event_id": event_id or uuid.uuid4().hex,
        "occurred_at": storage.utcnow(),
        "actor": (actor or SYSTEM)[:254],
        "action": action,
        "object_id": object_id,
        "wave_id": wave_id,
        "details": json.dumps(details or {}, sort_keys=True, default=str),
    }
    return storage.execute(engine, INSERT, row) == 1


def events(
    engine: Engine, action: str | None = None, wave_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The latest events first, optionally of one action or one wave."""
    rows = storage.fetch_all(
        engine,
        "SELECT event_id, occurred_at, actor, action, object_id, wave_id, details FROM audit_events "
        "WHERE (:action IS NULL OR action = :action) AND (:wave_id IS NULL OR wave_id = :wave_id) "
        "ORDER BY occurred_at DESC, event_id LIMIT :limit",
        action=action,
        wave_id=wave_id,
        limit=limit,
    )
    for row in rows:
        row["occurred_at"] = storage.as_utc(row["occurred_at"])
        row["details"] = json.loads(row["details"] or "{}")
    return rows


def run_actor(dag_run: Any) -> str:
    """Who started an Airflow run: the user who triggered it, else how it started (scheduled, planner)."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = getattr(dag_run, "run_type", None)
    return f"{SYSTEM}:{getattr(run_type, 'value', run_type) or 'run'}"
