"""Business days, business hours and a wave's milestones.

Business days are the wave country's: its own weekend (Israel rests Friday-Saturday) and public
holidays, both from the `holidays` package, with the weekend days it works (China's shifted
Saturdays) counted as business days. Days are counted on the local date in the country's main
time zone, and business hours are `BUSINESS_OPENS` to `BUSINESS_CLOSES` local time.

Milestones are computed once, when the wave is planned, from its open and close times:

- pre-announcement `PREANNOUNCE_BUSINESS_DAYS_BEFORE_OPEN` business days before open, flash
  results `FLASH_BUSINESS_DAYS_AFTER_CLOSE` after close, the retrospective
  `RETROSPECTIVE_BUSINESS_DAYS_AFTER_FLASH` after the flash results: the business day counted,
  at the local time of day of the moment counted from, moved into business hours (to the
  opening when earlier, to the closing when later);
- reminder at `REMINDER_SHARE` of the span and mid-wave drop at `MIDWAVE_SHARE`, each moved
  forward to the next business time, or back to the previous one when forward would not be
  strictly between open and close (and the reminder strictly before the mid-wave drop). A span
  holding no business time at all (a short wave inside a long holiday) keeps those shares of
  the span: the only times that keep the order.

Any milestone given explicitly wins and is taken as given, and so are open and close: that is how
a multi-week wave is compressed into minutes for the demo and the tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from functools import cache
from zoneinfo import ZoneInfo

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
REMINDER_SHARE = 0.4  # of the span from open to close
MIDWAVE_SHARE = 0.5
BUSINESS_OPENS = dt.time(9)  # local time in the wave's country, both ends included
BUSINESS_CLOSES = dt.time(17)
# The shortest open-to-close span whose reminder and mid-wave drop are computed; a compressed
# timeline gives both explicitly.
SHORTEST_SPAN = dt.timedelta(days=2)
# How long a wave's run may wait for a milestone: the timeout of the `nps_wave` DAG's waits. A
# wave's last milestone must fall within it from the moment its run starts.
LONGEST_WAIT = dt.timedelta(days=120)
# How late a new wave's run may plan it after its open time (a trigger takes a moment to reach
# the first task); beyond it the invitations would go out late, so the plan is refused.
OPEN_GRACE = dt.timedelta(minutes=10)


class CalendarError(ValueError):
    """A wave's times cannot make a valid plan."""


# Where the tz database's first zone of a country is not where most of its people and businesses
# are (it lists zones roughly east to west or by area, not by population).
MAIN_ZONES = {
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "CA": "America/Toronto",
    "RU": "Europe/Moscow",
    "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent",
    "FM": "Pacific/Pohnpei",
    "PS": "Asia/Hebron",
}


@cache
def country_timezone(country: str) -> str:
    """The country's main time zone: the one most of it lives in where several exist (MAIN_ZONES),
    else the first the tz database lists for it (America/New_York for US), UTC when it lists none."""
    from importlib.resources import files

    if main := MAIN_ZONES.get(country.upper()):
        return main
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
    """Neither the country's weekend (unless a weekend day it works) nor one of its holidays."""
    return country_holidays(country).is_working_day(day)


def local_time(moment: dt.datetime, country: str) -> dt.datetime:
    """`moment` (naive means UTC) on the clock of the country's main time zone."""
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return aware.astimezone(ZoneInfo(country_timezone(country)))


def _at(day: dt.date, time: dt.time, country: str) -> dt.datetime:
    """The UTC moment of the local `time` on `day` in the country."""
    return dt.datetime.combine(day, time, tzinfo=ZoneInfo(country_timezone(country))).astimezone(dt.UTC)


def add_business_days(moment: dt.datetime, days: int, country: str) -> dt.datetime:
    """`moment` moved by `days` business days (negative goes back), in UTC: the local dates of the
    country are stepped, and the local time of day is kept."""
    local = local_time(moment, country)
    step = dt.timedelta(days=1 if days >= 0 else -1)
    day, remaining = local.date(), abs(days)
    while remaining:
        day += step
        if is_business_day(day, country):
            remaining -= 1
    return _at(day, local.time().replace(tzinfo=None), country)


