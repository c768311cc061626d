"""Alerts: a failed task, a failed data check, a late milestone, an overdue run and a low response
rate each produce exactly one notification, posted through the Slack provider's notifier to a real
local HTTP server (and mailed through a real SMTP server), and never a second one for the same event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import json
import textwrap
from pathlib import Path

import pytest

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.monitoring import alerts
from include.nps.wave import audience, waves
from tests.factories import contact, planned_wave, wave_params, write_csv

BASE_URL = "http://airflow.example:8080"
TEST_DAGS = '''
"""Two small DAGs that fail the way nps_wave's tasks do, with nps_wave's failure callback."""
import datetime as dt

from airflow.sdk import dag, task

from include.nps.monitoring import alerts

DEFAULTS = {
    "owner": "data-eng",
    "retries": 1,
    "retry_delay": dt.timedelta(0),
    "on_failure_callback": alerts.task_failed,
}


@task
def plan_wave(dag_run=None) -> str:
    from include.nps.core.connections import nps_engine
    from include.nps.wave import waves

    wave = waves.WaveParams.from_params(dag_run.conf)
    waves.plan_wave(nps_engine(), wave, (dag_run.dag_id, dag_run.run_id))
    return wave.wave_id


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default_args=DEFAULTS)
def alert_test_task():
    @task
    def send(wave_id: str, chunk: int) -> None:
        if chunk == 1:
            raise ValueError("SMTP relay <relay.example> refused & gave up\\nsecond line of the error")

    send.partial(wave_id=plan_wave()).expand(chunk=[0, 1])


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default_args=DEFAULTS)
def alert_test_check():
    @task
    def check_audience(wave_id: str) -> None:
        import pandas as pd

        from include.nps import pipeline
        from include.nps.core.connections import nps_engine
        from include.nps.wave import data_checks

        @pipeline.fails_fast
        def step(wave_id: str) -> None:
            frame = pd.DataFrame({"contact_id": ["C1", "C1", "C2"]})
            suite = [data_checks.expect("ExpectColumnValuesToBeUnique", "each contact once", column="contact_id")]
            data_checks.run_check(nps_engine(), wave_id, "audience", "audience", frame, suite, row_key="contact_id")

        step(wave_id)

    check_audience(plan_wave())


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default_args={**DEFAULTS, "retries": 0})
def alert_test_sweep():
    @task
    def sweep() -> None:
        raise RuntimeError("CRM unreachable")

    sweep()


alert_test_task()
alert_test_check()
alert_test_sweep()
'''


@pytest.fixture
def alerts_chat(httpserver, monkeypatch):
    """The alerts channel: a Slack-compatible incoming webhook on a real local HTTP server,
    reached through a `slackwebhook` connection whose password is the webhook URL."""
    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_data("ok")
    conn = {"conn_type": "slackwebhook", "password": httpserver.url_for("/hooks/alerts")}
    monkeypatch.setenv("AIRFLOW_CONN_NPS_ALERTS_CHAT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    for name in ("NPS_ALERT_EMAILS", "NPS_MILESTONE_GRACE_HOURS", "NPS_LOW_RESPONSE_RATIO"):
        monkeypatch.delenv(name, raising=False)
    return httpserver


def posts(server) -> list[str]:
    return [json.loads(request.get_data())["text"] for request, _ in server.log]


@pytest.fixture
def test_dags(tmp_path_factory, monkeypatch, airflow_db):
    """The test DAGs in a DAG bundle of their own beside the project's (dag.test() syncs bundles)."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path_factory.getbasetemp() / "alert-test-dags"
    folder.mkdir(exist_ok=True)
    (folder / "alert_test_dags.py").write_text(textwrap.dedent(TEST_DAGS), encoding="utf-8")
    bundles = [
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
        {
            "name": "alert-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        },
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


@functools.cache
def _wave_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(storage.PROJECT_ROOT / "dags")).dags["nps_wave"]


def test_every_task_of_the_wave_alerts_on_its_final_failure_only():
    dag = _wave_dag()
    assert dag.default_args["on_failure_callback"] is alerts.task_failed
    for task in dag.tasks:  # mapped tasks keep the callable, the others a list of them
        assert task.on_failure_callback in (alerts.task_failed, [alerts.task_failed]), task.task_id
        assert not task.on_retry_callback, task.task_id


def test_the_wave_deadline_survives_serialization_with_an_importable_callback():
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DAG("deadline_check", schedule=None, deadline=alerts.wave_deadline())
    (stored,) = DagSerialization.serialize_dag(dag)["deadline"]  # as the DAG processor stores it
    assert stored["name"] == "wave_overdue"
    assert stored["reference"]["reference_type"] == "WaveRetrospective"
    assert stored["reference"]["__class_path"] == "include.nps.monitoring.deadlines.WaveRetrospective"
    assert stored["interval"]["__data__"] == alerts.WAVE_DEADLINE_GRACE.total_seconds()
    assert stored["callback"]["__data__"]["path"] == "include.nps.monitoring.alerts.wave_overdue"
    assert inspect.iscoroutinefunction(alerts.wave_overdue)  # it runs in the triggerer


def test_a_failing_task_posts_one_alert_with_wave_step_reason_and_log(test_dags, engine, alerts_chat, tmp_path):
    conf = wave_params(tmp_path / "contacts.csv", name="Q1")
    run = test_dags.get_dag("alert_test_task").test(run_conf=conf)

    assert str(run.state) == "failed"
    (text,) = posts(alerts_chat)  # one post: the retry of try 1 did not alert, chunk 0 succeeded
    run_path = run.run_id.replace(":", "%3A").replace("+", "%2B")
    assert text == (
        ":x: *Task failed* in NPS wave *test-q1*\n"
        f"Step `send[1]`, try 2, run `{run.run_id}` of alert_test_task\n"
        "> ValueError: SMTP relay &lt;relay.example&gt; refused &amp; gave up\n"
        "> second line of the error\n"
        f"<{BASE_URL}/dags/alert_test_task/runs/{run_path}/tasks/send/mapped/1?try_number=2|Open the task log>"
        " · Once the cause is fixed, clear the task: a re-run sends nothing twice."
    )
    (row,) = storage.fetch_all(engine, "SELECT * FROM alerts")
    assert (row["kind"], row["subject"], row["attempt"], row["wave_id"], row["status"], row["channels"]) == (
        "task_failed",
        "send[1]",
        2,
        "test-q1",
        "sent",
        "chat",
    )

    # The same event again (a second callback for that try): nothing is posted.
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "send" and ti.map_index == 1)
    alerts.task_failed({"ti": ti, "dag_run": run, "exception": None})
    assert len(posts(alerts_chat)) == 1
    # The task cleared and failing again is a new try, so a new alert.
    ti.try_number = 3
    alerts.task_failed({"ti": ti, "dag_run": run, "exception": RuntimeError("again")})
    assert len(posts(alerts_chat)) == 2 and "try 3" in posts(alerts_chat)[1]


