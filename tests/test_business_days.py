"""Business days per country (its own weekend and holidays, counted on the local date) and business
hours: checked against the `holidays` package, per country and over many generated moments and waves."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.nps.core import business_days

UTC = dt.UTC
COUNTRIES = ("JP", "CN", "IL", "NO", "DE", "US")
DAY_COUNTED = ("preannounce", "flash", "retrospective")


def local(moment: dt.datetime, country: str) -> dt.datetime:
    return moment.astimezone(ZoneInfo(business_days.country_timezone(country)))


def dates_after(start: dt.date, end: dt.date) -> list[dt.date]:
    """The dates after `start` up to and including `end` (either way round)."""
    step = dt.timedelta(days=1 if end >= start else -1)
    return [start + step * n for n in range(1, abs((end - start).days) + 1)]


def working_days_after(start: dt.date, end: dt.date, country: str) -> int:
    """How many dates after `start` up to `end` the `holidays` package calls working days."""
    package = holidays.country_holidays(country)
    return sum(package.is_working_day(day) for day in dates_after(start, end))


# (country, moment in UTC, business days, expected local date, a holiday the count skips by the
# package's name, whether the moment is on another date locally than in UTC)
CASES = [
    # Wed 29 Apr (Showa Day) 05:00 in Tokyo: Thu 30, Fri 1, then Golden Week to Wed 6 May.
    ("JP", dt.datetime(2026, 4, 28, 20, tzinfo=UTC), 3, dt.date(2026, 5, 7), "Greenery Day", True),
    ("JP", dt.datetime(2026, 1, 9, 1, tzinfo=UTC), 1, dt.date(2026, 1, 13), "Coming of Age Day", False),
    # Sun 15 Feb 01:00 in Beijing, one business day back: Sat 14 Feb, a Saturday China works.
    ("CN", dt.datetime(2026, 2, 14, 17, tzinfo=UTC), -1, dt.date(2026, 2, 14), None, True),
    ("CN", dt.datetime(2026, 9, 30, 2, tzinfo=UTC), 1, dt.date(2026, 10, 8), "National Day", False),
    # Sun 6 Sep 00:30 in Jerusalem is a business day there (the weekend is Friday-Saturday).
    ("IL", dt.datetime(2026, 9, 5, 21, 30, tzinfo=UTC), 1, dt.date(2026, 9, 7), None, True),
    ("IL", dt.datetime(2026, 9, 10, 9, tzinfo=UTC), 3, dt.date(2026, 9, 16), "Rosh Hashanah", False),
    ("NO", dt.datetime(2026, 3, 1, 23, 30, tzinfo=UTC), -1, dt.date(2026, 2, 27), None, True),
    ("NO", dt.datetime(2026, 4, 1, 8, tzinfo=UTC), 1, dt.date(2026, 4, 7), "Easter Monday", False),
    ("DE", dt.datetime(2026, 5, 13, 22, 30, tzinfo=UTC), 1, dt.date(2026, 5, 15), None, True),  # Ascension Day
    ("DE", dt.datetime(2026, 12, 24, 9, tzinfo=UTC), 1, dt.date(2026, 12, 28), "Christmas Day", False),
    ("US", dt.datetime(2026, 11, 24, 4, tzinfo=UTC), 3, dt.date(2026, 11, 27), "Thanksgiving Day", True),
    ("US", dt.datetime(2026, 7, 2, 14, tzinfo=UTC), 1, dt.date(2026, 7, 6), "Independence Day (observed)", False),
]


@pytest.mark.parametrize(
    ("country", "moment", "days", "expected", "holiday", "across_midnight"),
    CASES,
    ids=[f"{c[0]}-{'midnight' if c[5] else 'holiday'}" for c in CASES],
)
def test_business_days_are_counted_on_the_local_date_of_the_countrys_own_calendar(
    country, moment, days, expected, holiday, across_midnight
):
    result = business_days.add_business_days(moment, days, country)
    start, end = local(moment, country), local(result, country)
    assert (start.date() != moment.date()) is across_midnight
    assert end.date() == expected
    assert end.time() == start.time() and result.tzinfo == UTC  # the local time of day is kept, in UTC
    # Checked against the `holidays` package: exactly `days` of its working days, ending on one.
    assert working_days_after(start.date(), end.date(), country) == abs(days)
    assert holidays.country_holidays(country).is_working_day(end.date())
    if holiday:
        names = [holidays.country_holidays(country).get(day) for day in dates_after(start.date(), end.date())]
        assert holiday in names


def test_the_weekend_is_the_countrys_own():
    friday, sunday = dt.date(2026, 9, 4), dt.date(2026, 9, 6)
    assert holidays.country_holidays("IL").weekend == {4, 5}  # Friday and Saturday
    assert (business_days.is_business_day(friday, "IL"), business_days.is_business_day(sunday, "IL")) == (False, True)
    assert (business_days.is_business_day(friday, "US"), business_days.is_business_day(sunday, "US")) == (True, False)
    assert business_days.is_business_day(dt.date(2026, 2, 14), "CN")  # a Saturday China works
    assert not business_days.is_business_day(dt.date(2026, 2, 21), "CN")  # an ordinary Saturday


@settings(max_examples=300, deadline=None)
@given(
    country=st.sampled_from(COUNTRIES),
    moment=st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 12, 1), timezones=st.just(UTC)),
    days=st.integers(-15, 15),
)
def test_any_count_of_business_days_agrees_with_the_holidays_package(country, moment, days):
    result = business_days.add_business_days(moment, days, country)
    start, end = local(moment, country), local(result, country)
    assert working_days_after(start.date(), end.date(), country) == abs(days)
    assert days == 0 or holidays.country_holidays(country).is_working_day(end.date())
    assert end.replace(tzinfo=None).time() == start.replace(tzinfo=None).time()


# --- milestones: the examples, and business hours for every computed one ----------------


def test_flash_results_in_israel_come_after_rosh_hashanah_and_its_weekend():
    close_at = dt.datetime(2026, 9, 10, 9, tzinfo=UTC)  # Thu 10 Sep, 12:00 in Jerusalem
    plan = business_days.plan_milestones(close_at - dt.timedelta(days=14), close_at, "IL")
    assert local(plan["flash"], "IL").replace(tzinfo=None) == dt.datetime(2026, 9, 16, 12)  # Wed, not Tue 15


def test_flash_results_in_japan_count_from_the_tokyo_date_of_the_close():
    close_at = dt.datetime(2026, 4, 28, 20, tzinfo=UTC)  # already Wed 29 Apr 05:00 (Showa Day) in Tokyo
    plan = business_days.plan_milestones(close_at - dt.timedelta(days=14), close_at, "JP")
    assert local(plan["flash"], "JP").replace(tzinfo=None) == dt.datetime(2026, 5, 7, 9)  # Thu, not Fri 8 May
    assert plan["flash"] == dt.datetime(2026, 5, 7, 0, tzinfo=UTC)


def _random_moments(seed: int, count: int) -> list[dt.datetime]:
    rng = random.Random(seed)
    first = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return [first + dt.timedelta(minutes=rng.randrange(2 * 365 * 24 * 60)) for _ in range(count)]


def test_no_two_week_us_wave_gets_a_milestone_on_a_weekend_or_at_night_in_new_york():
    off_hours = []
    for open_at in _random_moments(seed=16, count=1000):
        close_at = open_at + dt.timedelta(days=14)
        plan = business_days.plan_milestones(open_at, close_at, "US")
        assert open_at < plan["reminder"] < plan["midwave"] < close_at
        off_hours += [
            f"{name} {local(plan[name], 'US'):%a %Y-%m-%d %H:%M} (opens {open_at:%Y-%m-%d %H:%M} UTC)"
            for name in ("reminder", "midwave", *DAY_COUNTED)
            if not business_days.is_business_time(plan[name], "US")
        ]
    print(f"\n1000 two-week US waves: {len(off_hours)} computed milestones outside business hours in New York")
    assert off_hours == []


@settings(max_examples=400, deadline=None)
@given(
    country=st.sampled_from(COUNTRIES),
    open_at=st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 6, 1), timezones=st.just(UTC)),
    span=st.timedeltas(business_days.SHORTEST_SPAN, dt.timedelta(days=60)),
)
def test_every_computed_milestone_is_at_a_local_business_time(country, open_at, span):
    plan = business_days.plan_milestones(open_at, open_at + span, country)
    start = business_days.business_days_away(plan["preannounce"], -1, country)  # the planner's start
    for moment in (start, *(plan[name] for name in DAY_COUNTED)):
        assert business_days.is_business_time(moment, country), local(moment, country)
    assert plan["open"] < plan["reminder"] < plan["midwave"] < plan["close"]
    # The reminder and the mid-wave drop are at a business time whenever one fits between their
    # neighbours (a short wave inside a long holiday has none, and keeps its shares of the span).
    for name, after, before in (("midwave", "reminder", "close"), ("reminder", "open", "midwave")):
        fits = business_days.next_business_time(plan[after] + dt.timedelta(seconds=1), country) < plan[before]
        assert business_days.is_business_time(plan[name], country) or not fits, (name, local(plan[name], country))


@pytest.mark.parametrize("country", COUNTRIES)
def test_business_hours_are_local_and_at_both_ends(country):
    day = next(
        d for d in dates_after(dt.date(2026, 6, 7), dt.date(2026, 6, 30)) if business_days.is_business_day(d, country)
    )
    zone = ZoneInfo(business_days.country_timezone(country))
    at = {
        t: dt.datetime.combine(day, t, tzinfo=zone) for t in (dt.time(8, 59), dt.time(9), dt.time(17), dt.time(17, 1))
    }
    assert [business_days.is_business_time(moment, country) for moment in at.values()] == [False, True, True, False]
    assert business_days.next_business_time(at[dt.time(8, 59)], country) == at[dt.time(9)]
    assert business_days.previous_business_time(at[dt.time(17, 1)], country) == at[dt.time(17)]


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("US", "America/New_York"),
        ("JP", "Asia/Tokyo"),
        ("IL", "Asia/Jerusalem"),
        ("AU", "Australia/Sydney"),  # the tz database lists Lord Howe Island first
        ("BR", "America/Sao_Paulo"),  # ... Fernando de Noronha
        ("CA", "America/Toronto"),  # ... St. John's
        ("RU", "Europe/Moscow"),  # ... Kaliningrad
    ],
)
def test_a_countrys_main_zone_is_where_most_of_it_lives(country, zone):
    from zoneinfo import available_timezones

    assert business_days.country_timezone(country) == zone
    assert set(business_days.MAIN_ZONES.values()) <= available_timezones()
