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

import json
import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.wave import audience, bulk_reads

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


@dataclass(frozen=True)
class Moments:
    """A rating question's answers in aggregate: how many, their sum and the sum of their squares
    (exact integers for whole-number answers), all a mean and a variance need."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """The sample variance (n - 1 in the denominator), from the exact sums when they are integers."""
        return max(0.0, (self.n * self.squares - self.total * self.total) / (self.n * (self.n - 1)))


def moments(values: pd.Series | Moments) -> Moments:
    """The answers of a rating question (missing ones left out) as `Moments`."""
    if isinstance(values, Moments):
        return values
    answered = values.dropna()
    if all(float(v).is_integer() for v in answered.unique()):
        whole = [int(v) for v in answered]
        return Moments(len(whole), sum(whole), sum(v * v for v in whole))
    floats = answered.astype(float)
    return Moments(len(floats), float(floats.sum()), float((floats * floats).sum()))


def mean_interval(values: pd.Series | Moments, confidence: float = 0.95) -> tuple[float, float, float, int] | None:
    """(mean, low, high, n) of a rating question: mean +- z * sd / sqrt(n); None without answers."""
    found = moments(values)
    if not found.n:
        return None
    mean = found.mean
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(found.variance) / math.sqrt(found.n) if found.n > 1 else 0.0
    return round(mean, 2), round(mean - half, 2), round(mean + half, 2), found.n


def mean_change(current: pd.Series | Moments, previous: pd.Series | Moments, alpha: float = SIGNIFICANCE) -> str:
    """'up', 'down' or 'stable' for a rating question between two waves (Welch's z test), 'new'
    when either wave has fewer than two answers."""
    a, b = moments(current), moments(previous)
    if a.n < 2 or b.n < 2:
        return "new"
    se = math.sqrt(a.variance / a.n + b.variance / b.n)
    change = a.mean - b.mean
    if se == 0:
        return "stable" if change == 0 else ("up" if change > 0 else "down")
    p_value = 2 * (1 - NormalDist().cdf(abs(change / se)))
    return ("up" if change > 0 else "down") if p_value < alpha else "stable"


def nps(scores: pd.Series | dict[int, int]) -> dict[str, Any]:
    """Promoters (9-10), passives (7-8), detractors (0-6) and NPS = %promoters - %detractors, of
    the scores or of how many gave each score."""
    if isinstance(scores, dict):
        total = sum(scores.values())
        promoters = sum(n for score, n in scores.items() if score >= 9)
        detractors = sum(n for score, n in scores.items() if score <= 6)
    else:
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


@dataclass(frozen=True)
class Tally:
    """A wave's responses that count (none set aside) in aggregate: how many gave each score, and
    each pillar's answers as `Moments`."""

    scores: dict[int, int]
    pillars: dict[str, Moments]


def tally(engine: Engine, wave_id: str, pillar_ids: list[str]) -> Tally:
    """The wave's `Tally`, counted in the database: one row per score and stored pillar answers
    (a few hundred), not one per response."""
    counted = bulk_reads.frame(engine, storage.query("wave_answer_counts"), wave_id=wave_id)
    scores: dict[int, int] = {}
    sums = {pillar: [0, 0, 0] for pillar in pillar_ids}
    answers = json.loads(f"[{','.join(counted['pillar_answers'].tolist())}]") if len(counted) else []
    for score, answered, n in zip(counted["score"].tolist(), answers, counted["n"].tolist(), strict=True):
        scores[int(score)] = scores.get(int(score), 0) + int(n)
        for pillar, value in answered.items():
            if pillar in sums and value is not None:
                value, found = int(value), sums[pillar]
                found[0], found[1], found[2] = found[0] + n, found[1] + n * value, found[2] + n * value * value
    return Tally(scores, {pillar: Moments(*found) for pillar, found in sums.items()})


def tally_of(frame: pd.DataFrame, pillar_ids: list[str]) -> Tally:
    """The `Tally` of responses read one per row (`score`, `pillar_<id>` columns)."""
    counts = frame["score"].value_counts()
    scores = {int(score): int(n) for score, n in counts.items()}
    return Tally(scores, {p: moments(frame[f"pillar_{p}"]) for p in pillar_ids})


def answer_minutes(engine: Engine, wave_id: str) -> pd.Series:
    """How many of the wave's responses that count were first given in each minute (UTC)."""
    import pandas as pd

    counted = bulk_reads.frame(engine, storage.query("wave_answer_minutes"), wave_id=wave_id)
    minutes = pd.to_datetime(counted["minute"], utc=True, format="mixed")
    return pd.Series(counted["n"].astype("int64").to_numpy(), index=minutes)


def wave_summary(
    engine: Engine, wave_id: str, pillars: list[dict[str, Any]], counted: Tally | None = None
) -> dict[str, Any]:
    """Audience, responses, response rate, NPS and each pillar's mean for one wave; `counted` its
    `tally` when it was counted already."""
    if counted is None:
        counted = tally(engine, wave_id, [p["id"] for p in pillars])
    found = storage.fetch_one(engine, storage.query("invited_count"), wave_id=wave_id)
    assert found is not None  # COUNT(*) always gives a row
    invited = found["n"]
    summary = nps(counted.scores)
    summary["wave_id"] = wave_id
    summary["invited"] = int(invited)
    summary["audience"] = audience.audience_counts(engine, wave_id).get("included", 0)
    summary["response_rate"] = round(100.0 * summary["responses"] / invited, 1) if invited else None
    summary["completed"] = completed_count(engine, wave_id)
    summary["pillars"] = {p["id"]: _mean(counted.pillars.get(p["id"])) for p in pillars}
    counts = (summary["promoters"], summary["passives"], summary["detractors"])
    summary["interval"] = asdict(nps_interval(*counts, population=int(invited))) if summary["responses"] else None
    return summary


def completed_count(engine: Engine, wave_id: str) -> int:
    """The wave's counted answers that were sent; the others are a score clicked in the email
    (provisional), counted in the NPS too."""
    row = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n FROM responses WHERE wave_id = :w AND quarantine_reason IS NULL AND completed = TRUE",
        w=wave_id,
    )
    assert row is not None  # COUNT(*) always gives a row
    return int(row["n"])


