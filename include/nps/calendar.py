"""Business days and a wave's milestones.

Milestones are computed once, when the wave is planned, from its open and close times and the
business-day calendar of the wave's country. Any milestone given explicitly wins, which is how
a multi-week wave is compressed into minutes for the demo and the tests.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import holidays

MILESTONES = (
    "preannounce",
    "open",
    "reminder",
    "midwave",
    "close",
    "flash",
    "retrospective",
)
PREANNOUNCE_BUSINESS_DAYS_BEFORE_OPEN = 3
FLASH_BUSINESS_DAYS_AFTER_CLOSE = 3
RETROSPECTIVE_BUSINESS_DAYS_AFTER_FLASH = 1


class CalendarError(ValueError):
    """A wave's times cannot make a valid plan."""


@cache
def country_timezone(country: str) -> str:
    """The country's main time zone (the first the tz database lists for it, e.g. America/New_York
    for US), UTC when it lists none."""
    from importlib.resources import files

    table = files("tzdata").joinpath("zoneinfo/zone.tab").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in table.splitlines() if line and not line.startswith("#"))
    return next((row[2] for row in rows if row[0] == country.upper()), "UTC")


@cache
def country_holidays(country: str) -> holidays.HolidayBase:
    try:
        return holidays.country_holidays(country)
    except NotImplementedError as exc:
        raise CalendarError(f"country {country!r} has no business-day calendar") from exc


def is_business_day(day: dt.date, country: str) -> bool:
    return day.weekday() < 5 and day not in country_holidays(country)


def add_business_days(moment: dt.datetime, days: int, country: str) -> dt.datetime:
    """`moment` moved by `days` business days (negative goes back), keeping the time of day."""
    step = 1 if days >= 0 else -1
    remaining = abs(days)
    current = moment
    while remaining:
        current += dt.timedelta(days=step)
        if is_business_day(current.date(), country):
            remaining -= 1
    return current


def plan_milestones(
    open_at: dt.datetime,
    close_at: dt.datetime,
    country: str,
    overrides: dict[str, dt.datetime | None] | None = None,
) -> dict[str, dt.datetime]:
    """Every milestone of a wave, in order; explicit overrides win over computed times."""
    if close_at <= open_at:
        raise CalendarError(f"close_at {close_at.isoformat()} is not after open_at {open_at.isoformat()}")
    span = close_at - open_at
    flash_at = add_business_days(close_at, FLASH_BUSINESS_DAYS_AFTER_CLOSE, country)
    computed = {
        "preannounce": add_business_days(open_at, -PREANNOUNCE_BUSINESS_DAYS_BEFORE_OPEN, country),
        "open": open_at,
        "reminder": open_at + span * 0.4,
        "midwave": open_at + span / 2,
        "close": close_at,
        "flash": flash_at,
        "retrospective": add_business_days(flash_at, RETROSPECTIVE_BUSINESS_DAYS_AFTER_FLASH, country),
    }
    given = {name: moment for name, moment in (overrides or {}).items() if moment is not None}
    unknown = set(given) - set(MILESTONES)
    if unknown:
        raise CalendarError(f"unknown milestone(s): {', '.join(sorted(unknown))}")
    plan = {name: given.get(name, computed[name]) for name in MILESTONES}
    _check_order(plan)
    return plan


def _check_order(plan: dict[str, dt.datetime]) -> None:
    rules = [
        ("preannounce", "open"),
        ("open", "reminder"),
        ("reminder", "midwave"),
        ("midwave", "close"),
        ("close", "flash"),
        ("flash", "retrospective"),
    ]
    for earlier, later in rules:
        if plan[earlier] > plan[later]:
            raise CalendarError(
                f"milestone {earlier!r} ({plan[earlier].isoformat()}) falls after {later!r} ({plan[later].isoformat()})"
            )
