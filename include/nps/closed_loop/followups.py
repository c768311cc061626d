"""Follow-up tracking, the closed loop: every routed detractor is called, and what came of it is kept.

States and the only moves between them (`TRANSITIONS`)::

    open ──► contacting ──► reached ──► closed
                 │  ▲
                 ▼  │
             unreachable

A call attempt (tried, call back later or reached) moves an open or unreachable follow-up to
contacting, and on to reached when the customer was reached; "unreachable" needs at least one
attempt; closing needs the customer reached and a root cause. Closed is final. Anything else is
an `IllegalTransition` that says what is allowed.

Every change is one row of the call log (`followup_events`), written in the same transaction as
the change and only if nobody changed the follow-up since it was read (its `revision`): two
people acting at once never overwrite each other. Before calling, an owner claims the follow-up
("I am calling now"); while the claim lasts (`claim_minutes` of the rules) nobody else can log a
call, and logging the call ends it. So two people never call the same customer at once.

The root cause comes from the taxonomy of `rules/followups.yaml` (`other` asks for free text).
The first time one is recorded, an incentive is assigned among that root cause's variants (the
control `none` included), reproducibly at random from the follow-up's id, and never changed.

The same moves come from the internal follow-up form (`web/survey_form.py`, `/followup/<signed link>`),
from the CRM task's status (`sync_crm`) and from the daily SLA sweep (`sweep_sla`), which
escalates a follow-up nobody contacted in time to its escalation target, once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from sqlalchemy import Engine, inspect, text

from include.nps.closed_loop.followup_rules import DEFAULT_RULES as DEFAULT_RULES
from include.nps.closed_loop.followup_rules import RULES_ENV as RULES_ENV
from include.nps.closed_loop.followup_rules import FollowupRulesError as FollowupRulesError
from include.nps.closed_loop.followup_rules import RootCause as RootCause
from include.nps.closed_loop.followup_rules import Rules as Rules
from include.nps.closed_loop.followup_rules import load_rules as load_rules
from include.nps.closed_loop.followup_rules import parse_rules as parse_rules
from include.nps.closed_loop.followup_rules import rules_path as rules_path
from include.nps.core import business_days, clean_text, emails, signed_links, storage
from include.nps.core.connections import survey_base_url
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, Transport
from include.nps.wave import waves

log = logging.getLogger(__name__)

STATES = ("open", "contacting", "reached", "closed", "unreachable")
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"contacting"}),
    "contacting": frozenset({"contacting", "reached", "unreachable"}),
    "reached": frozenset({"reached", "closed"}),
    "unreachable": frozenset({"contacting"}),
    "closed": frozenset(),
}
IN_PROGRESS = ("open", "contacting", "reached")
ATTEMPT_OUTCOMES = ("tried", "call_back_later", "reached")
ACTIONS = ("claim", "release", "attempt", "unreachable", "root_cause", "close")
ESCALATION_KIND = "followup_escalation"
LINK_LIFETIME = dt.timedelta(days=90)
MAX_NOTE = 2000
MAX_OTHER_TEXT = 500
MAX_ACTOR = 254
TRACKED = (
    "status",
    "claimed_by",
    "claimed_at",
    "root_cause",
    "root_cause_other",
    "incentive",
    "incentive_root_cause",
    "incentive_at",
    "rules_version",
    "recovered",
    "closed_at",
    "escalated_at",
    "escalated_to",
    "crm_status",
    "crm_synced_at",
)
TIMES = ("created_at", "sla_due_at", "claimed_at", "incentive_at", "closed_at", "escalated_at", "crm_synced_at")


# --- errors -------------------------------------------------------------------------------------


class FollowupError(Exception):
    """A change that cannot be made; `code` names it for the form, `details` fill its message."""

    status = 422

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.details = code, details


class FollowupNotFound(FollowupError):
    status = 404


class IllegalTransition(FollowupError):
    status = 409


class AlreadyClaimed(FollowupError):
    """Someone else is calling this customer right now."""

    status = 409


class StaleFollowup(FollowupError):
    """Someone changed the follow-up since it was read: read it again, then decide."""

    status = 409


class InvalidInput(FollowupError):
    status = 422


# --- rules: taxonomy, incentives, CRM statuses, SLA (loaded and checked in followup_rules.py) ------


def assign_incentive(wave_id: str, contact_id: str, variants: tuple[str, ...] | list[str]) -> str:
    """One of `variants`, chosen by the SHA-256 of the follow-up's id: uniform over the variants
    across follow-ups, unpredictable to the owner, and the same every time for one follow-up."""
    digest = hashlib.sha256(f"{wave_id}\x00{contact_id}".encode()).digest()
    return variants[int.from_bytes(digest[:8], "big") % len(variants)]


# --- reading ------------------------------------------------------------------------------------


def load(engine: Engine, wave_id: str, contact_id: str) -> dict[str, Any]:
    """The follow-up with its customer, account, answer and wave; FollowupNotFound if none."""
    row = storage.fetch_one(engine, storage.query("followup"), wave_id=wave_id, contact_id=contact_id)
    if row is None:
        raise FollowupNotFound("not_found", f"no follow-up for contact {contact_id!r} in wave {wave_id!r}")
    return _typed(row)


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    for key in TIMES:
        if key in row:
            row[key] = storage.as_utc(row[key])
    if row.get("recovered") is not None:
        row["recovered"] = bool(row["recovered"])
    return row


def events(engine: Engine, wave_id: str, contact_id: str) -> list[dict[str, Any]]:
    rows = storage.fetch_all(engine, storage.query("followup_events"), wave_id=wave_id, contact_id=contact_id)
    for row in rows:
        row["event_at"] = storage.as_utc(row["event_at"])
    return rows


def live_claim(followup: dict[str, Any], now: dt.datetime, rules: Rules) -> dict[str, Any] | None:
    """{by, since, until} while someone's claim lasts, else None."""
    since = followup.get("claimed_at")
    if not followup.get("claimed_by") or since is None or since + rules.claim_ttl <= now:
        return None
    return {"by": followup["claimed_by"], "since": since, "until": since + rules.claim_ttl}


