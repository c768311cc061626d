"""A wave's milestones: computed ones on business days at local business hours, given ones as given,
and the times a plan refuses (close before open, a span too short, longer than the waits, a new
wave opening in the past)."""

import datetime as dt
import importlib.util
import json
import textwrap
from zoneinfo import ZoneInfo

import pytest

from include.nps.core import business_days, storage
from include.nps.planner import wave_calendar
from include.nps.wave import waves
from tests.factories import wave_params

UTC = dt.UTC
NEW_YORK = "America/New_York"


def test_business_days_skip_weekends_and_national_holidays():
    # Wed 2026-11-25 10:00 New York + 3 business days in the US: Thanksgiving (Thu 26) and the
    # weekend are skipped; the local time of day is kept.
    start = dt.datetime(2026, 11, 25, 15, tzinfo=UTC)
    assert business_days.add_business_days(start, 3, "US") == dt.datetime(2026, 12, 1, 15, tzinfo=UTC)
    # The same days in Norway have no holiday: Thu, Fri, Mon (10:00 UTC is 11:00 in Oslo, kept).
    start = dt.datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert business_days.add_business_days(start, 3, "NO") == dt.datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_business_days_backwards():
    monday = dt.datetime(2026, 3, 2, 14, tzinfo=UTC)
    assert business_days.add_business_days(monday, -3, "US") == dt.datetime(2026, 2, 25, 14, tzinfo=UTC)


def test_plan_computes_every_milestone_on_a_business_day_at_a_business_hour():
    # Opens Mon 2 Mar 09:00 UTC (04:00 in New York), closes 14 days later; US clocks go forward on 8 Mar.
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    close_at = open_at + dt.timedelta(days=14)
    plan = business_days.plan_milestones(open_at, close_at, "US")
    assert list(plan) == list(business_days.MILESTONES)
    assert (plan["open"], plan["close"]) == (open_at, close_at)  # taken as given, whatever the hour
    local = {name: moment.astimezone(ZoneInfo(NEW_YORK)) for name, moment in plan.items()}
    # 3 business days before Mon 2 Mar is Wed 25 Feb; 04:00 moves to the opening, 09:00 New York.
    assert local["preannounce"].replace(tzinfo=None) == dt.datetime(2026, 2, 25, 9)
    # 40 % of the span is Sat 7 Mar, 50 % Mon 9 Mar 05:00: the mid-wave drop moves forward to Mon
    # 09:00, the reminder (whose forward time would be the same) back to Fri 6 Mar 17:00.
    assert local["reminder"].replace(tzinfo=None) == dt.datetime(2026, 3, 6, 17)
    assert local["midwave"].replace(tzinfo=None) == dt.datetime(2026, 3, 9, 9)
    # Close Mon 16 Mar (05:00 New York) + 3 business days: Thu 19 Mar at 09:00 local, then Fri.
    assert local["flash"].replace(tzinfo=None) == dt.datetime(2026, 3, 19, 9)
    assert local["retrospective"].replace(tzinfo=None) == dt.datetime(2026, 3, 20, 9)
    assert plan["flash"] == dt.datetime(2026, 3, 19, 13, tzinfo=UTC)  # summer time: UTC-4


def test_an_evening_close_keeps_its_business_day_and_moves_to_the_closing_hour():
    # Closes Tue 10 Nov 2026 at 20:00 in Oslo: flash results on the third business day, at 17:00.
    close_at = dt.datetime(2026, 11, 10, 19, tzinfo=UTC)
    plan = business_days.plan_milestones(close_at - dt.timedelta(days=10), close_at, "NO")
    assert plan["flash"] == dt.datetime(2026, 11, 13, 16, tzinfo=UTC)  # Fri 13 Nov 17:00 in Oslo


def test_overrides_win_and_are_checked():
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    close_at = open_at + dt.timedelta(minutes=2)
    reminder, midwave = open_at + dt.timedelta(seconds=40), open_at + dt.timedelta(seconds=60)
    flash = close_at + dt.timedelta(seconds=30)  # a Monday, 04:02 in New York: taken as given
    given = {"reminder": reminder, "midwave": midwave, "flash": flash, "retrospective": flash}
    plan = business_days.plan_milestones(open_at, close_at, "US", given)
    assert (plan["reminder"], plan["midwave"], plan["flash"], plan["retrospective"]) == (
        reminder,
        midwave,
        flash,
        flash,
    )
    with pytest.raises(business_days.CalendarError, match=r"'close'.*falls after 'flash'"):
        business_days.plan_milestones(open_at, close_at, "US", {**given, "flash": open_at})


