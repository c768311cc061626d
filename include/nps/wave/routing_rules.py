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
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from include.nps.core import business_days, rule_files, storage
from include.nps.wave.responses import band

RULES_ENV = "NPS_ROUTING_RULES"
DEFAULT_RULES = storage.PROJECT_ROOT / "rules" / "routing.yaml"
VERSIONS = (1,)
BANDS = ("critical", "detractor", "passive", "promoter")
OWNER_TYPES = ("sales", "cs")
PERSON_OWNERS = {"account_owner": "sales", "csm": "cs"}  # owner kind: the owner type it stands for
QUEUE_PREFIX = "queue:"
CONDITIONS = ("band", "tier", "arr_min", "arr_max", "vip", "region", "has_open_followup")
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
class AirflowDecisions:
    """Which detractors' follow-up owner a person decides in Airflow (a human-in-the-loop task
    after the post-wave drop), and the Airflow user name of each salesperson who decides."""

    conditions: dict[str, Any]
    airflow_users: dict[str, str]

    def needs_decision(self, facts: Facts) -> bool:
        return all(_holds(name, wanted, facts) for name, wanted in self.conditions.items())

    def airflow_user(self, address: str | None) -> str | None:
        """The Airflow user name of a salesperson (by address, any case), None when they have none."""
        return self.airflow_users.get((address or "").strip().lower())


