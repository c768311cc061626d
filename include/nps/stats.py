"""NPS arithmetic and a wave's headline figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps import audience, responses, storage

if TYPE_CHECKING:
    import pandas as pd

DIRECTION_THRESHOLD = 1.0  # points of NPS (or of a pillar mean x 10) below which a change is "stable"


def nps(scores: pd.Series) -> dict[str, Any]:
    """Promoters (9-10), passives (7-8), detractors (0-6) and NPS = %promoters - %detractors."""
    total = int(scores.count())
    promoters = int((scores >= 9).sum())
    detractors = int((scores <= 6).sum())
    value = round(100.0 * (promoters - detractors) / total, 1) if total else None
    return {
        "responses": total,
        "promoters": promoters,
        "passives": total - promoters - detractors,
        "detractors": detractors,
        "nps": value,
    }


def wave_summary(engine: Engine, wave_id: str, pillars: list[dict[str, Any]]) -> dict[str, Any]:
    """Audience, responses, response rate, NPS and each pillar's mean for one wave."""
    frame = responses.responses_frame(engine, wave_id, [p["id"] for p in pillars])
    invited = storage.fetch_one(engine, storage.query("invited_count"), wave_id=wave_id)["n"]
    summary = nps(frame["score"]) if len(frame) else nps(_empty())
    summary["wave_id"] = wave_id
    summary["invited"] = int(invited)
    summary["audience"] = audience.audience_counts(engine, wave_id).get("included", 0)
    summary["response_rate"] = round(100.0 * summary["responses"] / invited, 1) if invited else None
    summary["pillars"] = {p["id"]: _mean(frame[f"pillar_{p['id']}"]) for p in pillars}
    return summary


def _mean(values: pd.Series) -> float | None:
    return round(float(values.mean()), 2) if values.notna().any() else None


def direction(current: float | None, previous: float | None, scale: float = 1.0) -> str:
    """'up', 'down', 'stable', or 'new' when there is nothing to compare with."""
    if current is None or previous is None:
        return "new"
    change = (current - previous) * scale
    if abs(change) < DIRECTION_THRESHOLD:
        return "stable"
    return "up" if change > 0 else "down"


def per_account(engine: Engine, wave_id: str) -> pd.DataFrame:
    """Invited contacts, responses and response rate per account (silent accounts included)."""
    frame = storage.read_frame(engine, storage.query("account_response_rates"), wave_id=wave_id)
    frame["response_rate"] = (100.0 * frame["responses"] / frame["invited"]).round(1)
    return frame


def _empty() -> pd.Series:
    import pandas as pd

    return pd.Series([], dtype="int64")
