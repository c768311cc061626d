"""The wave calendar: waves planned ahead in a versioned YAML file, and when the planner starts them.

A calendar wave is an `nps_wave` trigger form written down: its fields are the form's fields, by
the same names, with `defaults` shared by every wave. Loading the file checks each wave as the form
does (the `nps_wave` DAG's own Param schemas), then as the run does (`WaveParams` and the milestone
plan in the country's business days), then against the other waves (one wave id each, no overlap
within a program), and reports every problem with the file, the wave and the field.

The planner (`dags/nps_planner.py`) starts a wave's run one business day before its
pre-announcement, so the contacts file is loaded and checked while there is time to fix it.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import addresses, business_days, rule_files, storage
from include.nps.core.rule_files import did_you_mean, display_path
from include.nps.wave import waves

if TYPE_CHECKING:
    from airflow.sdk.definitions.param import ParamsDict

DEFAULT_CALENDAR = storage.PROJECT_ROOT / "calendar" / "waves.yaml"
CALENDAR_ENV = "NPS_WAVE_CALENDAR"
CALENDAR_VARIABLE = "nps_wave_calendar"
RUN_ID_PREFIX = "wave__"
START_BUSINESS_DAYS_BEFORE_PREANNOUNCE = 1
# Each field of addresses, and how one of its values is parsed (`include.nps.core.addresses`).
ADDRESS_FIELDS: dict[str, Callable[[object], str]] = {
    "sales_recipients": addresses.bare_address,
    "cs_ops_recipients": addresses.bare_address,
    "drop_allow_list": addresses.allow_entry,
    "sender": addresses.mailbox,
    "executive_sender": addresses.mailbox,
}
MAX_WAVE_ID = 128  # waves.wave_id and wave_starts.wave_id are VARCHAR(128)
DATE_ONLY = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
TIME_EXAMPLE = "write it like 2027-02-01 09:00 (times are UTC)"

log = logging.getLogger(__name__)


class CalendarFileError(ValueError):
    """The wave calendar cannot be used; `problems` names the file, wave and field of each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"the wave calendar has {len(problems)} problem(s):\n{listed}")


class WaveStartError(RuntimeError):
    """A due wave has no `nps_wave` run after the planner tried to start it."""


@dataclass(frozen=True)
class PlannedWave:
    """One checked wave of the calendar."""

    index: int  # its position in the file's `waves` list, from 1
    label: str  # how problems and logs name it: "wave 3 '2027-Q1' (customer-nps)"
    wave: waves.WaveParams
    conf: dict[str, Any]  # the `nps_wave` run's conf, as the trigger form would send it
    milestones: dict[str, dt.datetime]

    @property
    def wave_id(self) -> str:
        return self.wave.wave_id

    @property
    def run_id(self) -> str:
        return run_id_for(self.wave_id)

    @property
    def start_at(self) -> dt.datetime:
        """When the planner starts the run: one business day before the pre-announcement, at a
        business hour."""
        return business_days.business_days_away(
            self.milestones["preannounce"], -START_BUSINESS_DAYS_BEFORE_PREANNOUNCE, self.wave.country
        )


def run_id_for(wave_id: str) -> str:
    """The planner's run id of a wave: one wave, one possible run."""
    return f"{RUN_ID_PREFIX}{wave_id}"


def calendar_path(setting: str | None = None) -> Path:
    """The calendar file: `setting` (the `nps_wave_calendar` Variable), else `NPS_WAVE_CALENDAR`,
    else the shipped `calendar/waves.yaml`; a relative path is from the project's folder."""
    return rule_files.resolve_path(setting, CALENDAR_ENV, DEFAULT_CALENDAR)


@cache
def wave_form() -> ParamsDict:
    """The `nps_wave` DAG's Params: the trigger form's fields and schemas."""
    from airflow.sdk.definitions.param import ParamsDict

    from include.nps.wave.trigger_form import wave_form_params

    return ParamsDict(wave_form_params())


# --- checking the fields of one wave ------------------------------------------------------------