def is_business_time(moment: dt.datetime, country: str) -> bool:
    local = local_time(moment, country)
    return is_business_day(local.date(), country) and BUSINESS_OPENS <= local.time() <= BUSINESS_CLOSES


def at_business_hour(moment: dt.datetime, country: str) -> dt.datetime:
    """`moment` on its local date with its time of day moved into business hours (UTC)."""
    local = local_time(moment, country)
    time = min(max(local.time().replace(tzinfo=None), BUSINESS_OPENS), BUSINESS_CLOSES)
    return _at(local.date(), time, country)


def next_business_time(moment: dt.datetime, country: str) -> dt.datetime:
    """`moment` if it is a business time, else the next opening of business hours (UTC)."""
    if is_business_time(moment, country):
        return moment.astimezone(dt.UTC)
    local = local_time(moment, country)
    day = local.date() if local.time() < BUSINESS_OPENS else local.date() + dt.timedelta(days=1)
    while not is_business_day(day, country):
        day += dt.timedelta(days=1)
    return _at(day, BUSINESS_OPENS, country)


def previous_business_time(moment: dt.datetime, country: str) -> dt.datetime:
    """`moment` if it is a business time, else the last closing of business hours before it (UTC)."""
    if is_business_time(moment, country):
        return moment.astimezone(dt.UTC)
    local = local_time(moment, country)
    day = local.date() if local.time() > BUSINESS_CLOSES else local.date() - dt.timedelta(days=1)
    while not is_business_day(day, country):
        day -= dt.timedelta(days=1)
    return _at(day, BUSINESS_CLOSES, country)


def business_days_away(moment: dt.datetime, days: int, country: str) -> dt.datetime:
    """The business day `days` away from `moment`'s local date, at a business hour: `moment`'s local
    time of day moved into business hours. How every day-counted milestone is placed."""
    return at_business_hour(add_business_days(moment, days, country), country)


def _business_time_between(
    target: dt.datetime, after: dt.datetime, before: dt.datetime, country: str
) -> dt.datetime | None:
    """The business time nearest `target` going forward, else going back, that is strictly between
    `after` and `before`; None when neither is."""
    for candidate in (next_business_time(target, country), previous_business_time(target, country)):
        if after < candidate < before:
            return candidate
    return None


def _within_span(
    open_at: dt.datetime, close_at: dt.datetime, given: Mapping[str, dt.datetime], country: str
) -> tuple[dt.datetime, dt.datetime]:
    """The reminder and the mid-wave drop: given ones as given, computed ones at a business time
    strictly between their neighbours (their shares of the span when no business time fits; a
    share that would pass a given neighbour becomes the middle of what is left).

    The mid-wave drop is placed first and the reminder before it; when that leaves the reminder
    no business time (a short wave whose mid-wave drop is the first opening after a weekend), the
    reminder is placed first and the mid-wave drop after it."""
    midwave = given.get("midwave") or _midwave_after(given.get("reminder", open_at), open_at, close_at, country)
    reminder = given.get("reminder") or _reminder_before(midwave, open_at, close_at, country)
    if "reminder" in given or "midwave" in given or is_business_time(reminder, country):
        return reminder, midwave
    reminder = _reminder_before(close_at, open_at, close_at, country)
    later = _midwave_after(reminder, open_at, close_at, country)
    return (reminder, later) if is_business_time(later, country) else (reminder, midwave)


def _midwave_after(after: dt.datetime, open_at: dt.datetime, close_at: dt.datetime, country: str) -> dt.datetime:
    """The mid-wave drop strictly between `after` and close: at `MIDWAVE_SHARE` of the span (the
    middle of what is left when that is not after `after`), at a business time when one fits."""
    target = open_at + (close_at - open_at) * MIDWAVE_SHARE
    target = target if target > after else after + (close_at - after) / 2
    return _business_time_between(target, after, close_at, country) or target


def _reminder_before(before: dt.datetime, open_at: dt.datetime, close_at: dt.datetime, country: str) -> dt.datetime:
    """The reminder strictly between open and `before`: at `REMINDER_SHARE` of the span (the same
    share of the way to `before` when that is not before it), at a business time when one fits."""
    target = open_at + (close_at - open_at) * REMINDER_SHARE
    target = target if target < before else open_at + (before - open_at) * (REMINDER_SHARE / MIDWAVE_SHARE)
    return _business_time_between(target, open_at, before, country) or target


