"""The NPS DB's schema versions: alembic revisions in `sql/alembic/versions`, applied under a lock.

Every process brings the database to the latest revision on first connect (`storage.migrate`). When
it is there already that costs a quick read (about a millisecond) and takes no lock. Otherwise the upgrade runs in one
transaction that holds the database's migration lock (PostgreSQL: an advisory lock; SQLite: BEGIN
EXCLUSIVE) and reads the database's revision only once it has the lock, so processes that start
together apply each revision once: the first applies it, the others then find nothing left to do.

Operators: `python -m include.nps.core.migrations upgrade head | downgrade REV | current | history`
(alembic's own commands and options) against the database the tasks use: NPS_DB_URL, else the nps_db
connection, else SQLite in NPS_HOME; `-x url=...` names another.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from alembic.config import CommandLine, Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from include.nps.core import storage

ALEMBIC_INI = storage.SQL_DIR / "alembic.ini"
# pg_advisory_xact_lock's key; PostgreSQL keeps advisory locks per database.
LOCK_KEY = zlib.crc32(b"nps_db schema migrations")
CLI = "python -m include.nps.core.migrations"
log = logging.getLogger(__name__)

_one_at_a_time = threading.Lock()  # alembic's `op` and `context` are process-wide


@cache
def config() -> Config:
    return Config(ALEMBIC_INI)


@cache
def script_directory() -> ScriptDirectory:
    """The revisions, read once per process."""
    return ScriptDirectory.from_config(config())


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in script_directory().walk_revisions())


def head() -> str:
    """The latest revision."""
    return script_directory().get_current_head() or "base"


def current(engine: Engine) -> set[str]:
    """The database's revision (a set: alembic allows branches); empty for an empty database."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, revision: str = "heads") -> list[str]:
    """Bring the database up to `revision`; return the revisions applied now ([] when already there)."""
    script = script_directory()
    with _one_at_a_time:
        if revision in ("head", "heads") and _up_to_date(engine, script):
            return []
        # The steps from the database's revision to the target, as alembic.command.upgrade finds them.
        return _run(engine, lambda rev, _context: script._upgrade_revs(revision, rev), revision)


def downgrade(engine: Engine, revision: str) -> list[str]:
    """Take the database down to `revision` ("base": empty); return the revisions undone, newest first."""
    script = script_directory()
    with _one_at_a_time:
        return _run(engine, lambda rev, _context: script._downgrade_revs(revision, rev), revision)


def _up_to_date(engine: Engine, script: ScriptDirectory) -> bool:
    """At the latest revision, or at one only a newer release has (its workers may already run while
    this release's finish: revisions add first and remove a release later, so it is left as it is)."""
    found = current(engine)
    if found == set(script.get_heads()):
        return True
    newer = found - known_revisions()
    if newer:
        log.warning("The NPS DB is at revision %s, which a newer release made: left as it is", ", ".join(sorted(newer)))
    return bool(newer)


def _run(engine: Engine, steps: Callable[[Any, Any], Any], destination: str) -> list[str]:
    """Run alembic's steps in this process, without env.py (its work is `run_online`'s)."""
    done: list[str] = []
    with EnvironmentContext(config(), script_directory(), fn=steps, destination_rev=destination) as env:
        run_online(env, engine, done)
    return done


def run_online(env: EnvironmentContext, engine: Engine, done: list[str] | None = None) -> None:
    """Run the migrations of `env` in one transaction that holds the migration lock."""

    def record(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]) -> None:
        if done is not None and step.up_revision_id and not step.is_stamp:
            done.append(step.up_revision_id)

    with locked(engine) as conn:
        env.configure(connection=conn, on_version_apply=record)
        env.run_migrations()


def run_offline(env: EnvironmentContext, url: str) -> None:
    """Print the SQL instead of running it (`upgrade --sql`)."""
    env.configure(url=url, literal_binds=True)
    with env.begin_transaction():
        env.run_migrations()


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction holding the database's migration lock until it commits.

    PostgreSQL: a transaction-level advisory lock. SQLite: BEGIN EXCLUSIVE, which a second writer
    waits for (busy_timeout); in WAL mode readers go on reading. Both end with the transaction.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield conn
        conn.commit()


def main(argv: Sequence[str] | None = None) -> None:
    """alembic's command line with sql/alembic.ini (the CLI's env.py finds the database)."""
    cli = CommandLine(prog=CLI)
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("name a command: upgrade head, downgrade REV, current, history, ...")
    cli.run_cmd(Config(ALEMBIC_INI, cmd_opts=options), options)


if __name__ == "__main__":
    main()
