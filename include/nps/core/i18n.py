"""Languages: which locales customers get, their translation catalogs, dates and text direction.

English is the source language of every template (`{% trans %}` blocks); the other locales have
a gettext catalog in `include/translations/<locale>/LC_MESSAGES/messages.po`, shared by the
emails and the survey form. Catalogs are read from the `.po` files when first used, so there is
no compiled file to keep in step. `make i18n` re-extracts the messages and updates the catalogs.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import cache
from pathlib import Path
from typing import Any

from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = Path(__file__).resolve().parents[2] / "translations"
SUPPORTED_LOCALES = ("en", "ja", "zh", "he", "nb")
DEFAULT_LOCALE = "en"
RIGHT_TO_LEFT = frozenset({"he"})
# Spellings seen in CRM exports and browsers, mapped to the locale we write in.
ALIASES = {"iw": "he", "no": "nb", "nn": "nb", "zh-hans": "zh", "zh-cn": "zh", "zh-sg": "zh"}


def normalize_locale(value: str | None) -> str:
    """`ja-JP`, `ja_JP`, `JA` -> `ja`; `no` -> `nb`; anything unsupported or blank (None, NaN) -> English."""
    tag = (value if isinstance(value, str) else "").strip().lower().replace("_", "-")
    if tag in ALIASES:
        return ALIASES[tag]
    language = tag.split("-", 1)[0]
    language = ALIASES.get(language, language)
    return language if language in SUPPORTED_LOCALES else DEFAULT_LOCALE


def best_match(accept_language: str | None) -> str:
    """The supported locale a browser's `Accept-Language` header prefers most."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            weighted.append((-quality, position, tag))
    for _, _, tag in sorted(weighted):
        locale = normalize_locale(tag)
        if locale != DEFAULT_LOCALE or tag.lower().startswith("en"):
            return locale
    return DEFAULT_LOCALE


def direction(locale: str) -> str:
    return "rtl" if locale in RIGHT_TO_LEFT else "ltr"


def catalog_path(locale: str) -> Path:
    return TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po"


@cache
def translations(locale: str) -> NullTranslations:
    """The locale's catalog (compiled in memory from its `.po`); English needs none."""
    if locale == DEFAULT_LOCALE:
        return NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain="messages")


def format_datetime(value: dt.datetime, locale: str, timezone: str = "UTC") -> str:
    """A date and a time to the minute as people of `locale` write them, in `timezone`, with the
    zone named as the locale names it ("2026/12/02 3:19 JST", "Dec 1, 2026, 1:19 PM EST")."""
    from babel import Locale
    from babel.dates import format_date as babel_date
    from babel.dates import format_time as babel_time

    where = Locale.parse(_babel_locale(locale))
    moment = value.astimezone(_zone(timezone))
    pattern = str(where.datetime_formats["medium"])
    text = pattern.replace("{1}", babel_date(moment, "medium", locale=where))
    return text.replace("{0}", babel_time(moment, "short", locale=where)) + " " + zone_name(moment, where)


def zone_name(moment: dt.datetime, locale: Any) -> str:
    """The zone of an aware `moment` as the locale's readers know it: its abbreviation where the
    locale has one in common use (EST, JST, CET, UTC), else its long name (Japan Standard Time)."""
    from babel.dates import format_time as babel_time

    short = babel_time(moment, "z", locale=locale)
    return short if short.isalpha() else babel_time(moment, "zzzz", locale=locale)


def format_date(value: dt.date | dt.datetime, locale: str, timezone: str = "UTC") -> str:
    """A date as people of `locale` write it; a datetime is first taken to `timezone`'s day."""
    from babel.dates import format_date as babel_format

    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(_zone(timezone)).date()
    return babel_format(value, format="long", locale=_babel_locale(locale))


def reader_zone(timezone: str | None, account_country: str | None, wave_country: str | None) -> str:
    """The zone a reader's times are written in: the contact's own `timezone` (an IANA name), else
    the main zone of their account's country, else of the wave's country, else UTC."""
    from include.nps.core.business_days import country_timezone

    if _is_zone(timezone):
        return str(timezone).strip()
    for country in (account_country, wave_country):
        if isinstance(country, str) and len(country.strip()) == 2:
            zone = country_timezone(country.strip())
            if zone != "UTC":
                return zone
    return "UTC"


def _is_zone(name: Any) -> bool:
    from zoneinfo import ZoneInfoNotFoundError

    if not isinstance(name, str) or not name.strip():
        return False
    try:
        _zone(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def format_decimal(value: float, locale: str, digits: int = 1) -> str:
    """`value` with `digits` decimals as people of `locale` write it (3.6 in English, 3,6 in Norwegian)."""
    from babel.numbers import format_decimal as babel_decimal

    return babel_decimal(value, format="#,##0." + "0" * digits, locale=_babel_locale(locale))


def _babel_locale(locale: str) -> str:
    return {"zh": "zh_Hans_CN", "nb": "nb_NO"}.get(locale, locale)


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