def test_a_failing_data_check_posts_one_alert_with_its_rule(
    test_dags, engine, alerts_chat, smtp, tmp_path, monkeypatch
):
    monkeypatch.setenv("NPS_ALERT_EMAILS", "data-eng@vendor.example")
    conf = wave_params(tmp_path / "contacts.csv", name="Q1")
    run = test_dags.get_dag("alert_test_check").test(run_conf=conf)

    assert str(run.state) == "failed"
    stored = storage.fetch_one(engine, "SELECT summary FROM check_results WHERE wave_id = 'test-q1'")["summary"]
    assert "FAILED" in stored and "each contact once" in stored
    (text,) = posts(alerts_chat)  # the check's failure fails the task once: one alert, not two
    assert text.startswith(":x: *Data check failed* in NPS wave *test-q1*\nStep `check_audience`, try 1,")
    assert "Check `audience` (audience suite):\n> " + stored.splitlines()[0] in text
    assert "Fix the data or the thresholds, then clear the task." in text
    (mail,) = smtp.spool.messages()
    assert mail["To"] == "data-eng@vendor.example" and mail["X-NPS-Kind"] == "alert_task_failed"
    assert mail["Subject"] == "[NPS alert] Data check failed: test-q1, check_audience"
    assert "each contact once" in mail.get_body(("html",)).get_content()
    row = storage.fetch_one(engine, "SELECT status, channels FROM alerts")
    assert row == {"status": "sent", "channels": "chat,email"}


def test_a_failure_outside_any_wave_names_its_dag(test_dags, engine, alerts_chat):
    run = test_dags.get_dag("alert_test_sweep").test()

    assert str(run.state) == "failed"
    (text,) = posts(alerts_chat)
    assert text.startswith(":x: *Task failed* in *alert_test_sweep*\nStep `sweep`, try 1,")
    assert "> RuntimeError: CRM unreachable" in text and "NPS wave" not in text


