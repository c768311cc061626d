"""The message ledger: every message is a row before it is sent, and its outcome after.

Rows are keyed by (wave, kind, recipient), so re-running a task sends only what is still
pending. A row is claimed (`sending`) before the send; a send interrupted by a crash is
recorded as failed rather than risked twice: nobody is emailed twice. A transiently refused
row waits for its own retry time (`next_attempt_at`, see `backoff`), like a mail server's
deferred queue.
"""

from __future__ import annotations

import datetime as dt
import random
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
BACKOFF_FIRST = dt.timedelta(minutes=1)  # wait after the first transient refusal, doubled each time
BACKOFF_CAP = dt.timedelta(minutes=30)
BACKOFF_JITTER = 0.1  # up to this share of the wait is added at random, so deferred rows spread out
BACKOFF_CHANNELS = {"email"}  # chat and HTTP rows refused transiently are due again at the next call


class DeliveryIncomplete(RuntimeError):
    """Some messages hit a transient failure and are left pending, each until its retry time, for the
    task's retry."""


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
    """Send every due message of `kind` (of one chunk, when given), recording each outcome.

    Every row due when the call starts (never tried, or its retry time come) is tried once in this
    call; a transiently refused one is deferred to its reply's time plus `backoff` (after this call's
    start on a running clock) and left to a later call. Raises `DeliveryIncomplete` when pending rows
    remain, so the task's retry resumes where this one stopped.
    Rows are claimed before their send, so tasks working the same kind at once (the real-time DAG
    and the wave's close) never send a message twice. A row found still `sending` when a task
    starts is an interrupted attempt's: recorded as failed, never sent again."""
    scope = {"wave_id": wave_id, "kind": kind, "chunk": chunk}
    storage.execute(engine, storage.query("fail_interrupted_sends"), scope)
    suppressed = 0
    if kind in CUSTOMER_KINDS:
        suppressed = storage.execute(engine, storage.query("suppress_opted_out"), scope)
    totals = {"sent": 0, "failed": 0, "retry": 0}
    due = {**scope, "now": storage.utcnow()}  # what this call claims: rows it defers come due after it
    while batch := _claim_batch(engine, due):
        results = [_send_one(row, render, transport) for row in batch]
        storage.execute(engine, storage.query("record_outcome"), results)
        if kind in CUSTOMER_KINDS:
            _record_bounces(engine, [r["recipient"] for r in results if r.get("bounced")])
        for result in results:
            totals[{"sent": "sent", "failed": "failed", "pending": "retry"}[result["status"]]] += 1
    _raise_if_pending(engine, scope)
    return Outcome(suppressed=suppressed, **totals)


def backoff(attempts: int, channel: str = "email") -> dt.timedelta:
    """The wait before retrying a message transiently refused on its `attempts`-th try: for email
    (greylisting, a busy server) 1, 2, 4, 8 ... minutes, capped at BACKOFF_CAP, plus up to
    BACKOFF_JITTER of it at random; none for chat and HTTP channels, whose retry is the task's."""
    if channel not in BACKOFF_CHANNELS:
        return dt.timedelta(0)
    wait = min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return wait * (1 + random.uniform(0, BACKOFF_JITTER))


def _raise_if_pending(engine: Engine, scope: dict[str, Any]) -> None:
    """Raise `DeliveryIncomplete` when rows of the scope are still pending, saying when the next is due."""
    row = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next_at FROM outbox WHERE wave_id = :wave_id"
        " AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'",
        **scope,
    )
    if row and row["n"]:
        next_at = storage.as_utc(row["next_at"])
        when = next_at.isoformat(timespec="seconds") if next_at else "now"
        raise DeliveryIncomplete(
            f"{row['n']} {scope['kind']} message(s) still pending after a transient failure; next retry due {when}"
        )


def _claim_batch(engine: Engine, scope: dict[str, Any]) -> list[dict]:
    """The next pending rows of the scope due by its `now`, claimed (`sending`) in one statement: a row
    another task claimed first is left to it, so two tasks on one kind never send the same message."""
    with engine.begin() as conn:
        params = {"now": storage.utcnow(), **scope, "limit": BATCH_SIZE}
        claimed = conn.execute(text(storage.query("claim_messages")), params)
        return sorted((dict(row) for row in claimed.mappings()), key=lambda row: row["recipient"])


def _send_one(row: dict, render: Callable[[dict], Any], transport: Transport) -> dict:
    """Send one claimed row; its outcome as a `record_outcome` row. A transient failure leaves it
    pending until its backoff, or failed with its last reply after MAX_ATTEMPTS tries."""
    result = {key: row[key] for key in ("wave_id", "kind", "recipient")}
    failed = {"message_id": None, "sent_at": None, "next_attempt_at": None}
    try:
        payload = render(row)
        transport.send(payload)
    except PermanentFailure as exc:
        return {**result, **failed, "status": "failed", "error": str(exc)[:1000], "bounced": exc.bounce}
    except TransientFailure as exc:
        attempts = row["attempts"] + 1
        if attempts >= MAX_ATTEMPTS:
            return {**result, **failed, "status": "failed", "error": str(exc)[:1000]}
        retry_at = storage.utcnow() + backoff(attempts, row["channel"])
        return {**result, **failed, "status": "pending", "error": str(exc)[:1000], "next_attempt_at": retry_at}
    msg_id = payload.get("Message-ID") if hasattr(payload, "get") else None
    return {
        **result,
        "status": "sent",
        "error": None,
        "message_id": msg_id,
        "sent_at": storage.utcnow(),
        "next_attempt_at": None,
    }


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
