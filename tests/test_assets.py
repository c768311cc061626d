"""Real time on Airflow assets, with real parts: the survey form announces a recorded answer to the
real API server (the `nps_survey_answers` asset, through the REST API with a service account), the
real scheduler runs `nps_responses` on that event and the detractor's alert reaches a chat webhook.
With Airflow down, slow or refusing, a submit neither waits nor fails, and the answer waits for the
DAG's timer. Bursts of answers make few events. The wave's per-contact results for BI.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug import Response

from devkit.servers import ChatSink, SurveyServer, free_port
from include.nps.core import assets, signed_links, storage
from include.nps.delivery import outbox
from include.nps.realtime import new_responses
from include.nps.wave import audience, contact_results, responses, waves
from include.nps.web.answer_events import AirflowApi, AnswerEvents, ApiSettings, Coalescer
from tests.airflow_cluster import AirflowCluster, sqlite_url, wait_until
from tests.factories import contact, planned_wave, write_csv

WAVE_ID = "test-w1"
SERVICE_ACCOUNT = ("nps-survey", "survey-service-password")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
DAG_ID = "nps_responses"


def open_wave(engine, folder: Path, rows: list[dict[str, str]]) -> waves.WaveParams:
    """An open wave whose invitations went out to `rows`."""
    path = write_csv(folder / "contacts.csv", rows)
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    wave = planned_wave(engine, path, start=opened)
    audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, [r["contact_id"] for r in rows], 90, wave.open_at)
    waves.set_status(engine, wave.wave_id, "open")
    outbox.enqueue(engine, wave.wave_id, "invitation", [(r["contact_id"], r["email"]) for r in rows])
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": opened})
    return wave


def submit(survey: SurveyServer, contact_id: str, score: int, comment: str = "") -> requests.Response:
    """A customer's answer through the form: the page, then the POST with its CSRF token."""
    link = f"{survey.base_url}/s/{signed_links.sign('survey', WAVE_ID, contact_id)}"
    csrf = CSRF_FIELD.search(requests.get(link, timeout=10).text).group(1)
    data = {"csrf_token": csrf, "score": str(score), "comment": comment}
    return requests.post(link, data=data, timeout=10, allow_redirects=False)


def recorded_score(engine, contact_id: str) -> int | None:
    row = storage.fetch_one(engine, "SELECT score FROM responses WHERE contact_id = :c", c=contact_id)
    return row["score"] if row else None


# --- with the real Airflow ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Airflow's api-server, scheduler and dag-processor (LocalExecutor, a SQLite metadata DB)
    over a SQLite NPS DB with an open wave, a chat webhook, and the survey form posting as a service
    account. The DAG's timer is daily: its one run on unpause is over before the test answers."""
    home = tmp_path_factory.mktemp("assets")
    engine = storage.make_engine(f"sqlite:///{home / 'nps.db'}")
    storage.migrate(engine)
    open_wave(engine, home, [contact("C1", "A1"), contact("C2", "A2")])
    with ChatSink(home / "chat.jsonl") as chat, pytest.MonkeyPatch.context() as env:
        nps_db = {"conn_type": "sqlite", "host": engine.url.database}
        extra = {"AIRFLOW_CONN_NPS_DB": json.dumps(nps_db), "AIRFLOW_CONN_NPS_CHAT": chat.connection_uri()}
        extra.update({"NPS_HOME": str(home / "nps"), "NPS_RESPONSES_TIMER": "0 0 * * *"})
        metadata_url = sqlite_url(home / "airflow")
        cluster = AirflowCluster(home / "airflow", metadata_url, extra, service_accounts=dict([SERVICE_ACCOUNT]))
        user, password = SERVICE_ACCOUNT
        api = {"conn_type": "http", "host": cluster.base_url, "login": user, "password": password}
        env.setenv("AIRFLOW_CONN_NPS_AIRFLOW_API", json.dumps(api))
        env.setenv("NPS_ANSWER_EVENT_SECONDS", "2")
        cluster.migrate(send_pool=False)
        try:
            cluster.start("api-server", "scheduler", "dag-processor")
            wait_until(lambda: cluster.api("GET", f"/dags/{DAG_ID}").ok, 120, f"{DAG_ID} parsed")
            assert cluster.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).ok
            timer_run = wait_until(lambda: runs_of(cluster, "scheduled"), 60, "the timer's run on unpause", every=0.5)
            # It would find no answer: ended at once, so that the test's answer is the asset's run's.
            ended = cluster.api(
                "PATCH", f"/dags/{DAG_ID}/dagRuns/{timer_run[0]['dag_run_id']}", json={"state": "failed"}
            )
            assert ended.ok, ended.text
            yield {"cluster": cluster, "engine": engine, "chat": chat}
        finally:
            cluster.stop()
            engine.dispose()


