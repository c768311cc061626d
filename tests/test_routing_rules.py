"""Routing rules: the shipped file keeps the first routing rule, conditions and outcomes do what
the file says, SLAs count business hours and days, and a broken file says exactly what is wrong."""

from __future__ import annotations

import datetime as dt
import textwrap

import pandas as pd
import pytest

from include.nps.core import rule_files
from include.nps.wave import routing, routing_rules
from include.nps.wave.routing_rules import Facts, RulesError

UTC = dt.UTC
DEFAULT = {"name": "everyone-else", "default": True, "then": {"owner_type": "cs", "owner": "csm"}}


def rule(name: str, when: dict, owner_type: str, owner: str) -> dict:
    return {"name": name, "when": when, "then": {"owner_type": owner_type, "owner": owner}}


def rules_of(*rules: dict, **top) -> routing_rules.RuleSet:
    return routing_rules.parse({"version": 1, "rules": [*rules, DEFAULT], **top}, "test.yaml")


@pytest.mark.parametrize(
    ("tier", "sales_owner", "csm", "expected"),
    [
        ("Strategic", "s@x", "c@x", ("sales", "s@x")),
        ("enterprise", "s@x", "c@x", ("sales", "s@x")),
        ("smb", "s@x", "c@x", ("cs", "c@x")),
        ("smb", "s@x", None, ("sales", "s@x")),
        ("strategic", None, "c@x", ("cs", "c@x")),
        (None, None, None, ("cs", "ops@x")),
    ],
)
def test_the_shipped_rules_keep_the_first_routing_rule(tier, sales_owner, csm, expected):
    rules = routing_rules.load()
    assert routing.choose_owner(tier, sales_owner, csm, "ops@x") == expected
    for score in (0, 1, 3, 6):  # whatever the score: the critical rules name the same owner
        assert rules.owner(Facts(score=score, tier=tier, sales_owner=sales_owner, csm=csm), "ops@x") == expected


@pytest.mark.parametrize("blank", [None, "", "  ", float("nan"), pd.NA])
def test_a_blank_or_missing_optional_fact_is_unknown_never_text(blank):
    """A blank account_tier, salesperson or CSM (None, "", or NaN / NA from a frame) is an unknown fact:
    no condition on it holds, and the other owner (then CS ops) takes the follow-up."""
    facts = Facts(score=3, tier=blank, vip=blank, region=blank, sales_owner=blank, csm="c@x")
    assert (facts.tier, facts.vip, facts.region, facts.sales_owner) == (None, None, None, None)
    rules = rules_of(rule("vip", {"vip": True}, "sales", "account_owner"), rule("t", {"tier": "smb"}, "cs", "csm"))
    assert rules.match(facts).name == "everyone-else" and rules.owner(facts, "ops@x") == ("cs", "c@x")
    assert routing.choose_owner(blank, blank, blank, "ops@x") == ("cs", "ops@x")
    record = {"score": 2, "tier": blank, "sales_owner": "s@x", "csm": blank, "vip": blank, "country": blank}
    assert routing_rules.load().owner(routing.facts_of(record), "ops@x") == ("sales", "s@x")


def test_the_shipped_rules_give_critical_scores_hours_and_others_days():
    rules = routing_rules.load()
    friday_4pm = dt.datetime(2026, 3, 6, 16, tzinfo=UTC)
    critical = rules.route(Facts(score=1, tier="smb", csm="c@x"), "ops", friday_4pm, "US")
    assert critical == routing_rules.Route(
        "cs", "c@x", "critical@v1", dt.datetime(2026, 3, 9, 12, tzinfo=UTC), "cs-leads@vendor.example"
    )
    sales = rules.route(Facts(score=4, tier="enterprise", sales_owner="s@x"), "ops", friday_4pm, "US")
    assert (sales.rule_id, sales.sla_due_at) == ("sales-led-tiers@v1", dt.datetime(2026, 3, 9, 16, tzinfo=UTC))
    other = rules.route(Facts(score=4, tier="smb", csm="c@x"), "ops", friday_4pm, "US")
    assert (other.rule_id, other.sla_due_at) == ("everyone-else@v1", dt.datetime(2026, 3, 10, 16, tzinfo=UTC))


