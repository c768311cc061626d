"""Reading many rows of a named query into a frame, through the database driver's cursor.

`storage.read_frame` goes through SQLAlchemy's result rows, which cost more than the database
itself for a million rows; the steps that read a whole wave (the close, the flash figures, the
retrospective) read with `frame` instead: the same SQL and parameters, compiled once for the
database's driver, its rows fetched as plain tuples in batches, one frame built of them. Values are
what the driver gives (SQLite: text for times, as `read_frame` gives them; PostgreSQL: datetimes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

if TYPE_CHECKING:
    import pandas as pd

BATCH = 50_000  # rows fetched from the cursor at a time


def frame(engine: Engine, sql: str, **params: Any) -> pd.DataFrame:
    """The rows of `sql` (with `:name` parameters) as a frame."""
    import pandas as pd

    compiled = text(sql).compile(dialect=engine.dialect)
    bound = compiled.construct_params(params)
    arguments: Any = [bound[name] for name in compiled.positiontup or ()] if compiled.positional else bound
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(str(compiled), arguments)
            columns = [column[0] for column in cursor.description]
            values: list[list[Any]] = [[] for _ in columns]  # column by column: no tuple per row kept
            while batch := cursor.fetchmany(BATCH):
                for column, batch_values in zip(values, zip(*batch, strict=True), strict=True):
                    column.extend(batch_values)
        finally:
            cursor.close()
    return pd.DataFrame(dict(zip(columns, values, strict=True)), columns=columns)