def asset_id(cluster: AirflowCluster, name: assets.AssetName) -> int | None:
    found = cluster.api("GET", "/assets", params={"uri_pattern": name.uri}).json()["assets"]
    return next((a["id"] for a in found if a["uri"] == name.uri), None)


def asset_events(cluster: AirflowCluster, name: assets.AssetName) -> list[dict]:
    """The asset's events; none while Airflow cannot list them (3.3.2 answers 500 while a run the
    event created has not started: its start_date is None)."""
    found = cluster.api("GET", "/assets/events", params={"asset_id": asset_id(cluster, name)})
    return found.json()["asset_events"] if found.ok else []


def runs_of(cluster: AirflowCluster, run_type: str) -> list[dict]:
    return cluster.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_type": run_type}).json()["dag_runs"]


@pytest.mark.processes
def test_an_answer_posted_through_the_form_runs_nps_responses_and_reaches_chat(live):
    cluster, engine, chat = live["cluster"], live["engine"], live["chat"]
    wait_until(lambda: asset_id(cluster, assets.ANSWERS), 60, "the answers asset known to Airflow")
    with SurveyServer(engine) as survey:
        events = survey.app.state.answer_events
        submitted = time.monotonic()
        assert submit(survey, "C1", 2, "=HYPERLINK(evil)").status_code == 303
        assert recorded_score(engine, "C1") == 2
        # A busy api-server may time a first post out: the form tries again 30 s later.
        wait_until(lambda: events.posted == 1, 120, "the answers event posted")

    posted = wait_until(lambda: asset_events(cluster, assets.ANSWERS), 60, "the answers event listed")
    assert [e["extra"] for e in posted] == [{"answers": 1, "waves": {WAVE_ID: 1}, "from_rest_api": True}]
    run = wait_until(lambda: runs_of(cluster, "asset_triggered"), 60, "an asset-triggered nps_responses run")[0]
    upstream = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents").json()
    assert [e["id"] for e in upstream["asset_events"]] == [posted[0]["id"]]  # the run is the answer's

    alert = wait_until(lambda: chat.posts(), 120, "the detractor's chat alert")
    print(f"\nfrom the answer to its chat alert: {time.monotonic() - submitted:.1f} s")
    assert len(alert) == 1 and "Detractor 2/10" in alert[0]["text"] and "Person C1" in alert[0]["text"]
    # The run's alerting task announced the follow-up it opened, for CRM or BI DAGs.
    followups = wait_until(lambda: asset_events(cluster, assets.FOLLOWUPS), 30, "the follow-ups' event")
    assert [(e["source_run_id"], e["extra"]["wave_id"], e["extra"]["responses"]) for e in followups] == [
        (run["dag_run_id"], WAVE_ID, 1)
    ]


# --- when Airflow cannot take the event -----------------------------------------------------------


@pytest.fixture
def wave(engine, tmp_path) -> waves.WaveParams:
    return open_wave(engine, tmp_path, [contact("C1", "A1"), contact("C2", "A2")])


