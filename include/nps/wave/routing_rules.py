"""Routing rules: who follows up a detractor, how soon, and who hears when it is late.

The rules are a versioned YAML file (`rules/routing.yaml`, or the file `NPS_ROUTING_RULES` names)
that CS ops edit. They are read in order and the first rule whose conditions all hold wins; the
last rule is the `default` (no conditions), so every detractor gets an owner. Loading checks the
whole file and reports every problem with the file, the rule (number and name), the field and the
reason, before any detractor is routed with it.

A rule's owner is the account's salesperson (`account_owner`), its CSM (`csm`) or a named queue
(`queue:<address>`). When the named person is missing, the account's other owner takes it
(salesperson <-> CSM), then CS ops: the same fallback as the first routing rule of the project.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from include.nps.core import business_days, rule_files, storage
from include.nps.core.rule_files import kind_of
from include.nps.wave.responses import band

RULES_ENV = "NPS_ROUTING_RULES"
DEFAULT_RULES = storage.PROJECT_ROOT / "rules" / "routing.yaml"
VERSIONS = (1,)
BANDS = ("critical", "detractor", "passive", "promoter")
OWNER_TYPES = ("sales", "cs")
PERSON_OWNERS = {"account_owner": "sales", "csm": "cs"}  # owner kind: the owner type it stands for
QUEUE_PREFIX = "queue:"
TOP_LEVEL = ("version", "business_hours", "rules")
RULE_FIELDS = ("name", "description", "when", "then", "default")
CONDITIONS = ("band", "tier", "arr_min", "arr_max", "vip", "region", "has_open_followup")
OUTCOME_FIELDS = ("owner_type", "owner", "sla", "escalate_to")
HOURS_FIELDS = ("start", "end", "timezone")
SLA_TEXT = re.compile(r"^\s*(\d+)\s+business\s+(hour|day)s?\s*$", re.IGNORECASE)
CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
SLA_EXAMPLE = "write it like '4 business hours' or '2 business days'"


class RulesError(ValueError):
    """The routing rules cannot be used; `problems` names the file, rule and field of each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"the routing rules have {len(problems)} problem(s):\n{listed}")


@dataclass(frozen=True)
class Facts:
    """What a rule can look at for one detractor; None when unknown (a condition on it never holds)."""

    score: int | None = None
    tier: str | None = None
    arr: float | None = None
    vip: bool | None = None
    region: str | None = None
    has_open_followup: bool | None = None
    sales_owner: str | None = None
    csm: str | None = None

    def __post_init__(self) -> None:
        """Whatever the caller read them from, an unknown fact is None: a blank or missing (NaN, NA)
        value never reaches a condition as text, and text facts are stripped."""
        for name in ("tier", "region", "sales_owner", "csm"):
            object.__setattr__(self, name, _text(getattr(self, name)))
        for name in ("score", "arr", "vip", "has_open_followup"):
            if _text(getattr(self, name)) is None:
                object.__setattr__(self, name, None)

    @property
    def band(self) -> str | None:
        return None if self.score is None else band(int(self.score))


def _text(value: Any) -> str | None:
    """Optional text as a fact: stripped, and None when missing or blank."""
    if storage.missing(value):
        return None
    return str(value).strip() or None


@dataclass(frozen=True)
class BusinessHours:
    start: dt.time = dt.time(9)
    end: dt.time = dt.time(17)
    timezone: str = "UTC"


@dataclass(frozen=True)
class Sla:
    """Time to first contact, counted in business hours or days of the wave's country."""

    amount: int
    unit: str  # "hour" or "day"

    @property
    def text(self) -> str:
        return f"{self.amount} business {self.unit}{'s' if self.amount != 1 else ''}"

    def due(self, start: dt.datetime, country: str, hours: BusinessHours) -> dt.datetime:
        """When first contact is due for something routed at `start` (UTC)."""
        zone = ZoneInfo(hours.timezone)
        local = start.astimezone(zone)
        if self.unit == "day":
            return _business_days_later(local, self.amount, country).astimezone(dt.UTC)
        remaining = dt.timedelta(hours=self.amount)
        current = _next_open(local, country, hours)
        while True:
            closing = current.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0)
            if current + remaining <= closing:
                return (current + remaining).astimezone(dt.UTC)
            remaining -= closing - current
            current = _next_open(closing + dt.timedelta(minutes=1), country, hours)


