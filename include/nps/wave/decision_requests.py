"""The sales decisions asked in Airflow: which detractors need one and what the request shows.

After the post-wave drop, each detractor that the routing rules' `decide_in_airflow` names, and
that nobody has decided yet (in Airflow or in a returned drop file), gets a human-in-the-loop
request: options sales / cs, the rule's proposal as the default that stands at the deadline,
assigned to the account's salesperson when they have an Airflow user name. What the request
shows is rendered from `include/templates/hitl/`, customer text escaped for Markdown.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import emails, storage
from include.nps.wave import routing, routing_rules, sales_decisions, waves

if TYPE_CHECKING:
    import pandas as pd

OPTIONS = list(sales_decisions.CHOICES)


def requests(
    engine: Engine,
    wave: waves.WaveParams,
    frame: pd.DataFrame,
    rules: routing_rules.RuleSet,
    deadline: dt.datetime,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """One request (the human-in-the-loop task's arguments) per detractor of `frame` (the wave's
    responses) that needs a decision and has none yet; none when the rules ask for no decision."""
    setting = rules.decide_in_airflow
    if setting is None:
        return []
    now = now or storage.utcnow()
    fallback = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else "cs-ops"
    decided = sales_decisions.stored(engine, wave.wave_id)
    facts = routing.routing_facts(engine, wave.wave_id)
    found = []
    for row in storage.records(routing.detractors(frame, wave.detractor_max)):
        if row["contact_id"] in decided:
            continue
        known = routing.facts_of(row, facts.get(row["contact_id"]))
        if setting.needs_decision(known):
            route = rules.route(known, fallback, now, wave.country)
            found.append(request(wave, row, route, setting.airflow_user(known.sales_owner), deadline))
    return found


def request(
    wave: waves.WaveParams,
    row: dict[str, Any],
    route: routing_rules.Route,
    airflow_user: str | None,
    deadline: dt.datetime,
) -> dict[str, Any]:
    """The request for one detractor (a response record): subject, Markdown body, the rule's
    proposal as default, its assignee and deadline, and what applying the answer needs."""
    context = {
        "wave_name": wave.wave_name,
        "account": _text(row.get("account_name")) or row["account_id"],
        "tier": _text(row.get("tier")),
        "contact_id": row["contact_id"],
        "role": _text(row.get("role")),
        "score": int(row["score"]),
        "sales_owner": _text(row.get("sales_owner")),
        "csm": _text(row.get("csm")),
        "comment": _text(row.get("comment")),
        "proposal": route.owner_type,
        "rule_id": route.rule_id,
        "deadline": f"{deadline:%Y-%m-%d %H:%M}",
    }
    return {
        "subject": " ".join(emails.render("hitl/sales_decision.subject.txt", context).split()),
        "body": emails.render("hitl/sales_decision.md", context),
        "defaults": [route.owner_type],
        "assigned_users": [{"id": airflow_user, "name": airflow_user}] if airflow_user else None,
        "decide_by": deadline.isoformat(),
        "wave_id": wave.wave_id,
        "contact_id": row["contact_id"],
        "request_label": f"{context['account']} · {row['contact_id']}",
    }


def _text(value: Any) -> str | None:
    return None if storage.missing(value) else (str(value).strip() or None)
