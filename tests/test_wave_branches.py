"""A wave whose steps for colleagues fail: the customer timeline goes on, the failures are loud,
and a re-run with the cause fixed delivers what was missing without repeating anything.

Both raw-data drops are refused (the files are above the mail size limit and there is no drop
location to link to), so `share_midwave_drop` and `share_postwave_drop` fail at once; the survey
still closes at its close time, the band emails and the flash results still go out, and the
retrospective reports the wave. Then the same wave again with a sensible size limit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from devkit.demo import wave_conf
from devkit.servers import SurveyServer
from devkit.simulate import Respondents, form_settings, write_population
from include.nps.core import storage

pytestmark = pytest.mark.e2e
# Seconds after the start: the shortest timeline in which simulated customers answer.
TIMELINE = {"preannounce": 1, "open": 20, "reminder": 26, "midwave": 29, "close": 36, "flash": 39, "retrospective": 40}
WAVE_ID = "customer-nps-2026-q4"
SIDE_STEPS = ("share_midwave_drop", "share_postwave_drop")


def _states(run) -> dict[str, str]:
    states: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return {task: ",".join(sorted(set(found))) for task, found in states.items()}


def _sent(spool) -> Counter:
    return Counter(message["X-NPS-Kind"] for message in spool.messages())


def test_failing_drops_hold_neither_the_close_nor_the_flash_results(airflow_db, smtp, chat, nps_home, monkeypatch):
    from devkit.localrun import run_wave
    from include.nps.core.connections import nps_engine

    engine = nps_engine()
    contacts_csv = write_population(nps_home / "contacts.csv", accounts=3, seed="branches")
    monkeypatch.setenv("NPS_ALERT_EMAILS", "data-eng@vendor.example")
    with SurveyServer(engine, form_settings()) as survey:
        monkeypatch.setenv("NPS_SURVEY_BASE_URL", survey.base_url)
        people = Respondents(smtp.spool.folder, seed="branches", answer_rate=0.9, unsubscribe_rate=0)
        people.start()
        conf = {
            **wave_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE),
            "max_rejected_share": 0.3,
            "mail_size_limit_mb": 0.000001,  # every drop is above it, and there is nowhere to link to
        }
        run = run_wave(conf)
        people.stop()

    states = _states(run)
    assert str(run.state) == "failed"  # loud: the run says something needs a person
    assert {step: states[step] for step in SIDE_STEPS} == dict.fromkeys(SIDE_STEPS, "failed")
    spine = ["close_wave", "send_followups", "send_flash_results.check", "run_retrospective", "route_detractors"]
    assert {step: states[step] for step in spine} == dict.fromkeys(spine, "success")
    sent = _sent(smtp.spool)
    included = storage.fetch_one(
        engine, "SELECT COUNT(*) AS n FROM wave_audience WHERE wave_id = :w AND included", w=WAVE_ID
    )["n"]
    assert sent["flash_results"] == sent["invitation"] == included > 0
    assert sent["retrospective"] == 1 and "drop_midwave" not in sent and "drop_postwave" not in sent
    closed = storage.fetch_one(engine, "SELECT status, closed_at FROM waves WHERE wave_id = :w", w=WAVE_ID)
    assert closed["status"] == "done" and closed["closed_at"] is not None
    alerts = [m for m in smtp.spool.messages() if m["To"] == "data-eng@vendor.example"]
    alerted = " ".join(m["Subject"] for m in alerts)
    assert all(step in alerted for step in SIDE_STEPS), alerted
    refused = "weigh"  # the refusal's reason: the files weigh more than the mail size limit
    assert all(refused in m.get_body(("plain", "html")).get_content() for m in alerts if "drop" in m["Subject"])

    # The cause fixed, the same wave again: the drops go out; nobody gets anything twice.
    before = _sent(smtp.spool)
    again = run_wave({**conf, "mail_size_limit_mb": 10})
    assert str(again.state) == "success", _states(again)
    after = _sent(smtp.spool)
    new = after - before
    assert set(new) == {"drop_midwave", "drop_postwave"}, new
    drops = {(m["X-NPS-Kind"], m["To"]) for m in smtp.spool.messages() if m["X-NPS-Kind"].startswith("drop_")}
    for recipient in conf["sales_recipients"]:
        assert {("drop_midwave", recipient), ("drop_postwave", recipient)} <= drops
