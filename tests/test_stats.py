"""NPS statistics against published worked examples, and their invariants under hypothesis.

Sources of the worked numbers:
- Wald variance of NPS: whuber, stats.stackexchange.com/a/18609 (shares 1/2, 1/3, 1/6: NPS 1/3,
  variance 5/9, SD 0.75, SE about 4.1% at n = 324).
- Finite-population correction sqrt((N - n) / (N - 1)) of a proportion's SE: learn.liebler.xyz
  c/ps/3931 (N 100, n 25, p 0.4: factor 0.8704, SE 0.0853, 95% interval 0.233-0.567) and c/ps/5020
  (N 400, n 100, p 0.5: 0.0500 x 0.8671 = 0.0434); factors of assignmentexpert.com questions
  163053 (N 600, n 38: 0.9686) and 130499 (N 100, n 10: 0.95346).
- Width of the 95% interval: A. Engelhardt, "Net Promoter Score confidence intervals 2: maths and
  stats" (cybaea.net, 2016): with p = d = 1/3 the interval is about 320 / sqrt(n) wide, so a width of
  10 points needs 1,024 answers and a width of 1 point 102,400.
- A margin of error: talkstats.com thread 58500 (1,162 answers: 291 promoters, 476 passives, 395
  detractors: NPS -9, 95% margin 4.4 points).
- Adjusted Wald: Rocks (2016) and his `nps` R package (pseudo-observations 0.75 / 1.5 / 0.75 added
  before a Wald interval); MeasuringU: "add 3 to n, 3/4 to the detractors and 3/4 to the promoters".
"""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from include.nps.core import business_days
from include.nps.wave import stats


def test_wald_variance_reproduces_the_published_example():
    variance = stats.wald_variance(1 / 2, 1 / 6)
    assert math.isclose(variance, 5 / 9)
    assert round(math.sqrt(variance), 2) == 0.75
    assert round(100 * math.sqrt(variance / 324), 1) == 4.1


def test_the_interval_width_reproduces_the_published_rule_of_thumb():
    def width(n: int) -> float:
        return 2 * 1.959964 * 100 * math.sqrt(stats.wald_variance(1 / 3, 1 / 3) / n)

    assert round(width(1), 0) == 320
    assert round(width(1024), 1) == 10.0
    assert round(width(102_400), 1) == 1.0


def test_the_margin_of_error_reproduces_the_published_example():
    promoters, passives, detractors = 291, 476, 395
    n = promoters + passives + detractors
    p, d = promoters / n, detractors / n
    assert round(100 * (p - d)) == -9
    assert round(1.959964 * 100 * math.sqrt(stats.wald_variance(p, d) / n), 1) == 4.4
    adjusted = stats.nps_interval(promoters, passives, detractors)  # three pseudo-answers barely move it
    assert round(adjusted.nps) == -9 and round((adjusted.high - adjusted.low) / 2, 1) == 4.4


def test_finite_population_correction_reproduces_the_published_examples():
    factor = stats.fpc(25, 100)
    assert round(factor, 4) == 0.8704
    se = math.sqrt(0.4 * 0.6 / 25) * factor
    assert round(se, 4) == 0.0853
    assert (round(0.4 - 1.96 * se, 3), round(0.4 + 1.96 * se, 3)) == (0.233, 0.567)
    assert round(0.05 * stats.fpc(100, 400), 4) == 0.0434
    assert round(stats.fpc(38, 600), 4) == 0.9686
    assert round(stats.fpc(10, 100), 5) == 0.95346
    assert stats.fpc(10, 10_000) == 1.0  # a 0.1% sampling fraction is left uncorrected (threshold 5%)


def test_the_adjusted_wald_interval_is_a_wald_interval_on_the_pseudo_observed_counts():
    promoters, passives, detractors = 61, 30, 16
    interval = stats.nps_interval(promoters, passives, detractors)
    counts = [detractors + 0.75, passives + 1.5, promoters + 0.75]  # the R package's pseudo-observations
    n = sum(counts)
    p, d = counts[2] / n, counts[0] / n
    se = math.sqrt((p + d - (p - d) ** 2) / n)
    assert interval.nps == round(100 * (p - d), 1) and interval.se == round(100 * se, 2)
    assert interval.low == round(100 * (p - d - 1.959964 * se), 1)
    assert interval.high == round(100 * (p - d + 1.959964 * se), 1)
    assert interval.n == 107 and not interval.corrected


