"""Personal data under control: after two whole waves, a person is exported then erased, and nothing
that names them is left in any text column of any table, the waves' figures are what they were,
and the next wave neither imports nor emails them. Retention removes exactly what is due. The
inventory covers every table of the live schema.

Waves run through the pipeline's step functions (the tasks' own code) against a real SMTP server,
without a scheduler: the cheapest faithful run of a whole wave.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from include.nps import pipeline
from include.nps.closed_loop import followups
from include.nps.core import storage
from include.nps.core.connections import reports_dir
from include.nps.privacy import audit, erasure, export, inventory, retention, subjects
from include.nps.wave import audience, flash_results, responses, stats, waves
from include.nps.web import dashboard_figures
from tests.factories import contact, wave_params, write_csv

SALT = "test-privacy-salt"
TARGET = "NO-4711"
TARGET_EMAIL = "ingrid.solberg@fjord.example"
TARGET_NAME = "Ingrid Østby"
COMMENT = "Ingrid here: the export to our Bergen office keeps failing since March"
NOTE = "Called Ingrid on her mobile, she wants a refund for the Bergen licences"
OTHERS = {
    "C2": ("Yael Cohen", "en", 10, "מוצר מצוין, תודה"),
    "C3": ("佐藤 陽翔", "en", 8, "とても使いやすいです"),
    "C4": ("张伟", "en", 9, None),
    "C5": ("Ada Lovelace", "en", 6, "Slow support lately"),
    "C6": ("Grace Hopper", "en", None, None),
}
RULES = followups.load_rules()


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPS_PRIVACY_SALT", SALT)


def _contacts() -> list[dict[str, str]]:
    rows = [contact(TARGET, "A1", email=TARGET_EMAIL.upper(), name=TARGET_NAME, locale="nb")]
    for cid, (name, locale, _, _) in OTHERS.items():
        rows.append(contact(cid, "A2" if cid in ("C3", "C4") else "A1", name=name, locale=locale))
    return rows


def run_wave(engine: Engine, folder: Path, name: str, start: dt.datetime, whole: bool = True) -> str:
    """One whole wave through the pipeline's steps: audience, invitations, answers, both drops,
    close, routing, band emails, flash results, retrospective; the target's follow-up gets a call.
    Not `whole`: the audience and the invitations only."""
    share = folder / "share"
    params = wave_params(
        write_csv(folder / f"contacts-{name}.csv", _contacts()),
        name=name,
        start=start,
        frequency_days=0,
        drop_channels=["email", "storage"],
        drop_formats=["xlsx", "csv"],
        drop_location=f"file://{share}",
        drop_allow_list=["vendor.example"],
        sales_recipients=["salesops@vendor.example"],
    )
    wave_id = pipeline.plan_wave(params, actor="csops@vendor.example")["wave_id"]
    pipeline.build_audience(wave_id)
    _mailing(wave_id, "invitation")
    if not whole:
        return wave_id
    for cid, (_, _, score, comment) in {TARGET: (None, None, 3, COMMENT), **OTHERS}.items():
        if score is not None:
            answer_row = {"score": score, "comment": comment, "pillar_answers": {"support": 3}}
            responses.record_response(engine, wave_id, cid, answer_row)
    pipeline.share_midwave_drop(wave_id)
    pipeline.close_wave(wave_id)
    pipeline.share_postwave_drop(wave_id)
    # sales take the person's follow-up, in the CSV they sent back (CS ops saved it with the wave)
    returned = reports_dir(wave_id) / "returned"
    returned.mkdir()
    (returned / "sales.csv").write_text(f"Contact ID;Sales decision (sales / cs)\r\n{TARGET};sales\r\n")
    pipeline.route_detractors(wave_id)
    pipeline.send_followups(wave_id)
    followups.log_attempt(engine, wave_id, TARGET, "ana@vendor.example", "tried", storage.utcnow(), RULES, note=NOTE)
    _mailing(wave_id, "flash_results")
    pipeline.run_retrospective(wave_id)
    return wave_id


def _mailing(wave_id: str, kind: str) -> None:
    chunks = pipeline.prepare_mailing(wave_id, kind)
    pipeline.send_mailing_chunks(wave_id, kind, chunks)


def two_waves(engine: Engine, folder: Path) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    return [run_wave(engine, folder, f"W{i}", now - dt.timedelta(days=2 - i, hours=1)) for i in (1, 2)]


def figures(engine: Engine, wave_ids: list[str]) -> dict[str, Any]:
    """What the dashboard, the flash results (with the previous wave's comparison) and the
    retrospective's per-account counts show of each wave."""
    found: dict[str, Any] = {"overview": dashboard_figures.overview(engine)}
    for wave_id in wave_ids:
        wave = waves.load_params(engine, wave_id)
        found[wave_id] = {
            "flash": flash_results.figures(engine, wave),
            "accounts": storage.records(stats.per_account(engine, wave_id)),
            "counts": audience.audience_counts(engine, wave_id),
        }
    return json.loads(json.dumps(found, default=str, sort_keys=True))


def text_columns(engine: Engine) -> dict[str, list[str]]:
    """Every text column of every table of the live schema."""
    found = {}
    schema = inspect(engine)
    for table in schema.get_table_names():
        columns = [c["name"] for c in schema.get_columns(table) if _is_text(c["type"])]
        if columns:
            found[table] = columns
    return found


def _is_text(kind: Any) -> bool:
    try:
        return kind.python_type is str
    except NotImplementedError:
        return False


def traces(engine: Engine, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) wherever a needle is found, case aside, in any text column."""
    found = []
    with engine.connect() as conn:
        for table, columns in text_columns(engine).items():
            for column in columns:
                for needle in needles:
                    # LOWER() folds only ASCII on SQLite, all of Unicode on PostgreSQL
                    sql = f"SELECT COUNT(*) FROM {table} WHERE LOWER({column}) LIKE :n OR LOWER({column}) LIKE :a"
                    ascii_lower = "".join(c.lower() if c.isascii() else c for c in needle)
                    if conn.execute(text(sql), {"n": f"%{needle.lower()}%", "a": f"%{ascii_lower}%"}).scalar_one():
                        found.append((table, column, needle))
    return found


def all_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {
            table: [subjects.plain_row(dict(r._mapping)) for r in conn.execute(text(f"SELECT * FROM {table}"))]
            for table in inspect(engine).get_table_names()
        }


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_erasure_after_two_waves_leaves_no_trace_and_keeps_every_figure(
    backend, request, tmp_path, smtp, nps_home, monkeypatch
):
    engine = request.getfixturevalue("engine" if backend == "sqlite" else "pg_engine")
    monkeypatch.setenv("NPS_DB_URL", engine.url.render_as_string(hide_password=False))
    wave_ids = two_waves(engine, tmp_path)
    needles = [TARGET_EMAIL, TARGET_NAME, COMMENT, NOTE]
    assert {needle for _, _, needle in traces(engine, needles)} == set(needles)  # the search finds them
    before, rows_before = figures(engine, wave_ids), all_rows(engine)
    trail = {(e["action"], e["actor"], e["wave_id"]) for e in audit.events(engine)}
    assert {("wave_triggered", "csops@vendor.example", w) for w in wave_ids} <= trail
    assert {("drop_sent", "airflow", w) for w in wave_ids} <= trail
    assert {("decisions_applied", "airflow", w) for w in wave_ids} <= trail

    exported = export.export(engine, "dpo@vendor.example", email=TARGET_EMAIL, out=tmp_path / "export")
    content = json.loads(Path(exported["json"]).read_text(encoding="utf-8"))
    assert COMMENT in Path(exported["html"]).read_text(encoding="utf-8")
    erased = erasure.erase(engine, "dpo@vendor.example", email=TARGET_EMAIL.title(), reason="DSR-17")

    assert traces(engine, [*needles, TARGET]) == []  # nor their contact id: kept rows are under a pseudonym
    assert figures(engine, wave_ids) == before
    # the export holds every row the erasure removed or changed
    rows_after = all_rows(engine)
    for table, rows in rows_before.items():
        if table in ("audit_events", "erased_subjects"):
            continue
        gone = [row for row in rows if row not in rows_after[table]]
        exported_rows = content["tables"].get(table, [])
        for row in gone:
            assert any(_same(row, e) for e in exported_rows), (table, row)
    assert {"responses", "followup_events", "outbox", "wave_audience", "contacts", "sales_decisions"} <= set(
        erased.counts
    )
    # the drops and reports that left with the person in them, with where they went
    kinds = {(f["wave_id"], f["kind"]) for f in erased.files}
    expected = ("drop_midwave", "drop_postwave", "returned_decisions", "retrospective")
    assert {(w, k) for w in wave_ids for k in expected} <= kinds
    sent_to = {
        Path(f["path"]).name.split("-postwave-")[1]: f["sent_to"] for f in erased.files if f["kind"] == "drop_postwave"
    }
    assert sent_to == {
        "all-accounts.csv": ["salesops@vendor.example"],
        "all-accounts.xlsx": ["salesops@vendor.example"],
        "seller-vendor-example.csv": ["seller@vendor.example"],  # the salesperson of the person's account
        "seller-vendor-example.xlsx": ["seller@vendor.example"],
    }
    # the audit trail says who and how much, and nothing personal
    trail = audit.events(engine, action="erasure")
    assert trail[0]["actor"] == "dpo@vendor.example" and trail[0]["details"]["rows_total"] > 0
    # again: nothing more to do
    assert erasure.erase(engine, "dpo@vendor.example", email=TARGET_EMAIL).counts == {}

    # the next wave neither imports nor emails the person
    third = run_wave(engine, tmp_path, "W3", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), whole=False)
    mailed = {m["To"].lower() for m in smtp.spool.messages()}
    invited = storage.fetch_all(engine, "SELECT contact_id FROM wave_audience WHERE wave_id = :w", w=third)
    assert TARGET not in {row["contact_id"] for row in invited} and len(invited) == len(OTHERS)
    assert traces(engine, needles) == []
    assert any(TARGET_EMAIL in to for to in mailed)  # the first two waves did email them
    assert not storage.fetch_all(
        engine, "SELECT 1 FROM outbox WHERE wave_id = :w AND LOWER(address) = :a", w=third, a=TARGET_EMAIL
    )
    quarantined = storage.fetch_all(engine, "SELECT field, value FROM quarantine WHERE wave_id = :w", w=third)
    assert quarantined == [{"field": "erased", "value": ""}]


def _same(row: dict[str, Any], exported: dict[str, Any]) -> bool:
    """A database row is the exported one (a shared free-text table exports its key only)."""
    return all(exported.get(k) == v for k, v in row.items() if k in exported and k != "mentioned_in")


def test_every_table_with_text_is_in_the_inventory_or_declared_free_of_personal_data(engine):
    listed = inventory.listed_tables()
    for table, columns in text_columns(engine).items():
        assert table in listed or table in inventory.NO_PERSONAL_DATA, (
            f"table {table} has text columns {columns}: add it to include/nps/privacy/inventory.py "
            "(how a person's rows are found and erased) or to NO_PERSONAL_DATA with the reason"
        )
    schema = inspect(engine)
    for table, columns in inventory.personal_columns().items():
        assert columns <= {c["name"] for c in schema.get_columns(table)}, table


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_retention_removes_exactly_what_is_due(backend, request, tmp_path, nps_home):
    engine = request.getfixturevalue("engine" if backend == "sqlite" else "pg_engine")
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    settings = {"retention_comment_days": 30, "retention_response_days": 365, "retention_quarantine_days": 60}
    for name, open_at in (("old", now - dt.timedelta(days=400)), ("recent", now - dt.timedelta(days=40))):
        path = write_csv(
            tmp_path / f"{name}.csv",
            [contact("R1", name=f"Rita {name}"), contact("R2"), {**contact("bad"), "email": "x"}],
        )
        params = wave_params(path, name=name, start=open_at, **settings)
        wave = waves.WaveParams.from_params(params, planning=False)
        waves.plan_wave(engine, wave)
        storage.execute(
            engine, "UPDATE waves SET created_at = :t WHERE wave_id = :w", {"t": open_at, "w": wave.wave_id}
        )
        loaded = audience.load_contacts(engine, wave.wave_id, path, max_rejected_share=0.5)
        audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 0, wave.open_at)
        for cid, score in (("R1", 9), ("R2", 2)):
            storage.execute(
                engine,
                "INSERT INTO responses (wave_id, contact_id, score, comment, pillar_answers, answered_at, updated_at) "
                "VALUES (:w, :c, :s, :m, '{}', :t, :t)",
                {
                    "w": wave.wave_id,
                    "c": cid,
                    "s": score,
                    "m": f"comment of {cid} in {name}",
                    "t": open_at + dt.timedelta(days=1),
                },
            )
        drop = nps_home / "reports" / wave.wave_id / "postwave" / "drop.xlsx"
        drop.parent.mkdir(parents=True, exist_ok=True)
        drop.write_bytes(b"rows")
        written = (open_at + dt.timedelta(days=2)).timestamp()
        os.utime(drop, (written, written))
    old_id, recent_id = "test-old", "test-recent"

    dry = retention.apply(engine, now=now, dry_run=True)
    done = retention.apply(engine, now=now, actor="dpo")
    assert dry["programs"] == done["programs"]
    assert done["programs"]["test"] == {
        "responses.comment_emptied": 4,  # every comment older than 30 days: both waves'
        "responses_deleted": 2,  # the old wave's two (answered 399 days ago, > 365)
        "quarantine_deleted": 1,  # the old wave's bad row; the recent wave's is 40 days old (< 60)
        "files_deleted": 1,  # the old wave's drop file; the recent one was written 38 days ago
    }
    kept = storage.fetch_all(
        engine, "SELECT wave_id, contact_id, score, comment FROM responses ORDER BY wave_id, contact_id"
    )
    assert kept == [
        {"wave_id": recent_id, "contact_id": "R1", "score": 9, "comment": None},
        {"wave_id": recent_id, "contact_id": "R2", "score": 2, "comment": None},
    ]
    assert [r["wave_id"] for r in storage.fetch_all(engine, "SELECT wave_id FROM quarantine")] == [recent_id]
    assert not (nps_home / "reports" / old_id / "postwave" / "drop.xlsx").exists()
    assert (nps_home / "reports" / recent_id / "postwave" / "drop.xlsx").exists()
    assert audit.events(engine, action="retention")[0]["details"]["counts"] == done["programs"]
    assert retention.apply(engine, now=now)["programs"] == {"test": {}}