def sla_due(followup: dict[str, Any], rules: Rules) -> dt.datetime:
    """First contact is due at `sla_due_at`, else `first_contact_sla_business_days` business days
    (of the wave's country) after the follow-up was opened."""
    if followup.get("sla_due_at"):
        return storage.as_utc(followup["sla_due_at"])  # type: ignore[return-value]
    created = storage.as_utc(followup["created_at"])
    assert created is not None
    return business_days.add_business_days(created, rules.first_contact_sla_business_days, followup["country"])


def allowed_actions(status: str) -> tuple[str, ...]:
    """What the form offers in `status` (the state machine decides again when it is done)."""
    return {
        "open": ("claim", "release", "attempt"),
        "contacting": ("claim", "release", "attempt", "unreachable"),
        "reached": ("claim", "release", "attempt", "root_cause", "close"),
        "unreachable": ("claim", "release", "attempt"),
        "closed": (),
    }[status]


def next_wave(engine: Engine, wave_id: str, contact_id: str, now: dt.datetime) -> dict[str, Any] | None:
    """The program's next wave after this follow-up's (once closed) and the contact's score in it."""
    return storage.fetch_one(
        engine, storage.query("followup_next_waves"), end=now, wave_id=wave_id, contact_id=contact_id
    )


def card(engine: Engine, wave_id: str, contact_id: str, rules: Rules, now: dt.datetime) -> dict[str, Any]:
    """Everything the follow-up form shows."""
    followup = load(engine, wave_id, contact_id)
    root_cause = rules.root_causes.get(followup["root_cause"] or "")
    return {
        "f": followup,
        "events": events(engine, wave_id, contact_id),
        "claim": live_claim(followup, now, rules),
        "actions": allowed_actions(followup["status"]),
        "root_causes": list(rules.root_causes.values()),
        "root_cause_label": root_cause.label if root_cause else followup["root_cause"],
        "incentive_label": rules.incentives.get(followup["incentive"] or "", followup["incentive"]),
        "sla_due": sla_due(followup, rules),
        "next_wave": next_wave(engine, wave_id, contact_id, now),
        "now": now,
    }


# --- changing: the state machine ----------------------------------------------------------------


def path_between(current: str, target: str) -> list[str] | None:
    """The states passed through from `current` to `target` along allowed moves (shortest), [] when
    already there, None when `target` cannot be reached."""
    if current == target:
        return []
    seen, frontier = {current}, [[current]]
    while frontier:
        route = frontier.pop(0)
        for state in sorted(TRANSITIONS[route[-1]]):
            if state == target:
                return [*route[1:], state]
            if state not in seen:
                seen.add(state)
                frontier.append([*route, state])
    return None