def _mean(found: Moments | None) -> float | None:
    return round(found.mean, 2) if found and found.n else None


def nps_direction(current: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """'up' or 'down' when two wave summaries' NPS differ beyond chance, else 'stable'; 'new'
    when there is nothing to compare with."""
    if not previous or not current.get("interval") or not previous.get("interval"):
        return "new"
    return nps_change(Interval(**current["interval"]), Interval(**previous["interval"])).direction


def nps_trend(
    engine: Engine, wave_id: str, last: int = 6, known: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, float]]:
    """(wave name, NPS) of the program's last `last` waves up to this one, oldest first; `known`:
    summaries (`wave_summary`) of some of them already computed, whose responses are not counted again."""
    waves = storage.fetch_all(engine, storage.query("program_trend"), wave_id=wave_id, limit=last)
    if not waves:
        return []
    known = {wave: summary for wave, summary in (known or {}).items() if summary.get("responses")}
    counted = [w["wave_id"] for w in waves if w["wave_id"] not in known]
    counts = storage.fetch_all(engine, storage.query("dashboard_responses"), wave_ids=counted) if counted else []
    by_wave = {**{c["wave_id"]: c for c in counts}, **known}

    def score(wave: str) -> float:
        found = by_wave.get(wave)
        return round(100.0 * (found["promoters"] - found["detractors"]) / found["responses"], 1) if found else 0.0

    return [(w["name"], score(w["wave_id"])) for w in reversed(waves)]


SEGMENTS = ("region", "tier", "role")
COUNTS = ["invited", "responses", "promoters", "detractors"]
COLLECTION = ["bounced", "opted_out", "reminded", "answered_after_reminder"]


@dataclass(frozen=True)
class Invited:
    """A wave's invited contacts (invitation sent) counted in the database, for the retrospective:
    per account (with its region and tier) and per role, contacts invited, responses (none set
    aside), promoters, detractors; per account the sum of the scores; per role how the survey went
    (bounced or opted out since the invitation, reminded, answered after the reminder)."""

    accounts: pd.DataFrame
    roles: pd.DataFrame


def invited_contacts(engine: Engine, wave_id: str) -> pd.DataFrame:
    """One row per invited contact: account, region, tier, role, and the score if they answered."""
    return storage.read_frame(engine, storage.query("invited_contacts"), wave_id=wave_id)


def invited_counts(engine: Engine, wave_id: str) -> Invited:
    """The wave's invited contacts in aggregate (see `Invited`): two GROUP BY queries, no row per contact."""
    accounts = bulk_reads.frame(engine, storage.query("retrospective_accounts"), wave_id=wave_id)
    roles = storage.read_frame(engine, storage.query("retrospective_roles"), wave_id=wave_id)
    for frame, columns in ((accounts, [*COUNTS, "score_sum"]), (roles, COUNTS + COLLECTION)):
        frame[columns] = frame[columns].fillna(0).astype("int64")
    return Invited(accounts.sort_values("account_id", ignore_index=True), roles)


def account_rates(invited: Invited) -> pd.DataFrame:
    """Invited contacts, responses and response rate per account (silent accounts included), by
    account id: what `per_account` reads, from the counts."""
    frame = invited.accounts[["account_id", "account_name", "csm", "sales_owner", "vip", "invited", "responses"]]
    return frame.assign(response_rate=(100.0 * frame["responses"] / frame["invited"]).round(1))


