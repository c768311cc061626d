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

The same moves come from the internal follow-up form (`web/followup_form.py`, `/followup/<signed link>`),
from the CRM task's status (`crm_sync`) and from the daily SLA sweep (`sla_sweep`), which
escalates a follow-up nobody contacted in time to its escalation target, once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Engine, text

from include.nps.closed_loop.followup_rules import DEFAULT_RULES as DEFAULT_RULES
from include.nps.closed_loop.followup_rules import RULES_ENV as RULES_ENV
from include.nps.closed_loop.followup_rules import FollowupRulesError as FollowupRulesError
from include.nps.closed_loop.followup_rules import RootCause as RootCause
from include.nps.closed_loop.followup_rules import Rules as Rules
from include.nps.closed_loop.followup_rules import load_rules as load_rules
from include.nps.closed_loop.followup_rules import parse_rules as parse_rules
from include.nps.closed_loop.followup_rules import rules_path as rules_path
from include.nps.core import business_days, clean_text, signed_links, storage
from include.nps.core.connections import survey_base_url

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
# The state machine of people's moves: where each may be done. Every move keeps to `TRANSITIONS`
# (an attempt moves to contacting, or reached; unreachable to unreachable; close to closed).
ALLOWED_IN: dict[str, tuple[str, ...]] = {
    "claim": ("open", "contacting", "reached", "unreachable"),
    "release": ("open", "contacting", "reached", "unreachable"),
    "attempt": ("open", "contacting", "reached", "unreachable"),
    "unreachable": ("contacting",),
    "root_cause": ("reached",),
    "close": ("reached",),
}
ACTION_WORDS = {action: action.replace("_", " ") for action in ACTIONS} | {
    "attempt": "log a call attempt on",
    "unreachable": "mark unreachable",
    "root_cause": "record the root cause of",
}
UNCLAIMED = {"claimed_by": None, "claimed_at": None}
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
    return typed(row)


def typed(row: dict[str, Any]) -> dict[str, Any]:
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
    """What can be done to a follow-up in `status` (the form offers these)."""
    return tuple(action for action in ACTIONS if status in ALLOWED_IN[action])


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


