"""The survey form served for real (uvicorn on loopback), driven over HTTP."""

import datetime as dt

import pytest
import requests

from include.nps import audience, storage, tokens, waves
from include.nps.devservers import SurveyServer
from tests.factories import contact, planned_wave, write_csv


@pytest.fixture
def survey(engine, tmp_path):
    path = write_csv(tmp_path / "c.csv", [contact("C1"), contact("C2", locale="ja")])
    wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, ["C1", "C2"], 90, wave.open_at)
    waves.set_status(engine, wave.wave_id, "open")
    with SurveyServer(engine) as server:
        yield server, wave


def _link(server, wave, contact_id="C1", purpose="survey"):
    prefix = "s" if purpose == "survey" else "u"
    return f"{server.base_url}/{prefix}/{tokens.sign(purpose, wave.wave_id, contact_id)}"


def _responses(engine):
    return storage.fetch_all(engine, "SELECT contact_id, score, comment, pillar_answers FROM responses")


def test_clicking_a_score_opens_the_form_but_records_nothing(engine, survey):
    server, wave = survey
    page = requests.get(_link(server, wave) + "?score=3", timeout=10)
    assert page.status_code == 200
    assert 'value="3" checked' in page.text and "Support?" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert _responses(engine) == []


def test_submitting_records_one_response_and_a_resubmission_updates_it(engine, survey):
    server, wave = survey
    url = _link(server, wave)
    assert requests.post(url, data={"score": "3", "comment": "slow", "pillar_support": "2"}, timeout=10).ok
    assert requests.post(url, data={"score": "8", "comment": "better now"}, timeout=10).ok
    assert _responses(engine) == [{"contact_id": "C1", "score": 8, "comment": "better now", "pillar_answers": "{}"}]
    # The form shows the earlier answer, escaped.
    requests.post(url, data={"score": "8", "comment": "<script>alert(1)</script>"}, timeout=10)
    page = requests.get(url, timeout=10).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"comment": "no score"}, "Please pick a score"),
        ({"score": "11"}, "Please pick a score"),
        ({"score": "5", "comment": "x" * 2001}, "longer than 2000 characters"),
        ({"score": "5", "pillar_support": "9"}, "outside its scale"),
    ],
)
def test_invalid_submissions_get_a_clear_message_and_record_nothing(engine, survey, form, message):
    server, wave = survey
    answer = requests.post(_link(server, wave), data=form, timeout=10)
    assert answer.status_code == 422 and message in answer.text
    assert _responses(engine) == []


def test_forged_and_foreign_links_get_a_plain_not_valid_page(engine, survey):
    server, wave = survey
    forged = _link(server, wave)[:-3] + "xyz"
    foreign = f"{server.base_url}/s/{tokens.sign('survey', wave.wave_id, 'NOT-INVITED')}"
    for url in (forged, foreign, f"{server.base_url}/s/garbage"):
        page = requests.get(url, timeout=10)
        assert page.status_code == 404 and "This link is not valid" in page.text
        assert requests.post(url, data={"score": "9"}, timeout=10).status_code == 404
    assert _responses(engine) == []


def test_a_closed_wave_says_so_and_refuses_answers(engine, survey):
    server, wave = survey
    waves.set_status(engine, wave.wave_id, "closed")
    assert requests.get(_link(server, wave), timeout=10).status_code == 410
    answer = requests.post(_link(server, wave), data={"score": "9"}, timeout=10)
    assert answer.status_code == 410 and "This survey has closed" in answer.text
    assert _responses(engine) == []


def test_unsubscribe_page_and_one_click_post_record_the_opt_out(engine, survey):
    server, wave = survey
    page = requests.get(_link(server, wave, "C1", "unsubscribe"), timeout=10)
    assert page.ok and "Unsubscribe" in page.text
    assert storage.fetch_one(engine, "SELECT opted_out_at FROM contacts WHERE contact_id='C1'")["opted_out_at"] is None
    one_click = requests.post(
        _link(server, wave, "C2", "unsubscribe"), data={"List-Unsubscribe": "One-Click"}, timeout=10
    )
    assert one_click.ok
    assert storage.fetch_one(engine, "SELECT opted_out_at FROM contacts WHERE contact_id='C2'")["opted_out_at"]
    # A survey token cannot unsubscribe anyone.
    assert (
        requests.post(f"{server.base_url}/u/{tokens.sign('survey', wave.wave_id, 'C1')}", timeout=10).status_code == 404
    )


def test_answers_stop_at_the_close_time_even_if_the_close_task_is_late(engine, survey):
    server, wave = survey
    storage.execute(engine, "UPDATE waves SET close_at = :t", {"t": storage.utcnow()})
    answer = requests.post(_link(server, wave), data={"score": "9"}, timeout=10)
    assert answer.status_code == 410 and _responses(engine) == []


def test_a_re_run_never_reopens_a_closed_wave(engine, survey):
    _, wave = survey
    waves.set_status(engine, wave.wave_id, "closed")
    waves.set_status(engine, wave.wave_id, "open")
    row = storage.fetch_one(engine, "SELECT status, closed_at FROM waves WHERE wave_id = :w", w=wave.wave_id)
    assert row["status"] == "closed" and row["closed_at"]
    waves.set_status(engine, wave.wave_id, "done")
    assert storage.fetch_one(engine, "SELECT status FROM waves WHERE wave_id = :w", w=wave.wave_id)["status"] == "done"