@pytest.mark.parametrize(("given", "share"), [("reminder", 0.6), ("midwave", 0.3)])
def test_a_computed_reminder_or_midwave_keeps_its_order_with_the_other_given(given, share):
    # A reminder given after half the span: the mid-wave drop comes after it; a mid-wave drop given
    # before 40 %: the reminder comes before it. Both at a business time in New York.
    open_at = dt.datetime(2026, 3, 2, 14, tzinfo=UTC)
    close_at = open_at + dt.timedelta(days=14)
    plan = business_days.plan_milestones(open_at, close_at, "US", {given: open_at + (close_at - open_at) * share})
    assert open_at < plan["reminder"] < plan["midwave"] < close_at
    computed = "midwave" if given == "reminder" else "reminder"
    assert business_days.is_business_time(plan[computed], "US")


def test_a_short_wave_over_a_weekend_gets_both_its_reminder_and_midwave_on_monday_and_tuesday():
    # Opens Sat 23 Oct 16:32 and closes Tue 26 Oct 17:45 in New York: 50 % of the span is Mon 05:00,
    # so the mid-wave drop would open Monday and leave the reminder only the weekend; the reminder
    # goes first (Mon 09:00) and the mid-wave drop after it (Tue 09:00).
    open_at = dt.datetime(2027, 10, 23, 20, 32, tzinfo=UTC)
    plan = business_days.plan_milestones(open_at, dt.datetime(2027, 10, 26, 21, 45, tzinfo=UTC), "US")
    assert [plan[name].astimezone(ZoneInfo(NEW_YORK)).replace(tzinfo=None) for name in ("reminder", "midwave")] == [
        dt.datetime(2027, 10, 25, 9),
        dt.datetime(2027, 10, 26, 9),
    ]


def test_a_retrospective_is_counted_from_the_flash_results_given():
    open_at = dt.datetime(2026, 3, 2, 14, tzinfo=UTC)
    flash = dt.datetime(2026, 3, 27, 15, tzinfo=UTC)  # Fri 27 Mar, 11:00 New York
    plan = business_days.plan_milestones(open_at, open_at + dt.timedelta(days=14), "US", {"flash": flash})
    assert plan["retrospective"] == dt.datetime(2026, 3, 30, 15, tzinfo=UTC)  # Mon 30 Mar, 11:00


def test_close_before_open_and_unknown_country_are_refused():
    open_at = dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    with pytest.raises(business_days.CalendarError, match="not after open_at"):
        business_days.plan_milestones(open_at, open_at, "US")
    with pytest.raises(business_days.CalendarError, match=r"'XX' has no business-day calendar"):
        business_days.plan_milestones(open_at, open_at + dt.timedelta(days=3), "XX")


@pytest.mark.parametrize(
    ("span", "given", "refused"),
    [
        (dt.timedelta(seconds=1), (), True),
        (business_days.SHORTEST_SPAN - dt.timedelta(minutes=1), (), True),
        (dt.timedelta(minutes=2), ("reminder",), True),  # the mid-wave drop is still computed
        (business_days.SHORTEST_SPAN, (), False),
        (dt.timedelta(minutes=2), ("reminder", "midwave"), False),  # a compressed timeline
    ],
    ids=["one-second", "just-short", "half-compressed", "shortest", "compressed"],
)
def test_a_span_too_short_for_a_computed_reminder_is_refused(span, given, refused):
    open_at = dt.datetime(2026, 3, 2, 14, tzinfo=UTC)
    overrides = {name: open_at + span * share for name, share in zip(given, (0.4, 0.5), strict=False)}
    if not refused:
        assert business_days.plan_milestones(open_at, open_at + span, "US", overrides)["close"] == open_at + span
        return
    with pytest.raises(business_days.CalendarError) as error:
        business_days.plan_milestones(open_at, open_at + span, "US", overrides)
    assert str(error.value).startswith(f"close_at {open_at + span:%Y-%m-%d %H:%M} UTC is only {span} after")
    assert "after open_at 2026-03-02 14:00 UTC: a wave runs at least 2 days" in str(error.value)
    assert "gives reminder_at and midwave_at explicitly" in str(error.value)


def test_a_wave_longer_than_the_waits_is_refused():
    open_at = dt.datetime(2026, 3, 2, 14, tzinfo=UTC)
    with pytest.raises(business_days.CalendarError) as error:
        business_days.plan_milestones(open_at, open_at + dt.timedelta(days=3652), "US")
    assert str(error.value) == (
        "retrospective (2036-03-06 14:00 UTC) is 3662.0 days after the pre-announcement (2026-02-25 14:00 UTC), "
        "longer than the 120 days the wave's run can wait: shorten the wave or start it later"
    )
    # The longest wave that fits: its retrospective exactly LONGEST_WAIT after its pre-announcement.
    fits = business_days.plan_milestones(open_at, open_at + dt.timedelta(days=100), "US")
    assert fits["retrospective"] - fits["preannounce"] <= business_days.LONGEST_WAIT