def _time_value(value: Any) -> tuple[Any, str | None]:
    """A time field as the form's ISO string in UTC, or the problem with it."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date) or (isinstance(value, str) and DATE_ONLY.match(value.strip())):
        return value, f"{value} has no time of day: {TIME_EXAMPLE}"
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return value, f"{value!r} is not a date and time: {TIME_EXAMPLE}"
    else:
        return value, None  # null or another type: the schema decides
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.isoformat(), None


def _schema_problems(name: str, value: Any, schema: dict[str, Any]) -> list[str]:
    """The field checked against its Param's schema, as Airflow checks a run's conf."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        if name in ADDRESS_FIELDS and error.validator in ("format", "pattern"):
            continue  # `_address_problems` says more
        where = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        number_for_text = error.validator == "type" and isinstance(error.instance, int | float)
        hint = "; put it in quotes" if number_for_text and "string" in str(error.validator_value) else ""
        problems.append(f"{where}: {error.message}{hint}")
    return problems


def _address_problems(name: str, value: Any) -> list[str]:
    """Recipients exactly one address per item, allow-list entries whole addresses or domains,
    senders one address (a display name allowed), as `WaveParams` parses them."""
    parse = ADDRESS_FIELDS.get(name)
    if parse is None or value is None:
        return []
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    problems = []
    for position, item in items:
        if not isinstance(item, str):
            continue  # the schema says what type it should be
        try:
            parse(item)
        except addresses.AddressError as exc:
            where = name if position is None else f"{name}[{position}]"
            problems.append(f"{where} {item!r} {exc}")
    return problems


def _check_fields(fields: Mapping[str, Any], form: ParamsDict) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The fields as the form would send them, and the problems of each field by name."""
    conf: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for name, raw in fields.items():
        if name not in form:
            hint = did_you_mean(name, list(form), "the fields are those of the nps_wave trigger form")
            problems[str(name)] = [f"unknown field {name!r}{hint}"]
            continue
        param = form.get_param(name)
        if raw is None and not param.has_value:
            continue  # reported as missing
        schema = param.schema
        value, problem = _time_value(raw) if schema.get("format") == "date-time" else (raw, None)
        if isinstance(value, dt.date):
            value = value.isoformat()
        if problem:
            problems[name] = [f"{name} {problem}"]
            continue
        if found := _schema_problems(name, value, schema) + _address_problems(name, value):
            problems[name] = found
            continue
        conf[name] = value
    return conf, problems


def _required(form: ParamsDict) -> list[str]:
    """The fields without a default in the form."""
    from airflow.sdk.definitions._internal.types import is_arg_set

    return [name for name in form if not is_arg_set(form.get_param(name).value)]


def _fmt(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _wave_problems(conf: dict[str, Any], wave_id: str | None, now: dt.datetime, started: Collection[str]) -> list[str]:
    """Checks that need several fields or the world outside the form."""
    problems = []
    open_at = waves.parse_time(conf.get("open_at"))
    close_at = waves.parse_time(conf.get("close_at"))
    if open_at and close_at and close_at <= open_at:
        relation = "is before" if close_at < open_at else "is the same time as"
        problems.append(f"close_at {_fmt(close_at)} {relation} open_at {_fmt(open_at)}")
    if open_at and wave_id and wave_id not in started and (late := business_days.open_problem(open_at, now)):
        problems.append(f"{late} and the wave was never started: give it new dates, or remove it")
    if wave_id and len(wave_id) > MAX_WAVE_ID:
        problems.append(
            f"program and wave_name make a wave id of {len(wave_id)} characters; the limit is {MAX_WAVE_ID}"
        )
    if "country" in conf:
        try:
            business_days.country_holidays(conf["country"])
        except business_days.CalendarError as exc:
            problems.append(f"{exc}: use a two-letter ISO country code such as US, DE or JP")
    return problems


# --- the whole file -----------------------------------------------------------------------------


class CalendarFile(rule_files.RuleModel):
    """The file's shape; each wave's fields are then checked as the trigger form checks them."""

    defaults: dict[Any, Any] | None = None
    waves: list[dict[Any, Any]] | None


def _file_problem(problem: rule_files.Problem) -> str:
    """The calendar's problems name a top-level key in their reason."""
    return ": ".join(part for part in (problem.where, problem.item, problem.reason) if part)


FILE_MESSAGES = rule_files.Messages(
    reasons={
        "": "the file must be a mapping with a 'waves:' list (and optional 'defaults:'), not {kind}",
        "defaults": "'defaults' must be a mapping of fields, not {kind}",
        "waves": {
            "missing": "no 'waves:' list",
            "": "'waves' must be a list of waves, each starting with '- wave_name:', not {kind}",
        },
        "waves[]": "must be a mapping of fields, not {kind}",
    },
    items={"waves": ("wave", "wave_name")},
    unknown="unknown top-level key {key!r}; the file has 'defaults:' and 'waves:'",
    render=_file_problem,
)


