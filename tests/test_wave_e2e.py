"""A whole compressed wave through Airflow (`dag.test()`), against a real SMTP server, a real
HTTP chat webhook and the real survey form, with simulated customers answering over HTTP.
Then the whole wave again: nobody is emailed twice.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter, defaultdict

import openpyxl
import pytest

from devkit.demo import wave_conf
from devkit.servers import SurveyServer
from devkit.simulate import Respondents, form_settings, write_population
from include.nps.core import storage
from include.nps.core.connections import reports_dir
from include.nps.wave import audience, contact_results

pytestmark = pytest.mark.e2e
TIMELINE = {"preannounce": 1, "open": 16, "reminder": 26, "midwave": 32, "close": 40, "flash": 44, "retrospective": 46}
WAVE_ID = "customer-nps-2026-q4"
OPTED_OUT = "contact1.1@account002.example"
UNSUBSCRIBER = "contact1.1@account003.example"


@pytest.fixture(params=["sqlite", "postgres"])
def wave_db(request, nps_home, monkeypatch):
    """The NPS DB of the run: the embedded SQLite default, or PostgreSQL through `nps_db`."""
    from include.nps.core.connections import nps_engine

    if request.param == "sqlite":
        return nps_engine()
    engine = request.getfixturevalue("pg_engine")
    url = engine.url
    conn = {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username, "schema": url.database}
    monkeypatch.setenv("AIRFLOW_CONN_NPS_DB", json.dumps(conn))
    assert nps_engine().url.database == url.database  # the DAG reaches it through the connection
    return engine


def _by_kind(spool) -> dict[str, Counter]:
    sent: dict[str, Counter] = defaultdict(Counter)
    for message in spool.messages():
        sent[message["X-NPS-Kind"]][message["To"]] += 1
    return sent


def test_a_whole_wave_then_the_same_wave_again(airflow_db, wave_db, smtp, chat, nps_home, monkeypatch):
    from devkit.localrun import run_wave

    engine = wave_db
    contacts_csv = write_population(nps_home / "contacts.csv", accounts=12, seed="e2e")
    audience.load_contacts(engine, "setup", contacts_csv, max_rejected_share=0.1)  # 3 bad rows of 48
    storage.execute(
        engine, "UPDATE contacts SET opted_out_at = :t WHERE email = :e", {"t": storage.utcnow(), "e": OPTED_OUT}
    )

    # Fewer mapped tasks allowed than a mailing has chunks: each send task takes a range of them.
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    with SurveyServer(engine, form_settings()) as survey:
        monkeypatch.setenv("NPS_SURVEY_BASE_URL", survey.base_url)
        people = Respondents(smtp.spool.folder, seed="e2e", answer_rate=0.6, reminder_rate=0.5, unsubscribe_rate=0)
        people.unsubscribers.add(UNSUBSCRIBER)
        people.start()
        conf = {
            **wave_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE),
            "chunk_size": 10,
            "max_rejected_share": 0.1,
        }
        first = run_wave(conf)
        people.stop()
        assert people.errors == []
        assert str(first.state) == "success"

        sent = _by_kind(smtp.spool)
        posts = [json.loads(req.get_data()) for req, _ in chat.log]
        included = set(audience.audience_frame(engine, WAVE_ID).query("included == True")["email"])
        bounced = {e for e in included if e.startswith("bounce")}
        answered = storage.fetch_all(
            engine, "SELECT c.email, r.score FROM responses r JOIN contacts c USING (contact_id)"
        )
        scores = {r["email"]: r["score"] for r in answered}
        reachable = included - bounced - {UNSUBSCRIBER}

        # Wave-wide emails went out in chunks of 10, through as many mapped send tasks as Airflow allows.
        invitation_chunks = storage.fetch_all(engine, "SELECT DISTINCT chunk FROM outbox WHERE kind = 'invitation'")
        assert len(invitation_chunks) == -(-len(included) // 10) > 2
        sends = [ti for ti in first.get_task_instances() if ti.task_id == "send_invitations.send"]
        assert len(sends) == 2 and all(str(ti.state) == "success" for ti in sends)
        # Nobody opted out is emailed; the unsubscriber only had the pre-announcement.
        assert OPTED_OUT not in included and all(OPTED_OUT not in by_to for by_to in sent.values())
        assert [kind for kind, by_to in sent.items() if UNSUBSCRIBER in by_to] == ["preannouncement"]
        # Every reachable contact got each wave-wide email exactly once; bounces got none.
        for kind in ("invitation", "flash_results"):
            assert set(sent[kind]) == reachable and max(sent[kind].values()) == 1, kind
        assert set(sent["preannouncement"]) == reachable | {UNSUBSCRIBER}
        # The flash results show their chart inline, as an image part of the HTML.
        flash = next(m for m in smtp.spool.messages() if m["X-NPS-Kind"] == "flash_results")
        chart = next(part for part in flash.walk() if part.get_content_type() == "image/png")
        html = flash.get_body(preferencelist=("html",)).get_content()
        assert f"cid:{chart['Content-ID'].strip('<>')}" in html and chart.get_content()[:4] == b"\x89PNG"
        # Flash results reach non-respondents too; reminders go only to people who had not answered.
        assert reachable - set(scores) and (reachable - set(scores)) <= set(sent["flash_results"])
        assert sent["reminder"] and all(_answered_after_reminder(engine, e) for e in sent["reminder"] if e in scores)
        # Each respondent got the one follow-up email of their score band.
        expected_band = {e: _band_kind(s) for e, s in scores.items()}
        got_band = {to: kind for kind, by_to in sent.items() if kind.startswith("followup_") for to in by_to}
        assert got_band == expected_band
        # Every detractor has exactly one follow-up owner and one chat alert.
        followups = storage.fetch_all(engine, "SELECT contact_id, owner_type, owner FROM followups")
        detractors = [e for e, s in scores.items() if s <= 6]
        assert len(followups) == len(detractors) == len(posts) > 0
        assert all(f["owner_type"] in ("sales", "cs") and f["owner"] for f in followups)
        assert not any("<b>" in p["text"] for p in posts)
        # Sales got both drops; the final one holds every response.
        drops = {m["X-NPS-Kind"]: m for m in smtp.spool.messages() if m["To"] == "sales-team@vendor.example"}
        assert set(drops) == {"drop_midwave", "drop_postwave"}
        sheet = _xlsx_rows(drops["drop_postwave"])
        assert len(sheet) == len(scores) and sorted(r["Score"] for r in sheet) == sorted(scores.values())
        assert not any(str(r["Comment"]).startswith("=") for r in sheet)
        # BI got one row per audience contact, each answer's score and its churn signal.
        with (reports_dir(WAVE_ID) / "bi" / contact_results.FILE_NAME).open(encoding="utf-8", newline="") as f:
            bi = {r["contact_id"]: r for r in csv.DictReader(f)}
        assert len(bi) == len(included)
        answered_ids = storage.fetch_all(
            engine, "SELECT contact_id, score FROM responses WHERE wave_id = :w", w=WAVE_ID
        )
        assert {r["contact_id"]: int(bi[r["contact_id"]]["score"]) for r in answered_ids} == {
            r["contact_id"]: r["score"] for r in answered_ids
        }
        signals = {r["churn_signal"] for r in bi.values() if r["band"] == "detractor"}
        assert signals == {"high"}  # no follow-up closed yet
        # The retrospective opened action items, and every data check passed and was kept.
        items = storage.fetch_all(
            engine, "SELECT owner, priority, due_date FROM action_items WHERE wave_id = :w", w=WAVE_ID
        )
        assert items and all(i["owner"] and i["priority"] and i["due_date"] for i in items)
        checks = storage.fetch_all(engine, "SELECT step, success FROM check_results WHERE wave_id = :w", w=WAVE_ID)
        assert len(checks) >= 12 and all(c["success"] for c in checks)
        assert "retrospective" in sent and "cs-ops@vendor.example" in sent["retrospective"]
        retro = next(m for m in smtp.spool.messages() if m["X-NPS-Kind"] == "retrospective")
        text = retro.get_body(("plain",)).get_content()
        assert "95% interval" in text and "adjusted Wald" in text
        assert f"Data checks ({len(checks)} of {len(checks)} passed; quarantined contact rows: 3)" in text
        assert "Tier: " in text and "Role: " in text and "Answers by hour of day (America/New_York)" in text
        assert all(c["step"] in text for c in checks)

        # The same wave again: every step re-runs, nothing is sent twice.
        mail_before, posts_before = len(smtp.spool.messages()), len(chat.log)
        second = run_wave(conf)
        assert str(second.state) == "success"
        assert len(smtp.spool.messages()) == mail_before
        assert len(chat.log) == posts_before


def _band_kind(score: int) -> str:
    return {True: "followup_promoter"}.get(score >= 9) or (
        "followup_passive" if score >= 7 else "followup_detractor" if score >= 2 else "followup_critical"
    )


def _answered_after_reminder(engine, email: str) -> bool:
    row = storage.fetch_one(
        engine,
        "SELECT r.answered_at, o.sent_at FROM responses r JOIN contacts c USING (contact_id) "
        "JOIN outbox o ON o.wave_id = r.wave_id AND o.recipient = r.contact_id AND o.kind = 'reminder' "
        "WHERE c.email = :e",
        e=email,
    )
    return storage.as_utc(row["answered_at"]) >= storage.as_utc(row["sent_at"])


def _xlsx_rows(message) -> list[dict]:
    attachment = next(message.iter_attachments())
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()), read_only=True)
    rows = list(book["Responses"].iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_a_wave_whose_audience_check_fails_sends_nothing_and_says_why(airflow_db, smtp, nps_home, capsys):
    """The previous wave of the program reached 40-odd contacts; this extract has a handful:
    a broken extract, so the wave stops before the pre-announcement, with the reason kept."""
    from devkit.localrun import run_wave
    from include.nps import pipeline
    from include.nps.core.connections import nps_engine

    engine = nps_engine()
    full = write_population(nps_home / "full.csv", accounts=12, seed="e2e")
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
    senders = {"sender": "cs@vendor.example", "executive_sender": "ceo@vendor.example", "max_rejected_share": 0.1}
    earlier = pipeline.plan_wave({**wave_conf(full, before, TIMELINE, name="2026-Q3"), **senders})
    pipeline.build_audience(earlier["wave_id"])
    storage.execute(engine, "UPDATE waves SET status = 'done' WHERE wave_id = :w", {"w": earlier["wave_id"]})

    broken = write_population(nps_home / "broken.csv", accounts=3, seed="e2e")
    run = run_wave({**wave_conf(broken, dt.datetime.now(dt.UTC), TIMELINE), "max_rejected_share": 0.5})

    assert str(run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["build_audience"] == "failed" and states["plan_wave"] == "success"
    reason = "the audience is within 50%-200% of the previous wave's"
    assert reason in capsys.readouterr().out  # the task's failure, as its log shows it
    check = storage.fetch_one(engine, "SELECT success, summary FROM check_results WHERE wave_id = :w", w=WAVE_ID)
    assert not check["success"] and reason in check["summary"]
    assert smtp.spool.messages() == []
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM outbox WHERE wave_id = :w", w=WAVE_ID)["n"] == 0