def test_without_a_channel_the_alert_is_logged_and_kept(engine, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_NPS_ALERTS_CHAT", raising=False)
    monkeypatch.delenv("NPS_ALERT_EMAILS", raising=False)
    event = alerts.Event("milestone_late", "test-q9", "flash", 0, "test-q9")
    late = [{"milestone": "flash", "due_at": dt.datetime(2026, 3, 19, 9, tzinfo=dt.UTC), "done_at": None}]
    late[0]["late_by"] = dt.timedelta(hours=9)
    context = {"wave_id": "test-q9", "late": late, "grace_hours": 8, "overdue": None}

    delivery = alerts.announce(engine, [event], "milestones", context, [], alerts.Settings.from_env())

    assert delivery is not None and delivery.status == "unsent"
    assert "flash results: planned 2026-03-19 09:00 UTC, not done yet (9.0 h late)" in caplog.text
    row = storage.fetch_one(engine, "SELECT status, message FROM alerts")
    assert row["status"] == "unsent" and "flash results" in row["message"]


def _milestones_done_on_time(engine, wave_id: str, but: set[str]) -> None:
    storage.execute(
        engine,
        "UPDATE wave_milestones SET done_at = due_at WHERE wave_id = :w AND milestone NOT IN ("
        + ", ".join(f"'{m}'" for m in but)
        + ")",
        {"w": wave_id},
    )


def test_the_watchdog_reports_a_late_flash_once(engine, alerts_chat, tmp_path):
    wave = planned_wave(engine, tmp_path / "contacts.csv", name="Q1")  # flash due 2026-03-19 09:00 New York
    _milestones_done_on_time(engine, wave.wave_id, but={"flash"})
    due = waves.milestone_due(engine, wave.wave_id, "flash")

    assert alerts.watch_milestones(engine, wave.wave_id, now=due + dt.timedelta(hours=7)) is None  # within grace
    alerts.watch_milestones(engine, wave.wave_id, now=due + dt.timedelta(hours=9))
    alerts.watch_milestones(engine, wave.wave_id, now=due + dt.timedelta(hours=10))
    waves.mark_done(engine, wave.wave_id, "flash")  # sent at last: the same lateness, no new alert
    alerts.watch_milestones(engine, wave.wave_id, now=due + dt.timedelta(days=2))

    assert posts(alerts_chat) == [
        ":alarm_clock: *NPS wave test-q1: 1 milestone(s) late*\n"
        "• flash results: planned 2026-03-19 13:00 UTC, not done yet (9.0 h late)\n"
        "Late means not done within 8 h of the planned time. Look at the run for a failed, queued or waiting "
        "task; tell CS ops if customers will notice."
    ]


async def _fire_deadline_callback(context: dict) -> str:
    """Run the wave's deadline callback as the triggerer does: Airflow's CallbackTrigger imports
    it by its path and awaits it with the simple context the scheduler stored."""
    from airflow.triggers.callback import CallbackTrigger

    trigger = CallbackTrigger(alerts.wave_deadline().callback.path, {"context": context})
    events = [event.payload async for event in trigger.run()]
    return str(events[-1]["state"])


def test_the_deadline_callback_reports_an_overdue_run_once(engine, alerts_chat, tmp_path):
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=40)
    wave = waves.WaveParams.from_params(wave_params(tmp_path / "contacts.csv", name="Q2", start=start))
    waves.plan_wave(engine, wave, ("nps_wave", "manual__q2"))
    _milestones_done_on_time(engine, wave.wave_id, but={"flash", "retrospective"})
    context = {  # what the scheduler hands a deadline callback
        "dag_run": {"dag_id": "nps_wave", "dag_run_id": "manual__q2", "state": "running", "conf": {}},
        "deadline": {"id": "0199", "deadline_time": "2026-06-01T09:00:00+00:00"},
    }

    assert asyncio.run(_fire_deadline_callback(context)) == "success"
    assert asyncio.run(_fire_deadline_callback(context)) == "success"  # fired again: nothing new to say

    (text,) = posts(alerts_chat)
    lines = text.splitlines()
    assert lines[0] == ":alarm_clock: *NPS wave test-q2: run overdue, 2 milestone(s) late*"
    assert lines[1] == (
        f"The run <{BASE_URL}/dags/nps_wave/runs/manual__q2|manual__q2> is still running after its deadline "
        "(2026-06-01 09:00 UTC)."
    )
    assert lines[2].startswith("• flash results: planned ") and lines[3].startswith("• retrospective: planned ")
    kinds = storage.fetch_all(engine, "SELECT kind, subject FROM alerts ORDER BY kind, subject")
    assert [(k["kind"], k["subject"]) for k in kinds] == [
        ("milestone_late", "flash"),
        ("milestone_late", "retrospective"),
        ("wave_overdue", ""),
    ]


