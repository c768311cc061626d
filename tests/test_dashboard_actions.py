"""People act from the wave dashboard, served by a real Airflow API server (through the plugin,
behind Airflow's login and permissions) and used in Chromium: mark an action item done (the next
wave's "you told us, we did" then has it), open a follow-up's form, read and download the
quarantined rows, read the failed and in-doubt messages of each mailing; refused without login,
without the permission to edit nps_wave's runs, and without the form's CSRF token.

One API server, one survey server and one seeded NPS DB for the module. Screenshots go to
`var/screenshots/dashboard/`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
from pathlib import Path

import pytest
import requests

from devkit.servers import SurveyServer
from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery import outbox
from include.nps.wave import audience, flash_content, waves
from include.nps.web.survey_form import FormSettings
from tests.airflow_cluster import ADMIN_PASSWORD, ADMIN_USER, AirflowCluster
from tests.factories import contact, planned_wave, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.processes]
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "dashboard"
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-password"
FORMULA = '=HYPERLINK("http://evil.example","click")'
SCRIPT = "<script>alert(1)</script>"
NOTE = "Dashboards now load in under two seconds."


def seed(engine, folder: Path) -> dict[str, str]:
    """W1, closed: three contacts, an action item, a quarantined row (a formula and markup), a failed
    invitation, an in-doubt reminder and a detractor's follow-up. W2: the program's next wave."""
    path = write_csv(folder / "contacts.csv", [contact(f"C{i}", name=f"Person {i}") for i in range(1, 4)])
    now = dt.datetime.now(dt.UTC)
    first = planned_wave(engine, path, name="W1", start=now - dt.timedelta(days=30))
    loaded = audience.load_contacts(engine, first.wave_id, path)
    audience.snapshot_audience(engine, first.wave_id, loaded.contact_ids, 0, first.open_at)
    outbox.enqueue(engine, first.wave_id, "invitation", [("C1", "c1@example.com"), ("C2", "c2@example.com")])
    outbox.enqueue(engine, first.wave_id, "reminder", [("C1", "c1@example.com")])
    storage.execute(
        engine, "UPDATE outbox SET status = 'failed', last_error = '550 5.1.1 no such user' WHERE recipient = 'C2'"
    )
    storage.execute(engine, "UPDATE outbox SET status = 'in_doubt' WHERE kind = 'reminder'")
    quarantined = {"wave_id": first.wave_id, "source": "contacts.csv", "row_number": 7, "field": "email"}
    storage.execute(engine, storage.query("upsert_quarantine"), {**quarantined, "value": FORMULA, "reason": SCRIPT})
    storage.execute(
        engine,
        storage.query("upsert_action_item"),
        {
            "wave_id": first.wave_id,
            "item_key": "theme-speed",
            "title": "Act on what detractors say about speed",
            "reason": "4 detractors",
            "owner": "cs-ops@vendor.example",
            "priority": "high",
            "due_date": now.date(),
            "now": now,
            "theme": "speed",
            "risk": "high",
            "checkpoints": "[]",
        },
    )
    storage.execute(
        engine,
        "INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, status, created_at)"
        " VALUES (:w, 'C3', 'A1', 2, 'cs', 'csm@vendor.example', 'open', :t)",
        {"w": first.wave_id, "t": now},
    )
    waves.set_status(engine, first.wave_id, "closed")
    second = planned_wave(engine, path, name="W2", start=now + dt.timedelta(days=30))
    return {"first": first.wave_id, "second": second.wave_id}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, airflow_db):
    """Airflow's API server (the session's SQLite metadata DB, migrated once; an admin and a viewer)
    over a seeded NPS DB, and the survey app that serves the follow-up forms."""
    home = tmp_path_factory.mktemp("dashboard-actions")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NPS_HOME", str(home))
        env.delenv("NPS_DB_URL", raising=False)
        env.delenv("AIRFLOW_CONN_NPS_DB", raising=False)
        from include.nps.core.connections import nps_engine

        engine = nps_engine()
        ids = seed(engine, home)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD, VIEWER: VIEWER_PASSWORD}))
        with SurveyServer(engine, FormSettings()) as survey:
            extra = {
                "AIRFLOW_CONN_NPS_DB": json.dumps({"conn_type": "sqlite", "host": engine.url.database}),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{VIEWER}:viewer",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "NPS_SURVEY_BASE_URL": survey.base_url,
            }
            cluster = AirflowCluster(home / "airflow", os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], extra)
            try:
                cluster.start("api-server")
                yield Dashboard(cluster, engine, ids, survey.base_url)
            finally:
                cluster.stop(timeout=3)  # nothing to finish: killed when it takes longer


class Dashboard:
    def __init__(self, cluster: AirflowCluster, engine, ids: dict[str, str], survey_url: str) -> None:
        self.cluster, self.engine, self.ids, self.survey_url = cluster, engine, ids, survey_url
        self.base = cluster.base_url
        self.actions = f"{self.base}/nps/waves/{ids['first']}/actions"
        self.done_url = f"{self.base}/nps/waves/{ids['first']}/action-items/theme-speed/done"

    def token(self, user: str, password: str) -> str:
        answer = requests.post(f"{self.base}/auth/token", json={"username": user, "password": password}, timeout=30)
        answer.raise_for_status()
        return answer.json()["access_token"]

    def csrf_of(self, token: str) -> str:
        page = requests.get(self.actions, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]

    def we_did_of_the_next_wave(self) -> list[dict[str, str]]:
        """The notes the next wave's flash results tell customers under "you told us, we did"."""
        previous = storage.fetch_one(self.engine, storage.query("previous_wave"), wave_id=self.ids["second"])
        return [item["public_note"] for item in flash_content.done_items(self.engine, previous["wave_id"])]


