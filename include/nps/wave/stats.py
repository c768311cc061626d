"""NPS arithmetic, its uncertainty, and a wave's headline figures.

Interval: the adjusted-Wald method recommended by Rocks (2016, "Interval Estimation for the Net
Promoter Score", The American Statistician): add 3/4 to the promoters, 3/4 to the detractors and
3 to n (pseudo-observations 0.75 / 1.5 / 0.75), then, with p and d the adjusted proportions,

    NPS = p - d,    Var = (p + d - (p - d)^2) / n,    SE = sqrt(Var),    NPS +- z * SE

(the variance of the difference of two proportions of one multinomial sample). When the
respondents are more than 5% of a finite audience N, SE is multiplied by the finite-population
correction sqrt((N - n) / (N - 1)). Two waves are independent samples: the change
NPS1 - NPS2 has SE = sqrt(SE1^2 + SE2^2), and z = change / SE is compared with the normal
distribution (two-sided). Figures are on the -1..1 scale inside, reported as points (x 100).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.wave import audience, responses

if TYPE_CHECKING:
    import pandas as pd

PSEUDO_PROMOTERS = PSEUDO_DETRACTORS = 0.75
PSEUDO_N = 3.0
FPC_ABOVE = 0.05  # sampling fraction above which the finite-population correction applies
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Interval:
    """An NPS estimate in points with its interval, standard error and sample size."""

    nps: float  # adjusted estimate, points
    low: float
    high: float
    se: float  # points
    n: int
    corrected: bool  # finite-population correction applied


@dataclass(frozen=True)
class Change:
    """The change between two waves' NPS, and whether it is larger than chance."""

    change: float  # points, adjusted estimates
    se: float
    z: float
    p_value: float
    direction: str  # up, down or stable


def fpc(n: int, population: int | None) -> float:
    """Finite-population correction sqrt((N - n) / (N - 1)), or 1 for a small sampling fraction."""
    if not population or population <= 1 or n / population <= FPC_ABOVE:
        return 1.0
    return math.sqrt(max(population - n, 0) / (population - 1))


def wald_variance(promoter_share: float, detractor_share: float) -> float:
    """Variance of one response's contribution to NPS: p + d - (p - d)^2 (the -1/0/+1 scores)."""
    return promoter_share + detractor_share - (promoter_share - detractor_share) ** 2


def nps_interval(
    promoters: int, passives: int, detractors: int, population: int | None = None, confidence: float = 0.95
) -> Interval:
    """Adjusted-Wald interval (Rocks 2016), with the finite-population correction when the
    respondents are a large share of `population`; bounds clipped to [-100, 100]. When every
    contact of `population` answered, the NPS itself with no error."""
    n = promoters + passives + detractors
    n_adj = n + PSEUDO_N
    p = (promoters + PSEUDO_PROMOTERS) / n_adj
    d = (detractors + PSEUDO_DETRACTORS) / n_adj
    correction = fpc(n, population)
    if n and correction == 0:  # everyone answered: the NPS is known, no estimate or error left
        exact = round(100 * (promoters - detractors) / n, 1)
        return Interval(nps=exact, low=exact, high=exact, se=0.0, n=n, corrected=True)
    se = math.sqrt(wald_variance(p, d) / n_adj) * correction
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    estimate = p - d
    return Interval(
        nps=round(100 * estimate, 1),
        low=round(100 * max(-1.0, estimate - z * se), 1),
        high=round(100 * min(1.0, estimate + z * se), 1),
        se=round(100 * se, 2),
        n=n,
        corrected=correction < 1.0,
    )


def nps_change(current: Interval, previous: Interval, alpha: float = SIGNIFICANCE) -> Change:
    """Wave-over-wave change with a two-sided z test: 'up' or 'down' only when p < alpha. When
    both waves heard from their whole audience (no sampling error left), any change is real."""
    change = current.nps - previous.nps
    se = math.hypot(current.se, previous.se)
    exact = math.copysign(math.inf, change) if change else 0.0
    z = change / se if se else exact
    p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    direction = ("up" if change > 0 else "down") if p_value < alpha else "stable"
    return Change(round(change, 1), round(se, 2), round(z, 3), round(p_value, 4), direction)