def load_calendar(path: Path, now: dt.datetime, started: Collection[str] = ()) -> list[PlannedWave]:
    """Every wave of the calendar, checked; raise `CalendarFileError` listing every problem.

    `started` holds the wave ids already started: only a wave never started must open after `now`.
    """
    where = display_path(path)
    return parse_calendar(rule_files.read_yaml(path, CalendarFileError, where), where, now, started)


def parse_calendar(document: Any, where: str, now: dt.datetime, started: Collection[str] = ()) -> list[PlannedWave]:
    """The waves of a calendar file `where` as loaded (see `load_calendar`)."""
    if document is None:
        raise CalendarFileError([f"{where}: the file is empty; it needs a 'waves:' list"])
    calendar = rule_files.check(CalendarFile, document, where, CalendarFileError, FILE_MESSAGES)
    defaults, entries = calendar.defaults or {}, calendar.waves or []
    problems: list[str] = []
    form = wave_form()
    base, default_problems = _check_fields(defaults, form)
    problems += [f"{where}: defaults: {p}" for found in default_problems.values() for p in found]
    planned: list[PlannedWave] = []
    for index, entry in enumerate(entries, start=1):
        label = _label(index, {"program": form["program"], **defaults, **entry})
        wave, found = _check_wave(index, label, entry, base, set(default_problems), form, now, started)
        problems += [f"{where}: {label}: {p}" for p in found]
        if wave:
            planned.append(wave)
    problems += [f"{where}: {p}" for p in _across_waves(planned)]
    if problems:
        raise CalendarFileError(problems)
    return planned


def _label(index: int, fields: Mapping[str, Any]) -> str:
    name, program = fields.get("wave_name"), fields.get("program")
    return f"wave {index} {str(name)!r} ({program})" if name not in (None, "") else f"wave {index}"


def _check_wave(
    index: int,
    label: str,
    entry: Mapping[str, Any],
    base: dict[str, Any],
    bad_defaults: set[str],
    form: ParamsDict,
    now: dt.datetime,
    started: Collection[str],
) -> tuple[PlannedWave | None, list[str]]:
    own, by_field = _check_fields(entry, form)
    problems = [p for found in by_field.values() for p in found]
    conf = {**base, **own}
    missing = [
        name for name in _required(form) if conf.get(name) is None and name not in by_field and name not in bad_defaults
    ]
    problems += [f"missing required field {name!r} ({form.get_param(name).schema.get('title')})" for name in missing]
    names = conf.get("program", form["program"]), conf.get("wave_name")
    wave_id = f"{waves.slug(names[0])}-{waves.slug(names[1])}" if names[1] else None
    problems += _wave_problems(conf, wave_id, now, started)
    if problems or bad_defaults - set(entry):
        return None, problems
    try:
        merged = copy.deepcopy(form)
        merged.update(conf)  # each value checked against its Param, as Airflow does with a run's conf
        wave = waves.WaveParams.from_params(merged.validate())
        milestones = wave.milestones()
    except (ValueError, TypeError) as exc:  # WaveError, CalendarError, ParamValidationError
        return None, [str(exc)]
    planned = PlannedWave(index, label, wave, conf, milestones)
    if too_long := business_days.wait_problem(milestones, planned.start_at, "the planner's start"):
        return None, [too_long]
    return planned, []


def _across_waves(planned: list[PlannedWave]) -> list[str]:
    problems = []
    for position, later in enumerate(planned):
        for earlier in planned[:position]:
            if later.wave_id == earlier.wave_id:
                problems.append(
                    f"{later.label}: wave_name gives the wave id {later.wave_id!r} of {earlier.label}; "
                    "each wave of a program needs its own name"
                )
            elif waves.slug(later.wave.program) == waves.slug(earlier.wave.program) and (
                later.wave.open_at < earlier.wave.close_at and earlier.wave.open_at < later.wave.close_at
            ):
                problems.append(
                    f"{later.label}: open_at {_fmt(later.wave.open_at)} to close_at {_fmt(later.wave.close_at)} "
                    f"overlaps {earlier.label} ({_fmt(earlier.wave.open_at)} to {_fmt(earlier.wave.close_at)}); "
                    "waves of one program must not overlap"
                )
    return problems


