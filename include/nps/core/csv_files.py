"""Reading CSV files as real exports produce them (Excel, CRMs, spreadsheets).

Accepts UTF-8 with or without a byte order mark, UTF-16 (Excel's "Unicode text"), Shift-JIS /
CP932 (Excel on Japanese Windows), CRLF line ends, comma, semicolon or tab delimiters, quoted
newlines, extra columns, fields of any length, and column names in any case with spaces. Rows
are numbered as a spreadsheet shows them: the header is row 1, and a quoted multi-line cell stays
in one row. A row whose field count does not match the header, or whose quote never closes (it
would swallow the rows after it), is returned as a problem, not loaded; the rows after an open
quote are read as rows of their own.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DELIMITERS = (",", ";", "\t")
LEGACY_ENCODINGS = ("cp932",)  # tried, strictly, after UTF-8
WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # xlsx (zip), xls (OLE)
# Headers other exports write for our columns (Outlook and many CRMs write "E-mail" or "Email Address").
COLUMN_ALIASES = {"time_zone": "timezone", "e_mail": "email", "email_address": "email", "e_mail_address": "email"}


class ExportError(ValueError):
    """The file cannot be read as a table at all; the message says why and what to do."""


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # strings, stripped, with a `row_number` column
    problems: list[dict]  # row_number, field, value, reason
    encoding: str
    delimiter: str
    rows: int  # data rows in the file, good or not


def decode(raw: bytes, name: str) -> tuple[str, str]:
    """The file's text and the encoding it was read with."""
    if raw.startswith(WORKBOOK_SIGNATURES):
        raise ExportError(f"{name} is an Excel workbook, not CSV; in Excel use Save As > 'CSV UTF-8'")
    if raw.startswith(codecs.BOM_UTF8):
        return _strict(raw[len(codecs.BOM_UTF8) :], "utf-8", name), "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(raw, "utf-16", name), "utf-16"
    if len(raw) >= 4 and raw[1::2][:8].count(0) >= 3 and raw[0::2][:8].count(0) == 0:
        return _strict(raw, "utf-16-le", name), "utf-16-le"
    for encoding in ("utf-8", *LEGACY_ENCODINGS):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    error = _first_error(raw)
    line = raw[:error].count(b"\n") + 1
    raise ExportError(
        f"{name} is not UTF-8, UTF-16 or Shift-JIS/CP932 text (byte 0x{raw[error]:02x} on line "
        f"{line}, offset {error}, cannot be read); export it again as 'CSV UTF-8'"
    )


def _strict(raw: bytes, encoding: str, name: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExportError(f"{name} claims {encoding} but byte {exc.start} is not valid {encoding}") from exc


def _first_error(raw: bytes) -> int:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0


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
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"{source} does not exist")
    return parse_csv(source.read_bytes(), str(source), required, optional)


