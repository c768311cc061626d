"""storage's bulk writers on SQLite and PostgreSQL: COPY's text format keeps every value as given
(NULL apart from empty text, tabs, line breaks, backslashes, `\\N` as text), batches join up, an
upsert updates only what it is told to, and a temporary table is gone after its block, even
after an error."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from include.nps.core import storage

AWKWARD = ["", None, "tab\there", "line\nbreak", "cr\rlf", "back\\slash", "\\N", "\\.", "山田 愛子", "a'b\"c", " x "]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def _table(conn) -> None:
    conn.exec_driver_sql(
        "CREATE TABLE bulk_test (k INTEGER PRIMARY KEY, t VARCHAR(50), b BOOLEAN, at TIMESTAMP, n INTEGER)"
    )


def test_copy_rows_keeps_every_value_as_given(db, monkeypatch):
    monkeypatch.setattr(storage, "BULK_BATCH_ROWS", 4)  # several batches
    at = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    rows = [(k, value, k % 2 == 0, at if k % 3 else None, None if k % 4 else k) for k, value in enumerate(AWKWARD)]
    with db.begin() as conn:
        _table(conn)
        assert storage.copy_rows(conn, "bulk_test", ("k", "t", "b", "at", "n"), iter(rows)) == len(rows)
    stored = storage.fetch_all(db, "SELECT k, t, b, at, n FROM bulk_test ORDER BY k")
    assert [(r["k"], r["t"], bool(r["b"]), storage.as_utc(r["at"]), r["n"]) for r in stored] == rows


def test_bulk_upsert_inserts_and_updates_only_the_columns_named(db, monkeypatch):
    monkeypatch.setattr(storage, "BULK_BATCH_ROWS", 2)
    with db.begin() as conn:
        _table(conn)
    storage.bulk_upsert(db, "bulk_test", ("k", "t", "n"), [(1, "one", 1), (2, "two", 2), (3, None, 3)], ("k",), ("t",))
    given = storage.bulk_upsert(db, "bulk_test", ("k", "t", "n"), [(2, "TWO", 20), (4, "four\t4", 4)], ("k",), ("t",))
    assert given == 2
    assert storage.fetch_all(db, "SELECT k, t, n FROM bulk_test ORDER BY k") == [
        {"k": 1, "t": "one", "n": 1},
        {"k": 2, "t": "TWO", "n": 2},
        {"k": 3, "t": None, "n": 3},
        {"k": 4, "t": "four\t4", "n": 4},
    ]
    with db.begin() as conn:  # without columns to update, a row already there is left as it is
        storage.bulk_upsert(conn, "bulk_test", ("k", "t"), [(1, "uno"), (5, "five")], ("k",))
    assert storage.fetch_all(db, "SELECT k, t FROM bulk_test WHERE k IN (1, 5) ORDER BY k") == [
        {"k": 1, "t": "one"},
        {"k": 5, "t": "five"},
    ]


def test_a_temporary_table_is_gone_after_its_block_even_after_an_error(db):
    with db.connect() as conn:
        with storage.temporary_table(conn, "scratch_ids", "(id VARCHAR(10))") as name:
            storage.copy_rows(conn, name, ("id",), [("a",), ("b",)])
            assert conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar() == 2
        conn.commit()
        with pytest.raises(ZeroDivisionError), storage.temporary_table(conn, "scratch_ids", "(id VARCHAR(10))"):
            storage.copy_rows(conn, "scratch_ids", ("id",), [("c",)])
            _ = 1 / 0
        conn.commit()
    # In a transaction that a failed statement ends (PostgreSQL then refuses any statement until the
    # rollback, which removes the table made in it).
    with pytest.raises(DBAPIError), db.begin() as conn, storage.temporary_table(conn, "scratch_ids", "(id INTEGER)"):
        conn.exec_driver_sql("INSERT INTO scratch_ids VALUES (1)")
        conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
    for _ in range(3):  # whichever pooled connection comes next: the name is free, the table empty
        with db.begin() as conn, storage.temporary_table(conn, "scratch_ids", "(id VARCHAR(10))") as name:
            assert conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar() == 0


def test_the_bulk_writers_take_plain_sql_names_only(engine):
    with engine.begin() as conn, pytest.raises(ValueError, match="not a plain SQL name"):
        storage.copy_rows(conn, "contacts; DROP TABLE contacts", ("contact_id",), [("x",)])