def mean_interval(values: pd.Series, confidence: float = 0.95) -> tuple[float, float, float, int] | None:
    """(mean, low, high, n) of a rating question: mean +- z * sd / sqrt(n); None without answers."""
    answered = values.dropna().astype(float)
    n = len(answered)
    if not n:
        return None
    mean = float(answered.mean())
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * float(answered.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return round(mean, 2), round(mean - half, 2), round(mean + half, 2), n


def mean_change(current: pd.Series, previous: pd.Series, alpha: float = SIGNIFICANCE) -> str:
    """'up', 'down' or 'stable' for a rating question between two waves (Welch's z test), 'new'
    when either wave has fewer than two answers."""
    a, b = current.dropna().astype(float), previous.dropna().astype(float)
    if len(a) < 2 or len(b) < 2:
        return "new"
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    change = float(a.mean() - b.mean())
    if se == 0:
        return "stable" if change == 0 else ("up" if change > 0 else "down")
    p_value = 2 * (1 - NormalDist().cdf(abs(change / se)))
    return ("up" if change > 0 else "down") if p_value < alpha else "stable"


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
    counted = storage.fetch_one(engine, storage.query("invited_count"), wave_id=wave_id)
    assert counted is not None  # COUNT(*) always gives a row
    invited = counted["n"]
    summary = nps(frame["score"]) if len(frame) else nps(_empty())
    summary["wave_id"] = wave_id
    summary["invited"] = int(invited)
    summary["audience"] = audience.audience_counts(engine, wave_id).get("included", 0)
    summary["response_rate"] = round(100.0 * summary["responses"] / invited, 1) if invited else None
    summary["pillars"] = {p["id"]: _mean(frame[f"pillar_{p['id']}"]) for p in pillars}
    counts = (summary["promoters"], summary["passives"], summary["detractors"])
    summary["interval"] = asdict(nps_interval(*counts, population=int(invited))) if summary["responses"] else None
    return summary


def _mean(values: pd.Series) -> float | None:
    return round(float(values.mean()), 2) if values.notna().any() else None


def nps_direction(current: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """'up' or 'down' when two wave summaries' NPS differ beyond chance, else 'stable'; 'new'
    when there is nothing to compare with."""
    if not previous or not current.get("interval") or not previous.get("interval"):
        return "new"
    return nps_change(Interval(**current["interval"]), Interval(**previous["interval"])).direction


def nps_trend(engine: Engine, wave_id: str, last: int = 6) -> list[tuple[str, float]]:
    """(wave name, NPS) of the program's last `last` waves up to this one, oldest first."""
    waves = storage.fetch_all(engine, storage.query("program_trend"), wave_id=wave_id, limit=last)
    if not waves:
        return []
    counts = storage.fetch_all(engine, storage.query("dashboard_responses"), wave_ids=[w["wave_id"] for w in waves])
    by_wave = {c["wave_id"]: c for c in counts}

    def score(wave: str) -> float:
        found = by_wave.get(wave)
        return round(100.0 * (found["promoters"] - found["detractors"]) / found["responses"], 1) if found else 0.0

    return [(w["name"], score(w["wave_id"])) for w in reversed(waves)]


SEGMENTS = ("region", "tier", "role")


def invited_contacts(engine: Engine, wave_id: str) -> pd.DataFrame:
    """One row per invited contact: account, region, tier, role, and the score if they answered."""
    return storage.read_frame(engine, storage.query("invited_contacts"), wave_id=wave_id)


def segment_rates(invited: pd.DataFrame, segment: str) -> pd.DataFrame:
    """Per value of `segment`: contacts invited, responses, response rate (%) and NPS."""
    answered = invited.assign(answered=invited["score"].notna())
    grouped = answered.groupby(segment, sort=True)
    frame = grouped.agg(invited=("contact_id", "size"), responses=("answered", "sum")).reset_index()
    frame["response_rate"] = (100.0 * frame["responses"] / frame["invited"]).round(1)
    frame["nps"] = [nps(group["score"].dropna())["nps"] for _, group in grouped]
    return frame


def account_coverage(invited: pd.DataFrame) -> dict[str, Any]:
    """Share of accounts with at least one response, and the mean of each account's own rate."""
    per_account = invited.assign(answered=invited["score"].notna()).groupby("account_id")["answered"]
    accounts = int(per_account.size().count())
    return {
        "accounts": accounts,
        "accounts_answering": int(per_account.any().sum()),
        "account_coverage": round(100.0 * per_account.any().mean(), 1) if accounts else None,
        "mean_account_rate": round(100.0 * per_account.mean().mean(), 1) if accounts else None,
    }


def account_level_nps(invited: pd.DataFrame) -> dict[str, Any]:
    """NPS counting each answering account once: its contacts' mean score, classified as a
    score would be (9-10 promoter, 7-8 passive, 0-6 detractor). Large accounts with many
    respondents weigh as much as small ones, which is how account managers read it."""
    means = invited.dropna(subset=["score"]).groupby("account_id")["score"].mean()
    return nps(means.apply(lambda m: 9 if m >= 9 else 7 if m >= 7 else 0))


def collection_review(invited: pd.DataFrame, timezone: str = "UTC") -> dict[str, Any]:
    """How the survey itself went: bounces and opt-outs since the invitations, answers by hour
    of day (in `timezone`, the wave country's), and what the reminder brought (answers after it,
    among the reminded)."""
    import pandas as pd

    n = len(invited)
    invited_at = pd.to_datetime(invited["invited_at"], utc=True, format="mixed")
    answered_at = pd.to_datetime(invited["answered_at"], utc=True, format="mixed")
    reminded_at = pd.to_datetime(invited["reminded_at"], utc=True, format="mixed")
    bounced = pd.to_datetime(invited["bounced_at"], utc=True, format="mixed") >= invited_at
    opted_out = pd.to_datetime(invited["opted_out_at"], utc=True, format="mixed") >= invited_at
    reminded = reminded_at.notna()
    after_reminder = reminded & (answered_at >= reminded_at)
    hours = answered_at.dropna().dt.tz_convert(timezone).dt.hour.value_counts().sort_index()
    return {
        "invited": n,
        "bounce_rate": round(100.0 * bounced.sum() / n, 1) if n else None,
        "opt_out_rate": round(100.0 * opted_out.sum() / n, 1) if n else None,
        "answers_by_hour": {int(hour): int(count) for hour, count in hours.items()},
        "timezone": timezone,
        "reminded": int(reminded.sum()),
        "answered_after_reminder": int(after_reminder.sum()),
        "reminder_yield": round(100.0 * after_reminder.sum() / reminded.sum(), 1) if reminded.any() else None,
    }


def per_account(engine: Engine, wave_id: str) -> pd.DataFrame:
    """Invited contacts, responses and response rate per account (silent accounts included)."""
    frame = storage.read_frame(engine, storage.query("account_response_rates"), wave_id=wave_id)
    frame["response_rate"] = (100.0 * frame["responses"] / frame["invited"]).round(1)
    return frame


def _empty() -> pd.Series:
    import pandas as pd

    return pd.Series([], dtype="int64")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion successes / n (Wilson 1927), on the 0..1 scale; None
    when n is 0. With p = successes / n and z the normal quantile,

        centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) * sqrt(p(1 - p) / n + z^2 / 4n^2)

    Unlike p +- z * sqrt(p(1 - p) / n) it stays inside [0, 1] and is not empty at 0 or n successes,
    which is what small groups (an incentive variant's few follow-ups) need."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
