"""A wave under the real Airflow processes: api-server, scheduler, dag-processor and triggerer on
LocalExecutor, with the metadata DB and the NPS DB on a real PostgreSQL. The wave is triggered
through the REST API with a compressed timeline, its waits pass through the triggerer, customers
answer through the survey form, and the scheduler and triggerer are restarted while the wave waits.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from devkit.demo import wave_conf
from devkit.servers import ChatSink, SmtpServer, SurveyServer
from devkit.simulate import Respondents, form_settings, write_population
from include.nps.core import storage
from include.nps.monitoring import alerts
from include.nps.wave import audience
from tests.airflow_cluster import AirflowCluster, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.processes]
DAG_ID = "nps_wave"
WAVE_ID = "customer-nps-2026-q4"
# Seconds after the trigger at which each milestone falls. Under the real processes a task takes a
# few seconds from queued to done; each wait defers at least 10 s before its moment.
TIMELINE = {
    "preannounce": 20,
    "open": 45,
    "reminder": 70,
    "midwave": 90,
    "close": 115,
    "flash": 150,
    "retrospective": 170,
}
# The scheduler and triggerer are restarted during the first of these waits found deferred.
RESTART_DURING = ("midwave", "close", "flash")
FINISHED = {"success", "failed"}


def _create_database(server_url: str, name: str) -> str:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


class Phases:
    """Wall-clock durations of the test's phases, printed at the end (run with -s to see them)."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}
        self._mark = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.durations[name] = now - self._mark
        self._mark = now

    def report(self) -> str:
        return "  ".join(f"{name} {seconds:.0f} s" for name, seconds in self.durations.items())


@pytest.fixture
def cluster_env(postgres_url: str, tmp_path: Path):
    """Local mail, chat and NPS DB for the cluster, and the environment its processes get."""
    stamp = time.time_ns()
    metadata_url = _create_database(postgres_url, f"airflow_{stamp}")
    nps_url = _create_database(postgres_url, f"nps_{stamp}")
    engine = storage.make_engine(nps_url)
    storage.migrate(engine)
    with SmtpServer(tmp_path / "mail") as smtp, ChatSink(tmp_path / "chat.jsonl") as chat:
        yield {
            "metadata_url": metadata_url,
            "engine": engine,
            "smtp": smtp,
            "chat": chat,
            "env": {
                "AIRFLOW_CONN_NPS_DB": json.dumps(
                    {
                        "conn_type": "postgres",
                        "host": engine.url.host,
                        "port": engine.url.port,
                        "login": engine.url.username,
                        "schema": engine.url.database,
                    }
                ),
                "AIRFLOW_CONN_NPS_SMTP": smtp.connection_uri(),
                "AIRFLOW_CONN_NPS_CHAT": chat.connection_uri(),
                "NPS_HOME": str(tmp_path / "nps"),
            },
        }
    engine.dispose()


