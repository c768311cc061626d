"""The wave dashboard: its figures against a seeded NPS DB, then the page and API served by a real
Airflow API server (through the plugin, behind Airflow's login) and shown in Chromium inside the
Airflow UI, in the light and the dark theme. Pictures are written to `var/screenshots/dashboard/`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery import outbox
from include.nps.wave import audience, waves
from include.nps.wave.stats import nps_interval
from include.nps.web import dashboard_figures
from tests.factories import contact, planned_wave, write_csv

# The API server's pages use the real clock, so the seeded waves are placed around it: W1 opened
# four days ago and closes in ten, W2 opens in two months.
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
W1_OPEN, W2_OPEN = NOW - dt.timedelta(days=4), NOW + dt.timedelta(days=60)
SCORES = {"C01": 10, "C02": 9, "C03": 9, "C04": 8, "C06": 3, "C07": 0}  # 3 promoters, 1 passive, 2 detractors
RUN_ID = "manual__2026-11-19T09:00:00+00:00"
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "dashboard"


def seed_waves(engine, tmp_path: Path) -> dict[str, str]:
    """W1: ten contacts (one opted out), seven invitations sent, one suppressed, one failed, six
    answers plus one set aside by a check, two detractors with follow-ups (one reached), the
    pre-announcement and opening done, the reminder overdue, one failed data check. W2: planned."""
    rows = [contact(f"C{i:02d}", account=f"A{i % 3}") for i in range(1, 11)]
    for row in rows[2::3]:  # account A0, whose detractors are followed up: customer text is escaped
        row["account_name"] = "<script>alert(1)</script> Corp"
    csv_path = write_csv(tmp_path / "contacts.csv", rows)
    first = planned_wave(engine, csv_path, name="W1", start=W1_OPEN)
    loaded = audience.load_contacts(engine, first.wave_id, csv_path)
    storage.execute(engine, "UPDATE contacts SET opted_out_at = :t WHERE contact_id = 'C10'", {"t": NOW})
    audience.snapshot_audience(engine, first.wave_id, loaded.contact_ids, 0, first.open_at)
    included = audience.audience_frame(engine, first.wave_id).query("included == True")
    outbox.enqueue(engine, first.wave_id, "invitation", zip(included["contact_id"], included["email"], strict=True))
    outcome = {"C08": "suppressed", "C09": "failed"}
    for contact_id in included["contact_id"]:
        storage.execute(
            engine,
            "UPDATE outbox SET status = :s, sent_at = :t WHERE wave_id = :w AND recipient = :c",
            {"s": outcome.get(contact_id, "sent"), "t": first.open_at, "w": first.wave_id, "c": contact_id},
        )
    outbox.enqueue(engine, first.wave_id, "reminder", [("C01", "c01@a1.example")])
    storage.execute(engine, "UPDATE outbox SET status = 'in_doubt' WHERE kind = 'reminder'")  # a crash's
    answers = [
        {"wave_id": first.wave_id, "contact_id": c, "score": s, "comment": None, "pillar_answers": "{}", "now": NOW}
        for c, s in {**SCORES, "C08": 10}.items()
    ]
    waves.set_status(engine, first.wave_id, "open")
    storage.execute(engine, storage.query("upsert_response"), answers)
    storage.execute(engine, "UPDATE responses SET quarantine_reason = 'after close' WHERE contact_id = 'C08'")
    for contact_id, state in (("C06", "reached"), ("C07", "open")):
        storage.execute(
            engine,
            "INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, status, created_at)"
            " VALUES (:w, :c, 'A0', :s, 'cs', 'csm@vendor.example', :state, :t)",
            {"w": first.wave_id, "c": contact_id, "s": SCORES[contact_id], "state": state, "t": NOW},
        )
    for name in ("preannounce", "open"):
        storage.execute(
            engine,
            "UPDATE wave_milestones SET done_at = :t WHERE wave_id = :w AND milestone = :m",
            {"t": NOW, "w": first.wave_id, "m": name},
        )
    storage.execute(
        engine,
        "UPDATE wave_milestones SET due_at = :t WHERE wave_id = :w AND milestone = 'reminder'",
        {"t": NOW - dt.timedelta(hours=2), "w": first.wave_id},
    )
    for step, success in (("audience", True), ("invitation", False)):
        storage.execute(
            engine,
            storage.query("upsert_check_result"),
            {
                "wave_id": first.wave_id,
                "step": step,
                "suite": "outbox" if step == "invitation" else step,
                "success": success,
                "evaluated": 5,
                "failed": 0 if success else 1,
                "warnings": 0,
                "duration_ms": 12,
                "summary": f"{step}: {'passed' if success else 'FAILED 1 of 5: no recipient twice'}",
                "details": "{}",
                "now": NOW,
            },
        )
    storage.execute(engine, "UPDATE waves SET dag_id = 'nps_wave', run_id = :r", {"r": RUN_ID})
    second = planned_wave(engine, csv_path, name="W2", start=W2_OPEN)
    return {"first": first.wave_id, "second": second.wave_id}


def test_the_overview_shows_each_waves_figures(engine, tmp_path):
    ids = seed_waves(engine, tmp_path)
    by_id = {w["wave_id"]: w for w in dashboard_figures.overview(engine, now=NOW)}
    assert list(by_id) == [ids["second"], ids["first"]]  # latest first

    first = by_id[ids["first"]]
    assert first["audience"] == {"included": 9, "excluded": 1}
    assert first["messages"] == {"invitation": {"failed": 1, "sent": 7, "suppressed": 1}, "reminder": {"in_doubt": 1}}
    assert first["invited"] == 7
    assert (first["responses"], first["promoters"], first["passives"], first["detractors"]) == (6, 3, 1, 2)
    assert first["response_rate"] == 85.7  # six answers of seven delivered invitations
    expected = nps_interval(3, 1, 2, population=7)
    assert first["nps"]["score"] == 16.7 and (first["nps"]["low"], first["nps"]["high"]) == (
        expected.low,
        expected.high,
    )
    assert first["followups"] == {"open": 1, "reached": 1}
    assert [(c["step"], c["success"]) for c in first["checks"]] == [("audience", True), ("invitation", False)]
    assert first["checks_failed"] == 1
    assert first["run"] == {"dag_id": "nps_wave", "run_id": RUN_ID}
    states = {m["milestone"]: m["state"] for m in first["milestones"]}
    assert states == {
        "preannounce": "done",
        "open": "done",
        "reminder": "late",
        "midwave": "next",
        "close": "planned",
        "flash": "planned",
        "retrospective": "planned",
    }

    second = by_id[ids["second"]]
    assert second["responses"] == 0 and second["nps"] is None and second["response_rate"] is None
    assert [m["state"] for m in second["milestones"]] == ["next"] + ["planned"] * 6
    assert dashboard_figures.overview(engine, now=NOW, program="another") == []


def test_a_waves_detail_lists_each_detractors_follow_up(engine, tmp_path):
    ids = seed_waves(engine, tmp_path)
    detail = dashboard_figures.wave_detail(engine, ids["first"], now=NOW)
    assert [(f["contact_id"], f["score"], f["status"]) for f in detail["followup_list"]] == [
        ("C07", 0, "open"),
        ("C06", 3, "reached"),
    ]
    assert dashboard_figures.wave_detail(engine, "no-such-wave") is None


def test_a_milestone_is_late_only_once_past_its_grace():
    due = NOW - dashboard_figures.LATE_AFTER + dt.timedelta(minutes=1)
    rows = [{"milestone": "open", "due_at": due, "done_at": None}]
    assert dashboard_figures.milestone_states(rows, NOW)[0]["state"] == "next"
    assert dashboard_figures.milestone_states(rows, NOW + dt.timedelta(minutes=2))[0]["state"] == "late"


# The dashboard inside Airflow: the plugin's app on a real API server, and the UI in Chromium.


@pytest.fixture
def api_server(engine, tmp_path):
    """Airflow's API server alone (SQLite metadata DB) over the seeded NPS DB."""
    from tests.airflow_cluster import AirflowCluster

    ids = seed_waves(engine, tmp_path)
    nps_db = {"conn_type": "sqlite", "host": engine.url.database}
    cluster = AirflowCluster(
        tmp_path / "airflow", f"sqlite:///{tmp_path / 'airflow.db'}", {"AIRFLOW_CONN_NPS_DB": json.dumps(nps_db)}
    )
    cluster.migrate()
    try:
        cluster.start("api-server")
        yield cluster, ids
    finally:
        cluster.stop()


