"""The NPS DB's alembic migrations on SQLite and PostgreSQL: applied once however many processes
start together, adopted from the old runner's databases, undone by a downgrade, run by operators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from include.nps.core import migrations, storage

BASELINE_DIR = storage.SQL_DIR / "baseline"
ALL_REVISIONS = [script.revision for script in reversed(list(migrations.script_directory().walk_revisions()))]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_url(request, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases of one kind: SQLite files, or databases on the session's PostgreSQL."""
    made: list[str] = []
    admin = None
    if request.param == "postgres":
        postgres_url = request.getfixturevalue("postgres_url")
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def make() -> str:
        name = f"nps_{time.time_ns()}"
        made.append(name)
        if admin is None:
            return f"sqlite:///{tmp_path / name}.db"
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        return admin.url.set(database=name).render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def new_engine(new_url: Callable[[], str]) -> Iterator[Callable[[], Engine]]:
    engines: list[Engine] = []

    def make() -> Engine:
        engines.append(storage.make_engine(new_url()))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def old_runner(engine: Engine, last: str | None = None) -> None:
    """What storage.migrate did before alembic: each script of sql/migrations (now sql/baseline) in its
    own transaction, listed in schema_migrations; `last` stops after that script."""
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE schema_migrations (version VARCHAR(64) PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
        )
    for path in sorted(BASELINE_DIR.glob("*.sql")):
        with engine.begin() as conn:
            for statement in storage.split_statements(path.read_text(encoding="utf-8")):
                conn.execute(text(statement))
            conn.execute(
                text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t)"),
                {"v": path.stem, "t": storage.utcnow()},
            )
        if path.stem == last:
            return


def schema(engine: Engine) -> dict[str, tuple]:
    """Every table's columns (name, type, nullable, default), primary key, foreign keys and indexes."""
    found = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in found.get_columns(table)],
            found.get_pk_constraint(table)["constrained_columns"],
            sorted((fk["referred_table"], tuple(fk["constrained_columns"])) for fk in found.get_foreign_keys(table)),
            index_names(engine, table),
        )
        for table in sorted(found.get_table_names())
    }


def index_names(engine: Engine, table: str) -> list[str]:
    """From the catalog: reflection skips the indexes on an expression (LOWER(email))."""
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = :t"
    )
    with engine.connect() as conn:
        return sorted(conn.execute(text(sql), {"t": table}).scalars())


def version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


# --- a new database, and one at the latest revision ------------------------------------------------


def test_a_new_database_gets_every_revision_once(new_engine):
    engine = new_engine()
    assert ALL_REVISIONS[0] == "0001"
    assert storage.migrate(engine) == ALL_REVISIONS
    assert storage.migrate(engine) == []
    assert migrations.current(engine) == {migrations.head()} and version_rows(engine) == [migrations.head()]
    assert "schema_migrations" not in inspect(engine).get_table_names()


def test_at_the_latest_revision_the_check_takes_no_lock(new_url):
    """Every task process checks on first connect: while another holds the migration lock (a long
    upgrade), a database already at the latest revision is used at once."""
    url = new_url()
    migrated = storage.make_engine(url)
    storage.migrate(migrated)
    # An engine that would give up after 200 ms of waiting for the lock.
    wait = {"timeout": 0.2} if url.startswith("sqlite") else {"options": "-c lock_timeout=200"}
    impatient = create_engine(url, connect_args=wait)
    with migrations.locked(migrated):
        assert storage.migrate(impatient) == []
    impatient.dispose()
    migrated.dispose()


def test_a_database_a_newer_release_migrated_is_left_as_it_is(new_engine, caplog):
    """Workers of the previous release may run a while after the new one has upgraded the database."""
    engine = new_engine()
    storage.migrate(engine)
    storage.execute(engine, "UPDATE alembic_version SET version_num = 'f00dcafe'")
    assert storage.migrate(engine) == []
    assert version_rows(engine) == ["f00dcafe"]
    assert "The NPS DB is at revision f00dcafe, which a newer release made: left as it is" in caplog.text


# --- processes starting together ---------------------------------------------------------------------