def _move(followup: dict[str, Any], target: str, action: str) -> str:
    """`target` if the follow-up may get there by `action` along allowed moves, else
    IllegalTransition saying what is allowed."""
    current = followup["status"]
    if current == "closed":
        raise IllegalTransition("closed", "this follow-up is closed: nothing can change any more", action=action)
    allowed = target in TRANSITIONS[current] if target == current else path_between(current, target) is not None
    if not allowed:
        raise IllegalTransition(
            "illegal_transition",
            f"cannot {action.replace('_', ' ')} a follow-up that is {current} (allowed from {current}: "
            f"{', '.join(sorted(TRANSITIONS[current])) or 'nothing'})",
            action=action,
            current=current,
            target=target,
        )
    return target


def _require_reached(followup: dict[str, Any], action: str) -> None:
    if followup["status"] == "closed":
        raise IllegalTransition("closed", "this follow-up is closed: nothing can change any more", action=action)
    if followup["status"] != "reached":
        raise IllegalTransition(
            "not_reached", f"the customer must be reached first (the follow-up is {followup['status']})",
            action=action, current=followup["status"],
        )  # fmt: skip


def _check_actor(actor: str | None) -> str:
    actor = " ".join((actor or "").split())
    if not actor:
        raise InvalidInput("actor_missing", "say who you are (your name or email address)")
    if len(actor) > MAX_ACTOR or any(not ch.isprintable() for ch in actor):
        raise InvalidInput("actor_invalid", f"a name or email address of at most {MAX_ACTOR} characters")
    return actor


def _check_text(value: str | None, limit: int, code: str = "text_too_long") -> str | None:
    value = clean_text.clean_multiline(value or "").strip()  # NUL and other controls go; breaks stay
    if len(value) > limit:
        raise InvalidInput(code, f"the text is longer than {limit} characters", limit=limit)
    return value or None


def _not_claimed_by_other(followup: dict[str, Any], actor: str, now: dt.datetime, rules: Rules) -> None:
    claim = live_claim(followup, now, rules)
    if claim and claim["by"].casefold() != actor.casefold():
        raise AlreadyClaimed(
            "already_claimed",
            f"{claim['by']} is calling since {claim['since']:%H:%M} UTC (until {claim['until']:%H:%M} UTC)",
            by=claim["by"],
            since=claim["since"],
            until=claim["until"],
        )