def _business_days_later(local: dt.datetime, days: int, country: str) -> dt.datetime:
    """`days` business days of `country` after `local`, at the same time of day in the business hours' zone."""
    day = local.date()
    while days:
        day += dt.timedelta(days=1)
        if business_days.is_business_day(day, country):
            days -= 1
    return local.replace(year=day.year, month=day.month, day=day.day)


def _next_open(moment: dt.datetime, country: str, hours: BusinessHours) -> dt.datetime:
    """`moment` if it falls in business hours, else the start of the next business hours."""
    day = moment
    while True:
        opening = day.replace(hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0)
        closing = day.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0)
        if business_days.is_business_day(day.date(), country) and moment < closing:
            return max(moment, opening)
        day = (day + dt.timedelta(days=1)).replace(hour=0, minute=0)


@dataclass(frozen=True)
class Rule:
    name: str
    number: int  # 1-based, as CS ops count the rules in the file
    owner_type: str
    owner: str  # account_owner | csm | queue:<address>
    conditions: dict[str, Any] = field(default_factory=dict)
    sla: Sla | None = None
    escalate_to: str | None = None
    default: bool = False

    def matches(self, facts: Facts) -> bool:
        return all(_holds(name, wanted, facts) for name, wanted in self.conditions.items())


def _holds(name: str, wanted: Any, facts: Facts) -> bool:
    if name == "band":
        return facts.band in wanted
    if name == "tier":
        return (facts.tier or "").lower() in wanted
    if name == "region":
        return (facts.region or "").upper() in wanted
    if name in ("arr_min", "arr_max"):
        if facts.arr is None:
            return False
        return float(facts.arr) >= wanted if name == "arr_min" else float(facts.arr) < wanted
    value = getattr(facts, name)
    return value is not None and bool(value) == wanted


@dataclass(frozen=True)
class Route:
    """The outcome for one detractor."""

    owner_type: str
    owner: str
    rule_id: str
    sla_due_at: dt.datetime | None
    escalation_target: str | None