def test_every_wait_of_the_wave_dag_lasts_at_least_the_longest_wait():
    from airflow.providers.standard.sensors.date_time import DateTimeSensor

    path = storage.PROJECT_ROOT / "dags" / "nps_wave.py"
    spec = importlib.util.spec_from_file_location("nps_wave_for_waits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sensors = [task for task in module.nps_wave().tasks if isinstance(task, DateTimeSensor)]
    assert {task.task_id.rpartition(".")[2] for task in sensors} >= {
        f"wait_for_{name}" for name in business_days.MILESTONES
    } - {"wait_for_open"}
    short = {
        task.task_id: task.timeout for task in sensors if task.timeout < business_days.LONGEST_WAIT.total_seconds()
    }
    assert short == {}, f"these waits time out before {business_days.LONGEST_WAIT}: {short}"


# --- plan time: a run that cannot keep its plan is refused before anything is sent ---------------


def _wave(tmp_path, start: dt.datetime, **overrides) -> waves.WaveParams:
    return waves.WaveParams.from_params(wave_params(tmp_path / "contacts.csv", start=start, **overrides))


def test_a_new_wave_whose_open_is_past_is_refused_at_plan_and_a_rerun_is_not(engine, tmp_path):
    now = dt.datetime(2026, 12, 2, 15, tzinfo=UTC)
    wave = _wave(tmp_path, now - business_days.OPEN_GRACE - dt.timedelta(minutes=1))
    with pytest.raises(business_days.CalendarError) as error:
        waves.plan_wave(engine, wave, ("nps_wave", "manual__1"), starts_at=now)
    assert str(error.value) == (
        "wave 'test-w1' cannot be planned: open_at 2026-12-02 14:49 UTC is in the past "
        "(it is 2026-12-02 15:00 UTC): a new wave must open in the future"
    )
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM waves")["n"] == 0

    # Planned before (its run started in time): the re-run plans it again, open or not.
    waves.plan_wave(engine, wave, ("nps_wave", "manual__1"), starts_at=wave.open_at - dt.timedelta(hours=1))
    again = waves.plan_wave(engine, wave, ("nps_wave", "manual__1"), starts_at=now)
    assert again["open"] == wave.open_at.isoformat()


def test_a_trigger_moments_before_the_open_is_not_refused(engine, tmp_path):
    # A compressed wave (as the demo starts it) whose plan task runs a few minutes after its open.
    now = dt.datetime(2026, 12, 2, 15, tzinfo=UTC)
    opened = now - business_days.OPEN_GRACE + dt.timedelta(seconds=1)
    at = {name: (opened + dt.timedelta(minutes=m)).isoformat() for name, m in (("reminder_at", 1), ("midwave_at", 2))}
    close = (opened + dt.timedelta(minutes=3)).isoformat()
    wave = _wave(tmp_path, opened, close_at=close, preannounce_at=(opened - dt.timedelta(seconds=5)).isoformat(), **at)
    assert waves.plan_wave(engine, wave, ("nps_wave", "manual__1"), starts_at=now)["close"] == close


def test_a_run_planned_longer_ahead_than_its_waits_is_refused(engine, tmp_path):
    now = dt.datetime(2026, 12, 2, 15, tzinfo=UTC)
    wave = _wave(tmp_path, dt.datetime(2027, 5, 3, 14, tzinfo=UTC))  # its retrospective on 2027-05-21
    with pytest.raises(business_days.CalendarError) as error:
        waves.plan_wave(engine, wave, ("nps_wave", "manual__1"), starts_at=now)
    assert str(error.value) == (
        "wave 'test-w1' cannot be planned: retrospective (2027-05-21 14:00 UTC) is 170.0 days after now "
        "(2026-12-02 15:00 UTC), longer than the 120 days the wave's run can wait: shorten the wave or start it later"
    )
    # History (no run waits for it) is stored as given.
    assert waves.plan_wave(engine, wave)["open"] == "2027-05-03T14:00:00+00:00"


@pytest.mark.parametrize(
    ("close_after", "message"),
    [
        (dt.timedelta(seconds=1), "a wave runs at least 2 days"),
        (dt.timedelta(days=3652), "longer than the 120 days the wave's run can wait"),
    ],
    ids=["one-second", "ten-years"],
)
def test_the_wave_parameters_refuse_a_one_second_or_ten_year_wave(tmp_path, close_after, message):
    start = dt.datetime(2027, 1, 4, 14, tzinfo=UTC)
    with pytest.raises(business_days.CalendarError, match=message):
        _wave(tmp_path, start, close_at=(start + close_after).isoformat())


def test_the_wave_calendar_reports_the_same_time_problems_per_wave(tmp_path):
    path = tmp_path / "waves.yaml"
    path.write_text(
        textwrap.dedent("""\
            defaults:
              audience_csv: /data/contacts.csv
            waves:
              - wave_name: one-second
                open_at: 2027-02-01 14:00
                close_at: 2027-02-01 14:00:01
              - wave_name: ten-years
                open_at: 2027-03-01 14:00
                close_at: 2037-03-01 14:00
              - wave_name: just-too-long
                program: other
                open_at: 2027-02-01 14:00
                close_at: 2027-05-20 21:00
            """),
        encoding="utf-8",
    )
    with pytest.raises(wave_calendar.CalendarFileError) as refused:
        wave_calendar.load_calendar(path, dt.datetime(2027, 1, 4, 12, tzinfo=UTC))
    assert [problem.removeprefix(f"{path}: ") for problem in refused.value.problems] == [
        "wave 1 'one-second' (customer-nps): close_at 2027-02-01 14:00 UTC is only 0:00:01 after open_at "
        "2027-02-01 14:00 UTC: a wave runs at least 2 days (a compressed timeline gives reminder_at and midwave_at "
        "explicitly)",
        "wave 2 'ten-years' (customer-nps): retrospective (2037-03-05 14:00 UTC) is 3662.0 days after the "
        "pre-announcement (2027-02-24 14:00 UTC), longer than the 120 days the wave's run can wait: shorten the "
        "wave or start it later",
        # Within 120 days of its pre-announcement, but the planner starts its run a business day earlier.
        "wave 3 'just-too-long' (other): retrospective (2027-05-26 21:00 UTC) is 120.3 days after the planner's "
        "start (2027-01-26 14:00 UTC), longer than the 120 days the wave's run can wait: shorten the wave or start "
        "it later",
    ]


def test_the_wave_dags_plan_task_refuses_a_new_wave_that_opened_months_ago(nps_home, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from include.nps import pipeline

    params = wave_params(tmp_path / "contacts.csv", name="late", start=dt.datetime(2026, 3, 2, 14, tzinfo=UTC))
    # Refused at once: a retry could only fail the same way.
    with pytest.raises(AirflowFailException, match=r"open_at 2026-03-02 14:00 UTC is in the past \(it is "):
        pipeline.plan_wave(params, ("nps_wave", "manual__late"))
    # Without a run (a wave of the past recorded as history, a step under test) it is stored.
    assert pipeline.plan_wave(params)["wave_id"] == "test-late"


def test_a_compressed_wave_reads_back_as_it_was_planned(engine, tmp_path):
    """Every step loads the stored wave: its given reminder and mid-wave times come back with it."""
    start = storage.utcnow() + dt.timedelta(minutes=1)
    at = {name: (start + dt.timedelta(seconds=s)).isoformat() for name, s in (("reminder", 20), ("midwave", 30))}
    params = wave_params(
        tmp_path / "contacts.csv",
        name="compressed",
        start=start,
        close_at=(start + dt.timedelta(seconds=40)).isoformat(),
        reminder_at=at["reminder"],
        midwave_at=at["midwave"],
    )
    wave = waves.WaveParams.from_params(params)
    waves.plan_wave(engine, wave)
    loaded = waves.load_params(engine, wave.wave_id)
    assert loaded.overrides == wave.overrides and loaded.milestones() == wave.milestones()


def test_a_stored_wave_planned_by_earlier_rules_still_loads(engine, tmp_path):
    """Steps and the real-time runs load stored waves: a wave planned before a rule existed (here a
    one-day span with computed reminders) is not judged again, so it keeps running."""
    start = storage.utcnow() + dt.timedelta(minutes=1)
    params = wave_params(tmp_path / "contacts.csv", name="old", start=start)
    waves.plan_wave(engine, waves.WaveParams.from_params(params))
    one_day = {**params, "close_at": (start + dt.timedelta(days=1)).isoformat()}
    storage.execute(engine, "UPDATE waves SET params = :p WHERE wave_id = 'test-old'", {"p": json.dumps(one_day)})
    with pytest.raises(business_days.CalendarError, match="a wave runs at least"):
        waves.WaveParams.from_params(one_day)  # planning it today is refused
    assert waves.load_params(engine, "test-old").close_at == start + dt.timedelta(days=1)