def test_each_condition_and_the_first_match_wins():
    rules = rules_of(
        rule("nordic-big", {"region": ["NO", "se"], "arr_min": 100000}, "cs", "queue:nordics@x"),
        rule("small", {"arr_max": 1000}, "sales", "account_owner"),
        rule("vip", {"vip": True}, "cs", "queue:vip@x"),
        rule("known", {"has_open_followup": True, "band": ["detractor"]}, "cs", "csm"),
        rule("gold", {"tier": "Gold"}, "sales", "account_owner"),
    )
    name = lambda **facts: rules.match(Facts(score=4, **facts)).name  # noqa: E731
    assert name(region="no", arr=100000) == "nordic-big"
    assert name(region="NO", arr=99999.99) == "everyone-else"
    assert name(region="NO") == "everyone-else"  # ARR unknown: an ARR condition never holds
    assert name(arr=999) == "small" and name(arr=1000) == "everyone-else"
    assert name(vip=True) == "vip" and name(vip=False) == "everyone-else"
    assert name(has_open_followup=True) == "known"
    assert rules.match(Facts(score=1, has_open_followup=True)).name == "everyone-else"  # band critical
    assert name(tier="gold") == "gold" and name(tier=None) == "everyone-else"
    assert rules.owner(Facts(score=4, region="SE", arr=2e6, csm="c@x"), "ops") == ("cs", "nordics@x")


def test_sla_in_business_hours_skips_nights_weekends_and_holidays():
    hours = routing_rules.BusinessHours(dt.time(9), dt.time(17), "Europe/Oslo")
    four = routing_rules.Sla(4, "hour")
    # Wednesday 15:00 Oslo (14:00 UTC): 2 h today, 2 h Thursday from 09:00.
    assert four.due(dt.datetime(2026, 3, 4, 14, tzinfo=UTC), "NO", hours) == dt.datetime(2026, 3, 5, 10, tzinfo=UTC)
    # Saturday: counted from Monday 09:00.
    assert four.due(dt.datetime(2026, 3, 7, 12, tzinfo=UTC), "NO", hours) == dt.datetime(2026, 3, 9, 12, tzinfo=UTC)
    # Maundy Thursday, Good Friday and Easter Monday 2026 are Norwegian holidays: 1 h on Wednesday
    # 1 April (from 16:00 Oslo), then 3 h on Tuesday 7 April.
    assert four.due(dt.datetime(2026, 4, 1, 14, tzinfo=UTC), "NO", hours) == dt.datetime(2026, 4, 7, 10, tzinfo=UTC)
    two_days = routing_rules.Sla(2, "day")
    assert two_days.due(dt.datetime(2026, 3, 6, 12, tzinfo=UTC), "US", routing_rules.BusinessHours()) == dt.datetime(
        2026, 3, 10, 12, tzinfo=UTC
    )


def test_the_file_is_read_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "routing.yaml"
    path.write_text(yaml_rules("owner: csm"), encoding="utf-8")
    monkeypatch.setenv("NPS_ROUTING_RULES", str(path))
    assert routing.choose_owner("smb", "s@x", "c@x", "ops") == ("cs", "c@x")
    path.write_text(yaml_rules("owner: account_owner"), encoding="utf-8")
    import os

    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1_000_000))
    assert routing.choose_owner("smb", "s@x", "c@x", "ops") == ("cs", "s@x")