# --- the planner --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The calendar's waves sorted by what the planner does with them now."""

    due: list[PlannedWave]  # start now
    started: list[PlannedWave]  # already started (by the planner, or by hand from the form)
    waiting: list[PlannedWave]  # not due yet
    too_late: list[PlannedWave]  # opened without being started: a person decides

    def summary(self) -> str:
        lines = [f"due now: {len(self.due)}, already started: {len(self.started)}, not due yet: {len(self.waiting)}"]
        lines += [f"  start {w.label} as run {w.run_id} (open_at {_fmt(w.wave.open_at)})" for w in self.due]
        lines += [f"  {w.label} starts at {_fmt(w.start_at)}" for w in self.waiting]
        lines += [f"  {w.label} opened without being started: not started" for w in self.too_late]
        return "\n".join(lines)


def select_due(planned: list[PlannedWave], now: dt.datetime, started: Collection[str]) -> Selection:
    """Due: not started, its start time reached and its open still ahead (a late planner still
    starts a wave before it opens; the pre-announcement then goes out at once)."""
    groups: dict[str, list[PlannedWave]] = {"due": [], "started": [], "waiting": [], "too_late": []}
    for wave in planned:
        if wave.wave_id in started:
            groups["started"].append(wave)
        elif now < wave.start_at:
            groups["waiting"].append(wave)
        elif now >= wave.wave.open_at:
            groups["too_late"].append(wave)
        else:
            groups["due"].append(wave)
    return Selection(**groups)


def started_waves(engine: Engine, now: dt.datetime) -> set[str]:
    """Wave ids that need no start: planned in the `waves` table (started by hand, or by the
    planner and running) or confirmed in the planner's ledger. A claimed start whose run has
    planned its wave is confirmed on the way."""
    storage.execute(engine, storage.query("confirm_planned_wave_starts"), {"now": now})
    return {row["wave_id"] for row in storage.fetch_all(engine, storage.query("started_waves"))}


def claim_due_waves(engine: Engine, path: Path, now: dt.datetime, planner_run_id: str) -> list[dict[str, Any]]:
    """Check the calendar, claim each wave due now in the ledger, and return the arguments that
    start them (`trigger_run_id`, `conf`, `note` of a TriggerDagRunOperator).

    Order: claim, then trigger, then confirm. The run id is the wave's (`wave__<wave_id>`) and
    Airflow refuses a second run with it, so each step may be repeated safely: a claim is kept
    once (ON CONFLICT DO NOTHING); a wave claimed but not confirmed (a crash or failure after the
    claim) is triggered again by the next planner run, which either creates the run that was
    lost or finds it and skips; a confirmed wave, or one in the `waves` table, is never triggered
    again. Claiming first means every start is on record before it can happen.
    """
    where = display_path(path)
    started = started_waves(engine, now)
    selection = select_due(load_calendar(path, now, started), now, started)
    log.info("wave calendar %s: %s", where, selection.summary())
    for wave in selection.due:
        claimed = storage.execute(
            engine,
            storage.query("claim_wave_start"),
            {
                "wave_id": wave.wave_id,
                "run_id": wave.run_id,
                "calendar_file": where,
                "wave_index": wave.index,
                "conf": storage.dumps(wave.conf),
                "planner_run_id": planner_run_id,
                "now": now,
            },
        )
        if not claimed:
            log.info("%s was claimed before without a confirmed start: starting it again", wave.label)
    return [
        {"trigger_run_id": w.run_id, "conf": w.conf, "note": f"Started by the wave planner: {w.label} of {where}"}
        for w in selection.due
    ]


def record_started(engine: Engine, run_exists: Mapping[str, bool], now: dt.datetime) -> dict[str, list[str]]:
    """Confirm in the ledger each start whose run Airflow has; raise if any has none."""
    confirmed = [run_id for run_id, exists in run_exists.items() if exists]
    storage.execute(engine, storage.query("confirm_wave_start"), [{"run_id": r, "now": now} for r in confirmed])
    if missing := [run_id for run_id, exists in run_exists.items() if not exists]:
        raise WaveStartError(
            f"nps_wave has no run {', '.join(missing)} after the planner started it; "
            "the next planner run tries again (see the start_wave task's log)"
        )
    return {"started": confirmed}


def ledger(engine: Engine) -> list[dict[str, Any]]:
    """The planner's starts, oldest first."""
    rows = storage.fetch_all(engine, "SELECT * FROM wave_starts ORDER BY claimed_at, wave_id")
    return [{**row, "conf": json.loads(row["conf"])} for row in rows]