def parse_csv(raw: bytes, name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Table:
    """`read_table` for bytes already read (from object storage, say)."""
    text, encoding = decode(raw, name)
    if not text.strip():
        raise ExportError(f"{name} is empty: expected a header row with {', '.join(required)}")
    delimiter = sniff_delimiter(text.lstrip().splitlines()[0])
    _allow_fields_up_to(len(text))  # a long field is a row problem (checked per column), not a file one
    lines = io.StringIO(text.lstrip("\r\n"), newline="").readlines()
    try:
        records, broken = read_records(lines, delimiter)
    except csv.Error as exc:
        raise ExportError(f"{name} is not a readable CSV file: {exc}") from exc
    return table_from_records(records, name, required, optional, encoding, delimiter, broken)


def _allow_fields_up_to(size: int) -> None:
    """Raise the csv module's field size limit (131072 by default, process-wide) to `size`."""
    csv.field_size_limit(max(csv.field_size_limit(), size + 1))


def read_records(lines: list[str], delimiter: str) -> tuple[list[list[str]], dict[int, dict]]:
    """The file's records (the header first), and the rows whose quote never closes, by row number.

    A quote left open swallows the lines after it into one field. Such a row is kept as the text of
    its own line only and reported (field, reason); reading starts again on the next line, so the
    rows it would have swallowed are read as rows of their own.
    """
    records: list[list[str]] = []
    broken: dict[int, dict] = {}
    start = 0
    while start < len(lines):
        reader = csv.reader((lines[i] for i in range(start, len(lines))), delimiter=delimiter)
        position, restart = start, None
        for record in reader:
            end = start + reader.line_num
            field = _unclosed_quote(record, lines[position:end], end == len(lines), delimiter, records)
            if field is not None:
                row = next(csv.reader([lines[position]], delimiter=delimiter), [])
                swallowed, to_end = end - position - 1, end == len(lines)
                broken[len(records) + 1] = _unclosed_problem(records[0], field, lines[position], swallowed, to_end)
                records.append(row)
                restart = position + 1
                break
            records.append(record)
            position = end
        if restart is None:
            break
        start = restart
    return records, broken


def _unclosed_quote(
    record: list[str], chunk: list[str], at_end: bool, delimiter: str, records: list[list[str]]
) -> int | None:
    """The index of the field whose quote does not close on its line, when it swallowed rows.

    A quote left open runs to the end of the file, or closes on a quote meant to open a later
    cell: the row then has the wrong number of fields, or is not CSV as a writer writes it
    (text after a closing quote) and holds a line that reads as a row on its own. A quoted cell
    over several lines, as a CSV writer writes it, in a row of the right width, is none of these
    (a row of the wrong width is re-read line by line too: each line is then a row or a problem).
    """
    if not records or (len(chunk) == 1 and not at_end):
        return None  # the header, or a one-line row
    failure = _strict_failure("".join(chunk), delimiter) or ""
    width = len(records[0])
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
    """A worksheet of a workbook as a Table, cells as text (empty cells as "")."""
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
    return table_from_records(records, name, required, optional, "xlsx", "")


def table_from_records(
    records: list[list[str]],
    name: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    encoding: str,
    delimiter: str,
    broken: dict[int, dict] | None = None,
) -> Table:
    """A Table from rows of cells, the header first; `broken`: problems of rows by row number."""
    header = [column_key(h) for h in records[0]]
    _check_header(name, header, required)
    return _frame(records[1:], header, required, optional, encoding, delimiter, broken or {})


def _check_header(source: str, header: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        found = ", ".join(h for h in header if h) or "nothing"
        raise ExportError(f"{source} lacks required column(s) {', '.join(missing)} (found: {found})")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise ExportError(f"{source} has column(s) {', '.join(repeated)} more than once")


def _frame(
    records: list[list[str]],
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    encoding: str,
    delimiter: str,
    broken: dict[int, dict],
) -> Table:
    import pandas as pd

    rows, problems, count = [], [], 0
    for number, record in enumerate(records, start=2):
        if number in broken:
            count += 1
            problems.append({"row_number": number, **broken[number]})
            continue
        if not any(cell.strip() for cell in record):
            continue  # blank lines, as spreadsheets leave at the end
        count += 1
        if len(record) != len(header):
            problems.append(
                {
                    "row_number": number,
                    "field": "(row)",
                    "value": delimiter.join(record)[:200],
                    "reason": f"row has {len(record)} fields, the header has {len(header)}",
                }
            )
            continue
        rows.append({"row_number": number, **{h: v.strip() for h, v in zip(header, record, strict=True) if h}})
    columns = ["row_number", *dict.fromkeys([*required, *optional, *(h for h in header if h)])]
    frame = pd.DataFrame(rows, columns=columns)
    # Every cell read is text; a column no row has comes out as float NaN, which takes no "".
    blank = {column: object for column in columns[1:] if frame[column].isna().all()}
    frame = frame.astype(blank).fillna("")
    frame["row_number"] = frame["row_number"].astype(int)
    return Table(frame=frame, problems=problems, encoding=encoding, delimiter=delimiter, rows=count)