def test_a_census_narrows_the_interval_and_says_so():
    sample = stats.nps_interval(30, 10, 10)
    census = stats.nps_interval(30, 10, 10, population=60)
    assert census.corrected and census.se < sample.se and census.low > sample.low
    assert stats.nps_interval(30, 10, 10, population=5000).se == sample.se


def test_a_change_is_up_or_down_only_when_significant():
    large = stats.nps_change(stats.nps_interval(60, 30, 10), stats.nps_interval(30, 40, 30))
    assert large.direction == "up" and large.p_value < 0.001 and large.z > 3
    same = stats.nps_change(stats.nps_interval(30, 40, 30), stats.nps_interval(30, 40, 30))
    assert same.direction == "stable" and same.change == 0 and same.p_value == 1.0


def test_pillar_means_and_their_change():
    now = pd.Series([5, 4, 5, 4, 5, 5, 4, 5] * 5, dtype="Int64")
    before = pd.Series([3, 2, 3, 4, 2, 3, 3, 2] * 5, dtype="Int64")
    mean, low, high, n = stats.mean_interval(now)
    assert (mean, n) == (4.62, 40) and low < mean < high
    assert stats.mean_change(now, before) == "up" and stats.mean_change(before, now) == "down"
    assert stats.mean_change(now, now) == "stable"
    assert stats.mean_change(now, pd.Series([pd.NA], dtype="Int64")) == "new"
    assert stats.mean_interval(pd.Series([pd.NA], dtype="Int64")) is None


counts = st.integers(min_value=0, max_value=2000)


@given(counts, counts, counts)
def test_interval_invariants(promoters, passives, detractors):
    if promoters + passives + detractors == 0:
        return
    interval = stats.nps_interval(promoters, passives, detractors)
    assert -100 <= interval.low <= interval.nps <= interval.high <= 100
    assert interval.se > 0 and interval.n == promoters + passives + detractors


@given(counts, counts, counts, st.integers(min_value=0, max_value=5000))
def test_the_correction_never_widens_the_interval(promoters, passives, detractors, extra):
    n = promoters + passives + detractors
    if n == 0:
        return
    corrected = stats.nps_interval(promoters, passives, detractors, population=n + extra)
    assert corrected.se <= stats.nps_interval(promoters, passives, detractors).se


@given(st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=500))
def test_counts_add_up_and_nps_is_in_range(scores):
    figures = stats.nps(pd.Series(scores))
    assert figures["promoters"] + figures["passives"] + figures["detractors"] == figures["responses"] == len(scores)
    assert -100 <= figures["nps"] <= 100
    expected = 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)
    assert figures["nps"] == round(expected, 1)


@given(counts, counts, counts, counts, counts, counts)
def test_a_change_read_backwards_has_the_opposite_direction(a, b, c, d, e, f):
    if not (a + b + c and d + e + f):
        return
    one, two = stats.nps_interval(a, b, c), stats.nps_interval(d, e, f)
    forward, backward = stats.nps_change(one, two), stats.nps_change(two, one)
    assert forward.p_value == backward.p_value
    assert {forward.direction, backward.direction} in ({"stable"}, {"up", "down"})