def events_to(base_url: str, retry: float = 30.0) -> AnswerEvents:
    api = AirflowApi(ApiSettings(base_url, *SERVICE_ACCOUNT))
    return AnswerEvents(lambda extra: api.post_event(assets.ANSWERS.uri, extra), every=0, retry=retry)


def test_with_airflow_down_the_answer_is_recorded_and_left_to_the_timer(engine, wave):
    events = events_to(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with SurveyServer(engine, answer_events=events) as survey:
        assert submit(survey, "C1", 3).status_code == 303
        wait_until(lambda: events.failures == 1, 30, "the failed post")
    assert recorded_score(engine, "C1") == 3 and events.posted == 0
    waiting = new_responses.new_responses(engine, None, storage.utcnow())
    assert [r["contact_id"] for r in waiting] == ["C1"]  # what nps_responses' next timed run handles


def test_a_submit_does_not_wait_for_a_hanging_airflow_and_a_503_is_tried_again_later(engine, wave, httpserver):
    release, entered = threading.Event(), threading.Event()

    def hang(_request) -> Response:
        entered.set()
        release.wait(20)
        return Response("unavailable", 503)

    httpserver.expect_request("/auth/token", method="POST").respond_with_handler(hang)
    events = events_to(httpserver.url_for("").rstrip("/"), retry=3600)
    with SurveyServer(engine, answer_events=events) as survey:
        try:
            assert submit(survey, "C1", 1).status_code == 303  # answered while Airflow holds the login
            assert entered.wait(20) and not release.is_set()
            assert submit(survey, "C2", 9).status_code == 303
        finally:
            release.set()
        wait_until(lambda: events.failures == 1, 30, "the refused post")
    assert (recorded_score(engine, "C1"), recorded_score(engine, "C2")) == (1, 9)
    # The refused answer is kept with the one that came meanwhile, for the next try (an hour on).
    assert events._pending.answers == {WAVE_ID: 2} and events.posted == 0


def test_the_service_account_comes_from_the_connection_and_nothing_is_posted_without_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NPS_AIRFLOW_API", raising=False)
    assert not AnswerEvents.from_env().enabled
    monkeypatch.setenv("AIRFLOW_CONN_NPS_AIRFLOW_API", "http://nps-survey:p%40ss@airflow-apiserver:8080")
    assert ApiSettings.from_env() == ApiSettings("http://airflow-apiserver:8080", "nps-survey", "p@ss")
    monkeypatch.setenv("AIRFLOW_CONN_NPS_AIRFLOW_API", json.dumps({"conn_type": "https", "host": "af.example"}))
    assert ApiSettings.from_env() == ApiSettings("https://af.example", "", "")


# --- coalescing -----------------------------------------------------------------------------------


def test_a_burst_makes_one_event_at_once_then_one_per_interval():
    pending = Coalescer(every=5, retry=30)
    assert pending.wait(0) is None and pending.take(0) is None
    pending.add("w1")
    assert pending.wait(100) == 0  # after a quiet spell the first answer goes at once
    assert pending.take(100) == {"answers": 1, "waves": {"w1": 1}}
    for n in range(10_000):
        pending.add("w1" if n % 4 else "w2")
    assert pending.take(103) is None and pending.wait(103) == 2  # the rest wait for the interval
    assert pending.take(105) == {"answers": 10_000, "waves": {"w1": 7_500, "w2": 2_500}}
    assert pending.wait(105) is None


def test_a_failed_post_is_merged_into_the_next_one_after_the_retry_delay():
    pending = Coalescer(every=5, retry=30)
    pending.add("w1", 3)
    failed = pending.take(0)
    pending.add("w2")
    pending.put_back(failed, 1)
    assert pending.take(10) is None and pending.wait(10) == 21
    assert pending.take(31) == {"answers": 4, "waves": {"w1": 3, "w2": 1}}


def test_answers_noted_while_a_post_is_in_flight_go_in_the_next_event():
    posted: list[dict] = []
    first_in_flight, release = threading.Event(), threading.Event()

    def post(extra: dict) -> None:
        posted.append(extra)
        first_in_flight.set()
        release.wait(10)

    events = AnswerEvents(post, every=0)
    try:
        events.recorded("w1")
        assert first_in_flight.wait(10)
        for _ in range(500):
            events.recorded("w2")
        release.set()
        wait_until(lambda: events.posted == 2, 10, "the second event")
    finally:
        events.close()
    assert posted == [{"answers": 1, "waves": {"w1": 1}}, {"answers": 500, "waves": {"w2": 500}}]


def test_an_events_extra_keeps_the_wave_and_json_scalars():
    summary = {"wave_id": "w", "rows": 3, "path": Path("/x.csv"), "ids": list(range(80)), "when": dt.date(2026, 1, 2)}
    extra = assets.event_extra("w", summary)
    assert extra == {"wave_id": "w", "rows": 3, "path": "/x.csv", "ids": list(range(50)), "when": "2026-01-02"}
    json.dumps(extra)


# --- the per-contact results for BI ---------------------------------------------------------------

FOLLOWED = (("C1", 2, "A1"), ("C2", 5, "A2"))


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_contact_results_hold_one_row_per_contact_with_its_churn_signal(db, request, tmp_path, nps_home):
    engine = request.getfixturevalue("engine" if db == "sqlite" else "pg_engine")
    rows = [contact(f"C{n}", f"A{n}") for n in range(1, 6)]
    rows[0]["account_name"] = "=HYPERLINK(evil)"
    wave = dataclasses.replace(open_wave(engine, tmp_path, rows), drop_location=str(tmp_path / "drop"))
    for cid, score in (("C1", 2), ("C2", 5), ("C3", 8), ("C4", 10)):
        responses.record_response(engine, WAVE_ID, cid, {"score": score, "comment": None, "pillar_answers": {}})
    now = storage.utcnow()
    storage.execute(
        engine,
        "INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, status, created_at)"
        " VALUES (:w, :c, :a, :s, 'cs', 'csm@vendor.example', 'open', :t)",
        [{"w": WAVE_ID, "c": cid, "a": account, "s": score, "t": now} for cid, score, account in FOLLOWED],
    )
    storage.execute(
        engine, "UPDATE followups SET status = 'closed', recovered = :y WHERE contact_id = 'C2'", {"y": True}
    )

    if db == "sqlite":  # the step as the wave's task calls it (the NPS DB from the environment)
        from include.nps import pipeline

        assert pipeline.export_contact_results(WAVE_ID)["path"].endswith(f"/{WAVE_ID}/bi/contact_results.csv")
    written = contact_results.export(engine, wave)  # and to the wave's drop location
    assert written["path"] == str(tmp_path / "drop" / WAVE_ID / "bi" / contact_results.FILE_NAME)
    assert Path(written["path"]).read_bytes() == Path(written["local_path"]).read_bytes()
    with open(written["path"], encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert written["rows"] == 5 and written["answered"] == 4 and written["high_churn_signal"] == 1
    assert [(r["contact_id"], r["band"], r["churn_signal"]) for r in table] == [
        ("C1", "detractor", "high"),
        ("C2", "detractor", "medium"),  # its follow-up closed with the customer recovered
        ("C3", "passive", "medium"),
        ("C4", "promoter", "low"),
        ("C5", "", "unknown"),
    ]
    first = table[0]
    assert first["account_name"] == "'=HYPERLINK(evil)"  # a spreadsheet shows it, never runs it
    assert (first["answered"], first["invited"], first["followup_status"], first["account_silent"]) == (
        "true",
        "true",
        "open",
        "false",
    )
    assert table[4]["answered"] == "false" and table[4]["account_silent"] == "true" and table[4]["score"] == ""
    assert list(table[0]) == list(contact_results.COLUMNS)
