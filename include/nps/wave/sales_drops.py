"""Raw-data drops to sales: the responses as spreadsheets, mid-wave and after close.

Each drop is one complete file for sales operations and one file per salesperson holding only
the accounts they own. Files are built from the responses answered up to the drop's cutoff and
written byte for byte the same on every re-run (fixed workbook dates and zip timestamps), so the
manifest's SHA-256 sums hold. Customer text that a spreadsheet would run as a formula is
neutralised in every cell.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from include.nps.core import addresses, clean_text, storage
from include.nps.wave.waves import slug

if TYPE_CHECKING:
    import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DECISION_HEADER = "Sales decision (sales / cs)"
COMPLETE = "all-accounts"
DROP_COLUMNS = {
    "contact_id": "Contact ID",
    "account_name": "Account",
    "contact_name": "Contact",
    "email": "Email",
    "role": "Role",
    "score": "Score",
    "category": "Category",
    "comment": "Comment",
    "answered_at": "Answered at (UTC)",
    "sales_owner": "Salesperson",
    "proposed_owner": "Proposed follow-up owner",
}
SILENT_COLUMNS = {"account_id": "Account ID", "account_name": "Account", "invited": "Contacts invited"}
DETRACTOR_FILL = "FDE2E1"
HEADER_FILL = "E4E7EB"
MAX_COLUMN_WIDTH = 60
XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what openpyxl refuses in a cell (tab, newline stay)
FORMATS = ("xlsx", "csv")


class DropRefused(ValueError):
    """The drop cannot go out as configured (a recipient not allow-listed, a file too large)."""


@dataclass(frozen=True)
class DropFile:
    """One file of a drop: who it is for (a salesperson's address, or COMPLETE) and its bytes."""

    name: str
    audience: str
    rows: int
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def neutralise(value: object) -> object:
    """Text that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """The text as typed: the apostrophe `neutralise` put before formula-like text removed."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES) else value


def category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def drop_frame(
    responses: pd.DataFrame,
    detractor_max: int,
    pillars: list[dict[str, Any]],
    cutoff: dt.datetime,
    decisions: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The sheet sales receives: one row per response answered by `cutoff`, customer text
    neutralised, the proposed follow-up owner of each detractor, and the decision column (filled
    with the decisions sales already returned)."""
    import pandas as pd

    frame = responses.copy()
    frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="mixed")
    frame = frame[frame["answered_at"] <= pd.Timestamp(cutoff)].reset_index(drop=True)
    frame["answered_at"] = frame["answered_at"].dt.tz_localize(None).dt.floor("s")
    frame["category"] = frame["score"].map(category)
    frame["proposed_owner"] = proposed_owners(storage.records(frame), detractor_max)
    columns = dict(DROP_COLUMNS)
    for pillar in pillars:
        columns[f"pillar_{pillar['id']}"] = f"{pillar['text']} ({pillar['scale']})"
    sheet = frame.reindex(columns=list(columns)).rename(columns=columns)
    sheet[DECISION_HEADER] = [(decisions or {}).get(contact_id, "") for contact_id in frame["contact_id"]]
    return sheet.map(neutralise)


def proposed_owners(records: list[dict[str, Any]], detractor_max: int) -> list[str | None]:
    """The owner type the routing rules propose for each detractor's record (None for the others)."""
    from include.nps.wave import routing, routing_rules

    rules = routing_rules.load()
    return [rules.owner(routing.facts_of(r), "cs-ops")[0] if r["score"] <= detractor_max else None for r in records]


Parts = dict[str, tuple["pd.DataFrame", "pd.DataFrame | None"]]


def drop_parts(sheet: pd.DataFrame, silent: pd.DataFrame | None) -> Parts:
    """Who gets which rows: the complete sheet for sales ops, each salesperson's own rows."""
    parts: Parts = {COMPLETE: (sheet, silent)}
    for seller, rows in sheet.groupby("Salesperson", sort=True):
        seller_silent = None if silent is None else silent[silent["sales_owner"] == seller]
        parts[str(seller)] = (rows, seller_silent)
    return parts


def seller_rows(parts: Parts) -> pd.DataFrame:
    """The rows of every salesperson's file, with the file's salesperson in `file_for`."""
    import pandas as pd

    frames = [rows.assign(file_for=audience) for audience, (rows, _) in parts.items() if audience != COMPLETE]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["Contact ID", "file_for", "Salesperson"])
    )


def build_drop(wave_id: str, phase: str, parts: Parts, cutoff: dt.datetime, formats: list[str]) -> list[DropFile]:
    """The complete file and one per salesperson, in each format asked for."""
    files = []
    for audience, (rows, silent_rows) in parts.items():
        stem = f"{wave_id}-{phase}-{slug(audience)}"
        if "xlsx" in formats:
            content = xlsx_bytes(rows, _silent_sheet(silent_rows), cutoff)
            files.append(DropFile(f"{stem}.xlsx", audience, len(rows), content))
        if "csv" in formats:
            files.append(DropFile(f"{stem}.csv", audience, len(rows), csv_bytes(rows)))
    return files


def _silent_sheet(silent: pd.DataFrame | None) -> pd.DataFrame | None:
    if silent is None:
        return None
    return silent.reindex(columns=list(SILENT_COLUMNS)).rename(columns=SILENT_COLUMNS).map(neutralise)


