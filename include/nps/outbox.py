"""The message ledger: every message is a row before it is sent, and its outcome after.

Rows are keyed by (wave, kind, recipient), so re-running a task sends only what is still
pending. A row is claimed (`sending`) before the send; a send interrupted by a crash is
recorded as failed rather than risked twice: nobody is emailed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from include.nps import storage
from include.nps.delivery import PermanentFailure, TransientFailure, Transport

CUSTOMER_KINDS = {
    "preannouncement",
    "invitation",
    "reminder",
    "followup_promoter",
    "followup_passive",
    "followup_detractor",
    "followup_critical",
    "flash_results",
}
MAX_ATTEMPTS = 3
BATCH_SIZE = 200
CHUNK_SIZE = 500  # messages per mapped send task


class DeliveryIncomplete(RuntimeError):
    """Some messages hit a transient failure and are left pending for the task's retry."""


@dataclass(frozen=True)
class Outcome:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retry: int = 0


def enqueue(
    engine: Engine,
    wave_id: str,
    kind: str,
    recipients: Iterable[tuple[str, str]],
    channel: str = "email",
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Add (recipient, address) rows for `kind`, numbered into chunks of `chunk_size` in recipient
    order; rows already in the ledger are left alone."""
    now = storage.utcnow()
    rows = [
        {
            "wave_id": wave_id,
            "kind": kind,
            "recipient": r,
            "address": a,
            "channel": channel,
            "chunk": index // chunk_size,
            "created_at": now,
        }
        for index, (r, a) in enumerate(sorted(recipients))
    ]
    return storage.execute(engine, storage.query("enqueue_message"), rows)


def chunks(engine: Engine, wave_id: str, kind: str) -> list[int]:
    """The chunk numbers of `kind`: one mapped send task each."""
    rows = storage.fetch_all(
        engine,
        "SELECT DISTINCT chunk FROM outbox WHERE wave_id = :w AND kind = :k ORDER BY chunk",
        w=wave_id,
        k=kind,
    )
    return [int(row["chunk"]) for row in rows]


def deliver(
    engine: Engine,
    wave_id: str,
    kind: str,
    render: Callable[[dict], Any],
    transport: Transport,
    chunk: int | None = None,
) -> Outcome:
    """Send every pending message of `kind` (of one chunk, when given), recording each outcome.

    Rows are claimed before their send, so tasks working the same kind at once (the
    real-time DAG and the wave's close) never send a message twice. A row found still `sending`
    when a task starts is an interrupted attempt's: recorded as failed, never sent again."""
    scope = {"wave_id": wave_id, "kind": kind, "chunk": chunk}
    storage.execute(engine, storage.query("fail_interrupted_sends"), scope)
    suppressed = 0
    if kind in CUSTOMER_KINDS:
        suppressed = storage.execute(engine, storage.query("suppress_opted_out"), scope)
    totals = {"sent": 0, "failed": 0, "retry": 0}
    while batch := _claim_batch(engine, scope):
        results = [_send_one(row, render, transport) for row in batch]
        storage.execute(engine, storage.query("record_outcome"), results)
        if kind in CUSTOMER_KINDS:
            _record_bounces(engine, [r["recipient"] for r in results if r.get("bounced")])
        for result in results:
            totals[{"sent": "sent", "failed": "failed", "pending": "retry"}[result["status"]]] += 1
        if totals["retry"]:
            break
    outcome = Outcome(suppressed=suppressed, **totals)
    if outcome.retry:
        raise DeliveryIncomplete(f"{outcome.retry} {kind} message(s) hit a transient failure and will be retried")
    return outcome


def _claim_batch(engine: Engine, scope: dict[str, Any]) -> list[dict]:
    """The next pending rows, claimed (`sending`) in one statement: a row another task claimed
    first is left to it, so two tasks on one kind never send the same message."""
    with engine.begin() as conn:
        claimed = conn.execute(text(storage.query("claim_messages")), {**scope, "limit": BATCH_SIZE})
        return sorted((dict(row) for row in claimed.mappings()), key=lambda row: row["recipient"])


def _send_one(row: dict, render: Callable[[dict], Any], transport: Transport) -> dict:
    result = {key: row[key] for key in ("wave_id", "kind", "recipient")}
    try:
        payload = render(row)
        transport.send(payload)
    except PermanentFailure as exc:
        return {
            **result,
            "status": "failed",
            "error": str(exc)[:1000],
            "message_id": None,
            "sent_at": None,
            "bounced": exc.bounce,
        }
    except TransientFailure as exc:
        status = "failed" if row["attempts"] + 1 >= MAX_ATTEMPTS else "pending"
        return {**result, "status": status, "error": str(exc)[:1000], "message_id": None, "sent_at": None}
    msg_id = payload.get("Message-ID") if hasattr(payload, "get") else None
    return {**result, "status": "sent", "error": None, "message_id": msg_id, "sent_at": storage.utcnow()}


def _record_bounces(engine: Engine, contact_ids: list[str]) -> None:
    """An address the server refused as bad (a bounce) is suppressed in every later message."""
    storage.execute(
        engine,
        "UPDATE contacts SET bounced_at = :now WHERE contact_id = :contact_id AND bounced_at IS NULL",
        [{"now": storage.utcnow(), "contact_id": c} for c in contact_ids],
    )


def counts(engine: Engine, wave_id: str, kind: str | None = None) -> dict[str, dict[str, int]]:
    """{kind: {status: n}} for a wave."""
    rows = storage.fetch_all(
        engine,
        "SELECT kind, status, COUNT(*) AS n FROM outbox WHERE wave_id = :wave_id GROUP BY kind, status",
        wave_id=wave_id,
    )
    result: dict[str, dict[str, int]] = {}
    for row in rows:
        if kind is None or row["kind"] == kind:
            result.setdefault(row["kind"], {})[row["status"]] = int(row["n"])
    return result
