"""Baseline: the schema as the hand-written runner left it, from the scripts in sql/baseline.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

A database made by that runner lists the scripts it ran in `schema_migrations`: it gets only the
scripts missing there, then that table goes, and alembic_version alone says where the database is.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BASELINE_DIR = Path(__file__).resolve().parents[2] / "baseline"
LEGACY_TABLE = "schema_migrations"
log = logging.getLogger("include.nps.core.migrations")


def scripts() -> list[Path]:
    return sorted(BASELINE_DIR.glob("*.sql"))


def upgrade() -> None:
    from include.nps.core.storage import split_statements

    done = _run_by_the_old_runner()
    for path in scripts():
        if done is None or path.stem not in done:
            for statement in split_statements(path.read_text(encoding="utf-8")):
                op.execute(statement)
    if done is not None:
        log.info("A database of the old runner: %d baseline scripts were applied, ran the others", len(done))
        op.drop_table(LEGACY_TABLE)


def downgrade() -> None:
    """Drop every table the scripts create, the newest first (a table refers only to older ones)."""
    created = [
        name
        for path in scripts()
        for name in re.findall(r"^\s*CREATE TABLE (\w+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    for name in reversed(created):
        op.drop_table(name)


def _run_by_the_old_runner() -> set[str] | None:
    """The scripts `schema_migrations` lists; None without that table (or when SQL is only printed)."""
    if op.get_context().as_sql:
        return None
    bind = op.get_bind()
    if not sa.inspect(bind).has_table(LEGACY_TABLE):
        return None
    return set(bind.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
