"""The wave's audience: load contacts, quarantine bad rows, apply suppression rules, snapshot.

Every input row is either loaded or quarantined with a reason a person can read; every loaded
contact lands in the wave's snapshot, included or excluded with its reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from include.nps import i18n, storage

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS = ("contact_id", "email", "name", "account_id", "account_name")
OPTIONAL_COLUMNS = ("locale", "role", "account_tier", "account_country", "sales_owner", "csm", "vip")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0", ""}


class AudienceError(ValueError):
    """The audience source cannot be used at all (missing file or columns)."""


@dataclass(frozen=True)
class LoadResult:
    contact_ids: list[str]
    quarantined: int

    @property
    def loaded(self) -> int:
        return len(self.contact_ids)


def read_contacts_csv(path: str | Path) -> pd.DataFrame:
    """The contacts file as strings, with a `row_number` matching the line in the file."""
    import pandas as pd

    source = Path(path)
    if not source.is_file():
        raise AudienceError(f"audience source {source} does not exist")
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AudienceError(f"audience source {source} lacks column(s): {', '.join(missing)}")
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.map(str.strip)
    frame["row_number"] = range(2, len(frame) + 2)
    return frame


def validate_contacts(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Split rows into good ones and quarantine entries (row number, field, value, reason)."""
    problems: list[dict] = []

    def reject(mask: pd.Series, field: str, reason: str) -> None:
        for _, row in frame[mask].iterrows():
            problems.append(
                {"row_number": int(row["row_number"]), "field": field, "value": row[field], "reason": reason}
            )

    for column in REQUIRED_COLUMNS:
        reject(frame[column] == "", column, f"{column} is empty")
    email = frame["email"].str.lower()
    reject((email != "") & ~email.str.match(EMAIL_PATTERN), "email", "not a valid email address")
    for column in ("sales_owner", "csm"):
        value = frame[column]
        reject((value != "") & ~value.str.match(EMAIL_PATTERN), column, f"{column} is not a valid email address")
    reject(~frame["vip"].str.lower().isin(TRUE_WORDS | FALSE_WORDS), "vip", "vip must be true or false")
    reject(
        frame["contact_id"].duplicated() & (frame["contact_id"] != ""), "contact_id", "duplicate contact_id in the file"
    )
    reject(email.duplicated() & (email != ""), "email", "duplicate email in the file")

    bad_rows = {p["row_number"] for p in problems}
    good = frame[~frame["row_number"].isin(bad_rows)].copy()
    good["email"] = good["email"].str.lower()
    good["vip"] = good["vip"].str.lower().isin(TRUE_WORDS)
    good["locale"] = good["locale"].map(i18n.normalize_locale)
    return good, problems


def load_contacts(engine: Engine, wave_id: str, source: str | Path) -> LoadResult:
    """Upsert the good rows of a contacts file into accounts and contacts; quarantine the rest."""
    frame = read_contacts_csv(source)
    good, problems = validate_contacts(frame)
    now = storage.utcnow()
    storage.execute(
        engine,
        storage.query("upsert_quarantine"),
        [{**p, "wave_id": wave_id, "source": str(source)} for p in problems],
    )
    accounts = good.drop_duplicates("account_id")
    storage.execute(
        engine,
        storage.query("upsert_account"),
        [
            {
                "account_id": r.account_id,
                "name": r.account_name,
                "country": r.account_country.upper() or None,
                "tier": r.account_tier or None,
                "sales_owner": r.sales_owner.lower() or None,
                "csm": r.csm.lower() or None,
                "vip": bool(r.vip),
                "updated_at": now,
            }
            for r in accounts.itertuples()
        ],
    )
    storage.execute(
        engine,
        storage.query("upsert_contact"),
        [
            {
                "contact_id": r.contact_id,
                "account_id": r.account_id,
                "email": r.email,
                "name": r.name,
                "role": r.role or None,
                "locale": r.locale,
                "updated_at": now,
            }
            for r in good.itertuples()
        ],
    )
    return LoadResult(contact_ids=good["contact_id"].tolist(), quarantined=len({p["row_number"] for p in problems}))


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
