"""Languages: the catalogs cover every customer-facing text, and every customer email renders
in every supported language."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from include.nps.core import emails, i18n
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery.outbox import CUSTOMER_KINDS
from tests.factories import email_context, flash_figures

TRANSLATED = [locale for locale in i18n.SUPPORTED_LOCALES if locale != i18n.DEFAULT_LOCALE]
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def template_messages() -> set[str]:
    """Every msgid the templates hold today (as `make i18n` extracts them)."""
    with (PROJECT_ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = extract_from_dir(str(PROJECT_ROOT), method_map, options_map)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def catalog(locale: str):
    from babel.messages.pofile import read_po

    with i18n.catalog_path(locale).open("rb") as po:
        return read_po(po, locale=locale)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_text_of_the_templates_is_translated(locale):
    entries = {(m.id if isinstance(m.id, str) else m.id[0]): m for m in catalog(locale) if m.id}
    missing = template_messages() - {key for key, m in entries.items() if all(_strings(m)) and not m.fuzzy}
    assert missing == set(), f"{locale}: run `make i18n` and translate {sorted(missing)}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_every_placeholder(locale):
    wrong = []
    for message in catalog(locale):
        source = message.id if isinstance(message.id, str) else message.id[0]
        if message.id and any(
            set(PLACEHOLDER.findall(s)) != set(PLACEHOLDER.findall(source)) for s in _strings(message)
        ):
            wrong.append(source)
    assert wrong == []


def _strings(message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple | list) else [message.string]


@pytest.mark.parametrize(
    ("given", "locale"),
    [
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("JA_jp", "ja"),
        ("zh-Hans", "zh"),
        ("zh_CN", "zh"),
        ("iw", "he"),
        ("he-IL", "he"),
        ("no", "nb"),
        ("nb-NO", "nb"),
        ("nn", "nb"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
        (float("nan"), "en"),  # a blank cell read into a frame
    ],
)
def test_locales_from_crm_exports_are_understood(given, locale):
    assert i18n.normalize_locale(given) == locale


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("ja-JP,ja;q=0.9,en;q=0.8", "ja"),
        ("fr-FR,nb;q=0.5", "nb"),
        ("en-US,he;q=0.9", "en"),
        ("de, he;q=0", "en"),
        ("he;q=0.3, zh-CN;q=0.6", "zh"),
        (None, "en"),
        ("x;q=abc", "en"),
    ],
)
def test_the_browsers_preferred_language_wins(header, locale):
    assert i18n.best_match(header) == locale


def _context(kind: str) -> dict:
    return email_context(
        score=9,
        score_urls=[(s, f"https://survey.example/s/t?score={s}") for s in range(11)],
        **(flash_figures() if kind == "flash_results" else {}),
    )


@pytest.mark.parametrize("kind", sorted(CUSTOMER_KINDS))
def test_every_customer_email_renders_in_every_language(kind):
    english = emails.render_email(kind, "en", "ada@example.com", _context(kind))
    for locale in TRANSLATED:
        email = emails.render_email(kind, locale, "ada@example.com", _context(kind))
        assert email.subject != english.subject and "Ada" in email.text + email.html, locale
        assert f'lang="{locale}" dir="{i18n.direction(locale)}"' in email.html
        assert "https://survey.example/u/t" in email.text and "https://survey.example/u/t" in email.html
    japanese = emails.render_email(kind, "ja", "ada@example.com", _context(kind))
    assert "Acme Cloud" in japanese.subject + japanese.text


def test_dates_are_written_the_way_each_language_writes_them():
    moment = dt.datetime(2026, 3, 16, 9, 30, tzinfo=dt.UTC)
    assert i18n.format_datetime(moment, "en") == "Mar 16, 2026, 9:30\u202fAM UTC"
    assert i18n.format_datetime(moment, "ja") == "2026/03/16 9:30 UTC"
    assert i18n.format_datetime(moment, "nb", "Europe/Oslo") == "16. mars 2026, 10:30 CET"
    assert "16. mars 2026" in i18n.format_date(moment, "nb")


@pytest.mark.parametrize(
    ("locale", "zone", "written"),
    [
        ("ja", "Asia/Tokyo", "2026/12/02 3:19 JST"),  # already the next day in Tokyo
        ("en", "America/New_York", "Dec 1, 2026, 1:19\u202fPM EST"),
        ("nb", "Europe/Oslo", "1. des. 2026, 19:19 CET"),
        ("zh", "Asia/Shanghai", "2026年12月2日 02:19 中国标准时间"),  # no abbreviation in use: the zone's name
        ("he", "Asia/Jerusalem", "1 בדצמ׳ 2026, 20:19 שעון ישראל (חורף)"),
    ],
)
def test_a_time_is_written_in_the_readers_zone_and_names_it(locale, zone, written):
    assert i18n.format_datetime(dt.datetime(2026, 12, 1, 18, 19, tzinfo=dt.UTC), locale, zone) == written


@pytest.mark.parametrize(
    ("timezone", "account_country", "wave_country", "zone"),
    [
        ("Asia/Tokyo", "US", "US", "Asia/Tokyo"),  # the contact's own zone first
        (" Europe/Oslo ", None, "US", "Europe/Oslo"),
        ("Mars/Olympus", "JP", "US", "Asia/Tokyo"),  # not a zone: the account's country
        (None, "IL", "US", "Asia/Jerusalem"),
        ("", "", "NO", "Europe/Oslo"),  # blanks: the wave's country
        (float("nan"), float("nan"), "DE", "Europe/Berlin"),  # what a blank cell becomes in a frame
        (None, "XX", "CN", "Asia/Shanghai"),  # a country the tz database does not know
        (None, None, None, "UTC"),
    ],
)
def test_the_readers_zone_is_theirs_else_their_accounts_else_the_waves(timezone, account_country, wave_country, zone):
    assert i18n.reader_zone(timezone, account_country, wave_country) == zone


def test_scores_are_written_the_way_each_language_writes_them():
    assert [i18n.format_decimal(3.6, locale) for locale in ("en", "ja", "zh", "he", "nb")] == ["3.6"] * 4 + ["3,6"]
    norwegian = emails.render_email("flash_results", "nb", "ada@example.com", _context("flash_results"))
    english = emails.render_email("flash_results", "en", "ada@example.com", _context("flash_results"))
    assert "4,2 / 5" in norwegian.text and "4,2 / 5" in norwegian.html
    assert "4.2 / 5" in english.text and "4,2" not in english.text


@pytest.mark.parametrize(("locale", "marks"), [("en", "“”"), ("ja", "「」"), ("zh", "“”"), ("he", '""'), ("nb", "«»")])
def test_a_quote_is_escaped_and_set_in_the_readers_quotation_marks(locale, marks):
    context = {**_context("flash_results"), "quotes": ["<b>Fast</b> & friendly", "Clear reports"]}
    email = emails.render_email("flash_results", locale, "ada@example.com", context)
    assert f"{marks[0]}<bdi>&lt;b&gt;Fast&lt;/b&gt; &amp; friendly</bdi>{marks[1]}</blockquote>" in email.html
    fsi, pdi = ("\u2068", "\u2069") if locale == "he" else ("", "")  # isolated in right-to-left plain text
    quotes = f"\n{marks[0]}{fsi}<b>Fast</b> & friendly{pdi}{marks[1]}\n{marks[0]}{fsi}Clear reports{pdi}{marks[1]}\n"
    assert quotes in email.text


def test_pillar_questions_use_their_own_translation_else_the_catalogs():
    from include.nps.wave.pillars import DEFAULT_PILLARS

    support = DEFAULT_PILLARS[0]
    assert emails.localized_text(support, "ja") == "サポートにどの程度満足していますか?"
    assert emails.localized_text({**support, "translations": {"ja": "サポートは?"}}, "ja") == "サポートは?"
    custom = {"id": "docs", "text": "Are the docs clear?", "scale": "1-5"}
    assert emails.localized_text(custom, "he") == "Are the docs clear?"  # not translated by anyone: as written
