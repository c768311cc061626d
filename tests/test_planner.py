"""The wave planner: which waves are due, the ledger that starts each once, and the planner DAG
starting `nps_wave` runs through Airflow (`dag.test()`), again and again, without a second run."""

from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from pathlib import Path

import pytest

from include.nps.core import storage
from include.nps.planner import wave_calendar
from include.nps.wave import waves

UTC = dt.UTC
NOW = dt.datetime(2027, 1, 4, 12, tzinfo=UTC)
# Opens Mon 1 Feb 09:00 UTC: pre-announcement Wed 27 Jan, started Tue 26 Jan, both at 09:00 in New
# York (14:00 UTC), the opening of business hours.
ONE_WAVE = """\
waves:
  - wave_name: 2027-Q1
    audience_csv: /data/q1.csv
    open_at: 2027-02-01 09:00
    close_at: 2027-02-15 17:00
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "waves.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("now", "started", "group"),
    [
        (dt.datetime(2027, 1, 26, 13, 59, tzinfo=UTC), set(), "waiting"),
        (dt.datetime(2027, 1, 26, 14, 0, tzinfo=UTC), set(), "due"),
        (dt.datetime(2027, 1, 29, 12, tzinfo=UTC), set(), "due"),  # a late planner: after the pre-announcement
        (dt.datetime(2027, 2, 1, 9, 0, tzinfo=UTC), set(), "too_late"),  # opened without being started
        (dt.datetime(2027, 2, 20, tzinfo=UTC), set(), "too_late"),  # closed
        (dt.datetime(2027, 1, 27, tzinfo=UTC), {"customer-nps-2027-q1"}, "started"),  # by hand, or in the ledger
    ],
    ids=["not-yet-due", "due-on-the-dot", "late-planner", "opened", "closed", "already-started"],
)
def test_a_wave_is_due_from_a_business_day_before_its_preannouncement_until_it_opens(tmp_path, now, started, group):
    (wave,) = wave_calendar.load_calendar(write(tmp_path, ONE_WAVE), NOW)
    selection = wave_calendar.select_due([wave], now, started)
    assert {name: [w.wave_id for w in getattr(selection, name)] for name in ("due", "started", "waiting", "too_late")}[
        group
    ] == ["customer-nps-2027-q1"]


def test_a_preannouncement_on_monday_starts_the_wave_on_friday(tmp_path):
    calendar_file = write(tmp_path, ONE_WAVE.replace("2027-02-01 09:00", "2027-02-04 09:00"))
    (wave,) = wave_calendar.load_calendar(calendar_file, NOW)  # opens Thu 4 Feb
    assert wave.milestones["preannounce"] == dt.datetime(2027, 2, 1, 14, tzinfo=UTC)  # Monday, 09:00 in New York
    assert wave.start_at == dt.datetime(2027, 1, 29, 14, tzinfo=UTC)  # Friday


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    """The NPS DB: the embedded SQLite default, or PostgreSQL."""
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def test_the_ledger_starts_each_due_wave_once(db, tmp_path):
    calendar_file = write(
        tmp_path,
        """\
        waves:
          - wave_name: due
            audience_csv: /data/a.csv
            open_at: 2027-02-01 09:00
            close_at: 2027-02-05 17:00
          - wave_name: started-by-hand
            audience_csv: /data/b.csv
            open_at: 2027-02-08 09:00
            close_at: 2027-02-12 17:00
            preannounce_at: 2027-01-25 09:00
          - wave_name: in-the-ledger
            audience_csv: /data/c.csv
            open_at: 2027-02-15 09:00
            close_at: 2027-02-19 17:00
            preannounce_at: 2027-01-25 09:00
          - wave_name: not-yet-due
            audience_csv: /data/d.csv
            open_at: 2027-03-01 09:00
            close_at: 2027-03-05 17:00
        """,
    )
    now = dt.datetime(2027, 1, 27, 10, tzinfo=UTC)
    due, by_hand, in_ledger, _ = wave_calendar.load_calendar(calendar_file, now)
    waves.plan_wave(db, by_hand.wave, ("nps_wave", "manual__2027-01-20T10:00:00+00:00"))
    _claim(db, in_ledger, "scheduled__2027-01-26T09:00:00+00:00", confirmed=True)

    starts = wave_calendar.claim_due_waves(db, calendar_file, now, "scheduled__2027-01-27T09:00:00+00:00")
    assert starts == [
        {
            "trigger_run_id": "wave__customer-nps-due",
            "conf": due.conf,
            "note": f"Started by the wave planner: wave 1 'due' (customer-nps) of {calendar_file}",
        }
    ]
    claimed = {row["wave_id"]: row for row in wave_calendar.ledger(db)}
    assert set(claimed) == {"customer-nps-due", "customer-nps-in-the-ledger"}
    assert claimed["customer-nps-due"]["conf"] == due.conf and claimed["customer-nps-due"]["started_at"] is None

    # Claimed but not confirmed (the planner stopped before Airflow had the run): offered again,
    # under the same run id, and the first claim is kept.
    later = now + dt.timedelta(hours=1)
    assert wave_calendar.claim_due_waves(db, calendar_file, later, "scheduled__2027-01-27T10:00:00+00:00") == starts
    again = {row["wave_id"]: row for row in wave_calendar.ledger(db)}["customer-nps-due"]
    assert again["planner_run_id"] == "scheduled__2027-01-27T09:00:00+00:00"
    assert storage.as_utc(again["claimed_at"]) == now

    assert wave_calendar.record_started(db, {"wave__customer-nps-due": True}, later) == {
        "started": ["wave__customer-nps-due"]
    }
    assert wave_calendar.claim_due_waves(db, calendar_file, later, "scheduled__2027-01-27T11:00:00+00:00") == []
    assert all(row["started_at"] is not None for row in wave_calendar.ledger(db))


def test_a_claimed_wave_whose_run_planned_it_counts_as_started(engine, tmp_path):
    (wave,) = wave_calendar.load_calendar(write(tmp_path, ONE_WAVE), NOW)
    _claim(engine, wave, "scheduled__2027-01-26T09:00:00+00:00", confirmed=False)
    assert wave_calendar.started_waves(engine, NOW) == set()
    waves.plan_wave(engine, wave.wave, ("nps_wave", wave.run_id))  # the run's first task
    assert wave_calendar.started_waves(engine, NOW) == {wave.wave_id}
    assert storage.as_utc(wave_calendar.ledger(engine)[0]["started_at"]) == NOW


def test_a_start_without_a_run_fails_after_confirming_the_others(engine, tmp_path):
    first = wave_calendar.load_calendar(write(tmp_path, ONE_WAVE), NOW)[0]
    _claim(engine, first, "scheduled__x", confirmed=False)
    with pytest.raises(wave_calendar.WaveStartError, match="nps_wave has no run wave__lost after the planner"):
        wave_calendar.record_started(engine, {first.run_id: True, "wave__lost": False}, NOW)
    assert wave_calendar.ledger(engine)[0]["started_at"] is not None


def _claim(engine, wave: wave_calendar.PlannedWave, planner_run_id: str, confirmed: bool) -> None:
    row = {
        "wave_id": wave.wave_id,
        "run_id": wave.run_id,
        "calendar_file": "calendar/waves.yaml",
        "wave_index": wave.index,
        "conf": storage.dumps(wave.conf),
        "planner_run_id": planner_run_id,
        "now": NOW,
    }
    storage.execute(engine, storage.query("claim_wave_start"), row)
    if confirmed:
        storage.execute(engine, storage.query("confirm_wave_start"), {"run_id": wave.run_id, "now": NOW})


# --- the planner DAG under Airflow ---------------------------------------------------------------


@pytest.fixture
def wave_dag_on(airflow_db):
    """Every DAG of the project in Airflow's metadata DB, with `nps_wave` switched on."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    sync_bag_to_db(
        BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name), bundle.name, None
    )
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "nps_wave").values(is_paused=False))


