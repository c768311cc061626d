"""The score clicked in the email counts (provisionally) when a person opens the page in a real
browser, and not when a client fetches the page and every link in it, as mail scanners do.

One survey server and one open wave for the module; Chromium is Debian's, driven by Playwright.
Screenshots go to `var/screenshots/click-to-score/`.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urljoin

import pytest
import requests

from devkit.servers import SurveyServer
from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.wave import audience, mailings, responses, waves
from include.nps.wave.stats import completed_count
from include.nps.web import dashboard_figures
from include.nps.web.survey_form import FormSettings
from tests.airflow_cluster import wait_until
from tests.factories import contact, planned_wave, write_csv

SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "click-to-score"
PEOPLE = ("C-BROWSER", "C-SCANNER", "C-CRAWLED", "C-SENT")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """An open wave of four invited contacts, its survey form on loopback."""
    home = tmp_path_factory.mktemp("click-to-score")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NPS_HOME", str(home))
        env.delenv("NPS_DB_URL", raising=False)
        env.delenv("AIRFLOW_CONN_NPS_DB", raising=False)
        from include.nps.core.connections import nps_engine

        engine = nps_engine()
        path = write_csv(home / "contacts.csv", [contact(cid, name=f"Kunde {cid}") for cid in PEOPLE])
        wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        audience.load_contacts(engine, wave.wave_id, path)
        audience.snapshot_audience(engine, wave.wave_id, list(PEOPLE), 90, wave.open_at)
        waves.set_status(engine, wave.wave_id, "open")
        with SurveyServer(engine, FormSettings()) as server:
            env.setenv("NPS_SURVEY_BASE_URL", server.base_url)
            yield Survey(engine, wave)


class Survey:
    def __init__(self, engine, wave) -> None:
        self.engine, self.wave = engine, wave

    def score_link(self, contact_id: str, score: int) -> str:
        """The link behind score `score` in the contact's invitation."""
        return dict(mailings.survey_links(self.wave, contact_id)["score_urls"])[score]

    def response(self, contact_id: str) -> dict | None:
        return storage.fetch_one(
            self.engine,
            "SELECT score, comment, completed, revision FROM responses WHERE contact_id = :c",
            c=contact_id,
        )

    def history(self, contact_id: str) -> list[tuple[int, int]]:
        rows = storage.fetch_all(
            self.engine,
            "SELECT revision, score FROM response_history WHERE contact_id = :c ORDER BY revision",
            c=contact_id,
        )
        return [(r["revision"], r["score"]) for r in rows]


