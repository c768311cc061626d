"""The closed loop's rules: the root-cause taxonomy, the incentive variants tested per root cause,
CRM task statuses as follow-up states, how long a claim holds, and the first-contact SLA.

They are a versioned YAML file that CS ops edit (`rules/followups.yaml`, or the file
`NPS_FOLLOWUP_RULES` names). Loading checks the whole file and reports every problem with the file,
the field and the reason, before any follow-up is changed with it. The follow-ups themselves (the
state machine that uses these rules) are `include.nps.closed_loop.followups`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from include.nps.core import rule_files, storage

RULES_ENV = "NPS_FOLLOWUP_RULES"
DEFAULT_RULES = storage.PROJECT_ROOT / "rules" / "followups.yaml"
ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CONTROL_ARM = "none"
OTHER = "other"


class FollowupRulesError(ValueError):
    """The follow-up rules cannot be used; `problems` names the file, field and reason of each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"the follow-up rules have {len(problems)} problem(s):\n{listed}")


@dataclass(frozen=True)
class RootCause:
    id: str
    label: str
    incentives: tuple[str, ...]
    requires_text: bool = False


@dataclass(frozen=True)
class Rules:
    version: int
    root_causes: dict[str, RootCause]
    incentives: dict[str, str]
    crm_status_map: dict[str, str]  # casefolded CRM status -> state
    claim_minutes: int = 60
    first_contact_sla_business_days: int = 2

    @property
    def claim_ttl(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.claim_minutes)


def rules_path() -> Path:
    """`NPS_FOLLOWUP_RULES` (relative to the project folder when not absolute), else the shipped file."""
    return rule_files.resolve_path(None, RULES_ENV, DEFAULT_RULES)


def load_rules(path: Path | None = None) -> Rules:
    """The follow-up rules, checked; FollowupRulesError lists every problem. Read again when the file changes."""
    return rule_files.load_checked(path or rules_path(), _parse, FollowupRulesError)


def parse_rules(data: Any, path: Path = DEFAULT_RULES) -> Rules:
    """Check the rules' content (the file `path` as loaded); FollowupRulesError with every problem found."""
    return _parse(data, rule_files.display_path(path))


def _parse(data: Any, where: str) -> Rules:
    checked = rule_files.check(RulesFile, data, where, FollowupRulesError, MESSAGES)
    return Rules(
        version=checked.version,
        root_causes={
            key: RootCause(key, cause.label, tuple(cause.incentives), cause.requires_text)
            for key, cause in checked.root_causes.items()
        },
        incentives=dict(checked.incentives),
        crm_status_map={status.strip().casefold(): state for status, state in (checked.crm_status_map or {}).items()},
        claim_minutes=checked.claim_minutes,
        first_contact_sla_business_days=checked.first_contact_sla_business_days,
    )


# --- the file's models ----------------------------------------------------------------------------


def _render(problem: rule_files.Problem) -> str:
    """A problem with a key (unknown, or not an id) is named by the mapping the key is in."""
    if problem.about_key:
        return ": ".join(part for part in (problem.where, problem.parent, problem.reason) if part)
    return str(problem)


MESSAGES = rule_files.Messages(
    reasons={
        "": "the file must be a mapping with version, incentives and root_causes, got {kind}",
        "version": "the version must be a whole number of at least 1, got {value!r}",
        "claim_minutes": "must be a whole number from 1 to 1440, got {value!r}",
        "first_contact_sla_business_days": "must be a whole number from 0 to 60, got {value!r}",
        "incentives": "must map each incentive id to what the owner offers, got {kind}",
        "incentives.*": "needs a description, got {kind}",
        "root_causes": "must map each root cause id to its label and incentives, got {kind}",
        "root_causes.*": "must have a label and incentives, got {kind}",
        "root_causes.*.label": "needs a label, got {kind}",
        "root_causes.*.incentives": f"needs a list of incentive ids, `{CONTROL_ARM}` included, got {{kind}}",
        "root_causes.*.incentives[]": "expected an incentive id, got {kind}",
        "root_causes.*.requires_text": "must be true or false, got {kind}",
        "crm_status_map": "must map CRM task statuses to follow-up states, got {kind}",
        "crm_status_map.*": "expected a follow-up state, got {kind}",
    },
    unknown="unknown key(s) [{key!r}]{hint}",
    render=_render,
)


def _id(value: Any) -> Any:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise rule_files.invalid(f"{value!r} is not an id (lower case letters, digits and _)")
    return value


def _state(value: str) -> str:
    from include.nps.closed_loop.followups import STATES  # the state machine's (which imports this module)

    if value not in STATES:
        raise rule_files.invalid(f"{value!r} is not a state; use one of {list(STATES)}")
    return value


def _control_arm(raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """The incentives, with the control arm; the usable ids are kept for the root causes' checks."""
    usable = {
        key
        for key, label in (raw.items() if isinstance(raw, Mapping) else ())
        if isinstance(key, str) and ID.fullmatch(key) and isinstance(label, str) and label.strip()
    }
    rule_files.shared(info, "incentives")["ids"] = usable
    missing = isinstance(raw, Mapping) and raw and CONTROL_ARM not in usable
    problems = [((), f"the control arm `{CONTROL_ARM}` (no incentive) is missing")] if missing else []
    return rule_files.checked(raw, handler, problems)


def _arms(raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A root cause's variants: known incentives, each once, the control arm among them."""
    problems: list[tuple[rule_files.Loc, str]] = []
    if isinstance(raw, list) and raw:
        known = rule_files.shared(info, "incentives").get("ids")
        if known is not None and (unknown := [arm for arm in raw if isinstance(arm, str) and arm not in known]):
            problems.append(((), f"unknown incentive(s) {unknown}"))
        if len(set(map(str, raw))) != len(raw):
            problems.append(((), "an incentive is listed twice"))
        if CONTROL_ARM not in raw:
            problems.append(((), f"the control arm `{CONTROL_ARM}` must be one of the variants"))
    return rule_files.checked(raw, handler, problems)


def _other_exists(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """`other` is the root cause that asks for free text: every taxonomy has it."""
    other = raw.get(OTHER) if isinstance(raw, Mapping) else None
    usable = isinstance(other, Mapping) and other.get("requires_text") is True
    missing = isinstance(raw, Mapping) and raw and not usable
    return rule_files.checked(
        raw, handler, [((), f"`{OTHER}` must exist, with requires_text: true")] if missing else []
    )


Id = Annotated[str, BeforeValidator(_id)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class RootCauseEntry(rule_files.RuleModel):
    label: Text
    incentives: Annotated[list[str], Field(min_length=1), WrapValidator(_arms)]
    requires_text: bool = False


class RulesFile(rule_files.RuleModel):
    version: Annotated[int, Field(ge=1)]
    claim_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60
    first_contact_sla_business_days: Annotated[int, Field(ge=0, le=60)] = 2
    incentives: Annotated[dict[Id, Text], Field(min_length=1), WrapValidator(_control_arm)]
    root_causes: Annotated[dict[Id, RootCauseEntry], Field(min_length=1), WrapValidator(_other_exists)]
    crm_status_map: dict[Annotated[str, BeforeValidator(str)], Annotated[str, AfterValidator(_state)]] | None = None
