"""What a row of a contacts file must be to be loaded, checked over whole columns at once.

What the NPS DB or a later step would refuse is refused here, naming the field: ids and addresses
holding a control or invisible character (NUL, a line break, a bidi override such as U+202E), a
value longer than its column, an `account_country` that is not an ISO 3166 alpha-2 code, a
`timezone` that is not an IANA zone. Free text (name, account_name, role, account_tier) is cleaned
instead and its row loaded: line breaks and tabs (also a line break in a quoted cell) become one
space, other control characters and bidi overrides are removed (`clean_text.clean_line`).

`row_problems` states the rules for one row. `check_rows` applies them to a chunk of rows with
column operations (a test in C over a column's values joined, lengths, a regular expression per
address, a look-up of each distinct value), finds the rows that surely pass, and asks
`row_problems` only about the others: so the reasons are exactly `row_problems`' and the common row
costs no Python of its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from include.nps.core import addresses, clean_text, i18n

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REQUIRED_COLUMNS = ("contact_id", "email", "name", "account_id", "account_name")
OPTIONAL_COLUMNS = ("locale", "role", "account_tier", "account_country", "sales_owner", "csm", "vip", "timezone")
ID_COLUMNS = ("contact_id", "account_id")
FREE_TEXT_COLUMNS = ("name", "account_name", "role", "account_tier")
OWNER_COLUMNS = ("sales_owner", "csm")
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
# An address that surely passes `email_problem`: ASCII, EMAIL_PATTERN, and a domain that
# addresses.DOMAIN takes (labels of at most 63 characters, 4 to 253 in all, a TLD of letters).
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=[A-Za-z0-9.-]{4,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}",
    re.ASCII,
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
COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}  # codes people use that ISO 3166 gives another country or none


# --- the rules, for one value or one row -----------------------------------------------------------


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
    """(field, reason) for each problem of one contact row on its own; a field's first one counts."""
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
    for column in OWNER_COLUMNS:
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
    """(row, field, reason) for each contact id or address already seen in an earlier row of `frame`
    (the rule for one frame in memory; a file read in chunks has its earlier rows in `SeenKeys`)."""
    first_id: dict[str, int] = {}
    first_email: dict[str, int] = {}
    for number, contact_id, email in zip(frame["row_number"], frame["contact_id"], frame["email"], strict=True):
        if contact_id and (earlier := first_id.setdefault(contact_id, number)) != number:
            yield number, "contact_id", duplicate_reason("contact_id", earlier)
        if (key := email_key(email)) and (earlier := first_email.setdefault(key, number)) != number:
            yield number, "email", duplicate_reason("email", earlier)


def duplicate_reason(field: str, earlier: int) -> str:
    if field == "contact_id":
        return f"duplicate contact_id in the file (first in row {earlier})"
    return f"duplicate email in the file (same address as row {earlier})"


# --- the rules over whole columns -------------------------------------------------------------------


def check_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[int, str], dict]]:
    """The rows with their free text cleaned, and the problems of each row on its own by (row, field):
    row number, field, value (cut to 200 characters) and reason, the first one per field."""
    frame = clean_free_text(frame)
    problems: dict[tuple[int, str], dict] = {}
    for row in frame[~surely_fine(frame)].to_dict("records"):
        for field, reason in row_problems(row):
            problem = {"row_number": int(row["row_number"]), "field": field, "value": row[field][:200]}
            problems.setdefault((problem["row_number"], field), {**problem, "reason": reason})
    return frame, problems


def surely_fine(frame: pd.DataFrame) -> np.ndarray:
    """Rows `row_problems` surely finds nothing in (the others may still be fine: ask it)."""
    import numpy as np

    fine = np.ones(len(frame), dtype=bool)
    for column, limit in MAX_LENGTHS.items():
        size = lengths(frame[column].tolist())
        fine &= (size <= limit) & (size > 0) if column in REQUIRED_COLUMNS else size <= limit
    for column in ID_COLUMNS:
        fine &= ~rows_with(frame[column].tolist(), is_forbidden)
    fine &= np.fromiter(map(bool, map(PLAIN_ADDRESS.fullmatch, frame["email"].tolist())), bool, len(frame))
    rules: dict[str, Callable[[str], bool]] = {
        "sales_owner": lambda value: _owner_fine(value, "sales_owner"),
        "csm": lambda value: _owner_fine(value, "csm"),
        "vip": lambda value: value.lower() in TRUE_WORDS | FALSE_WORDS,
        "account_country": lambda value: country_problem(value) is None,
        "timezone": lambda value: timezone_problem(value) is None,
    }
    for column, rule in rules.items():
        fine &= per_value(frame[column], rule).astype(bool)
    return fine