MIGRATING_PROCESS = """
import json, sys
from include.nps.core import migrations, storage
engine = storage.make_engine(sys.argv[1])
migrations.script_directory()  # everything imported and read: the processes differ by microseconds
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(storage.migrate(engine)), flush=True)
"""


def test_processes_that_start_together_apply_each_revision_once(new_url):
    url = new_url()
    env = {**os.environ, "PYTHONPATH": str(storage.PROJECT_ROOT)}
    processes = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", MIGRATING_PROCESS, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
    for process in processes:  # go
        process.stdin.write("\n")
        process.stdin.flush()
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0] * len(processes), [err for _, err in results]
    applied = sorted((json.loads(out) for out, _ in results), key=len)
    assert applied == [[]] * (len(processes) - 1) + [ALL_REVISIONS]
    engine = storage.make_engine(url)
    assert version_rows(engine) == [migrations.head()]
    assert {"accounts", "outbox", "delivery_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


# --- databases made by the old runner ----------------------------------------------------------------


def test_a_database_of_the_old_runner_is_stamped_without_running_anything(new_engine):
    reference = new_engine()
    storage.migrate(reference)
    engine = new_engine()
    old_runner(engine)
    storage.execute(
        engine, "INSERT INTO accounts (account_id, name, updated_at) VALUES ('A1', 'Acme', :t)", {"t": storage.utcnow()}
    )

    # A script run again would fail (CREATE TABLE of a table that is there).
    assert storage.migrate(engine) == ALL_REVISIONS
    assert migrations.current(engine) == {migrations.head()}
    assert schema(engine) == schema(reference)  # schema_migrations is gone too
    assert storage.fetch_all(engine, "SELECT account_id FROM accounts") == [{"account_id": "A1"}]


def test_a_database_the_old_runner_left_halfway_gets_the_missing_scripts_first(new_engine):
    reference = new_engine()
    storage.migrate(reference)
    engine = new_engine()
    old_runner(engine, last="009_followup_tracking")
    assert "delivery_events" not in inspect(engine).get_table_names()

    assert storage.migrate(engine) == ALL_REVISIONS
    assert schema(engine) == schema(reference)


# --- downgrade -----------------------------------------------------------------------------------------


def test_a_downgrade_to_base_leaves_only_alembic_s_table_and_an_upgrade_brings_all_back(new_engine):
    engine = new_engine()
    storage.migrate(engine)
    full = schema(engine)

    assert migrations.downgrade(engine, "base") == list(reversed(ALL_REVISIONS))
    assert inspect(engine).get_table_names() == ["alembic_version"]
    assert migrations.current(engine) == set()

    assert storage.migrate(engine) == ALL_REVISIONS
    assert schema(engine) == full


# --- the operators' command ------------------------------------------------------------------------------


def _cli(*args: str, url: str, cwd: Path = storage.PROJECT_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(storage.PROJECT_ROOT), "NPS_DB_URL": url}
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "include.nps.core.migrations", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )


def test_operators_upgrade_downgrade_and_read_the_revision_of_the_tasks_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'nps.db'}"
    head = migrations.head()

    assert "Running upgrade  -> 0001" in _cli("upgrade", "head", url=url).stderr
    assert f"{head} (head)" in _cli("current", url=url).stdout
    assert "0001" in _cli("history", url=url).stdout

    assert "Running downgrade 0001 -> " in _cli("downgrade", "base", url=url).stderr
    engine = storage.make_engine(url)
    assert inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()


def test_the_plain_alembic_command_runs_with_the_ini_file_in_sql(tmp_path):
    url = f"sqlite:///{tmp_path / 'nps.db'}"
    alembic = Path(sys.executable).parent / "alembic"
    ini = storage.SQL_DIR / "alembic.ini"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # env.py finds the project itself
    run = lambda *args: subprocess.run(  # noqa: E731, S603
        [str(alembic), "-c", str(ini), "-x", f"url={url}", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    run("upgrade", "head")
    assert f"{migrations.head()} (head)" in run("current").stdout
    assert "CREATE TABLE accounts" in run("upgrade", "head", "--sql").stdout  # offline: the SQL, printed
