"""The wave's audience: load contacts, quarantine bad rows, apply suppression rules, snapshot.

Every input row is either loaded or quarantined with a reason a person can read; every loaded
contact lands in the wave's snapshot, included or excluded with its reason.

What the NPS DB or a later step would refuse is refused here, row by row, naming the field:
ids and addresses holding a control or invisible character (NUL, a line break, a bidi override
such as U+202E), a value longer than its column, an `account_country` that is not an ISO 3166
alpha-2 code, a `timezone` that is not an IANA zone. Free text (name, account_name, role,
account_tier) is cleaned instead and its row loaded: line breaks and tabs (also a line break in
a quoted cell) become one space, other control characters and bidi overrides are removed
(`clean_text.clean_line`); a name is still a name without them.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from include.nps.core import addresses, clean_text, csv_files, i18n, storage
from include.nps.wave.sales_drops import neutralise

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS = ("contact_id", "email", "name", "account_id", "account_name")
OPTIONAL_COLUMNS = ("locale", "role", "account_tier", "account_country", "sales_owner", "csm", "vip", "timezone")
ID_COLUMNS = ("contact_id", "account_id")
FREE_TEXT_COLUMNS = ("name", "account_name", "role", "account_tier")
MAX_LENGTHS = {  # the NPS DB's column sizes
    "contact_id": 64,
    "email": 254,
    "name": 200,
    "account_id": 64,
    "account_name": 200,
    "role": 100,
    "account_tier": 32,
    "sales_owner": 254,
    "csm": 254,
}
EMAIL_PATTERN = re.compile(
    r"(?i)^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
)
TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0", ""}
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
# Letters of other scripts drawn like Latin ones (Unicode's confusables, the common cases).
LOOK_ALIKES = str.maketrans(
    {
        "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y",
        "\u0445": "x", "\u0456": "i", "\u0458": "j", "\u0455": "s", "\u0501": "d", "\u04cf": "l",
        "\u051b": "q", "\u051d": "w", "\u043a": "k", "\u03bf": "o", "\u03b1": "a", "\u03bd": "v",
        "\u03c5": "u", "\u03c1": "p", "\u03b9": "i", "\u03ba": "k",
    }
)  # fmt: skip
DEFAULT_MAX_REJECTED_SHARE = 0.05
COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}  # codes people use that ISO 3166 gives another country or none
EXCEL_CELL_LIMIT = 32_767  # characters Excel shows in one cell
# A placeholder no address matches (no @), unique per contact, while its address passes to another.
PARK_ADDRESS = "UPDATE contacts SET email = '~' || contact_id WHERE contact_id = :contact_id"


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


def email_key(value: str) -> str:
    """What makes two addresses the same: case, width, invisible and look-alike characters aside."""
    return clean_email(value).casefold().translate(LOOK_ALIKES)


def clean_email(value: str) -> str:
    """Full-width forms folded and invisible characters (zero-width space, soft hyphen) removed."""
    return unicodedata.normalize("NFKC", value).translate(INVISIBLE).strip()


def email_problem(value: str) -> str | None:
    """Why an address cannot be mailed, or None."""
    if control := clean_text.forbidden_character(value, "email"):
        return control
    if foreign := next((c for c in value if ord(c) > 127), None):
        latin = foreign.translate(LOOK_ALIKES)
        alike = f", a look-alike of '{latin}'" if latin != foreign else ""
        name = unicodedata.name(foreign, "unnamed")
        return f"email contains the non-ASCII character U+{ord(foreign):04X} ({name}){alike}"
    if not EMAIL_PATTERN.match(value):
        return "not a valid email address"
    try:  # the grammar recipients are parsed with at send: what loads here can be mailed there
        addresses.bare_address(value)
    except addresses.AddressError as exc:
        return f"not a valid email address ({exc})"
    return None


@cache
def iso_countries() -> frozenset[str]:
    """The ISO 3166-1 alpha-2 codes, as the tz database lists them (`iso3166.tab` of `tzdata`)."""
    table = files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text(encoding="utf-8")
    return frozenset(line.split("\t", 1)[0] for line in table.splitlines() if line and not line.startswith("#"))


@cache
def time_zones() -> dict[str, str]:
    """The IANA time zone names (the `tzdata` package's list) by their lower-case spelling."""
    names = files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return {name.lower(): name for name in names}


def country_problem(value: str) -> str | None:
    """Why an `account_country` is not an ISO 3166 alpha-2 code (any case; blank is fine), or None."""
    code = value.upper()
    if not code or code in iso_countries():
        return None
    hint = f" ({COUNTRY_HINTS[code]}, not {code})" if code in COUNTRY_HINTS else " such as US, DE or JP"
    return f"account_country must be an ISO 3166 alpha-2 code{hint}"


def timezone_problem(value: str) -> str | None:
    """Why a `timezone` is not an IANA zone name (any case; blank is fine), or None."""
    if not value or value.lower() in time_zones():
        return None
    city = value.strip().replace(" ", "_").lower()
    near = [zone for zone in time_zones().values() if zone.lower().rsplit("/", 1)[-1] == city]
    hint = f"; did you mean {near[0]}?" if len(near) == 1 else ""
    return f"timezone must be an IANA time zone such as Asia/Tokyo or America/New_York{hint}"


def row_problems(row: Any) -> Iterator[tuple[str, str]]:
    """(field, reason) for each problem of one contact row on its own."""
    for column in REQUIRED_COLUMNS:
        if row[column] == "":
            yield column, f"{column} is empty"
    for column in ID_COLUMNS:
        if problem := clean_text.forbidden_character(row[column], column):
            yield column, problem
    for column, limit in MAX_LENGTHS.items():
        if len(row[column]) > limit:
            yield column, f"{column} is {len(row[column])} characters long, the limit is {limit}"
    if row["email"] and (problem := email_problem(clean_email(row["email"]))):
        yield "email", problem
    for column in ("sales_owner", "csm"):
        if control := clean_text.forbidden_character(row[column], column):
            yield column, control
        elif row[column] and email_problem(row[column]):
            yield column, f"{column} is not a valid email address"
    if row["vip"].lower() not in TRUE_WORDS | FALSE_WORDS:
        yield "vip", "vip must be true or false"
    if problem := country_problem(row["account_country"]):
        yield "account_country", problem
    if problem := timezone_problem(row["timezone"]):
        yield "timezone", problem


def duplicate_problems(frame: pd.DataFrame) -> Iterator[tuple[int, str, str]]:
    """(row, field, reason) for each contact id or address already seen in an earlier row."""
    first_id: dict[str, int] = {}
    first_email: dict[str, int] = {}
    for number, contact_id, email in zip(frame["row_number"], frame["contact_id"], frame["email"], strict=True):
        if contact_id and (earlier := first_id.setdefault(contact_id, number)) != number:
            yield number, "contact_id", f"duplicate contact_id in the file (first in row {earlier})"
        if (key := email_key(email)) and (earlier := first_email.setdefault(key, number)) != number:
            yield number, "email", f"duplicate email in the file (same address as row {earlier})"


def validate_contacts(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Split rows into good ones and quarantine entries (row number, field, value, reason).

    A row can have several problems, the first one per field is kept; every row is either good
    or quarantined. Free text is cleaned first (see the module's docstring), so its limits hold
    for what is stored. Good rows come back as stored: address lower-case, country upper-case,
    the time zone spelt as the tz database spells it.
    """
    frame = clean_free_text(frame)
    problems: dict[tuple[int, str], dict] = {}
    values = frame.set_index("row_number")

    def reject(number: int, field: str, reason: str) -> None:
        value = values.at[number, field][:200]
        problems.setdefault((number, field), {"row_number": number, "field": field, "value": value, "reason": reason})

    for _, row in frame.iterrows():
        for field, reason in row_problems(row):
            reject(int(row["row_number"]), field, reason)
    for number, field, reason in duplicate_problems(frame):
        reject(int(number), field, reason)

    good = frame[~frame["row_number"].isin({number for number, _ in problems})].copy()
    good["email"] = good["email"].map(clean_email).str.lower()
    good["vip"] = good["vip"].str.lower().isin(TRUE_WORDS)
    good["locale"] = good["locale"].map(i18n.normalize_locale)
    good["account_country"] = good["account_country"].str.upper()
    good["timezone"] = good["timezone"].map(lambda zone: time_zones().get(zone.lower(), ""))
    return good, sorted(problems.values(), key=lambda p: (p["row_number"], p["field"]))


def clean_free_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with control characters and bidi overrides out of its free-text columns."""
    return frame.assign(**{column: frame[column].map(clean_text.clean_line) for column in FREE_TEXT_COLUMNS})


def load_contacts(
    engine: Engine,
    wave_id: str,
    source: str | Path,
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE,
    rejected_csv: Path | None = None,
) -> LoadResult:
    """Upsert the good rows of a contacts file into accounts and contacts; quarantine the rest
    (in the `quarantine` table and, when given, a CSV of the rejected rows).

    When more than `max_rejected_share` of the rows are bad, the file is a broken extract: the
    quarantine is kept but nothing is loaded and AudienceError says how many and why.
    """
    table = read_contacts_csv(source)
    good, problems = validate_contacts(table.frame)
    good, taken, moving = split_taken_addresses(good, _held_addresses(engine))
    problems = sorted(table.problems + problems + taken, key=lambda p: (p["row_number"], p["field"]))
    problems = [{**p, "value": clean_text.visible(p["value"])[:200]} for p in problems]
    result = LoadResult(contact_ids=good["contact_id"].tolist(), problems=problems, rows=table.rows)
    storage.execute(
        engine,
        storage.query("upsert_quarantine"),
        [{**p, "wave_id": wave_id, "source": str(source)} for p in problems],
    )
    if rejected_csv is not None and problems:
        write_rejected_csv(rejected_csv, table, problems)
    if table.rows and result.quarantined / table.rows > max_rejected_share:
        raise AudienceError(
            f"audience source {source}: {result.quarantined} of {table.rows} rows rejected "
            f"({result.quarantined / table.rows:.1%}, above the {max_rejected_share:.0%} threshold); "
            f"most common reasons: {_top_reasons(problems)}. Nothing was loaded."
        )
    _upsert_contacts(engine, good, moving)
    return result


def _held_addresses(engine: Engine) -> pd.DataFrame:
    return storage.read_frame(engine, "SELECT contact_id AS holder, email FROM contacts")


def split_taken_addresses(good: pd.DataFrame, held: pd.DataFrame) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """Rows whose address another contact holds in the NPS DB (one contact per address there).

    An address moves to another contact id only when its holder is in the file with a new
    address; otherwise the row is quarantined: the holder's opt-out and bounces stay with it.
    Returns the rows to load, the problems, and the holders to move off their old address first.
    """
    problems: list[dict] = []
    while True:
        wanted = good[["row_number", "contact_id", "email"]].merge(held, on="email")
        wanted = wanted[wanted["holder"] != wanted["contact_id"]]
        moves = wanted["holder"].isin(good["contact_id"])
        if moves.all():
            return good, problems, wanted["holder"].tolist()
        problems += [
            {
                "row_number": int(r.row_number),
                "field": "email",
                "value": r.email,
                "reason": f"email belongs to contact {r.holder} in the NPS DB and {r.holder} keeps it; an "
                "address does not move to another contact id (opt-outs and bounces stay with their contact)",
            }
            for r in wanted[~moves].itertuples()
        ]
        good = good[~good["row_number"].isin(wanted.loc[~moves, "row_number"])]


def _top_reasons(problems: list[dict], top: int = 3) -> str:
    counts = Counter(re.sub(r" \(.*\)$", "", p["reason"]) for p in problems)
    return "; ".join(f"{reason} ({n})" for reason, n in counts.most_common(top))


def _upsert_contacts(engine: Engine, good: pd.DataFrame, moving: list[str]) -> None:
    """Upsert accounts, then contacts; `moving` contacts leave their old address first (in the same
    transaction), so addresses can change hands within one file, even crosswise."""
    now = storage.utcnow()
    accounts = good.drop_duplicates("account_id")
    storage.execute(
        engine,
        storage.query("upsert_account"),
        [
            {
                "account_id": r.account_id,
                "name": r.account_name,
                "country": r.account_country or None,
                "tier": r.account_tier or None,
                "sales_owner": r.sales_owner.lower() or None,
                "csm": r.csm.lower() or None,
                "vip": bool(r.vip),
                "updated_at": now,
            }
            for r in accounts.itertuples()
        ],
    )
    contacts = [
        {
            "contact_id": r.contact_id,
            "account_id": r.account_id,
            "email": r.email,
            "name": r.name,
            "role": r.role or None,
            "locale": r.locale,
            "timezone": r.timezone or None,
            "updated_at": now,
        }
        for r in good.itertuples()
    ]
    if not contacts:
        return
    with engine.begin() as conn:
        if moving:
            conn.execute(text(PARK_ADDRESS), [{"contact_id": c} for c in moving])
        conn.execute(text(storage.query("upsert_contact")), contacts)


def write_rejected_csv(path: Path, table: csv_files.Table, problems: list[dict]) -> Path:
    """The rejected rows as a CSV a person can fix and re-import: row, field, reason, then the row.

    UTF-8 with a byte order mark for Excel; cells that a spreadsheet would run are neutralised,
    control characters written as escapes (`\\x00`) and cells cut to what Excel shows in a cell.
    """
    original = table.frame.set_index("row_number")
    columns = [c for c in table.frame.columns if c != "row_number"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow(["row_number", "field", "reason", "value", *columns])
        for p in problems:
            row = original.loc[p["row_number"]].tolist() if p["row_number"] in original.index else [""] * len(columns)
            cells = [p["row_number"], p["field"], p["reason"], p["value"], *row]
            writer.writerow([neutralise(_cell(c)) for c in cells])
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
    """Freeze the wave's audience: included contacts, and excluded ones with their reason.

    Re-running keeps the first snapshot (the audience of a wave never changes once taken).
    """
    now = storage.utcnow()
    storage.execute(
        engine,
        storage.query("snapshot_audience"),
        [
            {
                "wave_id": wave_id,
                "contact_id": contact_id,
                "recent_since": open_at - dt.timedelta(days=frequency_days),
                "now": now,
            }
            for contact_id in contact_ids
        ],
    )
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
