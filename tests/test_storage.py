"""The NPS DB on SQLite and PostgreSQL: the same schema, migrated once (more in test_migrations.py)."""

import pytest
from sqlalchemy import inspect, make_url

from include.nps.core import migrations, storage

TABLES = {
    "accounts",
    "contacts",
    "waves",
    "wave_milestones",
    "wave_audience",
    "quarantine",
    "outbox",
    "responses",
    "followups",
    "action_items",
    "check_results",
    "alembic_version",
}


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def test_migrations_create_every_table_once(any_engine):
    assert set(inspect(any_engine).get_table_names()) >= TABLES
    assert "schema_migrations" not in inspect(any_engine).get_table_names()  # the old runner's ledger
    assert storage.migrate(any_engine) == []  # already at the latest version
    versions = storage.fetch_all(any_engine, "SELECT version_num FROM alembic_version")
    assert versions == [{"version_num": migrations.head()}]


def test_the_outbox_key_makes_a_second_insert_a_no_op(any_engine):
    from include.nps.delivery import outbox

    assert outbox.enqueue(any_engine, "w", "invitation", [("C1", "a@b.example")]) == 1
    assert outbox.enqueue(any_engine, "w", "invitation", [("C1", "a@b.example")]) == 0
    assert storage.fetch_one(any_engine, "SELECT COUNT(*) AS n FROM outbox")["n"] == 1


def test_timestamps_read_back_as_the_same_utc_instant(any_engine):
    from include.nps.delivery import outbox

    outbox.enqueue(any_engine, "w", "invitation", [("C1", "a@b.example")])
    written = storage.utcnow()
    storage.execute(any_engine, "UPDATE outbox SET sent_at = :t", {"t": written})
    assert storage.as_utc(storage.fetch_one(any_engine, "SELECT sent_at FROM outbox")["sent_at"]) == written


def test_the_nps_db_comes_from_the_airflow_connection(nps_home, monkeypatch):
    from include.nps.core.connections import db_url

    assert db_url() == f"sqlite:///{nps_home / 'nps.db'}"  # not defined: the embedded default
    monkeypatch.setenv(
        "AIRFLOW_CONN_NPS_DB",
        '{"conn_type": "postgres", "host": "db.internal", "port": 5432, '
        '"login": "nps", "password": "p@ss word", "schema": "nps"}',
    )
    url = make_url(db_url())
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "nps",
        "p@ss word",
        "db.internal",
        5432,
        "nps",
    )
    monkeypatch.setenv("AIRFLOW_CONN_NPS_DB", '{"conn_type": "mysql", "host": "db.internal"}')
    with pytest.raises(ValueError, match="connection 'nps_db' has type 'mysql'; use sqlite or postgres"):
        db_url()


def test_contacts_have_an_optional_timezone_column(any_engine):
    columns = {c["name"]: c for c in inspect(any_engine).get_columns("contacts")}
    assert columns["timezone"]["nullable"] and columns["timezone"]["type"].length == 64
    storage.execute(
        any_engine,
        "INSERT INTO accounts (account_id, name, updated_at) VALUES ('A1', 'Acme', :t)",
        {"t": storage.utcnow()},
    )
    row = {"account_id": "A1", "email": "a@a1.example", "name": "A", "role": None, "locale": "ja"}
    storage.execute(
        any_engine,
        storage.query("upsert_contact"),
        {**row, "contact_id": "C1", "timezone": "Asia/Tokyo", "updated_at": storage.utcnow()},
    )
    assert storage.fetch_one(any_engine, "SELECT timezone FROM contacts") == {"timezone": "Asia/Tokyo"}