@pytest.fixture
def cluster(cluster_env, tmp_path: Path):
    cluster = AirflowCluster(tmp_path / "airflow", cluster_env["metadata_url"], cluster_env["env"])
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_wave_triggered_through_the_rest_api_survives_a_scheduler_and_triggerer_restart(
    cluster_env, cluster, tmp_path
):
    phases = Phases()
    engine, smtp = cluster_env["engine"], cluster_env["smtp"]
    contacts_csv = write_population(tmp_path / "contacts.csv", accounts=8, seed="cluster")

    cluster.migrate()
    phases.done("migrate")
    with SurveyServer(engine, form_settings()) as survey:
        cluster.env["NPS_SURVEY_BASE_URL"] = survey.base_url
        cluster.start()
        phases.done("start")
        wait_until(lambda: cluster.api("GET", f"/dags/{DAG_ID}").ok, 180, "nps_wave parsed by the dag-processor")
        assert cluster.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).ok
        phases.done("parse")

        people = Respondents(smtp.spool.folder, seed="cluster", answer_rate=0.7, reminder_rate=0.5)
        people.start()
        conf = {**wave_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE), "chunk_size": 10}
        conf["max_rejected_share"] = 0.1  # the generated file has a few bad rows on purpose
        triggered = cluster.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        assert triggered.status_code == 200, triggered.text
        run_id = triggered.json()["dag_run_id"]
        broken_run_id = _trigger_a_wave_with_a_broken_file(cluster, tmp_path)
        # Airflow's deadline alert for the run: a day after the wave's own retrospective milestone.
        due = dt.datetime.fromisoformat(conf["retrospective_at"]) + alerts.WAVE_DEADLINE_GRACE
        assert wait_until(lambda: _deadline_of(cluster_env["metadata_url"], run_id), 30, "the run's deadline") == due

        try:
            restarted = _restart_while_waiting(cluster, run_id, conf)
            phases.done("run until the restart")
            run = wait_until(lambda: _finished_run(cluster, run_id), 600, "the wave's DAG run finishing", every=2)
            phases.done("run after the restart")
        finally:
            people.stop()
        if run["state"] != "success":
            pytest.fail(f"DAG run {run['state']}:\n{cluster.failed_task_logs(DAG_ID, run_id)}")

    _assert_the_broken_wave_failed_once_and_says_why(cluster, broken_run_id)
    states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)}
    # No approval asked and no decision in Airflow (the shipped rules name none): both skipped.
    asked_nobody = {"approve_flash_results", "decide_followup_owner"}
    assert {s for t, s in states.items() if t not in asked_nobody} == {"success"}, states
    assert {states[t] for t in asked_nobody} == {"skipped"}, states
    assert restarted["while_down"] == "deferred" and restarted["after"] == "success", restarted
    assert people.errors == []
    recorded = storage.fetch_one(engine, "SELECT dag_id, run_id FROM waves WHERE wave_id = :w", w=WAVE_ID)
    assert recorded == {"dag_id": DAG_ID, "run_id": run_id}  # what the dashboard and alerts link to
    _assert_what_customers_and_sales_received(engine, smtp, cluster_env["chat"], people)
    print(f"\nphases: {phases.report()}; restarted during {restarted['wait']}")
    print(_task_timeline(cluster.task_instances(DAG_ID, run_id), conf))


def _trigger_a_wave_with_a_broken_file(cluster: AirflowCluster, tmp_path: Path) -> str:
    """Another program's wave, started alongside, whose contacts file has no email column."""
    broken_csv = tmp_path / "partners.csv"
    broken_csv.write_text("contact_id,first_name,account_id\np1,Ada,acc-1\n", encoding="utf-8")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    conf = {**wave_conf(broken_csv, start, TIMELINE, name="2026-Q4"), "program": "partner-nps"}
    triggered = cluster.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert triggered.status_code == 200, triggered.text
    return triggered.json()["dag_run_id"]


def _assert_the_broken_wave_failed_once_and_says_why(cluster: AirflowCluster, run_id: str) -> None:
    run = wait_until(lambda: _finished_run(cluster, run_id), 60, "the broken wave's run finishing")
    assert run["state"] == "failed"
    failed = [ti for ti in cluster.task_instances(DAG_ID, run_id) if ti["state"] == "failed"]
    assert [(ti["task_id"], ti["try_number"]) for ti in failed] == [("build_audience", 1)]  # no retry
    logs = cluster.failed_task_logs(DAG_ID, run_id)
    assert "lacks required column(s) email" in logs and "--- build_audience[-1] ---" in logs


