"""The NPS database: engine, schema migrations (alembic, `sql/alembic`) and small query helpers.

The same SQL runs on SQLite (the embedded default) and PostgreSQL. Every write in the
package is an idempotent upsert keyed by natural keys, so any task can be re-run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, text

if TYPE_CHECKING:
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SQL_DIR = PROJECT_ROOT / "sql"
QUERIES_DIR = SQL_DIR / "queries"
BULK_BATCH_ROWS = 50_000  # rows sent in one COPY or executemany by the bulk writers
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
PG_TRANSACTION_FAILED = 3  # psycopg2.extensions.TRANSACTION_STATUS_INERROR
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: Any) -> dt.datetime | None:
    """A timestamp read back from either database, as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def make_engine(url: str) -> Engine:
    """An engine for the NPS DB; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Timestamps are stored as UTC wall time in both databases.
    return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 30000")
    _use_wal(cursor)
    cursor.close()


def _use_wal(cursor: Any, tries: int = 100) -> None:
    """Switch the file to WAL (it stays so). Processes opening a new file together may all try: SQLite
    answers "locked" at once, without waiting, to all but one (waiting could deadlock): they try again."""
    for attempt in range(1, tries + 1):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == tries:
                raise
            time.sleep(0.05)


def migrate(engine: Engine) -> list[str]:
    """Bring the NPS DB to the latest schema revision; return the revisions applied now ([] when it
    was there already: a quick read, no lock). Processes starting together apply each revision once."""
    from include.nps.core import migrations

    return migrations.upgrade(engine)


def strip_comments(script: str) -> str:
    """Drop full-line `--` comments (their words must not be read as :bind parameters)."""
    return "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))


def split_statements(script: str) -> list[str]:
    """Split a script of several statements (a baseline migration, a named query) on semicolons."""
    return [s.strip() for s in strip_comments(script).split(";") if s.strip()]


@cache
def query(name: str) -> str:
    """The text of `sql/queries/<name>.sql`."""
    return strip_comments((QUERIES_DIR / f"{name}.sql").read_text(encoding="utf-8"))


def execute(engine: Engine, sql: str, rows: list[dict] | dict | None = None) -> int:
    """Run one statement (for many rows at once when given a list); return rows affected."""
    if isinstance(rows, list) and not rows:
        return 0
    with engine.begin() as conn:
        return conn.execute(text(sql), rows or {}).rowcount


def fetch_all(engine: Engine, sql: str, **params: Any) -> list[dict]:
    """Rows as dicts; a list or tuple parameter fills an `IN :name` with one value per item."""
    statement = text(sql)
    lists = [name for name, value in params.items() if isinstance(value, list | tuple)]
    if lists:
        statement = statement.bindparams(*(bindparam(name, expanding=True) for name in lists))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(statement, params)]


def fetch_one(engine: Engine, sql: str, **params: Any) -> dict | None:
    rows = fetch_all(engine, sql, **params)
    return rows[0] if rows else None


def read_frame(engine: Engine, sql: str, **params: Any) -> pd.DataFrame:
    import pandas as pd

    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def missing(value: Any) -> bool:
    """Whether a cell holds no value: None, or pandas' NaN, NA or NaT."""
    if value is None:
        return True
    if isinstance(value, str | bytes | dict | list | tuple | set):
        return False
    import pandas as pd

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def plain(value: Any) -> Any:
    """A cell as a plain Python value: missing ones None, pandas and numpy scalars as their Python type."""
    if missing(value):
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a frame as dicts of plain values: the one place where frames become records, so no
    NaN, NA or NaT reaches a rule, a template, a cell or a chat post (a missing value is None)."""
    return [{column: plain(value) for column, value in row.items()} for row in frame.to_dict("records")]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


# --- bulk writes: many rows in a few statements, on both databases ---------------------------------


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


@contextmanager
def temporary_table(conn: Connection, name: str, definition: str) -> Iterator[str]:
    """A table only `conn` sees, for the block: `definition` is its column list in parentheses or
    `AS SELECT ...`. Yields its qualified name. It is dropped at the block's end, in the connection's
    transaction (the caller commits it with the block's work). After an error that left PostgreSQL's
    transaction failed it is not: the rollback that follows removes a table made in that transaction,
    and one made earlier goes when the name is next used (or the connection closes)."""
    qualified = f"{'temp' if is_sqlite(conn) else 'pg_temp'}.{_identifier(name)}"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qualified}")  # one a failed run left in a pooled connection
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} {definition}")
    try:
        yield qualified
    finally:
        if not _failed_transaction(conn):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qualified}")


def _failed_transaction(conn: Connection) -> bool:
    """Whether PostgreSQL refuses every statement until a rollback (SQLite never does)."""
    if is_sqlite(conn):
        return False
    driver: Any = conn.connection.driver_connection
    return bool(driver.info.transaction_status == PG_TRANSACTION_FAILED)


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert many rows (tuples of plain values, in `columns` order) in the connection's transaction:
    PostgreSQL's COPY, SQLite's executemany, `BULK_BATCH_ROWS` at a time. Returns the rows written."""
    names = ", ".join(_identifier(column) for column in columns)
    written = 0
    for batch in _batches(rows, BULK_BATCH_ROWS):
        if is_sqlite(conn):
            marks = ", ".join("?" * len(columns))
            conn.exec_driver_sql(f"INSERT INTO {_identifier(table)} ({names}) VALUES ({marks})", batch)
        else:
            driver: Any = conn.connection.driver_connection
            cursor = driver.cursor()
            cursor.copy_expert(f"COPY {_identifier(table)} ({names}) FROM STDIN", io.StringIO(_copy_text(batch)))
        written += len(batch)
    return written


def prepare_bulk(conn: Connection, *tables: str) -> None:
    """Before statements over many rows, on PostgreSQL: statistics for the (temporary) `tables` just
    filled, which it would plan as a few hundred rows (autovacuum never analyzes a temporary table),
    and no JIT compilation in this transaction (PostgreSQL starts it above a cost such statements
    reach, and on a statement run once it costs more than it saves). Nothing on SQLite."""
    if is_sqlite(conn):
        return
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {_identifier(table)}")
    conn.exec_driver_sql("SET LOCAL jit = off")


def bulk_upsert(
    bind: Engine | Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE SET update` (DO NOTHING without `update`) for many rows
    at once: SQLite in one executemany per batch, PostgreSQL by COPY into a temporary table and one
    INSERT ... SELECT. Keys must be unique among `rows`. Given an engine, it commits; given a
    connection, it writes in the connection's transaction. Returns the rows given."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return bulk_upsert(conn, table, columns, rows, keys, update)
    names = ", ".join(_identifier(column) for column in columns)
    conflict = f"ON CONFLICT ({', '.join(_identifier(key) for key in keys)}) DO " + (
        f"UPDATE SET {', '.join(f'{_identifier(c)} = excluded.{c}' for c in update)}" if update else "NOTHING"
    )
    if is_sqlite(bind):
        marks = ", ".join("?" * len(columns))
        given = 0
        for batch in _batches(rows, BULK_BATCH_ROWS):
            bind.exec_driver_sql(f"INSERT INTO {_identifier(table)} ({names}) VALUES ({marks}) {conflict}", batch)
            given += len(batch)
        return given
    staged = f"bulk_{_identifier(table)}"
    with temporary_table(bind, staged, f"AS SELECT {names} FROM {table} WITH NO DATA") as name:
        given = copy_rows(bind, name, columns, rows)
        bind.exec_driver_sql(f"INSERT INTO {table} ({names}) SELECT {names} FROM {name} {conflict}")
    return given


def _identifier(name: str) -> str:
    """A table or column name the bulk writers put in their SQL, checked to be one."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL name: {name!r}")
    return name


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _copy_text(rows: list[Sequence[Any]]) -> str:
    """Rows in COPY's text format (tab-separated, `\\N` for NULL, backslash escapes), column by column."""
    columns = [_copy_column(column) for column in zip(*rows, strict=True)]
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def _copy_column(values: tuple) -> Sequence[str]:
    """A column's values as COPY text; a column of text that needs no escape (the common one) at once."""
    kinds = set(map(type, values))
    if kinds <= {str, type(None)}:
        joined = "".join(filter(None, values))
        if not ("\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined):
            return [r"\N" if value is None else value for value in values] if type(None) in kinds else values
    return list(map(_copy_value, values))


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
