"""Reading CSV files as real exports produce them (Excel, CRMs, spreadsheets).

Accepts UTF-8 with or without a byte order mark, UTF-16 (Excel's "Unicode text"), Shift-JIS /
CP932 (Excel on Japanese Windows), CRLF line ends, comma, semicolon or tab delimiters, quoted
newlines, extra columns, fields of any length, and column names in any case with spaces. Rows
are numbered as a spreadsheet shows them: the header is row 1, and a quoted multi-line cell stays
in one row. A row whose field count does not match the header, or whose quote never closes (it
would swallow the rows after it), is returned as a problem, not loaded; the rows after an open
quote are read as rows of their own.

A file is read as a stream: `open_table` gives its rows in chunks (`CHUNK_ROWS` at a time), so
memory holds one chunk, never the file. The encoding is settled first, by decoding the file
block by block; a quote left open holds the lines it swallowed until its row is settled (to the
end of the file when it never closes). Workbooks (`parse_xlsx`) are read whole: they are the
small files people return (sales decisions), not contact exports.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DELIMITERS = (",", ";", "\t")
LEGACY_ENCODINGS = ("cp932",)  # tried, strictly, after UTF-8
WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # xlsx (zip), xls (OLE)
# Headers other exports write for our columns (Outlook and many CRMs write "E-mail" or "Email Address").
COLUMN_ALIASES = {"time_zone": "timezone", "e_mail": "email", "email_address": "email", "e_mail_address": "email"}
CHUNK_ROWS = 100_000  # rows in memory at a time when a file is read as a stream
LINES_AT_ONCE = 10_000  # lines parsed at a time
BLOCK_BYTES = 1 << 20  # bytes decoded at a time while the encoding is settled


class ExportError(ValueError):
    """The file cannot be read as a table at all; the message says why and what to do."""


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # strings, stripped, with a `row_number` column
    problems: list[dict]  # row_number, field, value, reason
    encoding: str
    delimiter: str
    rows: int  # data rows in the file, good or not


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a file: the readable ones, and the problems of the others."""

    frame: pd.DataFrame  # strings, stripped, with a `row_number` column
    problems: list[dict]  # row_number, field, value, reason
    rows: int  # data rows in this chunk, good or not


def detect_encoding(stream: IO[bytes], name: str) -> str:
    """The encoding the file is text in, found by decoding it block by block: UTF-8 (with or without
    a byte order mark), UTF-16 (with one, or little-endian without), else CP932 (Shift-JIS)."""
    head = stream.read(16)
    if head.startswith(WORKBOOK_SIGNATURES):
        raise ExportError(f"{name} is an Excel workbook, not CSV; in Excel use Save As > 'CSV UTF-8'")
    if head.startswith(codecs.BOM_UTF8):
        return _strictly(stream, len(codecs.BOM_UTF8), "utf-8", name, "utf-8-sig")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strictly(stream, 0, "utf-16", name, "utf-16")
    if len(head) >= 4 and head[1::2][:8].count(0) >= 3 and head[0::2][:8].count(0) == 0:
        return _strictly(stream, 0, "utf-16-le", name, "utf-16-le")
    for encoding in ("utf-8", *LEGACY_ENCODINGS):
        if _first_bad_byte(stream, 0, encoding) is None:
            return encoding
    error = _first_bad_byte(stream, 0, "utf-8") or 0
    stream.seek(0)
    line = _newlines(stream, error) + 1
    raise ExportError(
        f"{name} is not UTF-8, UTF-16 or Shift-JIS/CP932 text (byte 0x{stream.read(1)[0]:02x} on line "
        f"{line}, offset {error}, cannot be read); export it again as 'CSV UTF-8'"
    )


def _strictly(stream: IO[bytes], start: int, encoding: str, name: str, label: str) -> str:
    """`label` when the bytes from `start` on are valid `encoding`, else ExportError."""
    error = _first_bad_byte(stream, start, encoding)
    if error is not None:
        raise ExportError(f"{name} claims {encoding} but byte {error} is not valid {encoding}")
    return label


def _first_bad_byte(stream: IO[bytes], start: int, encoding: str) -> int | None:
    """The offset (from `start`) of the first byte that is not valid `encoding`, or None."""
    stream.seek(start)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    fed = 0
    while True:
        block = stream.read(BLOCK_BYTES)
        pending = len(decoder.getstate()[0])  # bytes of a character the previous block cut
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            return fed - pending + exc.start
        if not block:
            return None
        fed += len(block)


def _newlines(stream: IO[bytes], size: int) -> int:
    """The line feeds in the next `size` bytes (the stream is left after them)."""
    count = 0
    while size > 0:
        block = stream.read(min(size, BLOCK_BYTES))
        count, size = count + block.count(b"\n"), size - len(block)
    return count


def sniff_delimiter(header_line: str) -> str:
    """The delimiter the header row uses most (comma when it has none)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def column_key(name: str) -> str:
    """`" Contact ID "` → `contact_id`: case, spaces and hyphens do not matter (`Time Zone` is `timezone`)."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")
    return COLUMN_ALIASES.get(key, key)