def _counted(invited: pd.DataFrame | Invited, by: str) -> pd.DataFrame:
    """Counts (`COUNTS`, and per account `score_sum`) per value of `by`, from the counts or from one
    row per invited contact (with its score, or none)."""
    if isinstance(invited, Invited):
        source = invited.roles if by == "role" else invited.accounts
        columns = COUNTS + (["score_sum"] if "score_sum" in source else [])
        return source.groupby(by, sort=True)[columns].sum().reset_index()
    score = invited["score"]
    per_contact = invited[[by]].assign(
        invited=1,
        responses=score.notna().astype("int64"),
        promoters=(score >= 9).astype("int64"),
        detractors=(score <= 6).astype("int64"),
        score_sum=score.fillna(0),
    )
    return per_contact.groupby(by, sort=True)[[*COUNTS, "score_sum"]].sum().reset_index()


def _points(promoters: int, detractors: int, responses: int) -> float | None:
    """NPS in points from the counts, as `nps` gives it."""
    return round(100.0 * (promoters - detractors) / responses, 1) if responses else None


def segment_rates(invited: pd.DataFrame | Invited, segment: str) -> pd.DataFrame:
    """Per value of `segment`: contacts invited, responses, response rate (%) and NPS."""
    counted = _counted(invited, segment)
    frame = counted[[segment, "invited", "responses"]].copy()
    frame["response_rate"] = (100.0 * frame["responses"] / frame["invited"]).round(1)
    frame["nps"] = [
        _points(int(p), int(d), int(n))
        for p, d, n in zip(counted["promoters"], counted["detractors"], counted["responses"], strict=True)
    ]
    return frame


def account_coverage(invited: pd.DataFrame | Invited) -> dict[str, Any]:
    """Share of accounts with at least one response, and the mean of each account's own rate."""
    per_account = _counted(invited, "account_id")
    answering = per_account["responses"] > 0
    accounts = len(per_account)
    return {
        "accounts": accounts,
        "accounts_answering": int(answering.sum()),
        "account_coverage": round(100.0 * answering.mean(), 1) if accounts else None,
        "mean_account_rate": round(100.0 * (per_account["responses"] / per_account["invited"]).mean(), 1)
        if accounts
        else None,
    }


def account_level_nps(invited: pd.DataFrame | Invited) -> dict[str, Any]:
    """NPS counting each answering account once: its contacts' mean score, classified as a
    score would be (9-10 promoter, 7-8 passive, 0-6 detractor). Large accounts with many
    respondents weigh as much as small ones, which is how account managers read it."""
    per_account = _counted(invited, "account_id")
    answering = per_account[per_account["responses"] > 0]
    means = answering["score_sum"] / answering["responses"]
    return nps(means.apply(lambda m: 9 if m >= 9 else 7 if m >= 7 else 0))


def collection_review(
    invited: pd.DataFrame | Invited, timezone: str = "UTC", minutes: pd.Series | None = None
) -> dict[str, Any]:
    """How the survey itself went: bounces and opt-outs since the invitations, answers by hour
    of day (in `timezone`, the wave country's), and what the reminder brought (answers after it,
    among the reminded). From the counts, the hours are those of `minutes` (`answer_minutes`: the
    responses that count; after the close, every one is an invited contact's)."""
    import pandas as pd

    if isinstance(invited, Invited):
        totals = invited.roles[["invited", *COLLECTION]].sum()
        n, bounced, opted_out, reminded, after_reminder = (int(totals[c]) for c in ["invited", *COLLECTION])
        counted = minutes if minutes is not None else pd.Series([], index=pd.DatetimeIndex([], tz="UTC"))
        by_hour = counted.groupby(counted.index.tz_convert(timezone).hour).sum().sort_index()
    else:
        n = len(invited)
        invited_at = pd.to_datetime(invited["invited_at"], utc=True, format="mixed")
        answered = pd.to_datetime(invited["answered_at"], utc=True, format="mixed")
        reminded_at = pd.to_datetime(invited["reminded_at"], utc=True, format="mixed")
        bounced = int((pd.to_datetime(invited["bounced_at"], utc=True, format="mixed") >= invited_at).sum())
        opted_out = int((pd.to_datetime(invited["opted_out_at"], utc=True, format="mixed") >= invited_at).sum())
        reminded = int(reminded_at.notna().sum())
        after_reminder = int((reminded_at.notna() & (answered >= reminded_at)).sum())
        by_hour = answered.dropna().dt.tz_convert(timezone).dt.hour.value_counts().sort_index()
    return {
        "invited": n,
        "bounce_rate": round(100.0 * bounced / n, 1) if n else None,
        "opt_out_rate": round(100.0 * opted_out / n, 1) if n else None,
        "answers_by_hour": {int(hour): int(count) for hour, count in by_hour.items()},
        "timezone": timezone,
        "reminded": reminded,
        "answered_after_reminder": after_reminder,
        "reminder_yield": round(100.0 * after_reminder / reminded, 1) if reminded else None,
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