def yaml_rules(owner_line: str) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        rules:
          - name: all
            default: true
            then:
              owner_type: cs
              {owner_line}
        """
    )


CS_CSM = "then: {owner_type: cs, owner: csm}"


def rules_file(*rules: str, head: str = "version: 1", default: bool = True) -> str:
    """A rules file of these rules (flow mappings), ending with a valid default rule."""
    listed = [f"  - {{{rule}}}" for rule in rules] + ([f"  - {{name: d, default: true, {CS_CSM}}}"] if default else [])
    return "\n".join([head, "rules:", *listed])


BAD_FILES = [
    ("version: 2\nrules: []", ["test.yaml: version: must be 1, got 2", "test.yaml: rules: expected a list"]),
    (
        rules_file(f"name: only, when: {{tier: [gold]}}, {CS_CSM}", default=False),
        ["test.yaml: rules: no default rule; end the list with one"],
    ),
    (
        rules_file(f"name: all, default: true, {CS_CSM}", f"name: late, when: {{vip: true}}, {CS_CSM}", default=False),
        ["test.yaml: rule 2 'late': unreachable: it comes after the default rule 1 'all'"],
    ),
    (
        rules_file(f"name: a, when: {{teir: [gold]}}, {CS_CSM}"),
        ["test.yaml: rule 1 'a': when.teir: unknown field; did you mean 'tier'?"],
    ),
    (
        rules_file("name: a, when: {vip: true}, then: {owner_type: cs, owner: manager}"),
        ["rule 1 'a': then.owner: unknown owner kind 'manager'; use account_owner, csm or queue:<address>"],
    ),
    (
        rules_file("name: a, when: {vip: true}, then: {owner_type: support, owner: 'queue:'}"),
        [
            "test.yaml: rule 1 'a': then.owner_type: must be sales or cs, got 'support'",
            "rule 1 'a': then.owner: unknown owner kind 'queue:'",
        ],
    ),
    (
        rules_file(
            "name: a, when: {vip: true}, then: {owner_type: cs, owner: csm, sla: 3 days}",
            "name: b, default: true, then: {owner_type: cs, owner: csm, sla: 0 business days}",
            default=False,
        ),
        [
            "rule 1 'a': then.sla: cannot read '3 days'; write it like '4 business hours' or '2 business days'",
            "test.yaml: rule 2 'b': then.sla: cannot read '0 business days'",
        ],
    ),
    (
        rules_file(f"name: a, when: {{band: [angry], vip: 'yes', arr_min: '10k', region: [Norway]}}, {CS_CSM}"),
        [
            "rule 1 'a': when.band: unknown band(s) ['angry']; use critical, detractor, passive, promoter",
            "rule 1 'a': when.vip: expected true or false, got 'yes'",
            "rule 1 'a': when.arr_min: expected an amount (a number, no currency sign), got '10k'",
            "rule 1 'a': when.region: expected two-letter country codes (like NO, JP), got ['Norway']",
        ],
    ),
    (
        rules_file(
            f"name: a, when: {{arr_min: 500, arr_max: 100}}, {CS_CSM}",
            f"name: a, default: true, when: {{vip: true}}, {CS_CSM}, colour: red",
            default=False,
        ),
        [
            "rule 1 'a': when: arr_min 500 is not below arr_max 100",
            "rule 2 'a': name: also the name of rule 1",
            "rule 2 'a': colour: unknown field",
            "rule 2 'a': when: the default rule has no conditions",
        ],
    ),
    (
        rules_file(head="version: 1\nbusiness_hours: {start: '18:00', end: '9:00', timezone: Mars/Olympus}"),
        [
            "test.yaml: business_hours: start 18:00 is not before end 09:00",
            "test.yaml: business_hours.timezone: unknown time zone 'Mars/Olympus'",
        ],
    ),
    (
        "version: 1\nrules:\n  - {name: d, default: true, then: {owner: csm}}\n  - just text",
        ["rule 1 'd': then.owner_type: must be sales or cs, got nothing", "test.yaml: rule 2: expected a mapping"],
    ),
    (rules_file(head="version: 1\nrulez: []"), ["test.yaml: rulez: unknown field; did you mean 'rules'?"]),
    (
        "version: 1\nrules:\n  - name: d\n    name: e\n    default: true",
        ["test.yaml: line 4, column 5: not valid YAML: 'name' is given twice (first on line 3)"],
    ),
    ("version: 1\nrules: [\n", ["test.yaml: line 3, column 1: not valid YAML"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=range(len(BAD_FILES)))
def test_a_broken_rules_file_names_file_rule_field_and_reason(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(rule_files, "display_path", lambda path: path.name)
    with pytest.raises(RulesError) as raised:
        routing_rules.load(tmp_path / "test.yaml")
    message = str(raised.value)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_yaml_norway_stays_a_country_code():
    text = "version: 1\nrules:\n  - {name: n, when: {region: [NO, no]}, then: {owner_type: cs, owner: csm}}\n"
    text += "  - {name: d, default: true, then: {owner_type: sales, owner: account_owner}}\n"
    import yaml

    rules = routing_rules.parse(yaml.load(text, Loader=rule_files.StrictLoader), "t")  # noqa: S506
    assert rules.match(Facts(score=3, region="NO")).name == "n"


def test_a_missing_rules_file_is_an_error(tmp_path):
    with pytest.raises(RulesError, match="no such file"):
        routing_rules.load(tmp_path / "nowhere.yaml")


def test_the_check_command_lists_the_rules_or_the_problems(tmp_path, capsys):
    assert routing_rules.main([]) == 0
    assert "4. everyone-else: everyone else -> cs csm, first contact within 2 business days" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("version: 1\nrules: []\n", encoding="utf-8")
    assert routing_rules.main([str(tmp_path / "bad.yaml")]) == 1
    assert "rules: expected a list of rules ending with a default rule" in capsys.readouterr().err