def _invited() -> pd.DataFrame:
    rows = [  # contact, account, region, tier, role, score (None: did not answer)
        ("C1", "A1", "JP", "enterprise", "admin", 10),
        ("C2", "A1", "JP", "enterprise", "user", 6),
        ("C3", "A1", "JP", "enterprise", "user", None),
        ("C4", "A2", "US", "smb", "admin", 9),
        ("C5", "A3", "US", "smb", "admin", None),
        ("C6", "A3", "US", "smb", "user", None),
    ]
    frame = pd.DataFrame(rows, columns=["contact_id", "account_id", "region", "tier", "role", "score"])
    invited, reminded = "2026-03-02 09:00:00", "2026-03-08 09:00:00"
    frame["invited_at"] = invited
    frame["reminded_at"] = [None, reminded, reminded, None, reminded, reminded]
    frame["answered_at"] = ["2026-03-02 10:15:00", "2026-03-08 14:05:00", None, "2026-03-03 10:40:00", None, None]
    frame["bounced_at"] = [None, None, None, None, "2026-03-02 09:01:00", None]
    frame["opted_out_at"] = [None, None, "2026-03-01 12:00:00", None, None, "2026-03-09 08:00:00"]
    return frame


def test_response_rate_and_nps_per_segment():
    by_region = stats.segment_rates(_invited(), "region").to_dict("records")
    assert by_region == [
        {"region": "JP", "invited": 3, "responses": 2, "response_rate": 66.7, "nps": 0.0},
        {"region": "US", "invited": 3, "responses": 1, "response_rate": 33.3, "nps": 100.0},
    ]
    by_role = {r["role"]: r for r in stats.segment_rates(_invited(), "role").to_dict("records")}
    assert (by_role["admin"]["responses"], by_role["admin"]["invited"], by_role["user"]["nps"]) == (2, 3, -100.0)


def test_account_coverage_and_account_level_nps():
    assert stats.account_coverage(_invited()) == {
        "accounts": 3,
        "accounts_answering": 2,
        "account_coverage": 66.7,
        "mean_account_rate": 55.6,  # (2/3 + 1/1 + 0/2) / 3
    }
    # A1's contacts average 8 (a passive account), A2 averages 9 (a promoter): contact-level NPS is
    # (2 - 1) / 3 = +33.3, account-level (1 - 0) / 2 = +50.
    assert stats.nps(_invited()["score"].dropna())["nps"] == 33.3
    assert stats.account_level_nps(_invited())["nps"] == 50.0


def test_the_survey_review_counts_bounces_opt_outs_hours_and_the_reminders_yield():
    review = stats.collection_review(_invited())
    assert review == {
        "invited": 6,
        "bounce_rate": 16.7,  # C5 bounced after the invitation
        "opt_out_rate": 16.7,  # C6 opted out during the wave; C3 had before it
        "answers_by_hour": {10: 2, 14: 1},
        "timezone": "UTC",
        "reminded": 4,
        "answered_after_reminder": 1,  # C2
        "reminder_yield": 25.0,
    }
    in_tokyo = stats.collection_review(_invited(), business_days.country_timezone("JP"))["answers_by_hour"]
    assert in_tokyo == {19: 2, 23: 1}  # the same answers, at Tokyo's hour (UTC+9)


def test_each_country_has_its_main_time_zone():
    zones = {c: business_days.country_timezone(c) for c in ("US", "JP", "NO", "IL", "CN", "no")}
    assert zones == {
        "US": "America/New_York",
        "JP": "Asia/Tokyo",
        "NO": "Europe/Oslo",
        "IL": "Asia/Jerusalem",
        "CN": "Asia/Shanghai",
        "no": "Europe/Oslo",
    }


def test_a_change_between_two_censuses_is_real_however_small():
    everyone_then = stats.nps_interval(10, 10, 20, population=40)  # every contact answered
    everyone_now = stats.nps_interval(11, 10, 19, population=40)
    assert (everyone_then.nps, everyone_then.low, everyone_then.high, everyone_then.se) == (-25.0, -25.0, -25.0, 0)
    assert everyone_now.nps == -20.0
    assert stats.nps_change(everyone_now, everyone_then).direction == "up"
    assert stats.nps_change(everyone_then, everyone_then).direction == "stable"
    # The same NPS from two audiences of different sizes is no change (no pseudo-counts left in).
    small, large = stats.nps_interval(6, 0, 4, population=10), stats.nps_interval(12, 0, 8, population=20)
    assert small.nps == large.nps == 20.0 and stats.nps_change(large, small).direction == "stable"