@dataclass(frozen=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    hours: BusinessHours
    source: str
    decide_in_airflow: AirflowDecisions | None = None

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
    checked = rule_files.check(RulesFile, data, where, RulesError, MESSAGES)
    hours = checked.business_hours or HoursEntry()
    decide = checked.decide_in_airflow
    return RuleSet(
        version=checked.version,
        rules=tuple(entry.rule(number) for number, entry in enumerate(checked.rules, start=1)),
        hours=BusinessHours(hours.start, hours.end, hours.timezone),
        source=where,
        decide_in_airflow=decide.setting() if decide else None,
    )


# --- the file's models ----------------------------------------------------------------------------

AMOUNT = "expected an amount (a number, no currency sign), got {kind}"
NAMES = "expected a name or a list of names, got {kind}"
TRUE_OR_FALSE = "expected true or false, got {kind}"
WHEN = (
    f"expected at least one condition ({', '.join(CONDITIONS)}), got {{kind}}; "
    "a rule for everyone else is the default rule (default: true)"
)
MESSAGES = rule_files.Messages(
    reasons={
        "": "expected a mapping with version, business_hours and rules, got {kind}",
        "version": f"must be {' or '.join(map(str, VERSIONS))}, got {{value!r}}",
        "business_hours": "expected start, end and timezone, got {kind}",
        "business_hours.start": "expected a time like '09:00', got {kind}",
        "business_hours.end": "expected a time like '09:00', got {kind}",
        "business_hours.timezone": "unknown time zone {value!r}; use a name like Europe/Oslo",
        "rules": "expected a list of rules ending with a default rule, got {kind}",
        "rules[]": "expected a mapping with name, when and then, got {kind}",
        "rules[].name": "every rule needs a name (it is stored with each follow-up it routes), got {kind}",
        "rules[].default": TRUE_OR_FALSE,
        "rules[].description": "expected a text, got {kind}",
        "rules[].when": WHEN,
        "rules[].when.band": NAMES,
        "rules[].when.tier": NAMES,
        "rules[].when.region": NAMES,
        "rules[].when.arr_min": AMOUNT,
        "rules[].when.arr_max": AMOUNT,
        "rules[].when.vip": TRUE_OR_FALSE,
        "rules[].when.has_open_followup": TRUE_OR_FALSE,
        "rules[].then": "expected owner_type, owner, sla and escalate_to, got {kind}",
        "rules[].then.owner_type": f"must be {' or '.join(OWNER_TYPES)}, got {{kind}}",
        "rules[].then.owner": "unknown owner kind {value!r}; use account_owner, csm or queue:<address>",
        "rules[].then.escalate_to": "expected an address or a queue, got {kind}",
        "decide_in_airflow": "expected a mapping with when and airflow_users, got {kind}",
        "decide_in_airflow.when": WHEN.split("; ")[0],
        "decide_in_airflow.when.band": NAMES,
        "decide_in_airflow.when.tier": NAMES,
        "decide_in_airflow.when.region": NAMES,
        "decide_in_airflow.when.arr_min": AMOUNT,
        "decide_in_airflow.when.arr_max": AMOUNT,
        "decide_in_airflow.when.vip": TRUE_OR_FALSE,
        "decide_in_airflow.when.has_open_followup": TRUE_OR_FALSE,
        "decide_in_airflow.airflow_users": "expected salesperson addresses, each with an Airflow user name, got {kind}",
    },
    items={"rules": ("rule", "name")},
)


def _names(value: Any) -> Any:
    """One name is a list of one."""
    return [value] if isinstance(value, str) else value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Names = Annotated[list[Name], BeforeValidator(_names), Field(min_length=1)]
Amount = Annotated[float, Field(ge=0)]


def _known_version(version: int) -> int:
    if version not in VERSIONS:
        raise rule_files.unexpected()
    return version


def _clock(value: Any) -> dt.time:
    found = CLOCK.match(value.strip()) if isinstance(value, str) else None
    if not found:
        raise rule_files.unexpected()
    return dt.time(int(found.group(1)), int(found.group(2)))


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise rule_files.unexpected() from None
    return value


def _sla(value: Any) -> Sla:
    found = SLA_TEXT.match(value) if isinstance(value, str) else None
    if not found or int(found.group(1)) < 1:
        raise rule_files.invalid(f"cannot read {value!r}; {SLA_EXAMPLE}")
    return Sla(int(found.group(1)), found.group(2).lower())


def _owner(value: str) -> str:
    owner = value.strip()
    if owner in PERSON_OWNERS or (owner.startswith(QUEUE_PREFIX) and owner.removeprefix(QUEUE_PREFIX).strip()):
        return owner
    raise rule_files.unexpected()


Clock = Annotated[dt.time, PlainValidator(_clock)]


class HoursEntry(rule_files.RuleModel):
    start: Clock = dt.time(9)
    end: Clock = dt.time(17)
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"

    @model_validator(mode="wrap")
    @classmethod
    def _start_before_end(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return rule_files.checked(data, handler, _hours_problems(data))


def _hours_problems(raw: Any) -> list[tuple[rule_files.Loc, str]]:
    if not isinstance(raw, Mapping):
        return []
    try:
        start, end = _clock(raw.get("start", "09:00")), _clock(raw.get("end", "17:00"))
    except PydanticCustomError:
        return []  # the time itself is the problem
    return [((), f"start {start:%H:%M} is not before end {end:%H:%M}")] if start >= end else []


class Conditions(rule_files.RuleModel):
    band: Names | None = None
    tier: Names | None = None
    arr_min: Amount | None = None
    arr_max: Amount | None = None
    vip: bool | None = None
    region: Names | None = None
    has_open_followup: bool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        """A condition written with no value is a mistake, not a condition left out."""
        if value is None:
            raise rule_files.unexpected()
        return value

    @field_validator("band")
    @classmethod
    def _known_bands(cls, names: list[str]) -> list[str]:
        if unknown := [name for name in names if name.lower() not in BANDS]:
            raise rule_files.invalid(f"unknown band(s) {unknown}; use {', '.join(BANDS)} (critical 0-1, detractor 2-6)")
        return names

    @field_validator("region")
    @classmethod
    def _country_codes(cls, names: list[str]) -> list[str]:
        if bad := [name for name in names if not re.fullmatch(r"[A-Za-z]{2}", name)]:
            raise rule_files.invalid(f"expected two-letter country codes (like NO, JP), got {bad}")
        return names

    @model_validator(mode="wrap")
    @classmethod
    def _arr_range(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return rule_files.checked(data, handler, _range_problems(data))

    def as_matched(self) -> dict[str, Any]:
        """The conditions given, as `Rule.matches` compares them."""
        found: dict[str, Any] = {}
        for name in CONDITIONS:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "region":
                found[name] = frozenset(item.upper() for item in value)
            elif name in ("band", "tier"):
                found[name] = frozenset(item.lower() for item in value)
            else:
                found[name] = value
        return found


def _range_problems(raw: Any) -> list[tuple[rule_files.Loc, str]]:
    low, high = (_amount(raw.get(name)) if isinstance(raw, Mapping) else None for name in ("arr_min", "arr_max"))
    if low is not None and high is not None and low >= high:
        return [((), f"arr_min {low:g} is not below arr_max {high:g}")]
    return []


def _amount(value: Any) -> float | None:
    """`value` as a valid amount, else None (its own problem)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        amount = float(value)
    except OverflowError:
        return None
    return amount if 0 <= amount < float("inf") else None


class Outcome(rule_files.RuleModel):
    owner_type: Literal["sales", "cs"]
    owner: Annotated[str, AfterValidator(_owner)]
    sla: Annotated[Sla, PlainValidator(_sla)] | None = None
    escalate_to: Name | None = None


class RuleEntry(rule_files.RuleModel):
    """One rule as written; its checks in the order people read a rule."""

    name: Name
    default: bool = False
    when: Conditions | None = Field(None, validate_default=True)
    then: Outcome
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any, info: ValidationInfo) -> Any:
        seen = rule_files.shared(info, "rules")
        seen["number"] = seen.get("number", 0) + 1
        return data

    @field_validator("name")
    @classmethod
    def _unique(cls, name: str, info: ValidationInfo) -> str:
        seen = rule_files.shared(info, "rules")
        names = seen.setdefault("names", {})
        if name in names:
            raise rule_files.invalid(f"also the name of rule {names[name]}")
        names[name] = seen.get("number", 0)
        return name

    @field_validator("when")
    @classmethod
    def _fits_default(cls, when: Conditions | None, info: ValidationInfo) -> Conditions | None:
        given = when is not None and bool(when.as_matched())
        if info.data.get("default") is True and given:
            raise rule_files.invalid("the default rule has no conditions (it catches every detractor left)")
        if info.data.get("default") is not True and not given:
            raise rule_files.invalid(WHEN.format(kind=rule_files.kind_of(None if when is None else {})))
        return when

    def rule(self, number: int) -> Rule:
        return Rule(
            name=self.name,
            number=number,
            owner_type=self.then.owner_type,
            owner=self.then.owner,
            conditions=self.when.as_matched() if self.when and not self.default else {},
            sla=self.then.sla,
            escalate_to=self.then.escalate_to,
            default=self.default,
        )


def _default_last(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The rules with a default rule, the last one (a rule after it could never match)."""
    return rule_files.checked(raw, handler, _default_problems(raw))


def _default_problems(raw: Any) -> list[tuple[rule_files.Loc, str]]:
    if not isinstance(raw, list) or not raw:
        return []
    defaults = [n for n, entry in enumerate(raw) if isinstance(entry, Mapping) and entry.get("default") is True]
    if not defaults:
        return [((), "no default rule; end the list with one (default: true, no conditions)")]
    first = defaults[0]
    name = raw[first].get("name")
    return [
        (
            (number,),
            f"unreachable: it comes after the default rule {first + 1} {name!r}, which always matches; "
            "the default rule must be the last",
        )
        for number in range(first + 1, len(raw))
    ]


class DecideInAirflow(rule_files.RuleModel):
    """`decide_in_airflow`: the detractors whose follow-up owner a person decides in Airflow."""

    when: Conditions
    airflow_users: dict[Name, Name] = Field(default_factory=dict)

    @field_validator("when")
    @classmethod
    def _some(cls, when: Conditions) -> Conditions:
        if not when.as_matched():
            raise rule_files.invalid(WHEN.split("; ")[0].format(kind="none"))
        return when

    def setting(self) -> AirflowDecisions:
        users = {address.lower(): user for address, user in self.airflow_users.items()}
        return AirflowDecisions(self.when.as_matched(), users)


class RulesFile(rule_files.RuleModel):
    version: Annotated[int, AfterValidator(_known_version)]
    business_hours: HoursEntry | None = None
    decide_in_airflow: DecideInAirflow | None = None
    rules: Annotated[list[RuleEntry], Field(min_length=1), WrapValidator(_default_last)]


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
