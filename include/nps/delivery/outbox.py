"""The message ledger: every message is a row before it is sent, and its outcome after.

Rows are keyed by (wave, kind, recipient), so re-running a task sends only what is still
pending. A row is claimed (`sending`) just before its send and its outcome is committed with the
next row's claim, so a task killed mid-send leaves at most one row `sending`: that row alone is
in doubt (the server may have taken it), and a policy decides its fate: resent with the same
Message-ID, or held `in_doubt` for a person. A row never tried is always sent by the retry. A
transiently refused row waits for its own retry time (`next_attempt_at`, see `backoff`) within
the mailing's window, like a mail server's deferred queue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.exc import OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from include.nps.core import storage
from include.nps.core.rate_limits import Pacer
from include.nps.delivery.transports import PermanentFailure, TransientFailure, Transport

log = logging.getLogger(__name__)

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
MAX_ATTEMPTS = 3  # tries of a message transiently refused, when its mailing has no window
PAGE_SIZE = 200  # due rows read at once; each is claimed on its own just before its send
CHUNK_SIZE = 500  # messages per mapped send task
BACKOFF_FIRST = dt.timedelta(minutes=1)  # wait after the first transient refusal, doubled each time
BACKOFF_CAP = dt.timedelta(minutes=30)
BACKOFF_JITTER = 0.1  # up to this share of the wait is added at random, so deferred rows spread out
BACKOFF_CHANNELS = {"email"}  # chat and HTTP rows refused transiently are due again at the next call
LEASE = dt.timedelta(minutes=15)  # longer than one message's send: a row `sending` longer has lost its sender
DATABASE_PATIENCE = 120  # seconds an outcome waits for the database to come back before the task fails
LONGEST_PAUSE = 120  # seconds of a server's Retry-After honoured inside the task; longer ones defer the row
IN_DOUBT_POLICIES = ("resend", "hold")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How a mailing treats what does not go through at once. `in_doubt`: a send interrupted by a
    crash is resent with its Message-ID ("resend": it may arrive twice) or held for a person
    ("hold": it may never arrive). `window_end`: deferred messages are retried until then and failed
    after (None: MAX_ATTEMPTS tries). `wait_up_to`: a deferred message due within this is waited
    for in the call; a later one is left to the task's retry."""

    in_doubt: str = "resend"
    window_end: dt.datetime | None = None
    wait_up_to: dt.timedelta = dt.timedelta(0)

    def __post_init__(self) -> None:
        if self.in_doubt not in IN_DOUBT_POLICIES:
            raise ValueError(f"in_doubt must be one of {IN_DOUBT_POLICIES}, not {self.in_doubt!r}")


DEFAULT_POLICY = DeliveryPolicy()


class DeliveryIncomplete(RuntimeError):
    """Some messages hit a transient failure and are left pending, each until its retry time, for the
    task's retry."""


@dataclass(frozen=True)
class Outcome:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retry: int = 0
    in_doubt: int = 0  # interrupted sends found by this call (resent or held, per the policy)


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
    policy: DeliveryPolicy = DEFAULT_POLICY,
) -> Outcome:
    """Send every due message of `kind` (of one chunk, when given), recording each outcome.

    Every row due when the call starts (never tried, or its retry time come) is tried once; a
    transiently refused one is deferred by `backoff` and tried again in this call when it comes due
    within the policy's `wait_up_to`, else left to a later call. With a `window_end`, deferred rows
    are tried until then and failed with their last reply after; without, after MAX_ATTEMPTS tries.
    Raises `DeliveryIncomplete` when pending rows remain, so the task's retry resumes there.
    A row found `sending` from a dead sender is in doubt and handled by the `in_doubt` policy."""
    scope = {"wave_id": wave_id, "kind": kind, "chunk": chunk}
    sender = sender_identity()
    window_end, wait_up_to = policy.window_end, policy.wait_up_to
    doubted = _recover_interrupted(engine, scope, sender, policy.in_doubt)
    if window_end is not None:
        storage.execute(engine, storage.query("expire_deferred_messages"), {**scope, "window_end": window_end})
    suppressed = 0
    if kind in CUSTOMER_KINDS:
        suppressed = storage.execute(engine, storage.query("suppress_opted_out"), scope)
    pacer = getattr(transport, "pacer", None) or Pacer()
    totals = {"sent": 0, "failed": 0, "pending": 0}
    with _Ledger(engine) as ledger:
        while True:
            due = storage.utcnow()  # rows deferred by this pass come due after it
            for result in _send_due(ledger, scope, sender, due, render, transport, pacer, window_end):
                totals[result["status"]] += 1
            wait = _wait_for_next_due(engine, scope, wait_up_to, window_end)
            if wait is None:
                break
            time.sleep(wait)
    _raise_if_pending(engine, scope)
    retried = totals.pop("pending")
    return Outcome(suppressed=suppressed, retry=retried, in_doubt=doubted, **totals)