def xlsx_bytes(sheet: pd.DataFrame, silent: pd.DataFrame | None, when: dt.datetime) -> bytes:
    """The workbook: header kept in view, filters on, widths that fit, detractors highlighted,
    real dates, a drop-down for the sales decision; the post-wave drop adds the silent accounts."""
    from openpyxl import Workbook

    book = Workbook()
    responses = book.active
    responses.title = "Responses"
    _fill_sheet(responses, sheet)
    _style_responses(responses, sheet)
    if silent is not None:
        _fill_sheet(book.create_sheet("Silent accounts"), silent)
    stamp = when.astimezone(dt.UTC).replace(tzinfo=None)
    book.properties.created = book.properties.modified = stamp
    buffer = io.BytesIO()
    book.save(buffer)
    return reproducible_zip(buffer.getvalue(), stamp)


def _fill_sheet(worksheet: Any, frame: pd.DataFrame) -> None:
    from openpyxl.styles import Font, PatternFill

    worksheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        worksheet.append([_cell(value) for value in row])
    for cell in worksheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor=HEADER_FILL)
    worksheet.freeze_panes = "A2"
    worksheet.auto_filter.ref = worksheet.dimensions
    _print_setup(worksheet)
    for index, column in enumerate(frame.columns, start=1):
        longest = max([len(str(column)), *(len(str(v)) for v in map(_cell, frame[column]) if v is not None)])
        letter = worksheet.cell(row=1, column=index).column_letter
        worksheet.column_dimensions[letter].width = min(longest + 2, MAX_COLUMN_WIDTH)


def _print_setup(worksheet: Any) -> None:
    """Printed or saved as PDF: landscape, every column on the page's width, the header on each page."""
    worksheet.page_setup.orientation = "landscape"
    worksheet.page_setup.fitToWidth = 1
    worksheet.page_setup.fitToHeight = 0
    worksheet.sheet_properties.pageSetUpPr.fitToPage = True
    worksheet.print_title_rows = "1:1"


def _style_responses(worksheet: Any, sheet: pd.DataFrame) -> None:
    from openpyxl.styles import PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    columns = list(sheet.columns)
    answered = columns.index(DROP_COLUMNS["answered_at"]) + 1
    for row in range(2, len(sheet) + 2):
        worksheet.cell(row=row, column=answered).number_format = "yyyy-mm-dd hh:mm"
    highlight = PatternFill("solid", fgColor=DETRACTOR_FILL)
    for offset, value in enumerate(sheet["Category"], start=2):
        if value == "detractor":
            for cell in worksheet[offset]:
                cell.fill = highlight
    decision = worksheet.cell(row=1, column=columns.index(DECISION_HEADER) + 1).column_letter
    choice = DataValidation(type="list", formula1='"sales,cs"', allow_blank=True)
    choice.add(f"{decision}2:{decision}{max(len(sheet) + 1, 2)}")
    worksheet.add_data_validation(choice)


def _cell(value: Any) -> Any:
    """A value openpyxl writes as itself: missing values (NaN, NA, NaT) empty, pandas scalars as Python
    ones, and the control characters a workbook cannot hold (NUL, escape...) written as escapes (`\\x00`)."""
    value = storage.plain(value)
    if isinstance(value, str):
        return XLSX_ILLEGAL.sub(lambda found: clean_text.visible(found.group()), value)
    return value


def csv_bytes(sheet: pd.DataFrame) -> bytes:
    """UTF-8 with a byte-order mark, so Excel opens Japanese and Hebrew text as written."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(sheet.columns)
    for row in sheet.itertuples(index=False):
        writer.writerow(["" if (v := _cell(value)) is None else v for value in row])
    return out.getvalue().encode("utf-8-sig")


def reproducible_zip(data: bytes, when: dt.datetime) -> bytes:
    """The same archive with every entry stamped `when`: equal content, equal bytes."""
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, _fixed_properties(entry.filename, source.read(entry.filename), when))
    return buffer.getvalue()


def _fixed_properties(name: str, data: bytes, when: dt.datetime) -> bytes:
    """openpyxl stamps the save time as the workbook's `modified` date; use the drop's instead."""
    if name != "docProps/core.xml":
        return data
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    return re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>" + stamp + rb"\g<2>", data)


def manifest(wave_id: str, phase: str, cutoff: dt.datetime, files: list[DropFile]) -> bytes:
    """What the drop holds: each file, who it is for, its rows and its SHA-256."""
    entries = [{"file": f.name, "for": f.audience, "rows": f.rows, "sha256": f.sha256} for f in files]
    document = {"wave_id": wave_id, "drop": phase, "responses_until": cutoff.isoformat(), "files": entries}
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def allowed(address: str, allow_list: list[str]) -> bool:
    """`address` is exactly one bare address, listed itself or by its whole domain (`vendor.example` or
    `@vendor.example`; subdomains are not included, see `include.nps.core.addresses`)."""
    return addresses.is_allowed(address, allow_list)


def check_recipients(recipients: dict[str, str], allow_list: list[str]) -> None:
    """Stop the drop before anything is sent when any recipient is not exactly one allow-listed
    address, or an allow-list entry is neither an address nor a domain."""
    refused = {address: problem for address in recipients if (problem := addresses.refusal(address, allow_list))}
    broken = addresses.entry_problems(allow_list)
    if refused or broken:
        listed = "; ".join(
            f"{address} ({recipients[address]})"
            if problem == "not on the allow-list"
            else f"{address!r} ({recipients[address]}; {problem})"
            for address, problem in sorted(refused.items())
        )
        entries = f" The allow-list entries {'; '.join(broken)}." if broken else ""
        raise DropRefused(
            f"raw-data drop stopped: {len(refused)} recipient(s) not on the drop allow-list "
            f"[{', '.join(allow_list) or 'empty'}]: {listed or 'none'}.{entries} Nothing was sent."
        )
