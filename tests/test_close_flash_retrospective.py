"""The close, the flash results and the retrospective read each table once and count in the
database, with the same verdicts and figures as before: the close's anti-join sets aside what the
value set of every invited id did (and a re-run writes nothing), the invited contacts counted per
account and role give the per-contact figures, the flash content is computed once and every send
task reads it (whether each reader answered looked up once per ledger chunk), the quotes are those
of every promoter comment; and at 50,000 responses the retrospective email stays under 1 MB while
the report file holds every comment, account and item. On SQLite and PostgreSQL where the SQL differs."""

from __future__ import annotations

import datetime as dt
import email
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from benchmarks import scale_close
from include.nps.core import business_days, storage
from include.nps.delivery import outbox
from include.nps.wave import (
    audience,
    bulk_reads,
    closing,
    comment_themes,
    data_checks,
    flash_content,
    flash_results,
    responses,
    retrospective_report,
    stats,
    waves,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_engine(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture(scope="module")
def reader() -> tuple[comment_themes.Themes, comment_themes.CommentClassifier]:
    themes = comment_themes.load_themes()
    return themes, comment_themes.KeywordClassifier(themes)


def program(engine, size: int = 400) -> waves.WaveParams:
    """Two waves of `size` responses (the benchmark's generator): this one past its close."""
    ids = scale_close.populate(engine, size)
    return waves.load_params(engine, ids["current"])


def _old_verdict(engine, wave: waves.WaveParams) -> dict[str, list[str]]:
    """What the responses check set aside before: the frame of every response, the ids of every
    invitation sent as the value set."""
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions], True)
    frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="mixed")
    ledger = storage.fetch_all(engine, storage.query("ledger_check"), wave_id=wave.wave_id, kind="invitation")
    invited = [r["recipient"] for r in ledger if r["status"] == "sent"]
    suite = data_checks.responses_suite(wave.pillar_questions, invited, (wave.open_at, wave.close_at), wave.thresholds)
    _, failures = data_checks.validate(frame, "responses", suite, "contact_id")
    return data_checks.rejectable(failures, len(frame), wave.thresholds.max_rejected_share)


def test_the_close_sets_aside_what_the_invited_ids_did_and_a_re_run_writes_nothing(any_engine):
    wave = program(any_engine)
    answering = [r["contact_id"] for r in storage.fetch_all(
        any_engine, "SELECT contact_id FROM responses WHERE wave_id = :w ORDER BY contact_id LIMIT 3", w=wave.wave_id
    )]  # fmt: skip
    storage.execute(
        any_engine,
        "UPDATE outbox SET status = 'failed' WHERE wave_id = :w AND kind = 'invitation' AND recipient = :c",
        {"w": wave.wave_id, "c": answering[0]},
    )
    out_of_scale = "UPDATE responses SET pillar_answers = '{\"support\": 9}' WHERE wave_id = :w AND contact_id = :c"
    storage.execute(any_engine, out_of_scale, {"w": wave.wave_id, "c": answering[1]})
    early = "UPDATE responses SET answered_at = :t WHERE wave_id = :w AND contact_id = :c"
    storage.execute(any_engine, early, {"w": wave.wave_id, "c": answering[2], "t": wave.open_at - dt.timedelta(days=1)})
    expected = _old_verdict(any_engine, wave)
    assert answering[0] in expected and answering[1] in expected and answering[2] in expected

    summary = closing.close(any_engine, wave)
    marked = storage.fetch_all(
        any_engine,
        "SELECT contact_id, quarantine_reason FROM responses WHERE wave_id = :w AND quarantine_reason IS NOT NULL",
        w=wave.wave_id,
    )
    assert {r["contact_id"]: r["quarantine_reason"] for r in marked} == {c: "; ".join(r) for c, r in expected.items()}
    assert summary == {"responses": 400 - len(expected), "set_aside": len(expected)}
    assert expected[answering[0]] == ["the respondent was invited to this wave"]
    kept = storage.fetch_one(any_engine, "SELECT success, summary FROM check_results WHERE step = 'responses'")
    assert kept["success"] and f"{len(expected)} row(s) set aside: " in kept["summary"]
    assert "the respondent was invited to this wave: 2 row(s) fail" in kept["summary"]  # the failed one, the stranger

    again = closing.checked_frame(any_engine, wave)
    assert closing.set_aside(any_engine, wave.wave_id, again, expected) == 0  # the same verdict: nothing written
    assert closing.close(any_engine, wave) == summary
    storage.execute(any_engine, "UPDATE outbox SET status = 'sent' WHERE recipient = :c", {"c": answering[0]})
    assert closing.close(any_engine, wave)["set_aside"] == len(expected) - 1  # the re-run clears its mark