def test_refused_without_login_without_permission_or_without_the_csrf_token(dashboard):
    assert requests.get(dashboard.actions, timeout=10).status_code == 401
    assert requests.post(dashboard.done_url, data={"note_en": "x"}, timeout=10).status_code == 401

    viewer = dashboard.token(VIEWER, VIEWER_PASSWORD)
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    token = dashboard.csrf_of(viewer)  # a viewer may read the page
    refused = requests.post(
        dashboard.done_url, data={"note_en": "x", "csrf_token": token}, headers=as_viewer, timeout=10
    )
    assert refused.status_code == 403
    decide = f"{dashboard.base}/nps/waves/{dashboard.ids['first']}/messages/reminder/C1/decide"
    settling = {"decision": "arrived", "csrf_token": token}
    assert requests.post(decide, data=settling, headers=as_viewer, timeout=10).status_code == 403
    opening = f"{dashboard.base}/nps/waves/{dashboard.ids['first']}/followups/C3"
    assert requests.get(opening, headers=as_viewer, allow_redirects=False, timeout=10).status_code == 403

    admin = dashboard.token(ADMIN_USER, ADMIN_PASSWORD)
    as_admin = {"Authorization": f"Bearer {admin}"}
    assert requests.post(dashboard.done_url, data={"note_en": "x"}, headers=as_admin, timeout=10).status_code == 403
    elsewhere = {**as_admin, "Origin": "https://evil.example"}
    token = dashboard.csrf_of(admin)
    posted = requests.post(
        dashboard.done_url, data={"note_en": "x", "csrf_token": token}, headers=elsewhere, timeout=10
    )
    assert posted.status_code == 403
    viewers = {"note_en": "x", "csrf_token": dashboard.csrf_of(viewer)}  # a token is bound to its user
    assert requests.post(dashboard.done_url, data=viewers, headers=as_admin, timeout=10).status_code == 403
    assert dashboard.we_did_of_the_next_wave() == []  # nothing was marked done


