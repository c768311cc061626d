"""The audience at scale: a contacts file read in chunks loads exactly as if read whole (chunk of one
row, a file of exactly N chunks, N chunks and one row, a duplicate whose twin is in an earlier chunk,
an address that moves to a contact of a later chunk), on SQLite and PostgreSQL; the column checks
find exactly the problems the row-by-row rules find; the snapshot's frequency rule, one statement,
leaves out exactly whom a plain computation over the outbox leaves out."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from include.nps.core import clean_text, storage
from include.nps.wave import audience, contact_rules
from tests.factories import contact, write_csv
from tests.test_bad_inputs import contacts_files

COLUMNS = ("contact_id", "account_id", "email", "name", "role", "locale", "timezone")
ROWS_SEEN = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def _stored(engine) -> dict:
    return {
        "contacts": storage.fetch_all(engine, f"SELECT {', '.join(COLUMNS)} FROM contacts ORDER BY contact_id"),
        "accounts": storage.fetch_all(
            engine, "SELECT account_id, name, country, tier, sales_owner, csm FROM accounts ORDER BY account_id"
        ),
        "quarantine": storage.fetch_all(
            engine,
            "SELECT wave_id, row_number, field, value, reason FROM quarantine ORDER BY wave_id, row_number, field",
        ),
    }


def _load(engine, path: Path, wave_id: str, chunk_rows: int, rejected: Path) -> tuple:
    result = audience.load_contacts(engine, wave_id, path, 1.0, rejected, chunk_rows=chunk_rows)
    assert result.rows == result.loaded + result.quarantined
    return result, rejected.read_bytes() if rejected.exists() else None


def _outcome(result: audience.LoadResult) -> tuple:
    return result.contact_ids, result.problems, result.rows


def _fresh(db, tmp_path: Path):
    """Another empty NPS DB of the same kind as `db`."""
    if storage.is_sqlite(db):
        engine = storage.make_engine(f"sqlite:///{tmp_path}/whole-{next(ROWS_SEEN)}.db")
    else:
        name = f"nps_whole_{next(ROWS_SEEN)}_{id(tmp_path)}"
        admin = create_engine(db.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        engine = storage.make_engine(db.url.set(database=name).render_as_string(hide_password=False))
    storage.migrate(engine)
    return engine


# --- chunk boundaries -----------------------------------------------------------------------------------

# Rows 2-8. Chunks of 2: [2,3] [4,5] [6,7] [8]; the twins of rows 4, 5 and 7 are in earlier chunks.
FIRST_FILE = [
    contact("C1", email="ann@a1.example"),
    contact("C2", email="bob@a1.example"),
    contact("C3", email="ANN@A1.example"),  # twin of row 2, in an earlier chunk
    contact("C1", email="cy@a1.example"),  # contact id of row 2 again
    contact("C5", email="not an address"),
    contact("C6", email="\uff42ob@a1.example"),  # full-width b: the address of row 3
    contact("C7", email="dee@a1.example", name=""),
]
# The second file moves bob@ (C2's in the NPS DB) to C8 in its first chunk; C2 itself, with a new
# address, comes in a later chunk. C9 wants ann@, which C1 keeps (C1 is not in this file).
SECOND_FILE = [
    contact("C8", email="bob@a1.example"),
    contact("C9", email="ann@a1.example"),
    contact("C10", email="eve@a1.example"),
    contact("C2", email="bob2@a1.example"),
]


@pytest.mark.parametrize(
    ("rows", "chunk_rows"),
    [(7, 1), (6, 2), (7, 2), (7, 3), (6, 3)],
    ids=["chunk-of-one", "exactly-3-chunks", "3-chunks-and-a-row", "2-chunks-and-a-row", "exactly-2-chunks"],
)
def test_a_file_read_in_chunks_loads_as_if_read_whole(db, tmp_path, rows, chunk_rows):
    first = write_csv(tmp_path / "first.csv", FIRST_FILE[:rows])
    second = write_csv(tmp_path / "second.csv", SECOND_FILE)
    whole_db = _fresh(db, tmp_path)
    files = (("w1", first), ("w2", second))
    whole = [_load(whole_db, path, wave, 10_000, tmp_path / f"whole-{wave}.csv") for wave, path in files]
    chunked = [_load(db, path, wave, chunk_rows, tmp_path / f"chunked-{wave}.csv") for wave, path in files]

    assert [_outcome(r) for r, _ in chunked] == [_outcome(r) for r, _ in whole]
    assert [csv_bytes for _, csv_bytes in chunked] == [csv_bytes for _, csv_bytes in whole]
    assert _stored(db) == _stored(whole_db)
    whole_db.dispose()

    (one, _), (two, _) = chunked
    reasons = {(p["row_number"], p["field"]): p["reason"] for p in one.problems}
    assert reasons[(4, "email")] == "duplicate email in the file (same address as row 2)"
    assert reasons[(5, "contact_id")] == "duplicate contact_id in the file (first in row 2)"
    assert reasons[(6, "email")] == "not a valid email address"
    if rows == 7:
        assert reasons[(7, "email")] == "duplicate email in the file (same address as row 3)"
    assert two.contact_ids == ["C8", "C10", "C2"]  # bob@ moved to C8, C2 took its new address
    assert [(p["row_number"], p["field"]) for p in two.problems] == [(3, "email")]  # C1 keeps ann@
    held = {c["contact_id"]: c["email"] for c in _stored(db)["contacts"]}
    assert (held["C8"], held["C2"], held["C1"]) == ("bob@a1.example", "bob2@a1.example", "ann@a1.example")


def test_the_rows_a_quote_swallows_across_chunks_are_read_as_rows(db, tmp_path):
    lines = [
        "contact_id,email,name,account_id,account_name",
        "C1,a@a1.example,Ann,A1,Acme",
        'C2,b@a1.example,"Bob,A1,Acme',  # the quote never closes: it would take in every line after it
        "C3,c@a1.example,Cy,A1,Acme",
        "",
        "C4,d@a1.example,Dee,A1,Acme,surplus",
        "C5,e@a1.example,Eve,A1,Acme",
    ]
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n")
    result, _ = _load(db, path, "w", 1, tmp_path / "r.csv")
    assert (result.rows, result.contact_ids) == (5, ["C1", "C3", "C5"])
    assert [(p["row_number"], p["field"]) for p in result.problems] == [(3, "name"), (6, "(row)")]
    assert "take in the next 4 line(s), to the end of the file" in result.problems[0]["reason"]


def test_too_many_bad_rows_in_later_chunks_still_load_nothing(db, tmp_path):
    rows = [contact(f"C{n}") for n in range(1, 9)] + [contact(f"C{n}", email="broken") for n in range(9, 11)]
    path = write_csv(tmp_path / "c.csv", rows)
    with pytest.raises(audience.AudienceError, match="2 of 10 rows rejected"):
        audience.load_contacts(db, "w", path, chunk_rows=3)
    assert storage.fetch_one(db, "SELECT COUNT(*) AS n FROM contacts")["n"] == 0
    assert storage.fetch_one(db, "SELECT COUNT(*) AS n FROM quarantine")["n"] == 2
    assert audience.load_contacts(db, "w", path, max_rejected_share=0.2, chunk_rows=3).loaded == 8


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(files=st.lists(contacts_files(), min_size=1, max_size=2), chunk_rows=st.integers(1, 4))
def test_any_file_in_any_chunks_loads_as_if_read_whole(engine, tmp_path, files, chunk_rows):
    """Any file (any character in any column, any encoding and delimiter, a quote left open), one
    after another into the same NPS DB, read in chunks of 1 to 4 rows or whole: the same."""
    whole_db = _fresh(engine, tmp_path)
    for table in ("quarantine", "contacts", "accounts"):
        storage.execute(engine, f"DELETE FROM {table}")
    for number, (raw, *_) in enumerate(files):
        path = tmp_path / f"c{number}.csv"
        path.write_bytes(raw)
        chunked, chunked_csv = _load(engine, path, f"w{number}", chunk_rows, tmp_path / f"chunked{number}.csv")
        whole, whole_csv = _load(whole_db, path, f"w{number}", 10_000, tmp_path / f"whole{number}.csv")
        assert _outcome(chunked) == _outcome(whole)
        assert chunked_csv == whole_csv
    assert _stored(engine) == _stored(whole_db)
    whole_db.dispose()


# --- the column checks are the row-by-row rules ----------------------------------------------------------

CELLS = {
    "contact_id": ("C1", "C2", "c1", "C\x003", "C\u202e4", "C" * 65, ""),
    "email": (
        "a@x.example", "A@X.EXAMPLE", "b@x.example", " a@x.example", "\uff41@x.example", "a\u200b@x.example",
        "\u0430@x.example", "a@x", "a@" + "x" * 64 + ".example", "a@x.example.", "a..b@x.example", "a@x.e1",
        "a@xn--p1ai.example", "not an address", "a@x.example\n", "", "K@x.example", "a@-x.example",
    ),
    "name": ("Ann", "", "\x00", "\u2028", "Ann\tSmith", "x" * 201, "山田 愛子", "\u202eevil"),
    "account_id": ("A1", "A\n2", "", "A" * 65),
    "account_name": ("Acme", "", "Acme\r\nCorp", "\x85"),
    "sales_owner": ("", "s@v.example", "S@V.EXAMPLE", "s at v", "s\x00@v.example", "\uff53@v.example"),
    "vip": ("", "yes", "No", "maybe", "TRUE"),
    "account_country": ("", "us", "UK", "USA", "\x00", "ß"),
    "timezone": ("", "Asia/Tokyo", "asia/tokyo", "Tokyo", "Mars/Base"),
    "locale": ("", "ja-JP", "xx"),
}  # fmt: skip


@st.composite
def frames(draw) -> pd.DataFrame:
    """A chunk of rows as the reader gives them: typical awkward cells, or any text at all."""
    columns = (*contact_rules.REQUIRED_COLUMNS, *contact_rules.OPTIONAL_COLUMNS)
    any_text = st.text(max_size=6)
    cell = {c: st.one_of(st.sampled_from(CELLS.get(c, ("", "x", "y"))), any_text) for c in columns}
    rows = draw(st.lists(st.fixed_dictionaries(cell), min_size=0, max_size=8))
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    frame.insert(0, "row_number", list(range(2, len(rows) + 2)))
    return frame


def _row_by_row(frame: pd.DataFrame) -> dict:
    """The rules as the loader applied them before: each row on its own, then the duplicates."""
    cleaned = frame.assign(**{c: frame[c].map(clean_text.clean_line) for c in contact_rules.FREE_TEXT_COLUMNS})
    values = cleaned.set_index("row_number")
    problems: dict = {}
    for _, row in cleaned.iterrows():
        for field, reason in contact_rules.row_problems(row):
            problems.setdefault((row["row_number"], field), (values.at[row["row_number"], field][:200], reason))
    for number, field, reason in contact_rules.duplicate_problems(cleaned):
        problems.setdefault((number, field), (values.at[number, field][:200], reason))
    return problems


@settings(max_examples=400, deadline=None, derandomize=True)
@given(frame=frames())
def test_the_column_checks_find_exactly_what_the_row_by_row_rules_find(frame):
    cleaned, problems = contact_rules.check_rows(frame)
    numbers = cleaned["row_number"].tolist()
    keys_of = {"contact_id": cleaned["contact_id"].tolist(), "email": contact_rules.email_keys(cleaned["email"])}
    for field, keys in keys_of.items():
        first: dict[str, int] = {}
        for number, key in zip(numbers, keys, strict=True):
            if key and first.setdefault(key, number) != number:
                value = cleaned.set_index("row_number").at[number, field][:200]
                reason = contact_rules.duplicate_reason(field, first[key])
                problems.setdefault((number, field), {"value": value, "reason": reason})
    assert {key: (p["value"], p["reason"]) for key, p in problems.items()} == _row_by_row(frame)
    expected_clean = frame[list(contact_rules.FREE_TEXT_COLUMNS)].map(clean_text.clean_line)
    assert cleaned[list(contact_rules.FREE_TEXT_COLUMNS)].values.tolist() == expected_clean.values.tolist()


@settings(max_examples=500, deadline=None, derandomize=True)
@given(value=st.one_of(st.from_regex(contact_rules.PLAIN_ADDRESS, fullmatch=True), st.text(max_size=30)))
def test_an_address_the_quick_pattern_takes_passes_every_rule(value):
    if contact_rules.PLAIN_ADDRESS.fullmatch(value):
        assert contact_rules.email_problem(contact_rules.clean_email(value)) is None
        assert contact_rules.email_key(value) == value.lower()


# --- the frequency rule ----------------------------------------------------------------------------------

OPEN = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)


@st.composite
def histories(draw):
    """Contacts (some opted out or bounced), earlier waves at random days, their outbox rows."""
    contacts = draw(st.integers(1, 12))
    waves = draw(st.lists(st.integers(-200, 10), min_size=0, max_size=5))  # days from the wave's open
    kinds = st.sampled_from(["invitation", "invitation", "reminder"])
    statuses = st.sampled_from(["sent", "sent", "pending", "failed", "in_doubt"])
    outbox = draw(
        st.lists(
            st.tuples(st.integers(0, len(waves)), st.integers(0, contacts - 1), kinds, statuses),
            unique_by=lambda row: row[:3],
            max_size=30,
        )
    )  # wave index len(waves): the wave being snapshot itself (a re-run after it sent)
    states = st.sampled_from([None, "opted_out", "bounced", "both"])
    consent = draw(st.lists(states, min_size=contacts, max_size=contacts))
    chosen = draw(st.lists(st.integers(0, contacts + 1), max_size=contacts + 4))  # ids given (some unknown, repeated)
    frequency = draw(st.sampled_from([0, 30, 90, 365]))
    return waves, outbox, consent, chosen, frequency


def _history(engine, waves: list[int], outbox: list, consent: list) -> None:
    now = storage.utcnow()
    ids = [f"W{n}" for n in range(len(waves))] + ["NOW"]
    opens = [OPEN + dt.timedelta(days=day, hours=n) for n, day in enumerate(waves)] + [OPEN]
    with engine.begin() as conn:
        storage.copy_rows(
            conn,
            "waves",
            ("wave_id", "program", "name", "country", "status", "params", "open_at", "close_at", "created_at"),
            [(w, "p", w, "US", "closed", "{}", at, at, now) for w, at in zip(ids, opens, strict=True)],
        )
        storage.copy_rows(conn, "accounts", ("account_id", "name", "updated_at"), [("A1", "Acme", now)])
        storage.copy_rows(
            conn,
            "contacts",
            ("contact_id", "account_id", "email", "name", "opted_out_at", "bounced_at", "updated_at"),
            [
                (
                    f"C{n}",
                    "A1",
                    f"c{n}@a1.example",
                    f"N{n}",
                    now if c in ("opted_out", "both") else None,
                    now if c in ("bounced", "both") else None,
                    now,
                )
                for n, c in enumerate(consent)
            ],
        )
        storage.copy_rows(
            conn,
            "outbox",
            ("wave_id", "kind", "recipient", "address", "status", "created_at"),
            [(ids[w], kind, f"C{c}", f"c{c}@a1.example", status, now) for w, c, kind, status in outbox],
        )


def _expected(waves, outbox, consent, chosen, frequency) -> dict[str, str | None]:
    """Whom the rule leaves out, computed plainly: per contact, its outbox rows one by one."""
    opens = [OPEN + dt.timedelta(days=day, hours=n) for n, day in enumerate(waves)]
    since = OPEN - dt.timedelta(days=frequency)
    expected: dict[str, str | None] = {}
    for n in sorted({c for c in chosen if c < len(consent)}):
        recent = any(
            c == n and kind == "invitation" and status == "sent" and w < len(waves) and opens[w] > since
            for w, c, kind, status in outbox
        )
        reason = {"opted_out": "opted_out", "both": "opted_out", "bounced": "bounced"}.get(consent[n])
        expected[f"C{n}"] = reason or ("surveyed_recently" if recent else None)
    return expected


def _snapshot_matches(engine, history) -> None:
    waves, outbox, consent, chosen, frequency = history
    for table in ("wave_audience", "outbox", "contacts", "accounts", "wave_milestones", "waves"):
        storage.execute(engine, f"DELETE FROM {table}")
    _history(engine, waves, outbox, consent)
    counts = audience.snapshot_audience(engine, "NOW", [f"C{n}" for n in chosen], frequency, OPEN)
    stored = storage.fetch_all(engine, "SELECT contact_id, included, exclusion_reason FROM wave_audience")
    expected = _expected(*history)
    assert {row["contact_id"]: row["exclusion_reason"] for row in stored} == expected
    assert all(bool(row["included"]) == (row["exclusion_reason"] is None) for row in stored)
    assert sum(counts.values()) == len(expected)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(history=histories())
def test_the_frequency_rule_leaves_out_whom_a_plain_computation_leaves_out(engine, history):
    _snapshot_matches(engine, history)


@pytest.mark.postgres
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(history=histories())
def test_the_frequency_rule_leaves_out_whom_a_plain_computation_leaves_out_on_postgres(pg_engine, history):
    _snapshot_matches(pg_engine, history)


def test_the_frequency_rule_is_a_look_up_per_contact_never_a_scan_per_contact(db):
    """SQLite looks a contact's sent invitations up in outbox_by_recipient; PostgreSQL keeps the rule
    a subquery (an index look-up per contact, or one hashed pass over the outbox), never a join that
    stale statistics could turn into a scan of the outbox per contact."""
    sql = storage.query("snapshot_audience")
    params = {"wave_id": "w", "recent_since": OPEN, "now": OPEN}
    with db.connect() as conn, storage.temporary_table(conn, "snapshot_contacts", "(contact_id VARCHAR(64))"):
        if storage.is_sqlite(db):
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {_inline(sql)}"))
            assert "outbox_by_recipient (recipient=? AND kind=? AND status=?)" in plan
        else:
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}"), params))
            assert "SubPlan" in plan and " outbox " not in plan.split("SubPlan")[0]  # the outbox only in it


def _inline(sql: str) -> str:
    return sql.replace(":wave_id", "'w'").replace(":recent_since", "'2026-01-01'").replace(":now", "'2026-01-01'")


def test_a_load_leaves_no_temporary_table_and_its_connection_usable(db, tmp_path):
    path = write_csv(tmp_path / "c.csv", [contact("C1"), contact("C2", email="bad")])
    audience.load_contacts(db, "w", path, max_rejected_share=1.0, chunk_rows=1)
    with pytest.raises(audience.AudienceError):
        audience.load_contacts(db, "w", path, chunk_rows=1)  # 50% rejected: refused, after staging
    for _ in range(3):  # whichever pooled connection comes next
        assert audience.load_contacts(db, "w", path, max_rejected_share=1.0, chunk_rows=1).loaded == 1


def test_rows_written_with_a_bom_and_crlf_in_chunks(db, tmp_path):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Contact ID", "E-mail", "Name", "Account ID", "Account Name"])
    writer.writerows([[f"C{n}", f"c{n}@a1.example", f"N{n}", "A1", "Acme"] for n in range(5)])
    path = tmp_path / "c.csv"
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode())
    result, _ = _load(db, path, "w", 2, tmp_path / "r.csv")
    assert (result.rows, result.contact_ids) == (5, [f"C{n}" for n in range(5)])