@dataclass(frozen=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    hours: BusinessHours
    source: str

    def match(self, facts: Facts) -> Rule:
        """The first rule that holds (the default one at the latest)."""
        return next(rule for rule in self.rules if rule.default or rule.matches(facts))

    def owner(self, facts: Facts, fallback: str) -> tuple[str, str]:
        """(owner_type, owner) by the first matching rule."""
        return resolve_owner(self.match(facts), facts, fallback)

    def route(self, facts: Facts, fallback: str, now: dt.datetime, country: str) -> Route:
        rule = self.match(facts)
        owner_type, owner = resolve_owner(rule, facts, fallback)
        return Route(
            owner_type=owner_type,
            owner=owner,
            rule_id=self.rule_id(rule),
            sla_due_at=rule.sla.due(now, country, self.hours) if rule.sla else None,
            escalation_target=rule.escalate_to,
        )

    def rule_id(self, rule: Rule) -> str:
        """The rule as stored with a follow-up: its name and the file's version."""
        return f"{rule.name}@v{self.version}"


def resolve_owner(rule: Rule, facts: Facts, fallback: str) -> tuple[str, str]:
    """The rule's owner; when that person is unknown, the account's other owner, then `fallback` (CS ops)."""
    if rule.owner.startswith(QUEUE_PREFIX):
        return rule.owner_type, rule.owner.removeprefix(QUEUE_PREFIX)
    people = {"account_owner": facts.sales_owner, "csm": facts.csm}
    if people[rule.owner]:
        return rule.owner_type, str(people[rule.owner])
    other = "csm" if rule.owner == "account_owner" else "account_owner"
    if people[other]:
        return PERSON_OWNERS[other], str(people[other])
    return "cs", fallback


# --- loading ----------------------------------------------------------------------------------


def rules_path(setting: str | None = None) -> Path:
    """`setting`, else `NPS_ROUTING_RULES`, else the shipped `rules/routing.yaml` (relative paths
    are from the project's folder)."""
    return rule_files.resolve_path(setting, RULES_ENV, DEFAULT_RULES)


def load(path: Path | str | None = None) -> RuleSet:
    """The rules of `path` (default: `rules_path()`), checked; read again when the file changes."""
    return rule_files.load_checked(rules_path(str(path) if path else None), parse, RulesError)


def parse(data: Any, where: str = "routing rules") -> RuleSet:
    """Check the file's content and build the rule set; RulesError lists every problem found."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise RulesError([f"{where}: expected a mapping with version, business_hours and rules, got {kind_of(data)}"])
    problems += rule_files.unknown_fields(data, TOP_LEVEL, where, "")
    version = data.get("version")
    if version not in VERSIONS:
        problems.append(f"{where}: version: must be {' or '.join(map(str, VERSIONS))}, got {version!r}")
    hours = _business_hours(data.get("business_hours"), where, problems)
    raw_rules = data.get("rules")
    rules: list[Rule] = []
    if not isinstance(raw_rules, list) or not raw_rules:
        expected = "expected a list of rules ending with a default rule"
        problems.append(f"{where}: rules: {expected}, got {kind_of(raw_rules)}")
    else:
        names: dict[str, int] = {}
        for number, raw in enumerate(raw_rules, start=1):
            name = raw.get("name") if isinstance(raw, Mapping) else None
            if isinstance(name, str) and name.strip() in names:
                problems.append(f"{where}: rule {number} {name!r}: name: also the name of rule {names[name.strip()]}")
            elif isinstance(name, str):
                names[name.strip()] = number
            rule = _rule(raw, number, where, problems)
            if rule is not None:
                rules.append(rule)
        defaults = [n for n, raw in enumerate(raw_rules, start=1) if isinstance(raw, Mapping) and raw.get("default")]
        if not defaults:
            problems.append(f"{where}: rules: no default rule; end the list with one (default: true, no conditions)")
        else:
            first = defaults[0]
            for number, later in enumerate(raw_rules[first:], start=first + 1):
                label = later.get("name") if isinstance(later, Mapping) else None
                problems.append(
                    f"{where}: rule {number} {label!r}: unreachable: it comes after the default rule {first} "
                    f"{raw_rules[first - 1].get('name')!r}, which always matches; the default rule must be the last"
                )
    if problems:
        raise RulesError(problems)
    return RuleSet(version=int(version), rules=tuple(rules), hours=hours, source=where)  # type: ignore[arg-type]


def _business_hours(raw: Any, where: str, problems: list[str]) -> BusinessHours:
    if raw is None:
        return BusinessHours()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: business_hours: expected start, end and timezone, got {kind_of(raw)}")
        return BusinessHours()
    problems += rule_files.unknown_fields(raw, HOURS_FIELDS, where, "business_hours.")
    times = {}
    for name, default in (("start", dt.time(9)), ("end", dt.time(17))):
        value = raw.get(name, default.strftime("%H:%M"))
        found = CLOCK.match(str(value).strip()) if isinstance(value, str) else None
        if not found:
            problems.append(f"{where}: business_hours.{name}: expected a time like '09:00', got {kind_of(value)}")
            times[name] = default
        else:
            times[name] = dt.time(int(found.group(1)), int(found.group(2)))
    if times["start"] >= times["end"]:
        problems.append(f"{where}: business_hours: start {times['start']:%H:%M} is not before end {times['end']:%H:%M}")
    zone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}: business_hours.timezone: unknown time zone {zone!r}; use a name like Europe/Oslo")
        zone = "UTC"
    return BusinessHours(start=times["start"], end=times["end"], timezone=str(zone))


def _rule(raw: Any, number: int, where: str, problems: list[str]) -> Rule | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: rule {number}: expected a mapping with name, when and then, got {kind_of(raw)}")
        return None
    name = raw.get("name")
    label = f"{where}: rule {number} {name!r}" if isinstance(name, str) and name.strip() else f"{where}: rule {number}"
    before = len(problems)
    problems += rule_files.unknown_fields(raw, RULE_FIELDS, label, "")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{label}: name: every rule needs a name (it is stored with each follow-up it routes)")
    is_default = raw.get("default", False)
    if not isinstance(is_default, bool):
        problems.append(f"{label}: default: expected true or false, got {kind_of(is_default)}")
        is_default = False
    conditions = _conditions(raw.get("when"), is_default, label, problems)
    outcome = raw.get("then")
    if not isinstance(outcome, Mapping):
        problems.append(f"{label}: then: expected owner_type, owner, sla and escalate_to, got {kind_of(outcome)}")
        return None
    problems += rule_files.unknown_fields(outcome, OUTCOME_FIELDS, label, "then.")
    owner_type = outcome.get("owner_type")
    if owner_type not in OWNER_TYPES:
        problems.append(f"{label}: then.owner_type: must be sales or cs, got {kind_of(owner_type)}")
    owner = outcome.get("owner")
    if not _valid_owner(owner):
        problems.append(f"{label}: then.owner: unknown owner kind {owner!r}; use account_owner, csm or queue:<address>")
    sla = None
    if outcome.get("sla") is not None:
        found = SLA_TEXT.match(str(outcome["sla"])) if isinstance(outcome["sla"], str) else None
        if not found or int(found.group(1)) < 1:
            problems.append(f"{label}: then.sla: cannot read {outcome['sla']!r}; {SLA_EXAMPLE}")
        else:
            sla = Sla(int(found.group(1)), found.group(2).lower())
    escalate_to = outcome.get("escalate_to")
    if escalate_to is not None and (not isinstance(escalate_to, str) or not escalate_to.strip()):
        problems.append(f"{label}: then.escalate_to: expected an address or a queue, got {kind_of(escalate_to)}")
    if len(problems) > before:
        return None
    # Each checked above: a problem otherwise.
    assert isinstance(name, str) and isinstance(owner_type, str) and isinstance(owner, str)
    return Rule(
        name=name.strip(),
        number=number,
        owner_type=owner_type,
        owner=owner.strip(),
        conditions=conditions,
        sla=sla,
        escalate_to=escalate_to.strip() if escalate_to else None,
        default=is_default,
    )


def _valid_owner(owner: Any) -> bool:
    if not isinstance(owner, str):
        return False
    owner = owner.strip()
    return owner in PERSON_OWNERS or (owner.startswith(QUEUE_PREFIX) and bool(owner.removeprefix(QUEUE_PREFIX).strip()))


def _conditions(raw: Any, is_default: bool, label: str, problems: list[str]) -> dict[str, Any]:
    if is_default:
        if raw:
            problems.append(f"{label}: when: the default rule has no conditions (it catches every detractor left)")
        return {}
    if not isinstance(raw, Mapping) or not raw:
        problems.append(
            f"{label}: when: expected at least one condition ({', '.join(CONDITIONS)}), got {kind_of(raw)}; "
            "a rule for everyone else is the default rule (default: true)"
        )
        return {}
    problems += rule_files.unknown_fields(raw, CONDITIONS, label, "when.")
    conditions: dict[str, Any] = {}
    for name in CONDITIONS:
        if name not in raw:
            continue
        value, reason = _condition(name, raw[name])
        if reason:
            problems.append(f"{label}: when.{name}: {reason}")
        else:
            conditions[name] = value
    if {"arr_min", "arr_max"} <= set(conditions) and conditions["arr_min"] >= conditions["arr_max"]:
        low, high = conditions["arr_min"], conditions["arr_max"]
        problems.append(f"{label}: when: arr_min {low:g} is not below arr_max {high:g}")
    return conditions


def _condition(name: str, value: Any) -> tuple[Any, str | None]:
    """A condition's value as matching uses it, or the reason it cannot be used."""
    if name in ("vip", "has_open_followup"):
        return (value, None) if isinstance(value, bool) else (None, f"expected true or false, got {kind_of(value)}")
    if name in ("arr_min", "arr_max"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None, f"expected an amount (a number, no currency sign), got {kind_of(value)}"
        return float(value), None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        return None, f"expected a name or a list of names, got {kind_of(value)}"
    if name == "band":
        unknown = [i for i in items if i.strip().lower() not in BANDS]
        if unknown:
            return None, f"unknown band(s) {unknown}; use {', '.join(BANDS)} (critical 0-1, detractor 2-6)"
        return frozenset(i.strip().lower() for i in items), None
    if name == "region":
        bad = [i for i in items if not re.fullmatch(r"[A-Za-z]{2}", i.strip())]
        if bad:
            return None, f"expected two-letter country codes (like NO, JP), got {bad}"
        return frozenset(i.strip().upper() for i in items), None
    return frozenset(i.strip().lower() for i in items), None


def main(argv: list[str] | None = None) -> int:
    """`python -m include.nps.wave.routing_rules [file]`: check a rules file and list its rules."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        rules = load(args[0] if args else None)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{rules.source}: version {rules.version}, {len(rules.rules)} rules, first match wins:")
    for rule in rules.rules:
        when = ", ".join(f"{k}={sorted(v) if isinstance(v, frozenset) else v}" for k, v in rule.conditions.items())
        sla = f", first contact within {rule.sla.text}" if rule.sla else ""
        escalate = f", escalate to {rule.escalate_to}" if rule.escalate_to else ""
        outcome = f"{rule.owner_type} {rule.owner}{sla}{escalate}"
        print(f"  {rule.number}. {rule.name}: {when or 'everyone else'} -> {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
