"""Route every detractor to one follow-up owner, and alert the team in chat.

Rule (first depth): strategic and enterprise accounts are followed up by their salesperson,
every other account by its CSM; when the chosen owner is missing, the other one takes it,
and CS ops when neither is known. A decision sales returned in their drop file wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps import messages, outbox, storage
from include.nps.delivery import Transport

if TYPE_CHECKING:
    import pandas as pd

SALES_LED_TIERS = {"strategic", "enterprise"}


def choose_owner(tier: str | None, sales_owner: str | None, csm: str | None, fallback: str) -> tuple[str, str]:
    """(owner_type, owner) for one detractor's account."""
    prefer_sales = (tier or "").lower() in SALES_LED_TIERS
    order = [("sales", sales_owner), ("cs", csm)] if prefer_sales else [("cs", csm), ("sales", sales_owner)]
    for owner_type, owner in order:
        if owner:
            return owner_type, owner
    return "cs", fallback


def detractors(frame: pd.DataFrame, detractor_max: int) -> pd.DataFrame:
    return frame[frame["score"] <= detractor_max]


def route_detractors(
    engine: Engine,
    wave_id: str,
    frame: pd.DataFrame,
    detractor_max: int,
    fallback: str,
    decisions: dict[str, str] | None = None,
) -> int:
    """One follow-up row per detractor. A rule's owner is never replaced; a sales decision
    (contact id: sales or cs) names the owner, also of a follow-up still open from an earlier run."""
    decisions = decisions or {}
    now = storage.utcnow()
    rows = []
    for r in detractors(frame, detractor_max).itertuples():
        if r.contact_id in decisions:
            owner_type = decisions[r.contact_id]
            owner = (r.sales_owner if owner_type == "sales" else r.csm) or fallback
            source = "sales_decision"
        else:
            owner_type, owner = choose_owner(r.tier, r.sales_owner, r.csm, fallback)
            source = "rule"
        rows.append(
            {
                "wave_id": wave_id,
                "contact_id": r.contact_id,
                "account_id": r.account_id,
                "score": int(r.score),
                "owner_type": owner_type,
                "owner": owner,
                "owner_source": source,
                "now": now,
            }
        )
    storage.execute(engine, storage.query("insert_followup"), rows)
    return len(rows)


def followups_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(engine, storage.query("followups"), wave_id=wave_id)


def alert_detractors(engine: Engine, wave_id: str, transport: Transport) -> outbox.Outcome:
    """Post each routed detractor to the chat channel once (the ledger's `chat` channel)."""
    followups = followups_frame(engine, wave_id).to_dict("records")
    by_contact = {f["contact_id"]: f for f in followups}
    outbox.enqueue(
        engine, wave_id, "detractor_alert", [(f["contact_id"], "nps_chat") for f in followups], channel="chat"
    )

    def render(row: dict[str, Any]) -> dict[str, Any]:
        text = messages.render("chat/detractor_alert.txt", {"f": by_contact[row["recipient"]]})
        return {"text": text}

    return outbox.deliver(engine, wave_id, "detractor_alert", render, transport)
