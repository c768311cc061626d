"""The rule files people edit by hand, checked by pydantic models: whatever a file holds, its loader
either builds the rules or raises the module's own error listing every problem, each naming the file,
the item, the field path and the reason (with "did you mean" for an unknown key); YAML's `NO` stays
text. The translator from pydantic's errors (`rule_files.check`) is tested on its own too."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator, field_validator

from include.nps.closed_loop import followup_rules, followups
from include.nps.core import rule_files
from include.nps.core.storage import PROJECT_ROOT
from include.nps.planner import wave_calendar
from include.nps.wave import comment_themes, routing_rules

NOW = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC)
FILE = "fuzz.yaml"


def load(text: str) -> Any:
    return yaml.load(textwrap.dedent(text), Loader=rule_files.StrictLoader)  # noqa: S506 (a SafeLoader)


def shipped(name: str) -> Any:
    """The shipped file `name` as loaded (a copy to change)."""
    return copy.deepcopy(_shipped(name))


@functools.cache
def _shipped(name: str) -> Any:
    return yaml.load((PROJECT_ROOT / name).read_text(encoding="utf-8"), Loader=rule_files.StrictLoader)  # noqa: S506


def problems_of(parse: Callable[[], object], error: type[Exception]) -> list[str]:
    with pytest.raises(error) as raised:
        parse()
    return raised.value.problems  # type: ignore[attr-defined]


# --- the translator on its own --------------------------------------------------------------------


class Entry(rule_files.RuleModel):
    name: str
    size: Annotated[int, Field(ge=1)] = 1
    tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _no_x(cls, name: str, info: ValidationInfo) -> str:
        seen = rule_files.shared(info, "names")
        if name in seen:
            raise rule_files.invalid(f"also the name of entry {seen[name]}")
        seen[name] = len(seen) + 1
        return name


def _at_least_two(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    few = isinstance(raw, list) and len(raw) < 2
    return rule_files.checked(raw, handler, [((), "needs two entries at least")] if few else [])


class Document(rule_files.RuleModel):
    version: int
    entries: Annotated[list[Entry], WrapValidator(_at_least_two)]
    lookup: dict[str, int] = Field(default_factory=dict)


MESSAGES = rule_files.Messages(
    reasons={
        "version": {"missing": "say which version", "": "expected a version number, got {value!r}"},
        "entries[].size": "expected a size of at least 1, got {kind}",
        "lookup.*": "expected a count, got {kind}",
    },
    items={"entries": ("entry", "name")},
)


class DocumentError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def check(document: Any) -> list[str]:
    return problems_of(lambda: rule_files.check(Document, document, "doc.yaml", DocumentError, MESSAGES), DocumentError)


def test_each_error_names_file_item_field_path_and_reason_all_at_once():
    document = {
        "entries": [{"name": "a", "size": 0, "tags": ["x", 5]}, {"name": "a", "sise": 2}],
        "lookup": {"k": "many"},
        "extra": 1,
    }
    assert check(document) == [
        "doc.yaml: extra: unknown field; known fields: version, entries, lookup",
        "doc.yaml: version: say which version",
        "doc.yaml: entry 1 'a': size: expected a size of at least 1, got a number 0",
        "doc.yaml: entry 1 'a': tags[2]: expected text, got a number 5",  # list items counted from 1
        "doc.yaml: entry 2 'a': sise: unknown field; did you mean 'size'?",  # first among its mapping's problems
        "doc.yaml: entry 2 'a': name: also the name of entry 1",  # a check across items, in its place
        "doc.yaml: lookup.k: expected a count, got 'many'",
    ]


def test_checks_across_items_run_even_when_an_item_is_invalid():
    assert check({"version": "1", "entries": [{"size": 2}]}) == [
        "doc.yaml: version: expected a version number, got '1'",  # strict: text is not a number
        "doc.yaml: entry 1: name: missing",
        "doc.yaml: entries: needs two entries at least",
    ]


def test_a_key_that_is_not_text_is_an_unknown_key_named_as_written():
    problems = check({"version": 1, "entries": [{"name": "a"}, {"name": "b"}], 404: "x", None: 1})
    assert problems == [
        "doc.yaml: 404: unknown field; known fields: version, entries, lookup",
        "doc.yaml: None: unknown field; known fields: version, entries, lookup",
    ]


def test_the_document_itself_and_generic_reasons():
    assert check(["a list"]) == ["doc.yaml: expected a mapping, got a list"]
    assert check({"version": True, "entries": "x"}) == [
        "doc.yaml: version: expected a version number, got True",  # strict: true is not 1
        "doc.yaml: entries: expected a list, got 'x'",
    ]


# --- each rule file: several problems at once, did you mean, field paths, NO stays text ------------


def test_routing_rules_report_every_problem_with_rule_and_field_path():
    document = load(
        """\
        version: 1
        busines_hours: {start: "09:00"}
        rules:
          - {name: a, when: {region: [NO, 7], vip: 1}, then: {owner_type: cs, owner: csm, escalate_to: 5}}
          - {name: b, when: {arr_min: "10"}, then: {owner_type: cs, owner: csm, slaa: 2 business days}}
        """
    )
    problems = problems_of(lambda: routing_rules.parse(document, "routing.yaml"), routing_rules.RulesError)
    assert problems == [
        "routing.yaml: busines_hours: unknown field; did you mean 'business_hours'?",
        "routing.yaml: rule 1 'a': when.vip: expected true or false, got a number 1",
        "routing.yaml: rule 1 'a': when.region[2]: expected a name or a list of names, got a number 7",
        "routing.yaml: rule 1 'a': then.escalate_to: expected an address or a queue, got a number 5",
        "routing.yaml: rule 2 'b': when.arr_min: expected an amount (a number, no currency sign), got '10'",
        "routing.yaml: rule 2 'b': then.slaa: unknown field; did you mean 'sla'?",
        "routing.yaml: rules: no default rule; end the list with one (default: true, no conditions)",
    ]


def test_routing_rules_keep_no_as_a_country_and_refuse_true_as_a_version():
    rules = routing_rules.parse(
        load(
            """\
            version: 1
            rules:
              - {name: nordics, when: {region: [NO, no, Se]}, then: {owner_type: cs, owner: csm}}
              - {name: rest, default: true, then: {owner_type: cs, owner: csm}}
            """
        ),
        "t",
    )
    assert rules.rules[0].conditions == {"region": frozenset({"NO", "SE"})}
    bad = {"version": True, "rules": [{"name": "d", "default": True, "then": {"owner_type": "cs", "owner": "csm"}}]}
    assert problems_of(lambda: routing_rules.parse(bad, "t"), routing_rules.RulesError) == [
        "t: version: must be 1, got True"
    ]


def test_themes_report_a_wrong_type_with_the_path_and_a_nested_unknown_key():
    document = load(
        """\
        version: 1
        risk: {medium: {min_detractors: "2", min_shar: 0.1}}
        themes:
          - {id: price, name: Price, keywords: {en: [price, [cost]], nb: 5}, labels: {en: Price}}
        cues: {suggestion: {en: [should]}, negative: {en: [bad]}, positive: {en: [good]}}
        """
    )
    problems = problems_of(lambda: comment_themes.parse(document, "themes.yaml"), comment_themes.ThemesError)
    assert problems == [
        "themes.yaml: risk.medium.min_shar: unknown field; did you mean 'min_share'?",
        "themes.yaml: risk.medium.min_detractors: expected a whole number of at least 1, got '2'",
        "themes.yaml: theme 1 'price': labels: unknown field; did you mean 'label'?",
        "themes.yaml: theme 1 'price': keywords.en[2]: expected a word or phrase, got a list; put it in quotes",
        "themes.yaml: theme 1 'price': keywords.nb: expected a list of words, got a number 5",
    ]


def test_themes_keep_no_as_a_word():
    document = shipped("rules/themes.yaml")
    document["cues"]["negative"]["nb"].append("NO")
    themes = comment_themes.parse(document, "t")
    assert "no" in themes.cues["negative"]["nb"]  # the text NO, case folded, not false


def test_followup_rules_report_every_problem_with_the_field_path():
    document = shipped("rules/followups.yaml")
    document["claim_minutes"] = "60"
    document["root_causes"]["pricing"]["lable"] = document["root_causes"]["pricing"].pop("label")
    document["root_causes"]["billing"]["requires_text"] = "yes"
    document["crm_status_map"][404] = "done"
    problems = problems_of(lambda: followups.parse_rules(document), followups.FollowupRulesError)
    assert problems == [
        "rules/followups.yaml: claim_minutes: must be a whole number from 1 to 1440, got '60'",
        "rules/followups.yaml: root_causes.pricing: unknown key(s) ['lable']; did you mean 'label'?",
        "rules/followups.yaml: root_causes.pricing.label: needs a label, got nothing",
        "rules/followups.yaml: root_causes.billing.requires_text: must be true or false, got 'yes'",
        "rules/followups.yaml: crm_status_map.404: 'done' is not a state; use one of "
        "['open', 'contacting', 'reached', 'closed', 'unreachable']",
    ]


def test_the_follow_up_rules_moved_and_followups_still_offers_them():
    assert followups.load_rules is followup_rules.load_rules and followups.Rules is followup_rules.Rules
    assert followups.FollowupRulesError is followup_rules.FollowupRulesError
    assert followup_rules.load_rules().crm_status_map["completed"] == "closed"


def test_the_calendar_reports_its_shape_problems_at_once_and_keeps_no_as_a_country(tmp_path: Path):
    problems = problems_of(
        lambda: wave_calendar.parse_calendar({"defaults": [1], "wavs": [], 3: None}, "cal.yaml", NOW),
        wave_calendar.CalendarFileError,
    )
    assert problems == [
        "cal.yaml: unknown top-level key 'wavs'; the file has 'defaults:' and 'waves:'",
        "cal.yaml: unknown top-level key 3; the file has 'defaults:' and 'waves:'",
        "cal.yaml: 'defaults' must be a mapping of fields, not a list",
        "cal.yaml: no 'waves:' list",
    ]
    (wave,) = wave_calendar.parse_calendar(
        load(
            """\
            waves:
              - wave_name: 2027-Q1
                country: NO
                audience_csv: /data/q1.csv
                open_at: 2027-02-01 09:00
                close_at: 2027-02-15 17:00
            """
        ),
        "cal.yaml",
        NOW,
    )
    assert wave.conf["country"] == "NO" and wave.wave.country == "NO"


# --- any document: the module's own error, naming the file, or rules -------------------------------

PARSERS: dict[str, tuple[Callable[[Any], object], type[Exception]]] = {
    "routing": (lambda document: routing_rules.parse(document, FILE), routing_rules.RulesError),
    "themes": (lambda document: comment_themes.parse(document, FILE), comment_themes.ThemesError),
    "followups": (
        lambda document: followup_rules.parse_rules(document, PROJECT_ROOT / FILE),
        followup_rules.FollowupRulesError,
    ),
    "calendar": (lambda document: wave_calendar.parse_calendar(document, FILE, NOW), wave_calendar.CalendarFileError),
}
SHIPPED = {
    "routing": "rules/routing.yaml",
    "themes": "rules/themes.yaml",
    "followups": "rules/followups.yaml",
    "calendar": "calendar/waves.yaml",
}


def _names(model: type, seen: set[type] | None = None) -> set[str]:
    """Every field name of `model` and of the models inside it, so that documents reach deep."""
    import typing

    seen = seen if seen is not None else set()
    if not (isinstance(model, type) and issubclass(model, rule_files.RuleModel)) or model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for info in model.model_fields.values():
        pending = [info.annotation]
        while pending:
            annotation = pending.pop()
            pending += typing.get_args(annotation)
            names |= _names(annotation, seen)
    return names


KEYS = sorted(
    _names(routing_rules.RulesFile)
    | _names(comment_themes.ThemesFile)
    | _names(followup_rules.RulesFile)
    | {"en", "ja", "zh", "he", "nb", "no", "none", "other", "pricing", "program", "wave_name", "country", "open_at"}
)
TEXT = st.sampled_from(
    ["", " ", "csm", "account_owner", "queue:x@y", "critical", "NO", "09:00", "25:00", "2 business days",
     "Mars/Olympus", "Europe/Oslo", "price*", "*", "サポート*", "a@b", "closed", "2027-02-01 09:00", "{x}"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=6)
    | TEXT
    | st.dates()
    | st.datetimes()
)
DOCUMENT_KEYS = st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(-3, 3) | st.booleans() | st.none()
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(DOCUMENT_KEYS, inner, max_size=5),
    max_leaves=25,
)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found += _places(child, (*path, key))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """The shipped file with one value replaced by anything, or one key added or removed."""
    changed = copy.deepcopy(document)
    path = draw(st.sampled_from(_places(changed)))
    junk = draw(DOCUMENTS)
    if not path:
        return junk
    *head, last = path
    parent = changed
    for key in head:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if how == "remove":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(DOCUMENT_KEYS)] = junk
    else:
        parent[last] = junk
    return changed


def _parses_or_names_the_file(kind: str, document: Any) -> None:
    parse, error = PARSERS[kind]
    try:
        parse(document)
    except error as exc:
        problems = exc.problems  # type: ignore[attr-defined]
        assert problems and all(problem.startswith(f"{FILE}: ") for problem in problems), problems
        assert FILE in str(exc)


@pytest.mark.parametrize("kind", ["routing", "themes", "followups"])
@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_document_parses_or_raises_the_modules_error_naming_the_file(kind, data):
    document = data.draw(DOCUMENTS | mutated(shipped(SHIPPED[kind])))
    _parses_or_names_the_file(kind, document)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_calendar_parses_or_raises_the_calendar_error_naming_the_file(data):
    document = data.draw(DOCUMENTS | mutated(shipped(SHIPPED["calendar"])))
    _parses_or_names_the_file("calendar", document)


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_the_shipped_files_parse(kind):
    parse, _ = PARSERS[kind]
    assert parse(shipped(SHIPPED[kind]))