@pytest.mark.browser
def test_a_score_clicked_in_a_browser_counts_then_send_completes_it(survey, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
    page.goto(survey.score_link("C-BROWSER", 9))
    assert page.get_by_role("radio", name="9", exact=True).first.is_checked()
    # Visible for a few seconds: the page's script records the clicked score, provisionally.
    recorded = wait_until(lambda: survey.response("C-BROWSER"), 20, "the provisional answer")
    assert (recorded["score"], bool(recorded["completed"]), recorded["revision"]) == (9, False, 1)
    assert completed_count(survey.engine, survey.wave.wave_id) == 0
    page.locator("#saved-note").wait_for(state="visible")  # the page says the score counts
    page.screenshot(path=str(SCREENSHOTS / "click-to-score-provisional.png"), full_page=True)

    # Editable: another score replaces it, still provisional and still one revision.
    page.locator("label", has_text=re.compile(r"^6$")).first.click()
    wait_until(lambda: survey.response("C-BROWSER")["score"] == 6, 20, "the changed provisional score")
    page.locator("#comment").fill("Setup took a week.")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/thanks$"))
    sent = survey.response("C-BROWSER")
    assert (sent["score"], sent["comment"], bool(sent["completed"]), sent["revision"]) == (
        6,
        "Setup took a week.",
        True,
        1,
    )
    assert survey.history("C-BROWSER") == [(1, 6)]
    page.screenshot(path=str(SCREENSHOTS / "click-to-score-sent.png"), full_page=True)
    assert violations == []
    context.close()


def test_a_client_that_follows_every_link_records_nothing(survey):
    client = requests.Session()
    page = client.get(survey.score_link("C-SCANNER", 0), timeout=10)
    assert page.status_code == 200
    links = {urljoin(page.url, found) for found in re.findall(r'(?:href|src|action)="([^"]+)"', page.text)}
    probe = next(link for link in links if link.endswith("/p"))
    for link in sorted(links):
        assert client.get(link, timeout=10).status_code < 400, link
    assert survey.response("C-SCANNER") is None
    assert storage.fetch_one(survey.engine, "SELECT 1 AS n FROM survey_link_probes WHERE contact_id = 'C-SCANNER'")
    # A scanner that also runs the page's script and posts the score is refused once it took the probe.
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    posted = client.post(
        probe.removesuffix("/p") + "/provisional", data={"score": "0", "csrf_token": token}, timeout=10
    )
    assert posted.status_code == 409 and survey.response("C-SCANNER") is None


def test_a_provisional_answer_shortly_before_the_probe_is_withdrawn_and_a_sent_one_stays(survey):
    wave_id = survey.wave.wave_id
    assert responses.record_provisional(survey.engine, wave_id, "C-CRAWLED", 3)
    assert survey.history("C-CRAWLED") == [(1, 3)]
    assert responses.record_probe(survey.engine, wave_id, "C-CRAWLED") == 1
    assert survey.response("C-CRAWLED") is None and survey.history("C-CRAWLED") == []

    answer = {"score": 8, "comment": None, "pillar_answers": {}}
    responses.record_response(survey.engine, wave_id, "C-SENT", answer)
    assert not responses.record_provisional(survey.engine, wave_id, "C-SENT", 2)  # a sent answer is kept
    assert responses.record_probe(survey.engine, wave_id, "C-SENT") == 0
    assert survey.response("C-SENT")["score"] == 8


def test_a_post_without_the_forms_token_records_nothing(survey):
    base = survey.score_link("C-SCANNER", 5).split("?")[0]
    assert requests.post(f"{base}/provisional", data={"score": "5"}, timeout=10).status_code == 403
    assert survey.response("C-SCANNER") is None


def test_the_figures_say_how_many_answers_were_completed(survey):
    wave_id = survey.wave.wave_id
    storage.execute(survey.engine, "DELETE FROM survey_link_probes")
    responses.record_provisional(survey.engine, wave_id, "C-CRAWLED", 10)
    shown = dashboard_figures.wave_detail(survey.engine, wave_id)
    provisional = sum(1 for c in PEOPLE if (r := survey.response(c)) and not r["completed"])
    assert shown["completed"] == completed_count(survey.engine, wave_id) == shown["responses"] - provisional
    assert provisional == 1


@pytest.mark.postgres
def test_provisional_then_probe_then_send_on_postgresql(pg_engine, tmp_path):
    path = write_csv(tmp_path / "contacts.csv", [contact("P1"), contact("P2")])
    wave = planned_wave(pg_engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    audience.load_contacts(pg_engine, wave.wave_id, path)
    waves.set_status(pg_engine, wave.wave_id, "open")
    assert responses.record_provisional(pg_engine, wave.wave_id, "P1", 4)
    assert not responses.record_provisional(pg_engine, wave.wave_id, "P1", 4)  # the same score: nothing new
    assert responses.record_provisional(pg_engine, wave.wave_id, "P1", 5)
    responses.record_response(pg_engine, wave.wave_id, "P1", {"score": 7, "comment": "ok", "pillar_answers": {}})
    assert responses.record_provisional(pg_engine, wave.wave_id, "P2", 1)
    assert responses.record_probe(pg_engine, wave.wave_id, "P2") == 1
    assert not responses.record_provisional(pg_engine, wave.wave_id, "P2", 1)  # just after the probe
    assert responses.record_probe(pg_engine, wave.wave_id, "P1") == 0
    rows = storage.fetch_all(pg_engine, "SELECT contact_id, score, completed, revision FROM responses")
    assert [(r["contact_id"], r["score"], r["completed"], r["revision"]) for r in rows] == [("P1", 7, True, 1)]
    assert completed_count(pg_engine, wave.wave_id) == 1