def _owner_fine(value: str, column: str) -> bool:
    if not value or PLAIN_ADDRESS.fullmatch(value):
        return True
    return clean_text.forbidden_character(value, column) is None and email_problem(value) is None


def clean_free_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with control characters and bidi overrides out of its free-text columns: only the
    values holding one are passed to `clean_text.clean_line` (which leaves any other as it is)."""
    cleaned = {}
    for column in FREE_TEXT_COLUMNS:
        values = frame[column].tolist()
        touched = rows_with(values, is_cleaned)
        if touched.any():
            cleaned[column] = [clean_text.clean_line(v) if t else v for v, t in zip(values, touched, strict=True)]
    return frame.assign(**cleaned) if cleaned else frame


def email_keys(emails: pd.Series) -> list[str]:
    """`email_key` of each address: ASCII ones lower-cased at once, the others one by one."""
    values = emails.tolist()
    outside = rows_with(values, is_non_ascii, str.isascii)
    return [email_key(v) if f else v.strip().lower() for v, f in zip(values, outside, strict=True)]


def stored_emails(emails: pd.Series) -> list[str]:
    """Good rows' addresses as stored: `clean_email`, lower-case."""
    values = emails.tolist()
    outside = rows_with(values, is_non_ascii, str.isascii)
    return [clean_email(v).lower() if f else v.strip().lower() for v, f in zip(values, outside, strict=True)]


def per_value(values: pd.Series, rule: Callable[[str], Any]) -> np.ndarray:
    """`rule` of each value, computed once per distinct value (few in a column of codes)."""
    import numpy as np
    import pandas as pd

    codes, distinct = pd.factorize(values.to_numpy(dtype=object))
    results = np.empty(len(distinct), dtype=object)
    results[:] = [rule(value) for value in distinct]
    return results[codes]


def lengths(values: list[str]) -> np.ndarray:
    import numpy as np

    return np.fromiter(map(len, values), dtype=np.int64, count=len(values))


def rows_with(
    values: list[str], holds: Callable[[str], bool], none_if: Callable[[str], bool] = str.isprintable
) -> np.ndarray:
    """Which values hold a character for which `holds` is true. `none_if` rules values out in one pass
    in C, all of them joined first (the common case), then one by one; only the values it does not
    rule out are read character by character. It may hold only of text without such a character."""
    import numpy as np

    found = np.zeros(len(values), dtype=bool)
    if none_if("".join(values)):
        return found
    for index in [index for index, value in enumerate(values) if not none_if(value)]:
        found[index] = any(map(holds, values[index]))
    return found


def is_forbidden(character: str) -> bool:
    """A character `clean_text.forbidden_character` refuses (none is printable)."""
    return clean_text.is_control(character) or unicodedata.category(character) in clean_text.INVISIBLE_CATEGORIES


def is_cleaned(character: str) -> bool:
    """A character `clean_text.clean_line` changes: a control (line breaks and tabs among them), a lone
    surrogate, a bidi control, a line or paragraph separator (none is printable)."""
    return clean_text.is_control(character) or character in "\u2028\u2029"


def is_non_ascii(character: str) -> bool:
    return ord(character) > 127


def stored_columns(good: pd.DataFrame) -> dict[str, list]:
    """Good rows' values as the NPS DB stores them: address lower-case, country upper-case, the time
    zone spelt as the tz database spells it, the locale one we support; an empty optional one None."""
    zones = time_zones()
    rules: dict[str, tuple[str, Callable[[str], Any]]] = {
        "vip": ("vip", lambda value: value.lower() in TRUE_WORDS),
        "locale": ("locale", i18n.normalize_locale),
        "country": ("account_country", lambda value: value.upper() or None),
        "timezone": ("timezone", lambda value: zones.get(value.lower()) if value else None),
        "tier": ("account_tier", lambda value: value or None),
        "role": ("role", lambda value: value or None),
        "sales_owner": ("sales_owner", lambda value: value.lower() or None),
        "csm": ("csm", lambda value: value.lower() or None),
    }
    stored = {name: per_value(good[column], rule).tolist() for name, (column, rule) in rules.items()}
    return {"email": stored_emails(good["email"]), **stored}
