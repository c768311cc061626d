"""What the flash results say beyond the figures: a few anonymised quotes from promoters (when the
program allows it), "you told us, we did": the previous wave's action items that were done, and
"what we will do next": the themes this wave's detractors raised most (see `focus_themes`).

Quotes are chosen per reader's language (from respondents who wrote in it), between
`QUOTE_MIN_CHARS` and `QUOTE_MAX_CHARS`, with every e-mail address, web address, phone number
and known person or account name replaced by `REDACTED`. A done action item shows only when it
carries the note customers may read (`public_note`, one text per language).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import i18n, storage
from include.nps.wave.comment_themes import DETRACTOR_MAX, Theme, Themes
from include.nps.wave.retrospective import rank_themes

if TYPE_CHECKING:
    import pandas as pd

QUOTES_PER_EMAIL = 2
FOCUS_THEMES = 3
QUOTE_MIN_CHARS, QUOTE_MAX_CHARS = 20, 280
REDACTED = "[…]"
PATTERNS = [
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE),  # web addresses
    re.compile(r"\+?\d[\d\s().-]{6,}\d"),  # phone numbers
]


def anonymise(text: str, names: list[str]) -> str:
    """`text` with addresses, phone numbers and the given names (longest first) redacted."""
    for pattern in PATTERNS:
        text = pattern.sub(REDACTED, text)
    for name in sorted({n.strip() for n in names if n and len(n.strip()) > 1}, key=len, reverse=True):
        text = re.sub(re.escape(name), REDACTED, text, flags=re.IGNORECASE)
    return " ".join(text.split())


def quotes_by_locale(answers: pd.DataFrame, names: list[str]) -> dict[str, list[str]]:
    """Up to `QUOTES_PER_EMAIL` anonymised promoter comments per language, highest score and
    earliest answer first; a comment that says the same as one chosen already (see `same_words`)
    is not chosen again."""
    has_comment = answers["comment"].astype(object).fillna("").astype(str).str.strip().astype(bool)
    commented = answers[(answers["score"] >= 9) & has_comment]
    commented = commented.assign(language=commented["locale"].map(i18n.normalize_locale))
    chosen: dict[str, list[str]] = {}
    for row in commented.sort_values(["score", "answered_at"], ascending=[False, True]).itertuples():
        quote = anonymise(str(row.comment), names)
        picked = chosen.setdefault(row.language, [])
        if (
            QUOTE_MIN_CHARS <= len(quote) <= QUOTE_MAX_CHARS
            and len(picked) < QUOTES_PER_EMAIL
            and same_words(quote) not in {same_words(earlier) for earlier in picked}
        ):
            picked.append(quote)
    return {language: quotes for language, quotes in chosen.items() if quotes}


def same_words(text: str) -> str:
    """`text` reduced to what tells two comments apart: Unicode-normalised (NFKC), case-folded,
    without punctuation or symbols, one space between words ("Great support!" = "great  SUPPORT")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch if unicodedata.category(ch)[0] in "LNZ" else " " for ch in folded)
    return " ".join(kept.split())


def focus_themes(parts: list[dict[str, Any]], themes: Themes, wave_detractors: int) -> list[Theme]:
    """The `FOCUS_THEMES` themes detractors complained about most (the retrospective's ranking of
    classified comment parts, keeping themes with a con from a detractor)."""
    complained = {p["theme"] for p in parts if p["kind"] == "con" and p["score"] <= DETRACTOR_MAX}
    ranked = [themes.get(row["theme"]) for row in rank_themes(parts, themes, wave_detractors)]
    return [theme for theme in ranked if theme and theme.id in complained][:FOCUS_THEMES]


def names_in(frame: pd.DataFrame) -> list[str]:
    """The person and account names of `frame` (an audience or answers) a quote must not reveal."""
    columns = [c for c in ("name", "contact_name", "account_name") if c in frame]
    return sorted({str(v) for c in columns for v in frame[c].dropna()})


def done_items(engine: Engine, wave_id: str | None) -> list[dict[str, Any]]:
    """The wave's action items that are done and carry a note for customers, highest priority first."""
    if wave_id is None:
        return []
    rows = storage.fetch_all(engine, storage.query("done_action_items"), wave_id=wave_id)
    return [{**row, "public_note": json.loads(row["public_note"])} for row in rows]


def note_in(item: dict[str, Any], locale: str) -> str:
    """The item's note in `locale`, else in English, else in any language it has."""
    notes = {language: text.strip() for language, text in item["public_note"].items() if text and text.strip()}
    return notes.get(locale) or notes.get(i18n.DEFAULT_LOCALE) or next(iter(notes.values()), "")


def complete_action_item(engine: Engine, wave_id: str, item_key: str, public_note: dict[str, str]) -> bool:
    """Mark an action item done with what customers are told was done (a text per language)."""
    unknown = set(public_note) - set(i18n.SUPPORTED_LOCALES)
    if unknown or not any(text.strip() for text in public_note.values()):
        raise ValueError(f"public_note needs a text in {', '.join(i18n.SUPPORTED_LOCALES)}; got {sorted(public_note)}")
    done = storage.execute(
        engine,
        storage.query("complete_action_item"),
        {"w": wave_id, "k": item_key, "note": storage.dumps(public_note), "now": storage.utcnow()},
    )
    return done == 1


def main(argv: list[str] | None = None) -> None:
    """`python -m include.nps.wave.flash_content WAVE ITEM --note en="..." --note ja="..."`: mark an
    action item done with what the next wave's flash results tell customers."""
    import argparse

    from include.nps.core.connections import nps_engine

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("wave_id")
    parser.add_argument("item_key")
    parser.add_argument("--note", action="append", required=True, metavar="LOCALE=TEXT")
    args = parser.parse_args(argv)
    notes = dict(note.split("=", 1) for note in args.note)
    if not complete_action_item(nps_engine(), args.wave_id, args.item_key, notes):
        raise SystemExit(f"no action item {args.item_key!r} in wave {args.wave_id!r}")
    print(f"{args.wave_id} / {args.item_key}: done; customers will read it in {', '.join(sorted(notes))}")


if __name__ == "__main__":
    main()