def _apply(
    engine: Engine,
    followup: dict[str, Any],
    changes: dict[str, Any],
    event: dict[str, Any],
    revision: int | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Write `changes` and their call-log row at once, only over the revision they were computed
    from (`revision` when the caller saw an earlier one, e.g. the form): StaleFollowup otherwise."""
    if revision is not None and revision != followup["revision"]:
        raise StaleFollowup("stale", "this follow-up changed since you opened it: review it, then try again")
    new = {key: followup.get(key) for key in TRACKED} | changes
    key = {"wave_id": followup["wave_id"], "contact_id": followup["contact_id"]}
    row = {
        **key,
        "revision": followup["revision"] + 1,
        "event_at": now,
        "from_status": followup["status"],
        "to_status": new["status"],
        "outcome": None,
        "note": None,
        **event,
    }
    with engine.begin() as conn:
        updated = conn.execute(
            text(storage.query("update_followup_tracking")), {**new, **key, "revision": followup["revision"]}
        )
        if not updated.rowcount:
            raise StaleFollowup("stale", "this follow-up changed since you opened it: review it, then try again")
        conn.execute(text(storage.query("insert_followup_event")), row)
    return {**followup, **new, "revision": followup["revision"] + 1}


def claim(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    now: dt.datetime,
    rules: Rules,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """`actor` is calling now: nobody else may log a call until they log theirs, release, or
    `claim_minutes` pass. Claiming again renews one's own claim."""
    actor = _check_actor(actor)
    followup = load(engine, wave_id, contact_id)
    if followup["status"] == "closed":
        raise IllegalTransition("closed", "this follow-up is closed: nothing can change any more", action="claim")
    _not_claimed_by_other(followup, actor, now, rules)
    event = {"actor": actor, "source": source, "action": "claim"}
    return _apply(engine, followup, {"claimed_by": actor, "claimed_at": now}, event, revision, now)


def release(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    now: dt.datetime,
    rules: Rules,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """End one's own claim (or clear one that has run out) without logging a call."""
    actor = _check_actor(actor)
    followup = load(engine, wave_id, contact_id)
    _not_claimed_by_other(followup, actor, now, rules)
    if not followup["claimed_by"]:
        raise InvalidInput("not_claimed", "nobody is calling this customer right now")
    event = {"actor": actor, "source": source, "action": "release"}
    return _apply(engine, followup, {"claimed_by": None, "claimed_at": None}, event, revision, now)


def log_attempt(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    outcome: str,
    now: dt.datetime,
    rules: Rules,
    note: str | None = None,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Log one call attempt (tried, call_back_later or reached) and end the caller's claim.
    Refused while someone else is calling."""
    actor = _check_actor(actor)
    if outcome not in ATTEMPT_OUTCOMES:
        raise InvalidInput("outcome_invalid", f"the call's outcome must be one of {', '.join(ATTEMPT_OUTCOMES)}")
    note = _check_text(note, MAX_NOTE)
    followup = load(engine, wave_id, contact_id)
    _not_claimed_by_other(followup, actor, now, rules)
    # a later call with a customer already reached never takes the loop back
    target = "reached" if outcome == "reached" or followup["status"] == "reached" else "contacting"
    status = _move(followup, target, "attempt")
    event = {"actor": actor, "source": source, "action": "attempt", "outcome": outcome, "note": note}
    changes = {"status": status, "claimed_by": None, "claimed_at": None}
    return _apply(engine, followup, changes, event, revision, now)


def mark_unreachable(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    now: dt.datetime,
    rules: Rules,
    note: str | None = None,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Give up reaching the customer for now (only after at least one attempt); a later attempt reopens it."""
    actor = _check_actor(actor)
    note = _check_text(note, MAX_NOTE)
    followup = load(engine, wave_id, contact_id)
    _not_claimed_by_other(followup, actor, now, rules)
    if followup["status"] == "open":
        raise IllegalTransition(
            "no_attempt_yet", "log at least one call attempt before marking the customer unreachable"
        )
    status = _move(followup, "unreachable", "mark_unreachable")
    event = {"actor": actor, "source": source, "action": "unreachable", "note": note}
    return _apply(engine, followup, {"status": status, "claimed_by": None, "claimed_at": None}, event, revision, now)


def record_root_cause(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    root_cause: str,
    now: dt.datetime,
    rules: Rules,
    other_text: str | None = None,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Record (or correct, until the loop is closed) the root cause of a reached customer. The
    first one recorded assigns the incentive, once: a correction never reassigns it."""
    actor = _check_actor(actor)
    cause = rules.root_causes.get(root_cause or "")
    if cause is None:
        raise InvalidInput("root_cause_invalid", f"choose a root cause from the list ({', '.join(rules.root_causes)})")
    text_value = _check_text(other_text, MAX_OTHER_TEXT, "other_too_long")
    if cause.requires_text and not text_value:
        raise InvalidInput("other_text_missing", f"describe the root cause in a few words ({cause.label})")
    followup = load(engine, wave_id, contact_id)
    _not_claimed_by_other(followup, actor, now, rules)
    _require_reached(followup, "record_root_cause")
    changes: dict[str, Any] = {
        "root_cause": cause.id,
        "root_cause_other": text_value if cause.requires_text else None,
        "rules_version": followup["rules_version"] or rules.version,
    }
    note = text_value if cause.requires_text else None
    if followup["incentive"] is None:
        changes |= {
            "incentive": assign_incentive(wave_id, contact_id, cause.incentives),
            "incentive_root_cause": cause.id,
            "incentive_at": now,
            "rules_version": rules.version,
        }
    event = {"actor": actor, "source": source, "action": "root_cause", "outcome": cause.id, "note": note}
    return _apply(engine, followup, changes, event, revision, now)


def close(
    engine: Engine,
    wave_id: str,
    contact_id: str,
    actor: str,
    recovered: bool,
    now: dt.datetime,
    rules: Rules,
    note: str | None = None,
    revision: int | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Close the loop of a reached customer whose root cause is recorded, with its outcome."""
    actor = _check_actor(actor)
    note = _check_text(note, MAX_NOTE)
    followup = load(engine, wave_id, contact_id)
    _not_claimed_by_other(followup, actor, now, rules)
    _require_reached(followup, "close")
    status = _move(followup, "closed", "close")
    if not followup["root_cause"]:
        raise InvalidInput("root_cause_missing", "record the root cause before closing the loop")
    outcome = "recovered" if recovered else "not_recovered"
    event = {"actor": actor, "source": source, "action": "close", "outcome": outcome, "note": note}
    changes = {"status": status, "recovered": bool(recovered), "closed_at": now, "claimed_by": None, "claimed_at": None}
    return _apply(engine, followup, changes, event, revision, now)


class _FormArguments(TypedDict):
    """The arguments every action of the follow-up form passes (`perform`)."""

    actor: str
    now: dt.datetime
    rules: Rules
    revision: int | None
    source: str


def perform(
    engine: Engine, wave_id: str, contact_id: str, form: Mapping[str, str], rules: Rules, now: dt.datetime
) -> str:
    """Do what the follow-up form asks (its `action` button); return the action done."""
    action = form.get("action", "")
    if action not in ACTIONS:
        raise InvalidInput("action_invalid", "unknown action")
    try:
        revision: int | None = int(form.get("revision", ""))
    except ValueError:
        raise StaleFollowup("stale", "reload the follow-up and try again") from None
    common: _FormArguments = {
        "actor": form.get("actor", ""),
        "now": now,
        "rules": rules,
        "revision": revision,
        "source": "form",
    }
    if action == "claim":
        claim(engine, wave_id, contact_id, **common)
    elif action == "release":
        release(engine, wave_id, contact_id, **common)
    elif action == "attempt":
        log_attempt(engine, wave_id, contact_id, outcome=form.get("outcome", ""), note=form.get("note"), **common)
    elif action == "unreachable":
        mark_unreachable(engine, wave_id, contact_id, note=form.get("note"), **common)
    elif action == "root_cause":
        record_root_cause(
            engine, wave_id, contact_id, root_cause=form.get("root_cause", ""), other_text=form.get("root_cause_other"),
            **common,
        )  # fmt: skip
    else:
        if form.get("recovered") not in ("yes", "no"):
            raise InvalidInput("recovered_missing", "say whether the customer was recovered")
        close(engine, wave_id, contact_id, recovered=form["recovered"] == "yes", note=form.get("note"), **common)
    return action


# --- links --------------------------------------------------------------------------------------


def followup_url(wave_id: str, contact_id: str, now: dt.datetime, lifetime: dt.timedelta = LINK_LIFETIME) -> str:
    """The signed link to the internal follow-up form of one follow-up (valid for `lifetime`)."""
    token = signed_links.sign("followup", wave_id, contact_id, now + lifetime)
    return f"{survey_base_url()}/followup/{token}"


# --- SLA sweep ----------------------------------------------------------------------------------


def sweep_sla(engine: Engine, transport: Transport, rules: Rules, now: dt.datetime) -> dict[str, Any]:
    """Escalate, once, every follow-up still open (nobody contacted the customer) past its SLA:
    an email to its `escalation_target` (else the wave's first CS ops recipient) through the
    ledger (kind `followup_escalation`, recipient the contact id), then `escalated_at` and a
    call-log row. Re-running escalates nothing twice."""
    candidates = storage.fetch_all(engine, storage.query("followups_awaiting_contact"))
    wave_params: dict[str, waves.WaveParams] = {}
    overdue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    no_target = []
    for row in map(_typed, candidates):
        due = sla_due(row, rules)
        if due > now:
            continue
        wave = wave_params.get(row["wave_id"]) or waves.load_params(engine, row["wave_id"])
        wave_params[row["wave_id"]] = wave
        target = (row["escalation_target"] or "").strip() or next(iter(wave.cs_ops_recipients), "")
        if not target:
            no_target.append(row["contact_id"])
            continue
        overdue[row["wave_id"]].append({**row, "due": due, "target": target})
    if no_target:
        log.warning("follow-ups past their SLA with nobody to escalate to: %s", ", ".join(no_target))
    incomplete: list[str] = []
    for wave_id, rows in overdue.items():
        outbox.enqueue(engine, wave_id, ESCALATION_KIND, [(r["contact_id"], r["target"]) for r in rows])
        try:
            outbox.deliver(
                engine, wave_id, ESCALATION_KIND, _escalation_email(wave_params[wave_id], rows, now), transport
            )
        except outbox.DeliveryIncomplete as exc:
            incomplete.append(str(exc))
    escalated = _record_escalations(engine, [r for rows in overdue.values() for r in rows], now)
    if incomplete:
        raise outbox.DeliveryIncomplete("; ".join(incomplete))
    return {"overdue": sum(map(len, overdue.values())), "escalated": escalated, "without_target": len(no_target)}


def _escalation_email(wave: waves.WaveParams, rows: list[dict[str, Any]], now: dt.datetime) -> Callable[[dict], Any]:
    by_contact = {r["contact_id"]: r for r in rows}

    def render(ledger_row: dict[str, Any]) -> Any:
        followup = by_contact.get(ledger_row["recipient"])
        if followup is None:  # pending from an earlier run, contacted since: no escalation needed
            raise PermanentFailure("the follow-up was contacted before its escalation went out")
        context = {
            "f": followup,
            "hours_late": round((now - followup["due"]).total_seconds() / 3600, 1),
            "followup_url": followup_url(wave.wave_id, followup["contact_id"], now),
            "wave": {"name": wave.wave_name, "product": wave.product},
        }
        email = emails.render_email(ESCALATION_KIND, "en", ledger_row["address"], context)
        email.headers = {"X-NPS-Wave": wave.wave_id, "X-NPS-Kind": ESCALATION_KIND}
        msg_id = emails.message_id(wave.sender, wave.wave_id, ESCALATION_KIND, followup["contact_id"])
        return emails.build_mime(email, wave.sender, msg_id)

    return render


def _record_escalations(engine: Engine, rows: list[dict[str, Any]], now: dt.datetime) -> int:
    """Mark as escalated each follow-up whose escalation the ledger says was sent."""
    if not rows:
        return 0
    sent = storage.fetch_all(
        engine,
        "SELECT wave_id, recipient, address FROM outbox WHERE kind = :k AND status = 'sent' AND recipient IN :r",
        k=ESCALATION_KIND,
        r=sorted({row["contact_id"] for row in rows}),
    )
    addresses = {(s["wave_id"], s["recipient"]): s["address"] for s in sent}
    recorded = 0
    for row in rows:
        address = addresses.get((row["wave_id"], row["contact_id"]))
        if address is None:
            continue
        followup = load(engine, row["wave_id"], row["contact_id"])
        if followup["escalated_at"] is not None:
            continue
        note = f"first contact was due {row['due']:%Y-%m-%d %H:%M} UTC; escalated to {address}"
        event = {"actor": "sla-sweep", "source": "sweep", "action": "escalation", "note": note}
        changes = {"escalated_at": now, "escalated_to": address}
        try:
            _apply(engine, followup, changes, event, None, now)
        except StaleFollowup:
            continue  # changed meanwhile: the next sweep records it (the email is never sent twice)
        recorded += 1
    return recorded


# --- CRM status sync ----------------------------------------------------------------------------


def has_column(engine: Engine, table: str, column: str) -> bool:
    return column in {c["name"] for c in inspect(engine).get_columns(table)}


def sync_crm(
    engine: Engine, fetch_status: Callable[[str], str | None], rules: Rules, now: dt.datetime
) -> dict[str, int]:
    """Move each follow-up in progress that has a CRM task to the state of the task's status
    (`crm_status_map`), forward only along allowed moves (a CRM that lags behind the call log
    changes nothing). `fetch_status(task_id)` is the task's status, None when the CRM has no
    such task. Skipped when the follow-ups have no `crm_task_id` column (migration 008)."""
    counts = {
        "checked": 0,
        "moved": 0,
        "unchanged": 0,
        "unknown_status": 0,
        "missing_task": 0,
        "refused": 0,
        "conflicts": 0,
    }
    if not has_column(engine, "followups", "crm_task_id"):
        log.info("followups.crm_task_id does not exist yet: nothing to sync")
        return counts
    for row in storage.fetch_all(engine, storage.query("followups_with_crm_task")):
        counts["checked"] += 1
        try:
            crm_status = fetch_status(str(row["crm_task_id"]))
        except PermanentFailure as exc:  # this task only: the others are still synced
            counts["refused"] += 1
            log.warning("CRM task %s not synced: %s", row["crm_task_id"], exc)
            continue
        if crm_status is None:
            counts["missing_task"] += 1
            continue
        target = rules.crm_status_map.get(crm_status.strip().casefold())
        if target is None:
            counts["unknown_status"] += 1
            log.warning("CRM task %s has status %r, not in crm_status_map", row["crm_task_id"], crm_status)
        followup = load(engine, row["wave_id"], row["contact_id"])
        route = path_between(followup["status"], target) if target else None
        if not route:
            counts["unchanged"] += target is not None
            if followup["crm_status"] != crm_status:
                seen = {**_key(row), "crm_status": crm_status[:64], "now": now}
                storage.execute(engine, storage.query("record_crm_status"), seen)
            continue
        assert target is not None  # a route needs a target
        try:
            _apply(engine, followup, *_crm_change(followup, target, crm_status, row["crm_task_id"], now), None, now)
        except StaleFollowup:
            counts["conflicts"] += 1  # changed meanwhile: the next sync looks again
            continue
        counts["moved"] += 1
    return counts


def _crm_change(
    followup: dict[str, Any], target: str, crm_status: str, task_id: str, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The changes and the call-log row of moving a follow-up to `target` because of its CRM task."""
    changes: dict[str, Any] = {"status": target, "crm_status": crm_status[:64], "crm_synced_at": now}
    if target in ("closed", "unreachable"):
        changes |= {"claimed_by": None, "claimed_at": None}
    if target == "closed":
        changes["closed_at"] = now
    note = f"CRM task {task_id}: {crm_status}"
    return changes, {"actor": "crm", "source": "crm", "action": "crm_sync", "outcome": crm_status[:64], "note": note}


def _key(row: dict[str, Any]) -> dict[str, str]:
    return {"wave_id": row["wave_id"], "contact_id": row["contact_id"]}


def crm_status_fetcher(conn_id: str = "nps_crm") -> Callable[[str], str | None]:
    """`GET <connection host>/tasks/<task id>` -> `{"id": ..., "status": "In Progress"}` through the
    Airflow HTTP connection `conn_id` (auth and headers from the connection); 404 -> None.
    Network errors, 408, 425, 429 and 5xx raise TransientFailure (the task retries); any other refusal
    (401, 403, ...) raises PermanentFailure: the connection needs fixing."""
    from urllib.parse import quote

    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from include.nps.delivery.transports import TransientFailure, retryable_status

    hook = HttpHook(method="GET", http_conn_id=conn_id)

    def fetch(task_id: str) -> str | None:
        try:
            response = hook.run(
                endpoint=f"tasks/{quote(task_id, safe='')}", extra_options={"check_response": False, "timeout": 30}
            )
        except requests.RequestException as exc:
            raise TransientFailure(f"CRM unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if retryable_status(response.status_code):
            raise TransientFailure(f"CRM answered {response.status_code} for task {task_id}")
        if response.status_code >= 400:
            raise PermanentFailure(f"CRM refused task {task_id}: {response.status_code} {response.text[:200]}")
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError) as exc:
            raise PermanentFailure(f"CRM answered task {task_id} with no JSON object: {response.text[:200]}") from exc
        return str(status) if status is not None else None

    return fetch


# --- Airflow edges (the nps_followups DAG) ------------------------------------------------------


def run_sla_sweep() -> dict[str, Any]:
    from include.nps.core.connections import nps_engine
    from include.nps.delivery.transports import SmtpTransport

    with SmtpTransport() as transport:
        return sweep_sla(nps_engine(), transport, load_rules(), storage.utcnow())


def run_crm_sync(conn_id: str = "nps_crm") -> dict[str, Any]:
    """Sync from the CRM behind `conn_id`; skipped (and said so) when that connection is not set."""
    from include.nps.core.connections import connection_defined, nps_engine

    if not connection_defined(conn_id):
        log.info("no %s connection: CRM status sync skipped", conn_id)
        return {"skipped": f"no {conn_id} connection"}
    return sync_crm(nps_engine(), crm_status_fetcher(conn_id), load_rules(), storage.utcnow())


def main() -> None:
    """Print the follow-up form's link of one follow-up: `python -m include.nps.closed_loop.followups WAVE CONTACT`."""
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m include.nps.closed_loop.followups WAVE_ID CONTACT_ID")
    print(followup_url(sys.argv[1], sys.argv[2], storage.utcnow()))


if __name__ == "__main__":
    main()
