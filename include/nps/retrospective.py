"""The wave's retrospective: what to improve next time, as action items with owners.

Comments are split into pros (promoters), suggestions (passives) and cons (detractors); cons
come first. Each finding becomes an action item with an owner, a priority and a due date.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps import calendar, storage

if TYPE_CHECKING:
    import pandas as pd

TARGET_RESPONSE_RATE = 30.0
DUE_BUSINESS_DAYS = {"high": 5, "medium": 10, "low": 20}


def split_comments(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Cons (0-6), suggestions (7-8) and pros (9-10), cons first and lowest score first."""
    commented = frame[frame["comment"].notna() & (frame["comment"] != "")].sort_values(["score", "contact_id"])

    def pick(mask: pd.Series) -> list[dict[str, Any]]:
        return commented[mask][["account_name", "score", "comment"]].to_dict("records")

    return {
        "cons": pick(commented["score"] <= 6),
        "suggestions": pick(commented["score"].between(7, 8)),
        "pros": pick(commented["score"] >= 9),
    }


def action_items(
    summary: dict[str, Any],
    previous: dict[str, Any] | None,
    accounts: pd.DataFrame,
    comments: dict[str, list],
    pillars: list[dict[str, Any]],
    owner: str,
) -> list[dict[str, str]]:
    """Improvement items from the wave's figures; keys are stable so re-runs do not duplicate."""
    items: list[dict[str, str]] = []

    def add(key: str, title: str, reason: str, priority: str, item_owner: str = owner) -> None:
        items.append({"item_key": key, "title": title, "reason": reason, "priority": priority, "owner": item_owner})

    rate = summary["response_rate"]
    if rate is not None and rate < TARGET_RESPONSE_RATE:
        add(
            "response-rate",
            "Raise the response rate",
            f"{rate}% answered, below the {TARGET_RESPONSE_RATE:.0f}% target",
            "high",
        )
    if previous and previous.get("nps") is not None and summary["nps"] is not None and summary["nps"] < previous["nps"]:
        add("nps-drop", "Explain the NPS drop", f"NPS {summary['nps']:+.0f}, down from {previous['nps']:+.0f}", "high")
    for pillar in pillars:
        now_score = summary["pillars"].get(pillar["id"])
        before = (previous or {}).get("pillars", {}).get(pillar["id"])
        if now_score is not None and before is not None and now_score < before:
            add(
                f"pillar-{pillar['id']}",
                f"Investigate the drop in '{pillar['text']}'",
                f"mean {now_score} vs {before}",
                "medium",
            )
    if comments["cons"]:
        add(
            "review-cons",
            "Review detractor comments and pick fixes",
            f"{len(comments['cons'])} critical comment(s)",
            "high",
        )
    for account in accounts[accounts["responses"] == 0].itertuples():
        add(
            f"silent-{account.account_id}",
            f"Reach out to silent account {account.account_name}",
            f"none of {account.invited} invited contact(s) answered",
            "high" if account.vip else "medium",
            account.csm or owner,
        )
    if comments["suggestions"]:
        add(
            "review-suggestions",
            "Review suggestions from passives",
            f"{len(comments['suggestions'])} suggestion(s)",
            "low",
        )
    return items


def store_action_items(
    engine: Engine, wave_id: str, items: list[dict[str, str]], start: dt.datetime, country: str
) -> int:
    now = storage.utcnow()
    rows = [
        {
            **item,
            "wave_id": wave_id,
            "due_date": calendar.add_business_days(start, DUE_BUSINESS_DAYS[item["priority"]], country).date(),
            "now": now,
        }
        for item in items
    ]
    storage.execute(engine, storage.query("upsert_action_item"), rows)
    return len(rows)


def action_items_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(
        engine,
        "SELECT item_key, title, reason, owner, priority, due_date, status FROM action_items "
        "WHERE wave_id = :wave_id ORDER BY CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, item_key",
        wave_id=wave_id,
    )
