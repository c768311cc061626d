import datetime as dt

import pytest

from include.nps import calendar

UTC = dt.UTC


def test_business_days_skip_weekends_and_national_holidays():
    # Wed 2026-11-25 + 3 business days in the US: Thanksgiving (Thu 26) and the weekend are skipped.
    start = dt.datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert calendar.add_business_days(start, 3, "US") == dt.datetime(2026, 12, 1, 10, tzinfo=UTC)
    # The same days in Norway have no holiday: Thu, Fri, Mon.
    assert calendar.add_business_days(start, 3, "NO") == dt.datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_business_days_backwards():
    monday = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert calendar.add_business_days(monday, -3, "US") == dt.datetime(2026, 2, 25, 9, tzinfo=UTC)


def test_plan_computes_every_milestone_in_order():
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    close_at = open_at + dt.timedelta(days=14)
    plan = calendar.plan_milestones(open_at, close_at, "US")
    assert list(plan) == list(calendar.MILESTONES)
    assert plan["preannounce"] == dt.datetime(2026, 2, 25, 9, tzinfo=UTC)
    assert plan["midwave"] == open_at + dt.timedelta(days=7)
    assert plan["flash"] == dt.datetime(2026, 3, 19, 9, tzinfo=UTC)  # Mon 16 + 3 business days
    assert plan["retrospective"] == dt.datetime(2026, 3, 20, 9, tzinfo=UTC)


def test_overrides_win_and_are_checked():
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    close_at = open_at + dt.timedelta(minutes=2)
    flash = close_at + dt.timedelta(seconds=30)
    plan = calendar.plan_milestones(open_at, close_at, "US", {"flash": flash, "retrospective": flash})
    assert plan["flash"] == flash
    with pytest.raises(calendar.CalendarError, match=r"'close'.*falls after 'flash'"):
        calendar.plan_milestones(open_at, close_at, "US", {"flash": open_at})


def test_close_before_open_and_unknown_country_are_refused():
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    with pytest.raises(calendar.CalendarError, match="not after open_at"):
        calendar.plan_milestones(open_at, open_at, "US")
    with pytest.raises(calendar.CalendarError, match=r"'XX' has no business-day calendar"):
        calendar.plan_milestones(open_at, open_at + dt.timedelta(days=1), "XX")
