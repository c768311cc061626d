"""The wave's audience: load contacts, quarantine bad rows, apply suppression rules, snapshot.

Every input row is either loaded or quarantined with a reason a person can read; every loaded
contact lands in the wave's snapshot, included or excluded with its reason. What a row must be to
be loaded is `contact_rules`' business.

A file of any size loads in bounded memory. It is read in chunks (`CHUNK_ROWS` rows); each chunk
is checked with column operations, its good rows are copied into a temporary table of the NPS DB
(COPY on PostgreSQL), the cells of its rejected rows and the contact ids and addresses seen so far
(a duplicate's twin may be in an earlier chunk) go to a scratch SQLite file. Once the whole file
is read and its rejected share is known, the good rows are upserted in a few statements. The
snapshot is one statement.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import json
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from include.nps.core import clean_text, csv_files, storage, subject_keys
from include.nps.wave import contact_rules
from include.nps.wave.contact_rules import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from include.nps.wave.sales_drops import neutralise

if TYPE_CHECKING:
    import pandas as pd

EMAIL_PATTERN = contact_rules.EMAIL_PATTERN  # data_checks reads it here
DEFAULT_MAX_REJECTED_SHARE = 0.05
EXCEL_CELL_LIMIT = 32_767  # characters Excel shows in one cell
CHUNK_ROWS = csv_files.CHUNK_ROWS
# The good rows of the file being loaded, as they will be stored (temporary, one connection's).
STAGED = (
    "row_number", "contact_id", "account_id", "email", "name", "role", "locale", "timezone",
    "account_name", "country", "tier", "sales_owner", "csm", "vip",
)  # fmt: skip
STAGING_TABLE = """(
    row_number INTEGER PRIMARY KEY, contact_id VARCHAR(64) NOT NULL, account_id VARCHAR(64) NOT NULL,
    email VARCHAR(254) NOT NULL, name VARCHAR(200) NOT NULL, role VARCHAR(100), locale VARCHAR(16) NOT NULL,
    timezone VARCHAR(64), account_name VARCHAR(200) NOT NULL, country VARCHAR(2), tier VARCHAR(32),
    sales_owner VARCHAR(254), csm VARCHAR(254), vip BOOLEAN NOT NULL
)"""
# Good rows whose address another contact holds in the NPS DB: moved to them, or refused.
MOVES_TABLE = """(
    row_number INTEGER PRIMARY KEY, holder VARCHAR(64) NOT NULL, email VARCHAR(254) NOT NULL,
    refused BOOLEAN NOT NULL DEFAULT FALSE
)"""
QUARANTINE_COLUMNS = ("wave_id", "source", "row_number", "field", "value", "reason")
ERASED_FIELD = "erased"  # the problem of a row whose person was erased on request (holds no value)
ERASED = "this person was erased on request (on the suppression list): never imported again"
KEEPS_ADDRESS = (
    "email belongs to contact {holder} in the NPS DB and {holder} keeps it; an address does not move to "
    "another contact id (opt-outs and bounces stay with their contact)"
)


class AudienceError(ValueError):
    """The audience source cannot be used (unreadable, a required column missing, too many bad rows)."""


@dataclass(frozen=True)
class LoadResult:
    contact_ids: list[str]
    problems: list[dict]
    rows: int

    @property
    def loaded(self) -> int:
        return len(self.contact_ids)

    @property
    def quarantined(self) -> int:
        return len({p["row_number"] for p in self.problems})


def read_contacts_csv(path: str | Path) -> csv_files.Table:
    """The contacts export as a table of strings, each row numbered as a spreadsheet shows it."""
    try:
        return csv_files.read_table(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS)
    except csv_files.ExportError as exc:
        raise AudienceError(f"audience source: {exc}") from exc


def load_contacts(
    engine: Engine,
    wave_id: str,
    source: str | Path,
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE,
    rejected_csv: Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadResult:
    """Upsert the good rows of a contacts file into accounts and contacts; quarantine the rest
    (in the `quarantine` table and, when given, a CSV of the rejected rows).

    When more than `max_rejected_share` of the rows are bad, the file is a broken extract: the
    quarantine is kept but nothing is loaded and AudienceError says how many and why.
    """
    with _fewer_collections(), _contacts_file(source, chunk_rows) as reader, _Load.opened(engine) as load:
        for chunk in _chunks(reader):
            load.add(chunk)
        problems = sorted(load.settle_moves(), key=lambda p: (p["row_number"], p["field"]))
        problems = [{**p, "value": clean_text.visible(p["value"])[:200]} for p in problems]
        load.quarantine(wave_id, str(source), problems)
        if rejected_csv is not None and problems:
            write_rejected_csv(rejected_csv, reader.columns, problems, load.scratch.cells)
        quarantined = len({p["row_number"] for p in problems if p["field"] != ERASED_FIELD})
        if load.rows and quarantined / load.rows > max_rejected_share:
            raise AudienceError(
                f"audience source {source}: {quarantined} of {load.rows} rows rejected "
                f"({quarantined / load.rows:.1%}, above the {max_rejected_share:.0%} threshold); "
                f"most common reasons: {_top_reasons(problems)}. Nothing was loaded."
            )
        return LoadResult(contact_ids=load.upsert(), problems=problems, rows=load.rows)


@contextmanager
def _fewer_collections(allocations: int = 100_000) -> Iterator[None]:
    """Python's cycle collector runs after every 700 new containers by default: a chunk makes
    millions (a list per row, a tuple per value staged), so it would walk the chunk's live rows
    again and again (a fifth of a load's time). Meanwhile it runs after every `allocations`."""
    before = gc.get_threshold()
    gc.set_threshold(max(allocations, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def _contacts_file(source: str | Path, chunk_rows: int) -> Iterator[csv_files.TableReader]:
    try:
        with csv_files.open_table(source, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, chunk_rows) as reader:
            yield reader
    except csv_files.ExportError as exc:
        raise AudienceError(f"audience source: {exc}") from exc


def _chunks(reader: csv_files.TableReader) -> Iterator[csv_files.Chunk]:
    try:
        yield from reader.chunks()
    except csv_files.ExportError as exc:
        raise AudienceError(f"audience source: {exc}") from exc


class _Scratch:
    """What a load remembers of the rows it has read, in a scratch SQLite file rather than memory:
    each contact id and address key with the first row that had it, and rejected rows' cells."""

    REMEMBER = "INSERT OR IGNORE INTO seen SELECT ?, key, row_number FROM chunk WHERE key <> '' ORDER BY row_number"
    REPEATS = (
        "SELECT chunk.row_number, seen.row_number FROM chunk JOIN seen ON seen.field = ? AND seen.key = chunk.key "
        "WHERE seen.row_number <> chunk.row_number ORDER BY chunk.row_number"
    )

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE seen (field TEXT, key TEXT, row_number INTEGER, PRIMARY KEY (field, key)) WITHOUT ROWID;
            CREATE TABLE chunk (row_number INTEGER PRIMARY KEY, key TEXT NOT NULL);
            CREATE TABLE cells (row_number INTEGER PRIMARY KEY, cells TEXT NOT NULL);
            """
        )

    def repeats(self, field: str, numbers: list[int], keys: list[str]) -> list[tuple[int, int]]:
        """(row, first row) for each of these rows whose non-empty key an earlier row had, in this
        chunk or before (rows come in the file's order); remembers the keys."""
        with self.db:
            self.db.executemany("INSERT INTO chunk VALUES (?, ?)", zip(numbers, keys, strict=True))
            self.db.execute(self.REMEMBER, (field,))
            repeats = self.db.execute(self.REPEATS, (field,)).fetchall()
            self.db.execute("DELETE FROM chunk")
        return repeats

    def keep_cells(self, rows: pd.DataFrame) -> None:
        """The cells of these rows (row_number first), as the CSV of rejected rows shows them."""
        numbers = rows["row_number"].tolist()
        cells = rows.drop(columns="row_number").to_numpy().tolist()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO cells VALUES (?, ?)",
                ((n, json.dumps([_cell(c) for c in row])) for n, row in zip(numbers, cells, strict=True)),
            )

    def close(self) -> None:
        self.db.close()

    def cells(self, number: int) -> list | None:
        found = self.db.execute("SELECT cells FROM cells WHERE row_number = ?", (number,)).fetchone()
        return json.loads(found[0]) if found else None


class _Load:
    """A contacts file being loaded through one connection: good rows staged, problems gathered."""

    def __init__(self, conn: Connection, scratch: _Scratch) -> None:
        self.conn, self.scratch = conn, scratch
        self.rows = 0
        self.problems: list[dict] = []
        self.moves = 0
        self.erased = subject_keys.anyone_erased(conn)

    @classmethod
    @contextmanager
    def opened(cls, engine: Engine) -> Iterator[_Load]:
        """A load on its own connection, with its temporary tables and scratch file, all gone after."""
        with tempfile.TemporaryDirectory(prefix="nps-audience-") as folder, engine.connect() as conn:
            try:
                with (
                    storage.temporary_table(conn, "contacts_staging", STAGING_TABLE),
                    storage.temporary_table(conn, "address_moves", MOVES_TABLE),
                    closing(_Scratch(Path(folder) / "scratch.db")) as scratch,
                ):
                    try:
                        yield cls(conn, scratch)
                    except BaseException:
                        conn.rollback()  # what was not committed goes; the tables can then be dropped
                        raise
            finally:
                conn.commit()  # the tables' DROP

    def add(self, chunk: csv_files.Chunk) -> None:
        """Check a chunk's rows, stage the good ones, keep the problems of the others."""
        self.rows += chunk.rows
        self.problems += chunk.problems
        frame, problems = contact_rules.check_rows(chunk.frame)
        numbers = frame["row_number"].tolist()
        keys = {"contact_id": frame["contact_id"].tolist(), "email": contact_rules.email_keys(frame["email"])}
        for field, field_keys in keys.items():
            values = dict(zip(numbers, frame[field].tolist(), strict=True))
            for number, earlier in self.scratch.repeats(field, numbers, field_keys):
                reason = contact_rules.duplicate_reason(field, earlier)
                problem = {"row_number": number, "field": field, "value": values[number][:200], "reason": reason}
                problems.setdefault((number, field), problem)
        # An erased person's row is only said to be one: no cell of it is kept, quarantined or written.
        erased = self._erased(numbers, keys)
        problems = {at: problem for at, problem in problems.items() if at[0] not in erased}
        rejected = {number for number, _ in problems}
        self.scratch.keep_cells(chunk.frame[chunk.frame["row_number"].isin(rejected)])
        self.problems += problems.values()
        self.problems += [
            {"row_number": n, "field": ERASED_FIELD, "value": "", "reason": ERASED} for n in sorted(erased)
        ]
        rejected |= erased
        good = frame[~frame["row_number"].isin(rejected)]
        if len(good):
            self._stage(good)
            self._find_moves(chunk.frame, int(good["row_number"].iloc[0]), int(good["row_number"].iloc[-1]))
        self.conn.commit()  # a SQLite reader must not hold its snapshot: other writers go on meanwhile

    def _erased(self, numbers: list[int], keys: dict[str, list[str]]) -> set[int]:
        """Rows of people on the suppression list (erased on request): hashed and joined, per chunk."""
        if not self.erased or not numbers:
            return set()
        return subject_keys.listed_rows(self.conn, numbers, keys)

    def _stage(self, good: pd.DataFrame) -> None:
        stored = contact_rules.stored_columns(good)
        rows = zip(
            good["row_number"].tolist(),
            good["contact_id"].tolist(),
            good["account_id"].tolist(),
            stored["email"],
            good["name"].tolist(),
            stored["role"],
            stored["locale"],
            stored["timezone"],
            good["account_name"].tolist(),
            stored["country"],
            stored["tier"],
            stored["sales_owner"],
            stored["csm"],
            stored["vip"],
            strict=True,
        )
        storage.copy_rows(self.conn, "contacts_staging", STAGED, rows)

    def _find_moves(self, raw: pd.DataFrame, first: int, last: int) -> None:
        """Staged rows whose address another contact holds: settled once the whole file is read."""
        found = self.conn.execute(text(storage.query("address_moves")), {"first": first, "last": last}).all()
        if found:
            storage.copy_rows(self.conn, "address_moves", ("row_number", "holder", "email"), map(tuple, found))
            self.scratch.keep_cells(raw[raw["row_number"].isin([row[0] for row in found])])
            self.moves += len(found)

    def settle_moves(self) -> list[dict]:
        """Every problem, with those of the addresses that do not move: a row whose address another
        contact holds is loaded only when that holder is in the file too (then it leaves the address)."""
        if not self.moves:
            return self.problems
        self.conn.exec_driver_sql("CREATE INDEX contacts_staging_contact ON contacts_staging (contact_id)")
        while self.conn.execute(text(storage.query("refuse_address_moves"))).rowcount:
            self.conn.exec_driver_sql(
                "DELETE FROM contacts_staging WHERE row_number IN (SELECT row_number FROM address_moves WHERE refused)"
            )
        refused = self.conn.exec_driver_sql("SELECT row_number, holder, email FROM address_moves WHERE refused")
        problems = [
            {"row_number": number, "field": "email", "value": email, "reason": KEEPS_ADDRESS.format(holder=holder)}
            for number, holder, email in refused
        ]
        self.conn.commit()
        return self.problems + problems

    def quarantine(self, wave_id: str, source: str, problems: list[dict]) -> None:
        rows = ((wave_id, source, p["row_number"], p["field"], p["value"], p["reason"]) for p in problems)
        keys = ("wave_id", "source", "row_number", "field")
        storage.bulk_upsert(self.conn, "quarantine", QUARANTINE_COLUMNS, rows, keys, ("value", "reason"))
        self.conn.commit()

    def upsert(self) -> list[str]:
        """Upsert the staged rows' accounts, then the contacts, in one transaction; holders whose
        address moves leave it first, so addresses can change hands within one file, even crosswise.
        Returns the contact ids in the file's order."""
        now = {"now": storage.utcnow()}
        storage.prepare_bulk(self.conn, "contacts_staging")
        if self.moves:
            self.conn.execute(text(storage.query("park_moving_addresses")))
        self.conn.execute(text(storage.query("load_staged_accounts")), now)
        self.conn.execute(text(storage.query("load_staged_contacts")), now)
        ids = [
            row[0] for row in self.conn.exec_driver_sql("SELECT contact_id FROM contacts_staging ORDER BY row_number")
        ]
        self.conn.commit()
        return ids


def _top_reasons(problems: list[dict], top: int = 3) -> str:
    counts = Counter(re.sub(r" \(.*\)$", "", p["reason"]) for p in problems)
    return "; ".join(f"{reason} ({n})" for reason, n in counts.most_common(top))


def write_rejected_csv(
    path: Path, columns: list[str], problems: list[dict], cells: Callable[[int], list | None]
) -> Path:
    """The rejected rows as a CSV a person can fix and re-import: row, field, reason, then the row
    (`cells` of a row number, None for a row that could not be read into cells).

    UTF-8 with a byte order mark for Excel; cells that a spreadsheet would run are neutralised,
    control characters written as escapes (`\\x00`) and cells cut to what Excel shows in a cell.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow(["row_number", "field", "reason", "value", *columns])
        for p in problems:
            row = cells(p["row_number"]) or [""] * len(columns)
            writer.writerow(
                [neutralise(_cell(c)) for c in (p["row_number"], p["field"], p["reason"], p["value"], *row)]
            )
    return path


def _cell(value: Any) -> Any:
    """A rejected row's cell as a spreadsheet can hold it."""
    if not isinstance(value, str):
        return value
    shown = clean_text.visible(value)
    if len(shown) <= EXCEL_CELL_LIMIT:
        return shown
    return f"{shown[: EXCEL_CELL_LIMIT - 60]}... ({len(value)} characters, cut here)"


def snapshot_audience(
    engine: Engine, wave_id: str, contact_ids: list[str], frequency_days: int, open_at: dt.datetime
) -> dict[str, int]:
    """Freeze the wave's audience: included contacts, and excluded ones with their reason (opted
    out, bounced, or sent an invitation by another wave that opened within `frequency_days`).

    One statement over the contacts, whatever the audience's size and the outbox's length.
    Re-running keeps the first snapshot (the audience of a wave never changes once taken).
    """
    params = {"wave_id": wave_id, "recent_since": open_at - dt.timedelta(days=frequency_days), "now": storage.utcnow()}
    with engine.begin() as conn, storage.temporary_table(conn, "snapshot_contacts", "(contact_id VARCHAR(64))"):
        storage.copy_rows(conn, "snapshot_contacts", ("contact_id",), ((c,) for c in contact_ids))
        storage.prepare_bulk(conn, "snapshot_contacts")
        conn.execute(text(storage.query("snapshot_audience")), params)
    return audience_counts(engine, wave_id)


def discard_snapshot(engine: Engine, wave_id: str) -> None:
    """Forget a snapshot that failed its check, unless the wave already emailed anyone."""
    storage.execute(
        engine,
        "DELETE FROM wave_audience WHERE wave_id = :w AND NOT EXISTS "
        "(SELECT 1 FROM outbox WHERE outbox.wave_id = :w AND outbox.status = 'sent')",
        {"w": wave_id},
    )


def quarantined(engine: Engine, wave_id: str) -> list[dict]:
    """The wave's rejected input rows: row number, field, value and reason."""
    return storage.fetch_all(
        engine,
        "SELECT source, row_number, field, value, reason FROM quarantine WHERE wave_id = :w "
        "ORDER BY source, row_number, field",
        w=wave_id,
    )


def audience_counts(engine: Engine, wave_id: str) -> dict[str, int]:
    rows = storage.fetch_all(
        engine,
        "SELECT COALESCE(exclusion_reason, 'included') AS reason, COUNT(*) AS n "
        "FROM wave_audience WHERE wave_id = :wave_id GROUP BY COALESCE(exclusion_reason, 'included')",
        wave_id=wave_id,
    )
    return {row["reason"]: int(row["n"]) for row in rows}


def audience_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    return storage.read_frame(engine, storage.query("audience"), wave_id=wave_id)


def included_frame(engine: Engine, wave_id: str) -> pd.DataFrame:
    """The wave's audience without the contacts the snapshot left out."""
    frame = audience_frame(engine, wave_id)
    return frame[frame["included"].astype(bool)].reset_index(drop=True)