def sender_identity() -> str:
    """Who is sending: the Airflow task (its dag, run and task ids, which the task runner exports),
    whose earlier tries are the same sender; outside Airflow, this host's process."""
    task = [os.environ.get(f"AIRFLOW_CTX_{part}") for part in ("DAG_ID", "DAG_RUN_ID", "TASK_ID")]
    if all(task):
        return "airflow:" + "/".join(task)[:480]  # type: ignore[arg-type]
    return f"process:{socket.gethostname()}:{os.getpid()}"


def _recover_interrupted(engine: Engine, scope: dict[str, Any], sender: str, policy: str) -> int:
    """Rows left `sending` by a dead sender (this sender's earlier try, or anyone's past the lease)
    are in doubt: pending again to resend, or held `in_doubt`, per `policy`; logged either way."""
    params = {**scope, "sender": sender, "policy": policy, "lease_start": storage.utcnow() - LEASE}
    found = storage.execute(engine, storage.query("recover_interrupted_sends"), params)
    if found:
        action = "resent with their Message-ID" if policy == "resend" else "held for a person"
        log.warning("%d %s message(s) were interrupted mid-send and are in doubt: %s", found, scope["kind"], action)
    return found


class _Ledger:
    """The connection a call's claims and outcomes go through, one transaction each: held for the
    call rather than taken from the pool per message; dropped and opened again when the database
    goes away (see `_patiently`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> _Ledger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._drop()

    def transaction(self, work: Callable[[Connection], Any]) -> Any:
        """`work(conn)` in one transaction, committed; tried again while the database is away."""

        def attempt() -> Any:
            if self._conn is None:
                self._conn = self.engine.connect()
            try:
                with self._conn.begin():
                    return work(self._conn)
            except OperationalError:
                self._drop()
                raise

        return _patiently(attempt)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a connection the database cut may not close cleanly
                self._conn.close()
            self._conn = None


def _send_due(
    ledger: _Ledger,
    scope: dict[str, Any],
    sender: str,
    due: dt.datetime,
    render: Callable[[dict], Any],
    transport: Transport,
    pacer: Pacer,
    window_end: dt.datetime | None,
) -> Iterator[dict]:
    """Try each row due by `due` once, yielding its outcome. Each row's claim is committed with the
    previous row's outcome, in one transaction, so at most one row is `sending` at any time."""
    previous: dict | None = None
    engine = ledger.engine
    for recipient in _due_recipients(engine, scope, due):
        claimed = _record_and_claim(ledger, previous, {**scope, "recipient": recipient}, sender, due)
        previous = None
        if claimed is None:  # another sender took it (or deferred it) since the page was read
            continue
        payload = _render(engine, claimed, render)
        pacer.wait()
        previous = _send_one(claimed, payload, transport, window_end)
        if previous.get("retry_after"):
            pacer.pause(min(previous["retry_after"], LONGEST_PAUSE))
        yield previous
    if previous is not None:
        _record_and_claim(ledger, previous, None, sender, due)


def _due_recipients(engine: Engine, scope: dict[str, Any], due: dt.datetime) -> Iterator[str]:
    """The recipients of the scope's rows due by `due`, in recipient order, a page at a time."""
    after = ""
    while True:
        page = _patiently(
            functools.partial(
                storage.fetch_all, engine, storage.query("due_messages"), **scope, due=due, after=after, limit=PAGE_SIZE
            )
        )
        yield from (row["recipient"] for row in page)
        if len(page) < PAGE_SIZE:
            return
        after = page[-1]["recipient"]


def _record_and_claim(
    ledger: _Ledger, outcome: dict | None, row: dict | None, sender: str, due: dt.datetime
) -> dict | None:
    """Commit the previous message's outcome (and its bounce) and claim the next row, in one
    transaction, patiently (see `_patiently`); when the database stays away, the sent message stays
    `sending` (in doubt for the next try) and its outcome is logged."""

    def transaction(conn: Connection) -> dict | None:
        if outcome is not None:
            _record(conn, outcome)
        return _claim(conn, row, sender, due) if row is not None else None

    try:
        return ledger.transaction(transaction)
    except OperationalError:
        if outcome is not None:
            log.error("could not record the outcome of %s: %s", _describe(outcome), outcome["status"])
        raise


def _patiently(work: Callable[[], Any]) -> Any:
    """`work()`, tried again while the database is unreachable (a restart, a failover, a network
    cut), backing off up to 15 seconds, for at most DATABASE_PATIENCE seconds; then its error."""
    try:
        return work()
    except OperationalError as exc:
        log.warning("the NPS database is unreachable, trying again: %s", exc)
    retrying = Retrying(
        retry=retry_if_exception_type(OperationalError),
        wait=wait_exponential(multiplier=0.5, max=15),
        stop=stop_after_delay(DATABASE_PATIENCE),
        before_sleep=_log_unreachable,
        reraise=True,
    )
    return retrying(work)