def read_table(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Table:
    """Read an export into string columns keyed by `column_key`; missing optional columns are empty."""
    with open_table(path, required, optional) as reader:
        return reader.table()


def parse_csv(raw: bytes, name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Table:
    """`read_table` for bytes already read (from object storage, say)."""
    return TableReader.from_csv(io.BytesIO(raw), name, required, optional).table()


@contextmanager
def open_table(
    path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = (), chunk_rows: int = CHUNK_ROWS
) -> Iterator[TableReader]:
    """An export opened to be read in chunks of `chunk_rows` rows; its header is checked already."""
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"{source} does not exist")
    with source.open("rb") as stream:
        yield TableReader.from_csv(stream, str(source), required, optional, chunk_rows)


class TableReader:
    """A table being read: its encoding, delimiter, header and columns, and its rows in chunks."""

    def __init__(
        self,
        records: Iterator[tuple[list[str], dict | None]],
        name: str,
        required: tuple[str, ...],
        optional: tuple[str, ...],
        encoding: str,
        delimiter: str,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        """`records`: the header's cells first, then each row's with its problem when it cannot be read."""
        self.name, self.encoding, self.delimiter, self.chunk_rows = name, encoding, delimiter, max(1, chunk_rows)
        self._records = records
        first = self._next_record()
        self.header = [column_key(h) for h in first[0]] if first else []
        _check_header(name, self.header, required)
        self.columns = [*dict.fromkeys([*required, *optional, *(h for h in self.header if h)])]

    @classmethod
    def from_csv(
        cls,
        stream: IO[bytes],
        name: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        chunk_rows: int = CHUNK_ROWS,
    ) -> TableReader:
        encoding = detect_encoding(stream, name)
        _allow_fields_up_to(stream.seek(0, io.SEEK_END))  # a long field is a row problem (per column), not a file one
        stream.seek(0)
        lines = iter(io.TextIOWrapper(stream, encoding=encoding, newline=""))
        opening = _opening_lines(lines, name, required)
        delimiter = sniff_delimiter("".join(opening).lstrip().splitlines()[0])
        first = next(i for i, line in enumerate(opening) if line.strip("\r\n"))  # lines of line ends only go
        records = iter_records(chain(opening[first:], lines), delimiter)
        return cls(records, name, required, optional, encoding, delimiter, chunk_rows)

    def _next_record(self) -> tuple[list[str], dict | None] | None:
        try:
            return next(self._records, None)
        except csv.Error as exc:
            raise ExportError(f"{self.name} is not a readable CSV file: {exc}") from exc

    def chunks(self) -> Iterator[Chunk]:
        """The data rows, `chunk_rows` at a time, numbered as a spreadsheet shows them (read once)."""
        numbers: list[int] = []
        kept: list[list[str]] = []
        problems: list[dict] = []
        count, number = 0, 1
        while (item := self._next_record()) is not None:
            record, broken = item
            number += 1
            if broken is not None:
                problems.append({"row_number": number, **broken})
            elif not "".join(record).strip():
                continue  # blank lines, as spreadsheets leave at the end
            elif len(record) != len(self.header):
                problems.append(self._width_problem(number, record))
            else:
                numbers.append(number)
                kept.append(record)
            count += 1
            if count >= self.chunk_rows:
                yield Chunk(self._frame(numbers, kept), problems, count)
                numbers, kept, problems, count = [], [], [], 0
        if count:
            yield Chunk(self._frame(numbers, kept), problems, count)

    def _width_problem(self, number: int, record: list[str]) -> dict:
        return {
            "row_number": number,
            "field": "(row)",
            "value": self.delimiter.join(record)[:200],
            "reason": f"row has {len(record)} fields, the header has {len(self.header)}",
        }

    def _frame(self, numbers: list[int], records: list[list[str]]) -> pd.DataFrame:
        """Rows as string columns, stripped; a column the file lacks is empty."""
        import pandas as pd

        cells = list(zip(*records, strict=True)) if records else [()] * len(self.header)
        data: dict[str, list] = {
            key: [v.strip() for v in column] for key, column in zip(self.header, cells, strict=True) if key
        }
        empty = [""] * len(numbers)
        frame = pd.DataFrame({column: data.get(column, empty) for column in self.columns}, dtype=object)
        frame.insert(0, "row_number", pd.Series(numbers, dtype=int))
        return frame

    def table(self) -> Table:
        """The rest of the file as one Table (for files that fit in memory)."""
        import pandas as pd

        chunks = list(self.chunks())
        frames = [chunk.frame for chunk in chunks] or [self._frame([], [])]
        return Table(
            frame=pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0],
            problems=[problem for chunk in chunks for problem in chunk.problems],
            encoding=self.encoding,
            delimiter=self.delimiter,
            rows=sum(chunk.rows for chunk in chunks),
        )


def _opening_lines(lines: Iterator[str], name: str, required: tuple[str, ...]) -> list[str]:
    """The lines up to the first one that is not blank (ExportError when there is none)."""
    opening: list[str] = []
    for line in lines:
        opening.append(line)
        if line.strip():
            return opening
    raise ExportError(f"{name} is empty: expected a header row with {', '.join(required)}")


def _allow_fields_up_to(size: int) -> None:
    """Raise the csv module's field size limit (131072 by default, process-wide) to `size`."""
    csv.field_size_limit(max(csv.field_size_limit(), size + 1))


def iter_records(lines: Iterator[str], delimiter: str) -> Iterator[tuple[list[str], dict | None]]:
    """The file's records (the header first), each with the problem of a row whose quote never closes.

    A quote left open swallows the lines after it into one field. Such a row is kept as the text of
    its own line only and reported (field, value, reason); reading starts again on the next line, so
    the rows it would have swallowed are read as rows of their own. Lines are parsed `LINES_AT_ONCE`
    at a time; a record that reaches the last line read is parsed again with more lines (at least
    as many again, so even a quote that swallows the rest of the file is parsed a few times only).
    """
    header: list[str] | None = None
    buffer: list[str] = []
    more = True
    while True:
        if more:
            wanted = max(LINES_AT_ONCE, len(buffer))
            block = list(islice(lines, wanted))
            more = len(block) == wanted
            buffer += block
        reader = csv.reader(buffer, delimiter=delimiter)
        position = 0
        for record in reader:
            end = reader.line_num
            if end == len(buffer) and more:
                break  # the record may go on in lines not read yet
            at_end = end == len(buffer)
            field = (
                None
                if end - position == 1 and not at_end
                else _unclosed_quote(record, buffer[position:end], at_end, delimiter, header)
            )
            if field is not None and header is not None:
                row = next(csv.reader([buffer[position]], delimiter=delimiter), [])
                yield row, _unclosed_problem(header, field, buffer[position], end - position - 1, at_end)
                position += 1
                break
            header = record if header is None else header
            yield record, None
            position = end
        if position == len(buffer) and not more:
            return
        buffer = buffer[position:]


def _unclosed_quote(
    record: list[str], chunk: list[str], at_end: bool, delimiter: str, header: list[str] | None
) -> int | None:
    """The index of the field whose quote does not close on its line, when it swallowed rows.

    A quote left open runs to the end of the file, or closes on a quote meant to open a later
    cell: the row then has the wrong number of fields, or is not CSV as a writer writes it
    (text after a closing quote) and holds a line that reads as a row on its own. A quoted cell
    over several lines, as a CSV writer writes it, in a row of the right width, is none of these
    (a row of the wrong width is re-read line by line too: each line is then a row or a problem).
    """
    if header is None or (len(chunk) == 1 and not at_end):
        return None  # the header, or a one-line row
    failure = _strict_failure("".join(chunk), delimiter) or ""
    width = len(header)
    spanning = [i for i, value in enumerate(record) if "\n" in value or "\r" in value]
    opened = spanning[0] if spanning else len(record) - 1
    if at_end and "unexpected end of data" in failure:
        return opened
    if len(chunk) == 1:
        return None
    if len(record) != width or (failure and any(_row_shaped(line, delimiter, width) for line in chunk[1:])):
        return opened
    return None


def _strict_failure(text: str, delimiter: str) -> str | None:
    """Why `text` is not CSV as a writer writes it (an open quote, text after a closing quote), or None."""
    try:
        list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return str(exc)
    return None


def _row_shaped(line: str, delimiter: str, width: int) -> bool:
    """A line inside a multi-line row that reads on its own as a row of the header's width: swallowed."""
    return width > 1 and len(next(csv.reader([line], delimiter=delimiter), [])) == width


def _unclosed_problem(header: list[str], index: int, line: str, swallowed: int, to_end: bool) -> dict:
    key = column_key(header[index]) if index < len(header) else ""
    field = key if key and len(key) <= 64 and key.isprintable() else "(row)"
    where = "this row" if field == "(row)" else field
    reason = f"a quote opens in {where} and is never closed"
    if swallowed:
        reason = (
            f"a quote opens in {where} and is not closed on its line: it would take in the next "
            f"{swallowed} line(s){', to the end of the file' if to_end else ''}, which were read as rows "
            "of their own instead"
        )
    return {"field": field, "value": line.rstrip("\r\n")[:200], "reason": reason}


def parse_xlsx(raw: bytes, name: str, sheet: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Table:
    """A worksheet of a workbook as a Table, cells as text (empty cells as ""); read whole."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for a file that is not a workbook
        raise ExportError(f"{name} is not a readable Excel workbook: {exc}") from exc
    if sheet not in book.sheetnames:
        raise ExportError(f"{name} has no sheet named {sheet!r} (found: {', '.join(book.sheetnames)})")
    records = [["" if v is None else str(v) for v in row] for row in book[sheet].iter_rows(values_only=True)]
    if not records:
        raise ExportError(f"{name} is empty: expected a header row with {', '.join(required)}")
    return TableReader(((record, None) for record in records), name, required, optional, "xlsx", "").table()


def _check_header(source: str, header: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        found = ", ".join(h for h in header if h) or "nothing"
        raise ExportError(f"{source} lacks required column(s) {', '.join(missing)} (found: {found})")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise ExportError(f"{source} has column(s) {', '.join(repeated)} more than once")