def _wave_runs(*wave_ids: str) -> list[dict]:
    """The planner's `nps_wave` runs of these waves, read from Airflow's metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    run_ids = [wave_calendar.run_id_for(w) for w in wave_ids]
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "nps_wave", DagRun.run_id.in_(run_ids)))
        return [
            {"run_id": r.run_id, "conf": r.conf, "state": str(r.state), "run_type": str(r.run_type), "note": r.note}
            for r in runs
        ]


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_the_planner_starts_a_due_wave_once_however_often_it_runs(wave_dag_on, engine, tmp_path, monkeypatch):
    from devkit.localrun import load_dag

    program = f"planner-{uuid.uuid4().hex[:8]}"
    now = storage.utcnow()
    at = lambda delta: (now + delta).isoformat()  # noqa: E731
    calendar_file = write(
        tmp_path,
        f"""\
        defaults:
          program: {program}
          audience_csv: /data/contacts.csv
        waves:
          - wave_name: due
            preannounce_at: {at(dt.timedelta(hours=1))}
            open_at: {at(dt.timedelta(days=2))}
            close_at: {at(dt.timedelta(days=9))}
          - wave_name: later
            open_at: {at(dt.timedelta(days=60))}
            close_at: {at(dt.timedelta(days=70))}
        """,
    )
    monkeypatch.setenv(wave_calendar.CALENDAR_ENV, str(calendar_file))
    due_id, later_id = f"{program}-due", f"{program}-later"
    planner = load_dag("nps_planner")

    first = planner.test()
    assert str(first.state) == "success", _states(first)
    (run,) = _wave_runs(due_id, later_id)
    assert run["run_id"] == f"wave__{due_id}"
    assert run["conf"] == {
        "program": program,
        "audience_csv": "/data/contacts.csv",
        "wave_name": "due",
        "preannounce_at": at(dt.timedelta(hours=1)),
        "open_at": at(dt.timedelta(days=2)),
        "close_at": at(dt.timedelta(days=9)),
    }
    assert (run["state"], run["run_type"]) == ("queued", "operator_triggered")  # created, not run here
    assert run["note"] == f"Started by the wave planner: wave 1 'due' ({program}) of {calendar_file}"
    assert [(row["wave_id"], row["started_at"] is not None) for row in wave_calendar.ledger(engine)] == [(due_id, True)]

    second = planner.test()
    assert str(second.state) == "success", _states(second)
    assert len(_wave_runs(due_id, later_id)) == 1

    # A crash between the trigger and the ledger's confirmation: the next planner run triggers the
    # wave again under the same run id; Airflow already has that run, so the start is skipped.
    storage.execute(engine, "UPDATE wave_starts SET started_at = NULL")
    third = planner.test()
    assert str(third.state) == "success", _states(third)
    assert _states(third)["start_wave"] == "skipped"
    assert len(_wave_runs(due_id, later_id)) == 1
    assert wave_calendar.ledger(engine)[0]["started_at"] is not None


def test_the_planner_starts_nothing_from_a_calendar_with_a_problem(wave_dag_on, engine, tmp_path, monkeypatch, capsys):
    from devkit.localrun import load_dag

    program = f"planner-{uuid.uuid4().hex[:8]}"
    opens = storage.utcnow() + dt.timedelta(days=2)
    calendar_file = write(
        tmp_path,
        f"""\
        waves:
          - wave_name: due
            program: {program}
            audience_csv: /data/contacts.csv
            preannounce_at: {storage.utcnow().isoformat()}
            open_at: {opens.isoformat()}
            close_at: {(opens + dt.timedelta(days=7)).isoformat()}
          - wave_name: typo
            program: {program}
            audience_csv: /data/contacts.csv
            open_at: {opens.isoformat()}
            close_on: {(opens + dt.timedelta(days=7)).isoformat()}
        """,
    )
    monkeypatch.setenv(wave_calendar.CALENDAR_ENV, str(calendar_file))

    run = load_dag("nps_planner").test()
    assert str(run.state) == "failed"
    assert _states(run) == {
        "find_due_waves": "failed",
        "start_wave": "upstream_failed",
        "record_started_waves": "upstream_failed",
    }
    assert _wave_runs(f"{program}-due") == [] and wave_calendar.ledger(engine) == []
    log = capsys.readouterr()
    assert (
        f"waves.yaml: wave 2 'typo' ({program}): unknown field 'close_on'; did you mean 'close_at'?"
        in log.out + log.err
    )