def _log_unreachable(state: RetryCallState) -> None:
    assert state.outcome is not None  # tenacity calls before_sleep after a failed attempt
    log.warning("the NPS database is unreachable, trying again: %s", state.outcome.exception())


@functools.cache
def _statement(name: str) -> TextClause:
    """The named query `name` as a statement, built once."""
    return text(storage.query(name))


def _record(conn: Connection, outcome: dict) -> None:
    keys = ("wave_id", "kind", "recipient", "status", "error", "message_id", "sent_at", "next_attempt_at")
    conn.execute(_statement("record_outcome"), {key: outcome.get(key) for key in keys})
    if outcome.get("bounced") and outcome["kind"] in CUSTOMER_KINDS:
        conn.execute(
            text("UPDATE contacts SET bounced_at = :now WHERE contact_id = :contact_id AND bounced_at IS NULL"),
            {"now": storage.utcnow(), "contact_id": outcome["recipient"]},
        )


def _claim(conn: Connection, row: dict, sender: str, due: dt.datetime) -> dict | None:
    params = {**row, "sender": sender, "now": storage.utcnow(), "due": due}
    claimed = conn.execute(_statement("claim_message"), params).mappings().first()
    return dict(claimed) if claimed else None


def _describe(outcome: dict) -> str:
    return (
        f"{outcome['kind']} to {outcome['recipient']} of {outcome['wave_id']} (Message-ID {outcome.get('message_id')})"
    )


def backoff(attempts: int, channel: str = "email") -> dt.timedelta:
    """The wait before retrying a message transiently refused on its `attempts`-th try: for email
    (greylisting, a busy server) 1, 2, 4, 8 ... minutes, capped at BACKOFF_CAP, plus up to
    BACKOFF_JITTER of it at random; none for chat and HTTP channels, whose retry is the task's."""
    if channel not in BACKOFF_CHANNELS:
        return dt.timedelta(0)
    wait = min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return wait * (1 + random.uniform(0, BACKOFF_JITTER))


def _wait_for_next_due(
    engine: Engine, scope: dict[str, Any], wait_up_to: dt.timedelta, window_end: dt.datetime | None
) -> float | None:
    """Seconds to sleep before the scope's next deferred row comes due, when that is within
    `wait_up_to` (and the window); None when there is none or it is later (the task's retry's)."""
    if wait_up_to <= dt.timedelta(0):
        return None
    next_at = _next_due(engine, scope)
    if next_at is None or (window_end is not None and next_at > window_end):
        return None
    wait = (next_at - storage.utcnow()).total_seconds()
    return max(wait, 0.0) if wait <= wait_up_to.total_seconds() else None


# By scope (a chunk, or the whole kind): a chunk's rows are read by the outbox_status index, not
# among all the kind's (`:chunk IS NULL OR chunk = :chunk` would read them all, per chunk).
NEXT_DUE = {
    "chunk": "SELECT MIN(next_attempt_at) AS next_at FROM outbox WHERE wave_id = :wave_id AND kind = :kind"
    " AND chunk = :chunk AND status = 'pending' AND next_attempt_at IS NOT NULL",
    "kind": "SELECT MIN(next_attempt_at) AS next_at FROM outbox WHERE wave_id = :wave_id AND kind = :kind"
    " AND status = 'pending' AND next_attempt_at IS NOT NULL",
}
STILL_PENDING = {
    "chunk": "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next_at FROM outbox WHERE wave_id = :wave_id"
    " AND kind = :kind AND chunk = :chunk AND status = 'pending'",
    "kind": "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next_at FROM outbox WHERE wave_id = :wave_id"
    " AND kind = :kind AND status = 'pending'",
}


def _scoped(queries: dict[str, str], scope: dict[str, Any]) -> str:
    return queries["kind" if scope["chunk"] is None else "chunk"]


def _next_due(engine: Engine, scope: dict[str, Any]) -> dt.datetime | None:
    row = storage.fetch_one(engine, _scoped(NEXT_DUE, scope), **scope)
    return storage.as_utc(row["next_at"]) if row else None


def _raise_if_pending(engine: Engine, scope: dict[str, Any]) -> None:
    """Raise `DeliveryIncomplete` when rows of the scope are still pending, saying when the next is due."""
    row = storage.fetch_one(engine, _scoped(STILL_PENDING, scope), **scope)
    if row and row["n"]:
        next_at = storage.as_utc(row["next_at"])
        when = next_at.isoformat(timespec="seconds") if next_at else "now"
        raise DeliveryIncomplete(
            f"{row['n']} {scope['kind']} message(s) still pending after a transient failure; next retry due {when}"
        )