def test_the_invited_counted_per_account_and_role_give_the_per_contact_figures(any_engine):
    wave = program(any_engine)
    closing.close(any_engine, wave)
    counted = stats.invited_counts(any_engine, wave.wave_id)
    per_contact = stats.invited_contacts(any_engine, wave.wave_id)
    for segment in stats.SEGMENTS:
        expected = stats.segment_rates(per_contact, segment).to_dict("records")
        assert stats.segment_rates(counted, segment).to_dict("records") == expected
    assert stats.account_coverage(counted) == stats.account_coverage(per_contact)
    assert stats.account_level_nps(counted) == stats.account_level_nps(per_contact)
    zone = business_days.country_timezone("JP")
    review = stats.collection_review(counted, zone, stats.answer_minutes(any_engine, wave.wave_id))
    assert review == stats.collection_review(per_contact, zone)
    assert review["reminded"] and review["bounce_rate"] and review["opt_out_rate"] is not None
    rates = stats.account_rates(counted)
    old = stats.per_account(any_engine, wave.wave_id).sort_values("account_id", ignore_index=True)
    assert storage.records(rates) == storage.records(old[rates.columns])


@pytest.mark.parametrize("batch", [1, 7, 10_000])  # a row at a time, batches and a remainder, one batch
def test_big_reads_give_what_read_frame_gives(any_engine, monkeypatch, batch):
    monkeypatch.setattr(bulk_reads, "BATCH", batch)
    wave = program(any_engine, 50)
    for name in ("wave_answer_counts", "responses_check", "retrospective_accounts", "audience_names"):
        fast = bulk_reads.frame(any_engine, storage.query(name), wave_id=wave.wave_id)
        assert fast.equals(storage.read_frame(any_engine, storage.query(name), wave_id=wave.wave_id)), name


def test_the_flash_content_is_computed_once_and_each_send_task_reads_it(any_engine, reader):
    wave = program(any_engine, 200)
    closing.close(any_engine, wave)
    flash_results.check_figures(any_engine, wave, reader)
    shared = flash_results.content(any_engine, wave, *reader)
    assert flash_results._kept(any_engine, wave.wave_id) == shared
    counted = storage.fetch_one(
        any_engine,
        "SELECT COUNT(*) AS n FROM responses WHERE wave_id = :w AND quarantine_reason IS NULL",
        w=wave.wave_id,
    )
    assert shared["figures"]["current"]["responses"] == counted["n"] < 200  # the stranger set aside
    assert shared["figures"]["previous"]["responses"] == 200 and shared["focus"]
    assert [name for name, _ in shared["trend"]] == ["previous", "current"]
    storage.execute(any_engine, "UPDATE responses SET score = 0 WHERE wave_id = :w", {"w": wave.wave_id})
    context = flash_results.reader_context(any_engine, wave, *reader)  # reads the kept content, not the answers

    audience_rows = storage.fetch_all(
        any_engine, "SELECT contact_id, locale FROM wave_audience WHERE wave_id = :w", w=wave.wave_id
    )
    outbox.enqueue(any_engine, wave.wave_id, "flash_results", [(r["contact_id"], "x") for r in audience_rows[:-1]],
                   chunk_size=7)  # fmt: skip  # the last contact has no ledger row: looked up on its own
    answered = {r["contact_id"] for r in storage.fetch_all(
        any_engine, "SELECT contact_id FROM responses WHERE wave_id = :w AND quarantine_reason IS NULL", w=wave.wave_id
    )}  # fmt: skip
    for row in audience_rows:
        shown = context(row)
        assert shown["responded"] == (row["contact_id"] in answered), row
        assert shown["current"] == shared["figures"]["current"]
    assert context({"contact_id": "nobody", "responded": True})["responded"]  # given with the contact: taken


