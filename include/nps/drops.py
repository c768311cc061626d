"""Raw-data drops to sales: the responses so far as a spreadsheet, mid-wave and after close."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DROP_COLUMNS = {
    "account_name": "Account",
    "contact_name": "Contact",
    "email": "Email",
    "role": "Role",
    "score": "Score",
    "category": "Category",
    "comment": "Comment",
    "answered_at": "Answered at (UTC)",
    "sales_owner": "Salesperson",
    "csm": "CSM",
    "proposed_owner": "Proposed follow-up owner",
}


def neutralise(value: object) -> object:
    """Text that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def drop_frame(responses: pd.DataFrame, detractor_max: int, pillar_ids: list[str]) -> pd.DataFrame:
    """The sheet sales receives: one row per response, customer text neutralised."""
    import pandas as pd

    from include.nps.routing import choose_owner

    frame = responses.copy()
    frame["category"] = frame["score"].map(category)
    frame["proposed_owner"] = [
        choose_owner(r.tier, r.sales_owner, r.csm, "cs-ops")[0] if r.score <= detractor_max else ""
        for r in frame.itertuples()
    ]
    frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="mixed").dt.tz_localize(None)
    columns = dict(DROP_COLUMNS)
    for pillar in pillar_ids:
        columns[f"pillar_{pillar}"] = f"Pillar: {pillar}"
    for column in columns:
        if column not in frame:
            frame[column] = None
    sheet = frame[list(columns)].rename(columns=columns)
    return sheet.map(neutralise)


def write_xlsx(sheet: pd.DataFrame, path: Path, silent_accounts: list[str] | None = None) -> Path:
    """Write the drop; the post-wave drop adds a sheet of accounts that did not answer."""
    import pandas as pd

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        sheet.to_excel(writer, sheet_name="Responses", index=False, freeze_panes=(1, 0))
        writer.sheets["Responses"].auto_filter.ref = writer.sheets["Responses"].dimensions
        if silent_accounts is not None:
            silent = pd.DataFrame({"Account": [neutralise(a) for a in silent_accounts]})
            silent.to_excel(writer, sheet_name="Silent accounts", index=False)
    return path