def _render(engine: Engine, row: dict, render: Callable[[dict], Any]) -> Any:
    """The claimed row's payload, or the `PermanentFailure` that refuses it (a contact gone from the
    audience); any other error releases the claim, as nothing was sent, and is raised."""
    try:
        return render(row)
    except PermanentFailure as exc:
        return exc
    except Exception:
        storage.execute(
            engine,
            "UPDATE outbox SET status = 'pending', attempts = attempts - 1, claimed_by = NULL, claimed_at = NULL"
            " WHERE wave_id = :wave_id AND kind = :kind AND recipient = :recipient AND status = 'sending'",
            {key: row[key] for key in ("wave_id", "kind", "recipient")},
        )
        raise


def _send_one(row: dict, payload: Any, transport: Transport, window_end: dt.datetime | None) -> dict:
    """Send one claimed row's payload; its outcome as a `record_outcome` row. A transient failure
    leaves it pending until its backoff (or the server's Retry-After), or failed with its last reply
    when the next try would fall after `window_end` (without one: after MAX_ATTEMPTS tries)."""
    result = {key: row[key] for key in ("wave_id", "kind", "recipient")}
    failed = {"message_id": None, "sent_at": None, "next_attempt_at": None}
    try:
        if isinstance(payload, PermanentFailure):
            raise payload
        transport.send(payload)
    except PermanentFailure as exc:
        return {**result, **failed, "status": "failed", "error": str(exc)[:1000], "bounced": exc.bounce}
    except TransientFailure as exc:
        attempts = row["attempts"] + 1
        retry_at = storage.utcnow() + max(backoff(attempts, row["channel"]), dt.timedelta(seconds=exc.retry_after))
        if retry_at > window_end if window_end is not None else attempts >= MAX_ATTEMPTS:
            return {**result, **failed, "status": "failed", "error": str(exc)[:1000]}
        pending = {"status": "pending", "error": str(exc)[:1000], "next_attempt_at": retry_at}
        return {**result, **failed, **pending, "retry_after": exc.retry_after}
    msg_id = payload.get("Message-ID") if hasattr(payload, "get") else None
    return {
        **result,
        "status": "sent",
        "error": None,
        "message_id": msg_id,
        "sent_at": storage.utcnow(),
        "next_attempt_at": None,
    }


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


def in_doubt(engine: Engine, wave_id: str) -> list[dict]:
    """The wave's messages held in doubt, for a person to decide (`decide_in_doubt`)."""
    return storage.fetch_all(
        engine,
        "SELECT kind, recipient, address, attempts, message_id, last_error FROM outbox"
        " WHERE wave_id = :w AND status = 'in_doubt' ORDER BY kind, recipient",
        w=wave_id,
    )


def decide_in_doubt(engine: Engine, wave_id: str, kind: str, recipient: str, decision: str) -> bool:
    """A person's decision on a message in doubt, having looked (the relay's log, the recipient):
    "arrived" records it sent; "resend" makes it pending again, for the next run of its send task
    (clear the task in Airflow). False when no such message is in doubt."""
    if decision not in IN_DOUBT_DECISIONS:
        raise ValueError(f"decision must be one of {sorted(IN_DOUBT_DECISIONS)}, not {decision!r}")
    status, note = IN_DOUBT_DECISIONS[decision]
    changed = storage.execute(
        engine,
        "UPDATE outbox SET status = :status, last_error = :note, next_attempt_at = NULL"
        " WHERE wave_id = :w AND kind = :k AND recipient = :r AND status = 'in_doubt'",
        {"status": status, "note": note, "w": wave_id, "k": kind, "r": recipient},
    )
    return changed == 1


IN_DOUBT_DECISIONS = {
    "arrived": ("sent", "was in doubt after an interrupted send; a person found it arrived"),
    "resend": ("pending", "was in doubt after an interrupted send; a person asked to send it again"),
}


def main(argv: list[str] | None = None) -> None:
    """Messages in doubt: `python -m include.nps.delivery.outbox WAVE_ID` lists them;
    `python -m include.nps.delivery.outbox WAVE_ID KIND RECIPIENT arrived|resend` decides one."""
    import sys

    from include.nps.core.connections import nps_engine

    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1:
        for row in in_doubt(nps_engine(), args[0]):
            print(f"{row['kind']}\t{row['recipient']}\t{row['address']}\t{row['message_id'] or ''}")
        return
    if len(args) != 4:
        raise SystemExit("usage: python -m include.nps.delivery.outbox WAVE_ID [KIND RECIPIENT arrived|resend]")
    if not decide_in_doubt(nps_engine(), *args):
        raise SystemExit(f"no {args[1]} message to {args[2]} of {args[0]} is in doubt")


if __name__ == "__main__":
    main()
