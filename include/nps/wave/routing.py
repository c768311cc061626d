"""Route every detractor to one follow-up owner (its chat alert: `new_responses.alert_detractors`).

Who follows up, how soon and who hears when it is late is decided by the routing rules
(`rules/routing.yaml`, see `routing_rules`); the shipped rules keep the first routing rule:
strategic and enterprise accounts are followed up by their salesperson, every other account by
its CSM; when the chosen owner is missing, the other one takes it, and CS ops when neither is
known. A decision sales returned in their drop file wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.wave import data_checks, routing_rules, waves

if TYPE_CHECKING:
    import pandas as pd


def choose_owner(
    tier: str | None,
    sales_owner: str | None,
    csm: str | None,
    fallback: str,
    *,
    score: int | None = None,
    vip: bool | None = None,
    region: str | None = None,
    arr: float | None = None,
    has_open_followup: bool | None = None,
    rules: routing_rules.RuleSet | None = None,
) -> tuple[str, str]:
    """(owner_type, owner) for one detractor's account, by the routing rules (default: the
    project's rules file). A condition on a fact not given (score, VIP, ...) does not hold."""
    facts = routing_rules.Facts(
        score=score,
        tier=tier,
        arr=arr,
        vip=vip,
        region=region,
        has_open_followup=has_open_followup,
        sales_owner=sales_owner,
        csm=csm,
    )
    return (rules or routing_rules.load()).owner(facts, fallback)


def detractors(frame: pd.DataFrame, detractor_max: int) -> pd.DataFrame:
    return frame[frame["score"] <= detractor_max]


def facts_of(row: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> routing_rules.Facts:
    """The routing facts of one response record (with its account), plus `extra` (ARR, region,
    open follow-ups) when the record does not carry them; a missing value is an unknown fact."""
    extra = extra or {}

    def value(name: str) -> Any:
        found = extra.get(name, row.get(name))
        return None if storage.missing(found) else found

    return routing_rules.Facts(
        score=int(row["score"]),
        tier=value("tier"),
        arr=None if value("arr") is None else float(value("arr")),
        vip=None if value("vip") is None else bool(value("vip")),
        region=value("country"),
        has_open_followup=None if value("has_open_followup") is None else bool(value("has_open_followup")),
        sales_owner=value("sales_owner"),
        csm=value("csm"),
    )


def routing_facts(engine: Engine, wave_id: str) -> dict[str, dict[str, Any]]:
    """contact id: the account's ARR, country and whether it has another open follow-up."""
    return {r["contact_id"]: r for r in storage.fetch_all(engine, storage.query("routing_facts"), wave_id=wave_id)}


def route_detractors(
    engine: Engine,
    wave_id: str,
    frame: pd.DataFrame,
    detractor_max: int,
    fallback: str,
    decisions: dict[str, str] | None = None,
    rules: routing_rules.RuleSet | None = None,
    country: str = "US",
    now: dt.datetime | None = None,
) -> int:
    """One follow-up row per detractor, with the rule that routed it, when first contact is due
    and whom to escalate to. A rule's owner is never replaced; a sales decision (contact id:
    sales or cs) names the owner, also of a follow-up still open from an earlier run."""
    decisions = decisions or {}
    rules = rules or routing_rules.load()
    now = now or storage.utcnow()
    facts = routing_facts(engine, wave_id)
    rows = []
    for r in storage.records(detractors(frame, detractor_max)):
        route = rules.route(facts_of(r, facts.get(r["contact_id"])), fallback, now, country)
        rows.append(followup_row(wave_id, r, route, decisions.get(r["contact_id"]), fallback, now))
    store_followups(engine, rows)
    return len(rows)


def route_wave(
    engine: Engine,
    wave: waves.WaveParams,
    frame: pd.DataFrame,
    decisions: dict[str, str],
    rules: routing_rules.RuleSet,
) -> int:
    """Route the wave's detractors in `frame` (its responses) and check that each has exactly one
    follow-up, also those opened in real time for an answer that has changed band since."""
    fallback = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else "cs-ops"
    routed = route_detractors(
        engine, wave.wave_id, frame, wave.detractor_max, fallback, decisions, rules=rules, country=wave.country
    )
    followups = followups_frame(engine, wave.wave_id)
    current = frame.loc[frame["score"] <= wave.detractor_max, "contact_id"].tolist()
    suite = data_checks.routing_suite(current, _changed_since_routed(engine, wave, current, followups))
    data_checks.run_check(engine, wave.wave_id, "routing", "routing", followups, suite, row_key="contact_id")
    return routed


def _changed_since_routed(
    engine: Engine, wave: waves.WaveParams, current: list[str], followups: pd.DataFrame
) -> list[str]:
    """Follow-ups opened in real time for a detractor's answer that has changed band since."""
    earlier = storage.fetch_all(
        engine, storage.query("ever_detractors"), wave_id=wave.wave_id, detractor_max=wave.detractor_max
    )
    return sorted({r["contact_id"] for r in earlier} & set(followups["contact_id"]) - set(current))


def followup_row(
    wave_id: str,
    r: Mapping[str, Any],
    route: routing_rules.Route,
    decision: str | None,
    fallback: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The follow-up of one detractor (a response record): the rule's owner, or the one a sales
    decision names."""
    owner_type, owner, source = route.owner_type, route.owner, "rule"
    if decision:
        owner_type, source = decision, "sales_decision"
        owner = (r["sales_owner"] if decision == "sales" else r["csm"]) or fallback
    return {
        "wave_id": wave_id,
        "contact_id": r["contact_id"],
        "account_id": r["account_id"],
        "score": int(r["score"]),
        "owner_type": owner_type,
        "owner": owner,
        "owner_source": source,
        "rule_id": route.rule_id,
        "sla_due_at": route.sla_due_at,
        "escalation_target": route.escalation_target,
        "now": now,
    }


def store_followups(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert the follow-ups (a sales decision replaces the owner of an open one) and record the
    routing rule, due time and escalation target of those routed for the first time."""
    storage.execute(engine, storage.query("insert_followup"), rows)
    storage.execute(engine, storage.query("set_followup_routing"), rows)


def followups_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(engine, storage.query("followups"), wave_id=wave_id)