def test_people_act_from_the_dashboard_in_chromium(dashboard, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    context.add_cookies(
        [{"name": "_token", "value": dashboard.token(ADMIN_USER, ADMIN_PASSWORD), "url": dashboard.base}]
    )
    page = context.new_page()
    page.goto(f"{dashboard.base}/nps/waves/{dashboard.ids['first']}")
    page.locator("#actions-link").click()
    page.wait_for_url(dashboard.actions)

    # Failed and in-doubt messages, per mailing.
    assert "550 5.1.1 no such user" in page.locator("table[data-kind=invitation] tr[data-status=failed]").inner_text()
    assert "c1@example.com" in page.locator("table[data-kind=reminder] tr[data-status=in_doubt]").inner_text()
    # Quarantined rows, escaped on the page and neutralised in the download.
    row = page.locator("#quarantine tbody tr").first
    assert SCRIPT in row.inner_text() and FORMULA in row.inner_text()
    assert page.locator("#quarantine script").count() == 0
    link = page.get_by_role("link", name="Download all as CSV")
    assert link.get_attribute("download") is not None
    fetched = context.request.get(dashboard.base + link.get_attribute("href"))  # with the browser's session
    assert fetched.headers["content-disposition"].startswith("attachment;")
    content = fetched.body()
    assert content.startswith(b"\xef\xbb\xbf")
    (header, cells) = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert header == ["source", "row_number", "field", "value", "reason"]
    assert cells == ["contacts.csv", "7", "email", "'" + FORMULA, SCRIPT]
    page.screenshot(path=str(SCREENSHOTS / "dashboard-actions.png"), full_page=True)

    # Mark the action item done: the next wave's "you told us, we did" says what was done.
    item = page.locator("tr[data-item=theme-speed]")
    item.get_by_text("Mark done").click()
    item.locator("textarea[name=note_en]").fill(NOTE)
    item.get_by_role("button", name="Done: tell customers").click()
    page.wait_for_url(re.compile(r"done=theme-speed"))
    assert page.locator("tr[data-item=theme-speed] [data-field=status]").inner_text() == "done"
    assert dashboard.we_did_of_the_next_wave() == [{"en": NOTE}]
    page.locator("#action-items").screenshot(path=str(SCREENSHOTS / "dashboard-action-item-done.png"))

    # Settle the reminder in doubt: it arrived.
    page.locator("table[data-kind=reminder] tr[data-status=in_doubt]").get_by_role("button", name="It arrived").click()
    page.wait_for_url(re.compile(r"decided=C1"))
    assert page.locator("table[data-kind=reminder]").count() == 0  # nothing left in doubt
    assert outbox.counts(dashboard.engine, dashboard.ids["first"], "reminder") == {"reminder": {"sent": 1}}

    # A POST from the page without its token is refused.
    refused = page.evaluate(
        "url => fetch(url, {method: 'POST', body: new URLSearchParams({note_en: 'x'})}).then(r => r.status)",
        dashboard.done_url,
    )
    assert refused == 403 and dashboard.we_did_of_the_next_wave() == [{"en": NOTE}]

    # Without login the page is refused; a viewer reads it, and pressing the button is refused.
    stranger = browser.new_context()
    assert stranger.new_page().goto(dashboard.actions).status == 401
    stranger.close()
    viewer = browser.new_context()
    viewer.add_cookies([{"name": "_token", "value": dashboard.token(VIEWER, VIEWER_PASSWORD), "url": dashboard.base}])
    reading = viewer.new_page()
    reading.goto(dashboard.actions)
    reading.locator("tr[data-item=theme-speed] summary").click()
    reading.locator("tr[data-item=theme-speed] textarea[name=note_en]").fill("A viewer's note")
    with reading.expect_response(dashboard.done_url) as answer:
        reading.get_by_role("button", name="Done: tell customers").click()
    assert answer.value.status == 403 and dashboard.we_did_of_the_next_wave() == [{"en": NOTE}]
    viewer.close()

    # Open the detractor's follow-up form (the survey app's page, by its signed link).
    with context.expect_page() as opened:
        page.locator("tr[data-contact=C3]").get_by_role("link", name="Open the follow-up form").click()
    form = opened.value
    form.wait_for_load_state()
    assert form.url.startswith(f"{dashboard.survey_url}/followup/")
    assert "C3" in form.content() or "Person 3" in form.content()
    form.screenshot(path=str(SCREENSHOTS / "dashboard-followup-opened.png"), full_page=True)
    context.close()