def test_the_quotes_are_those_of_every_promoter_comment(engine, monkeypatch):
    wave = program(engine, 300)
    promoters = storage.fetch_all(
        engine,
        "SELECT r.contact_id, a.name FROM responses r JOIN wave_audience a USING (wave_id, contact_id) "
        "WHERE r.wave_id = :w AND r.score >= 9 ORDER BY r.contact_id",
        w=wave.wave_id,
    )
    storage.execute(engine, "UPDATE wave_audience SET name = 'İlker Kaya' WHERE contact_id = :c",
                    {"c": promoters[5]["contact_id"]})  # fmt: skip
    written = {  # names in other cases, a Turkish dotted I, short comments that never qualify
        promoters[0]["contact_id"]: f"{promoters[1]['name'].upper()} set us up in a day, thanks a lot",
        promoters[1]["contact_id"]: f"ask for {promoters[2]['name'].lower()}: she knows everything here",
        promoters[2]["contact_id"]: "ilker kaya from support was great, thank you so much",
        **{p["contact_id"]: "ok" for p in promoters[3:40]},
    }
    storage.execute(
        engine,
        "UPDATE responses SET comment = :t, score = 10, answered_at = :a WHERE wave_id = :w AND contact_id = :c",
        [{"t": t, "c": c, "w": wave.wave_id, "a": wave.open_at + dt.timedelta(hours=1)} for c, t in written.items()],
    )
    every = flash_content.quotes_by_locale(
        responses.responses_frame(engine, wave.wave_id, []),
        flash_content.names_in(audience.audience_frame(engine, wave.wave_id)),
    )
    assert flash_results.quotes(engine, wave) == every
    monkeypatch.setattr(flash_results, "QUOTE_CANDIDATES", 1)  # more candidates read until enough qualify
    assert flash_results.quotes(engine, wave) == every
    assert any("[…] set us up" in quote for quotes in every.values() for quote in quotes)


NAME_CHARACTERS = "aAİıiIKkKſsSßẞΣσς []…-"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.text(NAME_CHARACTERS, min_size=0, max_size=6), max_size=12),
    st.lists(st.text(NAME_CHARACTERS, max_size=30), max_size=4),
)
def test_every_name_the_anonymiser_would_find_is_kept(names, texts):
    kept = set(flash_results._names_within(names, pd.Series(texts, dtype=object)))
    for name in names:
        stripped = name.strip()
        if len(stripped) > 1 and any(re.search(re.escape(stripped), text, re.IGNORECASE) for text in texts):
            assert stripped in kept, (stripped, texts)


def test_at_fifty_thousand_responses_the_email_stays_small_and_the_file_holds_everything(
    engine, smtp, reader, nps_home
):
    wave = program(engine, 50_000)
    closing.close(engine, wave)
    found = retrospective_report.review(engine, wave, *reader)
    summary = retrospective_report.publish(engine, wave, found, reader[0], None)
    (message_file,) = smtp.spool.folder.glob("*.eml")
    assert message_file.stat().st_size < 1_000_000
    message = email.message_from_bytes(message_file.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    assert not summary["report_attached"] and "too large to attach: " + summary["report"] in text
    assert "more in the full report" in text and "Data checks (2 of 2 passed" in text

    report = (nps_home / "reports" / wave.wave_id / "retrospective.html").read_text(encoding="utf-8")
    frame = found.parts.frame
    listed = re.findall(r"<li>\((\d+)\) ", report)
    assert len(listed) == len(frame) > 20_000
    accounts = re.findall(r"^<tr><td>Account \d+ Ltd</td>", report, re.MULTILINE)
    assert (
        len(accounts)
        == len(found.accounts)
        == storage.fetch_one(
            engine, "SELECT COUNT(DISTINCT account_id) AS n FROM wave_audience WHERE wave_id = :w", w=wave.wave_id
        )["n"]
    )
    assert all(str(escape(item["title"])) in report for item in storage.records(found.stored))
    assert "more in the full report" not in report