def _restart_while_waiting(cluster: AirflowCluster, run_id: str, conf: dict) -> dict:
    """Once the wave sits in a deferred wait with nothing running, stop the scheduler and the
    triggerer, let the wait's moment pass while they are down, and start them again."""

    def deferred_wait() -> str | None:
        states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)}
        if "failed" in states.values():
            raise AssertionError(f"a task failed before the restart:\n{cluster.failed_task_logs(DAG_ID, run_id)}")
        if "running" in states.values():
            return None
        return next((m for m in RESTART_DURING if states.get(f"wait_for_{m}") == "deferred"), None)

    milestone = wait_until(deferred_wait, 400, "a deferred wait to restart in", every=1)
    task_id = f"wait_for_{milestone}"
    cluster.stop("scheduler", "triggerer")
    assert not cluster.running("scheduler") and not cluster.running("triggerer")
    due = dt.datetime.fromisoformat(conf[f"{milestone}_at"])
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()) + 2)
    while_down = _task_state(cluster, run_id, task_id)  # its moment has passed and nobody woke it
    cluster.start("scheduler", "triggerer")
    after = wait_until(
        lambda: (state := _task_state(cluster, run_id, task_id)) in ("success", "failed") and state,
        180,
        f"{task_id} finished after the restart",
    )
    return {"wait": task_id, "while_down": while_down, "after": after}


def _task_timeline(task_instances: list[dict], conf: dict) -> str:
    """Each task's start and end in seconds after the trigger, to see where the time goes."""
    origin = dt.datetime.fromisoformat(conf["preannounce_at"]) - dt.timedelta(seconds=TIMELINE["preannounce"])
    at = lambda value: (dt.datetime.fromisoformat(value) - origin).total_seconds() if value else float("nan")  # noqa: E731
    rows = sorted(task_instances, key=lambda ti: ti["start_date"] or "")
    return "\n".join(
        f"  {ti['task_id']:<40}{ti['map_index']:>3}  {at(ti['start_date']):6.1f} -> {at(ti['end_date']):6.1f} s"
        for ti in rows
    )


def _deadline_of(metadata_url: str, run_id: str) -> dt.datetime | None:
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT d.deadline_time FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id WHERE r.run_id = :r"),
            {"r": run_id},
        ).scalar()
    engine.dispose()
    return found.astimezone(dt.UTC) if found else None


def _task_state(cluster: AirflowCluster, run_id: str, task_id: str) -> str | None:
    response = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
    return response.json()["state"] if response.ok else None


def _finished_run(cluster: AirflowCluster, run_id: str) -> dict | None:
    run = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()
    return run if run["state"] in FINISHED else None


def _assert_what_customers_and_sales_received(engine, smtp, chat, people) -> None:
    sent: dict[str, Counter] = defaultdict(Counter)
    for message in smtp.spool.messages():
        sent[message["X-NPS-Kind"]][message["To"]] += 1
    included = set(audience.audience_frame(engine, WAVE_ID).query("included == True")["email"])
    reachable = included - {e for e in included if e.startswith("bounce")}
    answers = storage.fetch_all(engine, "SELECT c.email, r.score FROM responses r JOIN contacts c USING (contact_id)")
    scores = {r["email"]: r["score"] for r in answers}
    # Every reachable contact got the invitation and the flash results once, answered or not.
    for kind in ("preannouncement", "invitation", "flash_results"):
        assert set(sent[kind]) == reachable and max(sent[kind].values()) == 1, kind
    assert scores and set(scores) == set(people.answered) and set(scores) < reachable
    # Answers that came in during the restart count like the others; each got one band email.
    got_band = {to for kind, by_to in sent.items() if kind.startswith("followup_") for to in by_to}
    assert got_band == set(scores)
    detractors = {e for e, s in scores.items() if s <= 6}
    followups = storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM followups WHERE wave_id = :w", w=WAVE_ID)
    assert followups["n"] == len(detractors) == len(chat.posts())
    drops = {m["X-NPS-Kind"] for m in smtp.spool.messages() if m["To"] == "sales-team@vendor.example"}
    assert drops == {"drop_midwave", "drop_postwave"}
    checks = storage.fetch_all(engine, "SELECT step, success FROM check_results WHERE wave_id = :w", w=WAVE_ID)
    assert len(checks) >= 12 and all(c["success"] for c in checks), checks
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM action_items WHERE wave_id = :w", w=WAVE_ID)["n"]