def apply_change(
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


@dataclass(frozen=True)
class Command:
    """A person's move on one follow-up: who, when, from where (`form`, `api`), over which revision."""

    engine: Engine
    wave_id: str
    contact_id: str
    actor: str
    now: dt.datetime
    rules: Rules
    revision: int | None = None
    source: str = "api"


Decision = tuple[dict[str, Any], dict[str, Any]]  # the changes, and what the call-log row adds


def _act(command: Command, action: str, decide: Callable[[dict[str, Any], str], Decision]) -> dict[str, Any]:
    """Every person's move, expressed once: who acts, the follow-up, closed is final, nobody else
    is calling, the move is allowed in the follow-up's state (`ALLOWED_IN`); then `decide(followup,
    actor)` gives the changes, written with their call-log row over the revision that was read."""
    actor = _check_actor(command.actor)
    followup = load(command.engine, command.wave_id, command.contact_id)
    if followup["status"] == "closed":
        raise IllegalTransition("closed", "this follow-up is closed: nothing can change any more", action=action)
    _not_claimed_by_other(followup, actor, command.now, command.rules)
    if followup["status"] not in ALLOWED_IN[action]:
        raise _refusal(action, followup["status"])
    changes, event = decide(followup, actor)
    event = {"actor": actor, "source": command.source, "action": action, **event}
    return apply_change(command.engine, followup, changes, event, command.revision, command.now)


def _refusal(action: str, current: str) -> IllegalTransition:
    """Why `action` cannot be done to a follow-up that is `current`."""
    if action in ("root_cause", "close"):
        message = f"the customer must be reached first (the follow-up is {current})"
        return IllegalTransition("not_reached", message, action=action, current=current)
    if action == "unreachable" and current == "open":
        message = "log at least one call attempt before marking the customer unreachable"
        return IllegalTransition("no_attempt_yet", message)
    allowed = ", ".join(a for a in ACTIONS if current in ALLOWED_IN[a]) or "nothing"
    message = f"cannot {ACTION_WORDS[action]} a follow-up that is {current} (allowed when {current}: {allowed})"
    return IllegalTransition("illegal_transition", message, action=action, current=current)


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
    command = Command(engine, wave_id, contact_id, actor, now, rules, revision, source)
    return _act(command, "claim", lambda followup, who: ({"claimed_by": who, "claimed_at": now}, {}))


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

    def decide(followup: dict[str, Any], _actor: str) -> Decision:
        if not followup["claimed_by"]:
            raise InvalidInput("not_claimed", "nobody is calling this customer right now")
        return dict(UNCLAIMED), {}

    return _act(Command(engine, wave_id, contact_id, actor, now, rules, revision, source), "release", decide)


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
    if outcome not in ATTEMPT_OUTCOMES:
        raise InvalidInput("outcome_invalid", f"the call's outcome must be one of {', '.join(ATTEMPT_OUTCOMES)}")
    note = _check_text(note, MAX_NOTE)

    def decide(followup: dict[str, Any], _actor: str) -> Decision:
        # a later call with a customer already reached never takes the loop back
        status = "reached" if outcome == "reached" or followup["status"] == "reached" else "contacting"
        return {"status": status, **UNCLAIMED}, {"outcome": outcome, "note": note}

    return _act(Command(engine, wave_id, contact_id, actor, now, rules, revision, source), "attempt", decide)


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
    note = _check_text(note, MAX_NOTE)
    command = Command(engine, wave_id, contact_id, actor, now, rules, revision, source)
    return _act(command, "unreachable", lambda followup, who: ({"status": "unreachable", **UNCLAIMED}, {"note": note}))


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
    cause = rules.root_causes.get(root_cause or "")
    if cause is None:
        raise InvalidInput("root_cause_invalid", f"choose a root cause from the list ({', '.join(rules.root_causes)})")
    text_value = _check_text(other_text, MAX_OTHER_TEXT, "other_too_long")
    if cause.requires_text and not text_value:
        raise InvalidInput("other_text_missing", f"describe the root cause in a few words ({cause.label})")

    def decide(followup: dict[str, Any], _actor: str) -> Decision:
        changes: dict[str, Any] = {
            "root_cause": cause.id,
            "root_cause_other": text_value if cause.requires_text else None,
            "rules_version": followup["rules_version"] or rules.version,
        }
        if followup["incentive"] is None:
            changes |= {
                "incentive": assign_incentive(wave_id, contact_id, cause.incentives),
                "incentive_root_cause": cause.id,
                "incentive_at": now,
                "rules_version": rules.version,
            }
        return changes, {"outcome": cause.id, "note": text_value if cause.requires_text else None}

    return _act(Command(engine, wave_id, contact_id, actor, now, rules, revision, source), "root_cause", decide)


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
    note = _check_text(note, MAX_NOTE)

    def decide(followup: dict[str, Any], _actor: str) -> Decision:
        if not followup["root_cause"]:
            raise InvalidInput("root_cause_missing", "record the root cause before closing the loop")
        changes = {"status": "closed", "recovered": bool(recovered), "closed_at": now, **UNCLAIMED}
        return changes, {"outcome": "recovered" if recovered else "not_recovered", "note": note}

    return _act(Command(engine, wave_id, contact_id, actor, now, rules, revision, source), "close", decide)


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


# --- Airflow edges (the nps_followups DAG) ------------------------------------------------------


def main() -> None:
    """Print the follow-up form's link of one follow-up: `python -m include.nps.closed_loop.followups WAVE CONTACT`."""
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m include.nps.closed_loop.followups WAVE_ID CONTACT_ID")
    print(followup_url(sys.argv[1], sys.argv[2], storage.utcnow()))


if __name__ == "__main__":
    main()