@pytest.mark.browser
def test_the_dashboard_in_the_airflow_ui(api_server, browser):
    cluster, ids = api_server
    base = cluster.base_url
    # Airflow's login guards the app: no credentials, a forged token, then the admin's token.
    assert requests.get(f"{base}/nps/api/waves", timeout=10).status_code == 401
    forged = {"Authorization": "Bearer not-a-token"}
    assert requests.get(f"{base}/nps/api/waves", headers=forged, timeout=10).status_code == 403
    auth = {"Authorization": f"Bearer {cluster.token()}"}
    served = requests.get(f"{base}/nps/api/waves", headers=auth, timeout=30)
    assert served.status_code == 200
    first = next(w for w in served.json() if w["wave_id"] == ids["first"])
    assert (first["invited"], first["responses"], first["detractors"], first["response_rate"]) == (7, 6, 2, 85.7)
    assert first["nps"]["score"] == 16.7 and first["followups"] == {"open": 1, "reached": 1}
    assert requests.get(f"{base}/nps/api/waves/nope", headers=auth, timeout=10).status_code == 404
    detail = requests.get(f"{base}/nps/waves/{ids['first']}", headers=auth, timeout=30).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Corp" in detail and "<script>alert(1)" not in detail
    assert re.search(r'data-kind="reminder">.*?class="num in-doubt">1<', detail, re.DOTALL)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    context.add_cookies([{"name": "_token", "value": cluster.token(), "url": base}])
    page = context.new_page()
    page.goto(f"{base}/plugin/nps-waves")
    frame = page.frame_locator("iframe")
    row = frame.locator(f"tr[data-wave='{ids['first']}']")
    row.wait_for(timeout=60_000)
    assert row.locator("[data-field=invited]").inner_text() == "7"
    assert row.locator("[data-field=rate]").inner_text() == "85.7%"
    assert "+16.7" in row.locator("[data-field=nps]").inner_text()
    states = [row.locator(".ms").nth(i).get_attribute("data-state") for i in range(7)]
    assert states == ["done", "done", "late", "next", "planned", "planned", "planned"]
    assert row.locator("a", has_text="run").get_attribute("href") == f"/dags/nps_wave/runs/{quote(RUN_ID, safe='')}"
    assert page.get_by_role("link", name="NPS waves").count() >= 1  # listed in Airflow's navigation
    page.screenshot(path=str(SCREENSHOTS / "dashboard-light.png"))

    page.evaluate("localStorage.setItem('theme', 'dark')")
    page.reload()
    frame.locator(f"tr[data-wave='{ids['first']}']").wait_for(timeout=60_000)
    inner = frame.locator("html")
    assert inner.get_attribute("data-theme") == "dark"
    background = inner.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == "rgb(17, 24, 39)"
    page.screenshot(path=str(SCREENSHOTS / "dashboard-dark.png"))
    frame.get_by_role("link", name="W1").click()
    failed = frame.locator("#checks tr[data-step=invitation]")
    assert "failed" in failed.inner_text(timeout=30_000) and "no recipient twice" in failed.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "dashboard-wave-dark.png"))
    context.close()