def plan_milestones(
    open_at: dt.datetime,
    close_at: dt.datetime,
    country: str,
    overrides: Mapping[str, dt.datetime | None] | None = None,
) -> dict[str, dt.datetime]:
    """Every milestone of a wave, in order; explicit overrides win over computed times."""
    given = {name: moment for name, moment in (overrides or {}).items() if moment is not None}
    if unknown := set(given) - set(MILESTONES):
        raise CalendarError(f"unknown milestone(s): {', '.join(sorted(unknown))}")
    _check_span(open_at, close_at, given)
    reminder, midwave = _within_span(open_at, close_at, given, country)
    flash = given.get("flash") or business_days_away(close_at, FLASH_BUSINESS_DAYS_AFTER_CLOSE, country)
    computed = {
        "preannounce": business_days_away(open_at, -PREANNOUNCE_BUSINESS_DAYS_BEFORE_OPEN, country),
        "open": open_at,
        "reminder": reminder,
        "midwave": midwave,
        "close": close_at,
        "flash": flash,
        "retrospective": business_days_away(flash, RETROSPECTIVE_BUSINESS_DAYS_AFTER_FLASH, country),
    }
    plan = {name: given.get(name, computed[name]) for name in MILESTONES}
    _check_order(plan)
    if problem := wait_problem(plan, plan["preannounce"], "the pre-announcement"):
        raise CalendarError(problem)
    return plan


def _fmt(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _check_span(open_at: dt.datetime, close_at: dt.datetime, given: Mapping[str, dt.datetime]) -> None:
    if close_at <= open_at:
        raise CalendarError(f"close_at {close_at.isoformat()} is not after open_at {open_at.isoformat()}")
    computed = [name for name in ("reminder", "midwave") if name not in given]
    if computed and close_at - open_at < SHORTEST_SPAN:
        raise CalendarError(
            f"close_at {_fmt(close_at)} is only {close_at - open_at} after open_at {_fmt(open_at)}: a wave runs at "
            f"least {SHORTEST_SPAN.days} days (a compressed timeline gives reminder_at and midwave_at explicitly)"
        )


def _check_order(plan: dict[str, dt.datetime]) -> None:
    for earlier, later in itertools.pairwise(MILESTONES):
        if plan[earlier] > plan[later]:
            raise CalendarError(
                f"milestone {earlier!r} ({plan[earlier].isoformat()}) falls after {later!r} ({plan[later].isoformat()})"
            )


def wait_problem(plan: Mapping[str, dt.datetime], start: dt.datetime, start_name: str) -> str | None:
    """Why a run waiting from `start` (named `start_name` in the message) cannot wait for the
    plan's last milestone: it falls beyond `LONGEST_WAIT` (None when it does not)."""
    last = max(plan, key=lambda name: plan[name])
    if plan[last] - start <= LONGEST_WAIT:
        return None
    return (
        f"{last} ({_fmt(plan[last])}) is {(plan[last] - start) / dt.timedelta(days=1):.1f} days after {start_name} "
        f"({_fmt(start)}), "
        f"longer than the {LONGEST_WAIT.days} days the wave's run can wait: shorten the wave or start it later"
    )


def open_problem(open_at: dt.datetime, now: dt.datetime) -> str | None:
    """Why a new wave cannot open at `open_at` when planned at `now` (None when it can): its open
    time is already past (by more than `OPEN_GRACE`)."""
    if open_at >= now - OPEN_GRACE:
        return None
    return f"open_at {_fmt(open_at)} is in the past"


def run_problems(plan: Mapping[str, dt.datetime], now: dt.datetime, new: bool) -> list[str]:
    """Why a run starting `now` cannot run this plan: a new wave's open already past (its
    invitations would go out late), a last milestone beyond the waits' timeout."""
    late = open_problem(plan["open"], now) if new else None
    problems = [f"{late} (it is {_fmt(now)}): a new wave must open in the future" if late else None]
    problems.append(wait_problem(plan, now, "now"))
    return [problem for problem in problems if problem]
