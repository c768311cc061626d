"""The survey form served for real (uvicorn on loopback), driven over HTTP: every bad input gets
its clear answer, nothing is recorded that should not be, and nothing valid is lost."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import requests

from devkit.servers import SurveyServer
from include.nps.core import signed_links, storage
from include.nps.wave import audience, waves
from include.nps.web.survey_form import FormSettings
from tests.factories import contact, planned_wave, write_csv

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Survey:
    """A running form app and its open wave, with contacts C1 (en), C2 (ja) and C3 (he)."""

    def __init__(self, server: SurveyServer, wave: waves.WaveParams, engine) -> None:
        self.server, self.wave, self.engine = server, wave, engine

    def link(self, contact_id: str = "C1", purpose: str = "survey", expires_at: dt.datetime | None = None) -> str:
        prefix = "s" if purpose == "survey" else "u"
        return (
            f"{self.server.base_url}/{prefix}/{signed_links.sign(purpose, self.wave.wave_id, contact_id, expires_at)}"
        )

    def csrf(self, url: str) -> str:
        return CSRF_FIELD.search(requests.get(url, timeout=10).text).group(1)

    def answer(self, form: dict[str, str], contact_id: str = "C1", **kwargs) -> requests.Response:
        """Open the form as a browser would, then send it with its CSRF token."""
        url = self.link(contact_id)
        return requests.post(url, data={"csrf_token": self.csrf(url), **form}, timeout=10, **kwargs)

    def responses(self) -> list[dict]:
        return storage.fetch_all(
            self.engine, "SELECT contact_id, score, comment, pillar_answers, revision FROM responses"
        )


@pytest.fixture
def start_survey(engine, tmp_path):
    """Start the form app with the given limits over an open wave (in `db`, else the SQLite NPS DB);
    stopped after the test."""
    servers = []

    def start(settings: FormSettings | None = None, db=None) -> Survey:
        engine_ = db or engine
        path = write_csv(tmp_path / "c.csv", [contact("C1"), contact("C2", locale="ja"), contact("C3", locale="he-IL")])
        wave = planned_wave(engine_, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        audience.load_contacts(engine_, wave.wave_id, path)
        audience.snapshot_audience(engine_, wave.wave_id, ["C1", "C2", "C3"], 90, wave.open_at)
        waves.set_status(engine_, wave.wave_id, "open")
        server = SurveyServer(engine_, settings or FormSettings()).__enter__()
        servers.append(server)
        return Survey(server, wave, engine_)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def survey(start_survey) -> Survey:
    return start_survey()


@pytest.fixture(params=["sqlite", "postgres"])
def any_survey(request, start_survey) -> Survey:
    """The form app over the SQLite NPS DB, then over PostgreSQL."""
    return start_survey(db=request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine"))


def test_clicking_a_score_opens_the_form_with_it_selected_but_records_nothing(survey):
    page = requests.get(survey.link() + "?score=3", timeout=10)
    assert page.status_code == 200
    assert 'value="3" checked' in page.text and "Support?" in page.text
    assert survey.responses() == []


def test_pages_carry_a_strict_policy_and_never_leak_the_link(survey):
    page = requests.get(survey.link(), timeout=10)
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/assets/survey.js" defer>']  # no inline script
    assert "style=" not in page.text
    css = requests.get(f"{survey.server.base_url}/assets/survey.css", timeout=10)
    assert css.ok and css.headers["Content-Type"].startswith("text/css")


def test_submitting_records_one_response_and_a_resubmission_updates_it_keeping_history(survey):
    first = survey.answer({"score": "3", "comment": "slow", "pillar_support": "2"})
    assert first.history[0].status_code == 303 and first.url.endswith("/thanks")
    assert "Your answer (3 out of 10) is recorded" in first.text
    survey.answer({"score": "8", "comment": "better now"})
    assert survey.responses() == [
        {"contact_id": "C1", "score": 8, "comment": "better now", "pillar_answers": "{}", "revision": 2}
    ]
    history = storage.fetch_all(
        survey.engine, "SELECT revision, score, comment FROM response_history ORDER BY revision"
    )
    assert history == [
        {"revision": 1, "score": 3, "comment": "slow"},
        {"revision": 2, "score": 8, "comment": "better now"},
    ]
    # The form shows the earlier answer, escaped.
    survey.answer({"score": "8", "comment": "<script>alert(1)</script>"})
    page = requests.get(survey.link(), timeout=10).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "You have already answered" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"comment": "no score"}, "Please pick a score from 0 to 10."),
        ({"score": "", "comment": "empty score"}, "Please pick a score from 0 to 10."),
        ({"score": "11"}, "Please pick a score from 0 to 10."),
        ({"score": "-1"}, "Please pick a score from 0 to 10."),
        ({"score": "ten"}, "Please pick a score from 0 to 10."),
        ({"score": "7.5"}, "Please pick a score from 0 to 10."),
        ({"score": "٣"}, "Please pick a score from 0 to 10."),  # a digit, but not one we asked for
        ({"score": "5", "comment": "x" * 2001}, "Your comment is longer than 2000 characters"),
        ({"score": "5", "pillar_support": "9"}, "The answer to “Support?” must be between 1 and 5."),
        ({"score": "5", "pillar_support": "0"}, "The answer to “Support?” must be between 1 and 5."),
    ],
)
def test_an_invalid_answer_gets_a_clear_message_keeps_what_was_typed_and_records_nothing(survey, form, message):
    page = survey.answer(form)
    assert page.status_code == 422 and message in page.text
    assert 'role="alert"' in page.text
    if form.get("comment"):
        assert form["comment"][:100] in page.text  # what was typed is still there to correct
    assert survey.responses() == []


def test_a_comment_of_exactly_the_limit_with_browser_line_breaks_is_accepted(survey):
    comment = ("x" * 99 + "\r\n") * 20  # 2000 characters as the browser counts them
    assert survey.answer({"score": "6", "comment": comment[:-2]}).ok
    assert len(survey.responses()[0]["comment"]) == 1999


def test_forged_altered_foreign_and_misdirected_links_get_a_plain_not_valid_page(survey):
    base = survey.server.base_url
    forged = survey.link()[:-3] + "xyz"
    foreign = f"{base}/s/{signed_links.sign('survey', survey.wave.wave_id, 'NOT-INVITED')}"
    other_wave = f"{base}/s/{signed_links.sign('survey', 'another-wave', 'C1')}"
    unsubscribe_as_survey = f"{base}/s/{signed_links.sign('unsubscribe', survey.wave.wave_id, 'C1')}"
    for url in (forged, foreign, other_wave, unsubscribe_as_survey, f"{base}/s/garbage", f"{base}/s/a.b.c"):
        page = requests.get(url, timeout=10)
        assert page.status_code == 404 and "This link is not valid" in page.text, url
        assert "Traceback" not in page.text
        assert requests.post(url, data={"score": "9"}, timeout=10).status_code == 404
    assert survey.responses() == []


def test_unknown_addresses_and_methods_get_a_page_not_a_stack_trace(survey):
    missing = requests.get(f"{survey.server.base_url}/admin", timeout=10)
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert requests.put(survey.link(), timeout=10).status_code == 405


def test_the_not_valid_page_speaks_the_browsers_language(survey):
    page = requests.get(
        f"{survey.server.base_url}/s/garbage", headers={"Accept-Language": "ja-JP,ja;q=0.9"}, timeout=10
    )
    assert page.status_code == 404 and 'lang="ja"' in page.text and "This link is not valid" not in page.text


def test_an_expired_link_says_so_and_records_nothing(survey):
    url = survey.link(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    page = requests.get(url, timeout=10)
    assert page.status_code == 410 and "This link has expired" in page.text
    assert requests.post(url, data={"score": "9"}, timeout=10).status_code == 410
    assert survey.responses() == []


def test_a_wrong_content_type_is_refused(survey):
    url = survey.link()
    sent = requests.post(url, json={"score": 9, "csrf_token": survey.csrf(url)}, timeout=10)
    assert sent.status_code == 415 and "only accepts answers sent from the survey page" in sent.text
    assert survey.responses() == []


def test_an_oversized_body_is_refused_before_it_is_read(survey):
    sent = survey.answer({"score": "9", "comment": "x" * 70_000})
    assert sent.status_code == 413 and "too large" in sent.text
    assert survey.responses() == []


def test_a_missing_or_foreign_csrf_token_is_refused_and_the_answer_comes_back_to_send_again(survey):
    url = survey.link()
    refused = requests.post(url, data={"score": "4", "comment": "ダッシュボードが遅い"}, timeout=10)
    assert refused.status_code == 403 and "please press “Send my answer” again" in refused.text
    assert 'value="4" checked' in refused.text and "ダッシュボードが遅い" in refused.text
    other_form = survey.csrf(survey.link("C2"))
    assert requests.post(url, data={"score": "4", "csrf_token": other_form}, timeout=10).status_code == 403
    assert survey.responses() == []
    fresh = CSRF_FIELD.search(refused.text).group(1)  # the page came back with a valid token
    assert requests.post(url, data={"score": "4", "csrf_token": fresh}, timeout=10).ok
    assert survey.responses()[0]["score"] == 4


def test_a_stale_or_cross_site_post_is_refused(survey):
    url = survey.link()
    stale = signed_links.csrf_token(url.rsplit("/", 1)[1], dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
    assert requests.post(url, data={"score": "9", "csrf_token": stale}, timeout=10).status_code == 403
    cross_site = requests.post(
        url, data={"score": "9", "csrf_token": survey.csrf(url)}, headers={"Sec-Fetch-Site": "cross-site"}, timeout=10
    )
    assert cross_site.status_code == 403
    assert survey.responses() == []


def test_a_closed_wave_says_so_with_the_results_date_and_refuses_answers(survey):
    waves.set_status(survey.engine, survey.wave.wave_id, "closed")
    page = requests.get(survey.link(), timeout=10)
    assert page.status_code == 410 and "This survey has closed" in page.text
    assert "The results will reach you by email around" in page.text
    assert requests.post(survey.link(), data={"score": "9"}, timeout=10).status_code == 410
    assert survey.responses() == []


def test_a_form_opened_before_close_and_sent_after_it_is_refused(survey):
    url = survey.link()
    survey.answer({"score": "7", "comment": "first"})
    form_token = survey.csrf(url)
    storage.execute(survey.engine, "UPDATE waves SET close_at = :t", {"t": storage.utcnow()})
    replay = requests.post(url, data={"score": "1", "comment": "late", "csrf_token": form_token}, timeout=10)
    assert replay.status_code == 410 and "This survey has closed" in replay.text
    assert [(r["score"], r["comment"]) for r in survey.responses()] == [(7, "first")]


def test_submissions_per_link_are_limited_and_the_refused_one_is_kept_in_the_form(start_survey):
    survey = start_survey(FormSettings(submissions_per_link=2))
    assert survey.answer({"score": "5"}).ok and survey.answer({"score": "6"}).ok
    third = survey.answer({"score": "9", "comment": "third try"})
    assert third.status_code == 429 and int(third.headers["Retry-After"]) > 0
    assert "Too many attempts" in third.text and "third try" in third.text
    assert [r["score"] for r in survey.responses()] == [6]
    assert survey.answer({"score": "9"}, contact_id="C2").ok  # another invitation is not held back


def test_requests_per_address_are_limited(start_survey):
    survey = start_survey(FormSettings(requests_per_address=3))
    url = survey.link()
    statuses = [requests.get(url, timeout=10).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = requests.get(url, timeout=10)
    assert "Too many requests came from your network" in limited.text and limited.headers["Retry-After"]
    assert requests.get(f"{survey.server.base_url}/healthz", timeout=10).ok  # probes are not counted


def test_a_failure_inside_a_submission_shows_an_error_page_and_records_nothing(survey):
    storage.execute(survey.engine, "DROP TABLE response_history")  # the second write of the submission fails
    sent = survey.answer({"score": "9"})
    assert sent.status_code == 500 and "Something went wrong on our side" in sent.text
    assert "Traceback" not in sent.text and "response_history" not in sent.text
    assert survey.responses() == []  # the response and its history are one transaction


def test_pages_are_in_the_contacts_language_and_hebrew_reads_right_to_left(survey):
    japanese = requests.get(survey.link("C2"), timeout=10).text
    assert 'lang="ja"' in japanese and "Acme Cloud" in japanese and "How likely" not in japanese
    hebrew = requests.get(survey.link("C3"), timeout=10).text  # stored as he-IL, normalised to he
    assert 'lang="he" dir="rtl"' in hebrew and "How likely" not in hebrew


def test_unsubscribe_page_and_one_click_post_record_the_opt_out(survey):
    def opted_out(contact_id: str) -> bool:
        row = storage.fetch_one(survey.engine, "SELECT opted_out_at FROM contacts WHERE contact_id = :c", c=contact_id)
        return row["opted_out_at"] is not None

    page_url = survey.link("C1", "unsubscribe")
    page = requests.get(page_url, timeout=10)
    assert page.ok and "Unsubscribe" in page.text and not opted_out("C1")
    assert requests.post(page_url, data={}, timeout=10).status_code == 403 and not opted_out("C1")
    assert requests.post(page_url, data={"csrf_token": survey.csrf(page_url)}, timeout=10).ok
    assert opted_out("C1")
    # RFC 8058: the mail client's one-click POST carries no page token.
    one_click = requests.post(survey.link("C2", "unsubscribe"), data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert one_click.ok and opted_out("C2")
    # A survey token cannot unsubscribe anyone.
    as_survey = f"{survey.server.base_url}/u/{signed_links.sign('survey', survey.wave.wave_id, 'C3')}"
    assert requests.post(as_survey, data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 404
    assert not opted_out("C3")


def test_a_re_run_never_reopens_a_closed_wave(survey):
    waves.set_status(survey.engine, survey.wave.wave_id, "closed")
    waves.set_status(survey.engine, survey.wave.wave_id, "open")
    row = storage.fetch_one(
        survey.engine, "SELECT status, closed_at FROM waves WHERE wave_id = :w", w=survey.wave.wave_id
    )
    assert row["status"] == "closed" and row["closed_at"]


def test_pillar_answers_are_stored_as_given(survey):
    survey.answer({"score": "10", "pillar_support": "5"})
    assert json.loads(survey.responses()[0]["pillar_answers"]) == {"support": 5}


def test_a_comment_with_nul_and_control_characters_is_recorded_without_them(any_survey):
    # A NUL is refused by PostgreSQL: the answer used to be lost behind a 500.
    too_long = any_survey.answer({"score": "4", "comment": "x" * 2001 + "\x00"})
    assert too_long.status_code == 422 and "\x00" not in too_long.text and "x" * 100 in too_long.text
    comment = "Slow\x00 dashboard\r\nsince\x1b March\u202e.\tThanks\x7f\x85bye"
    sent = any_survey.answer({"score": "4", "comment": comment})
    assert sent.history[0].status_code == 303 and sent.url.endswith("/thanks")
    recorded = "Slow dashboard\nsince March.\tThanks\nbye"
    assert [(r["score"], r["comment"]) for r in any_survey.responses()] == [(4, recorded)]
    history = storage.fetch_all(any_survey.engine, "SELECT revision, comment FROM response_history")
    assert history == [{"revision": 1, "comment": recorded}]