def _wave_with_answers(engine, path: Path, name: str, start: dt.datetime, answered_days: list[float], **kw):
    """A wave of ten invited contacts; one answer at each of `answered_days` after open."""
    rows = [contact(f"C{i}", f"A{i % 3}") for i in range(10)]
    write_csv(path, rows)
    wave = planned_wave(engine, path, name=name, start=start, **kw)
    audience.load_contacts(engine, wave.wave_id, path)
    outbox.enqueue(engine, wave.wave_id, "invitation", [(r["contact_id"], r["email"]) for r in rows])
    storage.execute(
        engine, "UPDATE outbox SET status = 'sent', sent_at = :t WHERE wave_id = :w", {"t": start, "w": wave.wave_id}
    )
    answers = [
        {"w": wave.wave_id, "c": f"C{i}", "t": start + dt.timedelta(days=days)} for i, days in enumerate(answered_days)
    ]
    storage.execute(
        engine,
        "INSERT INTO responses (wave_id, contact_id, score, pillar_answers, answered_at, updated_at) "
        "VALUES (:w, :c, 8, '{}', :t, :t)",
        answers,
    )
    return wave


@pytest.fixture
def previous_wave(engine, tmp_path):
    """Q4's 10 invitations, 6 answered within its first 40% (5.6 days of 14), 8 by close."""
    start = dt.datetime(2025, 12, 1, 9, tzinfo=dt.UTC)
    wave = _wave_with_answers(engine, tmp_path / "q4.csv", "Q4", start, [0.5, 1, 1, 2, 3, 5, 8, 12])
    waves.set_status(engine, wave.wave_id, "done")
    return wave


def test_a_response_rate_far_below_the_previous_wave_warns_cs_ops_once(
    engine, previous_wave, alerts_chat, smtp, tmp_path
):
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    wave = _wave_with_answers(engine, tmp_path / "q1.csv", "Q1", start, [1, 4])  # 2 of 10 by the reminder
    reminder = start + dt.timedelta(days=14) * 0.4

    alerts.warn_low_response(engine, wave.wave_id, now=reminder)
    alerts.warn_low_response(engine, wave.wave_id, now=reminder)

    (text,) = posts(alerts_chat)
    assert text == (
        ":chart_with_downwards_trend: *Low response in NPS wave test-q1*: 20.0% answered by the reminder "
        "(2 of 10 invited), against 60.0% for test-q4 at the same point of its window (40.0% of the way to close).\n"
        "That is 0.33 times the previous wave's rate, below the warning line of 0.6.\n"
        "Worth checking: did the invitations arrive (bounces, spam folders, the sender's name), is an account or "
        "region silent, should account owners nudge their contacts?"
    )
    (mail,) = smtp.spool.messages()
    assert mail["To"] == "csops@vendor.example" and mail["From"] == "CS <cs@vendor.example>"
    assert mail["Subject"] == "[NPS test-q1] Low response: 20.0% answered by the reminder, 60.0% in the previous wave"


def test_a_normal_response_rate_warns_nobody(engine, previous_wave, alerts_chat, smtp, tmp_path):
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    wave = _wave_with_answers(engine, tmp_path / "q1.csv", "Q1", start, [0.5, 1, 2, 4, 5])  # 50% vs 60%
    reminder = start + dt.timedelta(days=14) * 0.4

    assert alerts.compare_response(engine, wave.wave_id, reminder)["ratio"] == pytest.approx(5 / 6)
    assert alerts.warn_low_response(engine, wave.wave_id, now=reminder) is None
    assert posts(alerts_chat) == [] and smtp.spool.messages() == []


def test_the_alerts_after_a_mailing_check_never_fail_the_wave(engine, previous_wave, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NPS_LOW_RESPONSE_RATIO", "sixty percent")  # a bad setting: logged, default used
    wave = _wave_with_answers(engine, tmp_path / "q1.csv", "Q1", dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), [1])
    storage.execute(engine, "UPDATE waves SET params = '{}' WHERE wave_id = :w", {"w": wave.wave_id})

    alerts.after_mailing_check(engine, wave.wave_id, "reminder")  # logs, does not raise

    assert "NPS_LOW_RESPONSE_RATIO='sixty percent' is not a number: using 0.6" in caplog.text
    assert f"response-rate comparison of {wave.wave_id} failed" in caplog.text


def test_a_waves_deadline_is_its_own_retrospective_from_the_form_values():
    from include.nps.monitoring.deadlines import retrospective_due

    conf = {"open_at": "2026-12-21T09:00:00Z", "close_at": "2026-12-23T09:00:00Z", "country": "NO"}
    # flash results 3 business days of Norway after close (24, 28, 29 December: Christmas and the
    # weekend off), the retrospective one business day later
    assert retrospective_due(conf) == dt.datetime(2026, 12, 30, 9, tzinfo=dt.UTC)
    assert retrospective_due({**conf, "retrospective_at": "2027-01-04T10:00:00Z"}) == dt.datetime(
        2027, 1, 4, 10, tzinfo=dt.UTC
    )
    assert retrospective_due({"open_at": "not a time", "close_at": "2026-12-23"}) is None
    assert retrospective_due({}) is None
