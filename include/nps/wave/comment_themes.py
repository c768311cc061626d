"""Comments split into pros, cons and suggestions, each part linked to a theme of the program.

The themes and the words are a versioned YAML file that CS ops edit (`rules/themes.yaml`, or the
file `NPS_THEMES` names): the theme list (id, name, optional owner) with per-language keyword
lexicons, and per-language cue lexicons. Loading checks the whole file and reports every problem
with the file, the theme, the field and the reason.

How `KeywordClassifier` reads a comment (transparent: every decision names the words it used):

1. Split: into sentences at . ! ? ; (ASCII and full-width), 。 and line breaks (a `.` only before a space or the end),
   then each sentence in two before a contrast word ("but", "しかし", "但", "אבל", "men"...).
2. Languages: each part is read with the lexicons of the writer's locale, English, and any language
   whose script it contains (Hebrew letters: he; kana: ja; Han characters: ja and zh).
3. Matching, after Unicode NFKC normalisation and case folding: ja and zh words anywhere in the text
   (no spaces between words); en, nb and he words as whole words, `word*` as a prefix, a phrase
   with any spacing, a Hebrew word also after up to two of the one-letter prefixes (HEBREW_PREFIXES).
4. Theme: the theme whose keyword starts first in the part (one theme per part; ties go to the
   theme listed first in the file); none when no keyword matches.
5. Kind, first rule that holds: a suggestion cue -> suggestion; a score of 0-6 or a negative cue
   -> con; a score of 9-10 or a positive cue -> pro; otherwise (a 7-8 with no cue) -> suggestion,
   what passives tell is what would make them promoters.

Another classifier can replace this one: `NPS_COMMENT_CLASSIFIER` is `keyword` (the default) or
`package.module:factory`, a callable that takes the loaded `Themes` and returns an object with
the `CommentClassifier` methods (`split` may reuse `sentences`).
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from include.nps.core import i18n, rule_files, storage
from include.nps.core.rule_files import kind_of

THEMES_ENV = "NPS_THEMES"
CLASSIFIER_ENV = "NPS_COMMENT_CLASSIFIER"
DEFAULT_THEMES = storage.PROJECT_ROOT / "rules" / "themes.yaml"
VERSIONS = (1,)
KINDS = ("pro", "con", "suggestion")
RISKS = ("high", "medium", "low")
LANGUAGES = i18n.SUPPORTED_LOCALES
SUBSTRING_LANGUAGES = frozenset({"ja", "zh"})
CUES = ("suggestion", "negative", "positive", "contrast")
REQUIRED_CUES = ("suggestion", "negative", "positive")
TOP_LEVEL = ("version", "risk", "open_items_from", "themes", "cues")
THEME_FIELDS = ("id", "name", "label", "owner", "description", "keywords")
LABEL_CHARS = 100
RISK_FIELDS = ("min_detractors", "min_share")
THEME_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
HEBREW_PREFIXES = "ובכלמהש"
DETRACTOR_MAX, PROMOTER_MIN = 6, 9
SENTENCE_END = re.compile(r"[\n\r]+|[。．！？!?;；]+|\.+(?=\s|$)")
SCRIPTS = {
    "he": re.compile(r"[\u0590-\u05ff]"),
    "ja": re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]"),
    "zh": re.compile(r"[\u4e00-\u9fff]"),
}
LANGUAGE_HINTS = {"no": "nb", "nn": "nb", "iw": "he", "jp": "ja", "cn": "zh", "zh-cn": "zh"}
EDGE_PUNCTUATION = " \t,、，:：-–—"
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u05f3": "'", "\u05f4": '"'})


class ThemesError(ValueError):
    """The themes file cannot be used; `problems` names the file, theme and field of each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"the themes file has {len(problems)} problem(s):\n{listed}")


class ClassifierSettingError(ValueError):
    """`NPS_COMMENT_CLASSIFIER` names no usable classifier."""


@dataclass(frozen=True)
class Classification:
    """One part of a comment: pro, con or suggestion, its theme id (or None), and the words
    (cues, keywords) or score that decided, for people to check."""

    kind: str
    theme: str | None
    matched: list[str] = field(default_factory=list)


class CommentClassifier(Protocol):
    def split(self, text: str, locale: str) -> list[str]:
        """The parts of a comment that are classified one by one."""
        ...

    def classify(self, text: str, locale: str, score: int) -> Classification:
        """One part, written by a contact of `locale` who gave `score`."""
        ...


@dataclass(frozen=True)
class Theme:
    id: str
    name: str
    keywords: dict[str, tuple[str, ...]]  # language: normalised terms
    owner: str | None = None
    description: str = ""
    label: dict[str, str] = field(default_factory=dict)  # language: what customers read

    def label_in(self, locale: str) -> str:
        """The theme as customers read it in `locale`, else in English, else its internal name."""
        return self.label.get(locale) or self.label.get(i18n.DEFAULT_LOCALE) or self.name


@dataclass(frozen=True)
class RiskRule:
    min_detractors: int
    min_share: float


DEFAULT_RISK = {"high": RiskRule(3, 0.25), "medium": RiskRule(2, 0.10)}


@dataclass(frozen=True)
class Themes:
    """The loaded themes file."""

    themes: tuple[Theme, ...]
    cues: dict[str, dict[str, tuple[str, ...]]]  # cue: language: normalised terms
    risk: dict[str, RiskRule] = field(default_factory=lambda: {"high": RiskRule(3, 0.25), "medium": RiskRule(2, 0.10)})
    open_items_from: str = "high"
    version: int = 1
    source: str = "themes"

    def get(self, theme_id: str | None) -> Theme | None:
        return next((t for t in self.themes if t.id == theme_id), None)

    def risk_of(self, detractors: int, wave_detractors: int) -> str:
        """A con theme's risk from the distinct detractors raising it (see `rules/themes.yaml`)."""
        share = detractors / wave_detractors if wave_detractors else 0.0
        high, medium = self.risk["high"], self.risk["medium"]
        if detractors >= high.min_detractors or (detractors >= 2 and share >= high.min_share):
            return "high"
        if detractors >= medium.min_detractors or (detractors >= 1 and share >= medium.min_share):
            return "medium"
        return "low"

    def opens_item(self, risk: str) -> bool:
        return RISKS.index(risk) <= RISKS.index(self.open_items_from)


# --- reading text -------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """NFKC, case folded, typographic apostrophes as ASCII: the form keywords are compared in."""
    return unicodedata.normalize("NFKC", text).casefold().translate(APOSTROPHES)


def _folded(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` character by character, with each folded character's position in `text`
    (which must be NFC), so that a match can be cut out of the text as written."""
    pieces: list[str] = []
    where: list[int] = []
    for position, char in enumerate(text):
        piece = normalize(char)
        pieces.append(piece)
        where.extend([position] * len(piece))
    return "".join(pieces), where


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence end (the end kept with its sentence); parts without a letter
    or digit are dropped."""
    text = unicodedata.normalize("NFC", text or "")
    found, start = [], 0
    for end in SENTENCE_END.finditer(text):
        found.append(text[start : end.end()])
        start = end.end()
    found.append(text[start:])
    return [part.strip() for part in found if any(char.isalnum() for char in part)]


def reading_languages(text: str, locale: str | None) -> list[str]:
    """The lexicons a part is read with: the locale's, English, then those of the scripts in it."""
    languages = [i18n.normalize_locale(locale), "en"]
    languages += [language for language, script in SCRIPTS.items() if script.search(text)]
    return list(dict.fromkeys(languages))


def _pattern(term: str, language: str) -> str:
    if language in SUBSTRING_LANGUAGES:
        return re.escape(term)
    wildcard = term.endswith("*")
    core = r"\s+".join(re.escape(word) for word in term.rstrip("*").split())
    prefix = f"[{HEBREW_PREFIXES}]{{0,2}}" if language == "he" else ""
    tail = r"\w*" if wildcard else ""
    return rf"(?<!\w){prefix}{core}{tail}(?!\w)"


def _compile(terms: tuple[str, ...], language: str) -> re.Pattern[str] | None:
    if not terms:
        return None
    ordered = sorted(terms, key=len, reverse=True)  # the longest phrase wins at one position
    return re.compile("|".join(_pattern(term, language) for term in ordered))


class KeywordClassifier:
    """The transparent classifier of the module docstring, over a loaded themes file."""

    def __init__(self, themes: Themes) -> None:
        self.themes = themes
        self._themes = {
            language: [(t.id, _compile(t.keywords.get(language, ()), language)) for t in themes.themes]
            for language in LANGUAGES
        }
        self._cues = {
            cue: {language: _compile(themes.cues.get(cue, {}).get(language, ()), language) for language in LANGUAGES}
            for cue in CUES
        }

    def split(self, text: str, locale: str) -> list[str]:
        parts: list[str] = []
        for sentence in sentences(text):
            folded, where = _folded(sentence)
            cuts = {0, len(sentence)}
            for language in reading_languages(sentence, locale):
                pattern = self._cues["contrast"][language]
                if pattern:
                    cuts.update(where[m.start()] for m in pattern.finditer(folded))
            bounds = sorted(cuts)
            for start, end in itertools.pairwise(bounds):
                part = sentence[start:end].strip().strip(EDGE_PUNCTUATION)
                if any(char.isalnum() for char in part):
                    parts.append(part)
        return parts

    def classify(self, text: str, locale: str, score: int) -> Classification:
        folded = normalize(unicodedata.normalize("NFC", text))
        languages = reading_languages(text, locale)
        matched: list[str] = []
        theme, keyword = self._first_theme(folded, languages)
        if (suggestion := self._cue("suggestion", folded, languages)) is not None:
            kind, why = "suggestion", f"suggestion cue '{suggestion}'"
        elif (negative := self._cue("negative", folded, languages)) is not None or score <= DETRACTOR_MAX:
            kind, why = "con", f"negative cue '{negative}'" if negative is not None else f"score {score}"
        elif score >= PROMOTER_MIN or (positive := self._cue("positive", folded, languages)) is not None:
            kind, why = "pro", f"score {score}" if score >= PROMOTER_MIN else f"positive cue '{positive}'"
        else:
            kind, why = "suggestion", f"score {score} and no cue"
        matched.append(why)
        if theme:
            matched.append(f"theme {theme} '{keyword}'")
        return Classification(kind, theme, matched)

    def _cue(self, cue: str, folded: str, languages: list[str]) -> str | None:
        for language in languages:
            pattern = self._cues[cue][language]
            if pattern and (found := pattern.search(folded)):
                return found.group(0)
        return None

    def _first_theme(self, folded: str, languages: list[str]) -> tuple[str | None, str | None]:
        best: tuple[int, int, str, str] | None = None
        for language in languages:
            for order, (theme_id, pattern) in enumerate(self._themes[language]):
                found = pattern.search(folded) if pattern else None
                if found and (best is None or (found.start(), order) < best[:2]):
                    best = (found.start(), order, theme_id, found.group(0))
        return (best[2], best[3]) if best else (None, None)


def classifier_from_setting(themes: Themes, setting: str | None = None) -> CommentClassifier:
    """The classifier `setting` (else `NPS_COMMENT_CLASSIFIER`, else `keyword`) names."""
    chosen = (setting or os.environ.get(CLASSIFIER_ENV, "")).strip() or "keyword"
    if chosen == "keyword":
        return KeywordClassifier(themes)
    module_name, _, name = chosen.partition(":")
    if not module_name or not name:
        raise ClassifierSettingError(
            f"{CLASSIFIER_ENV}={chosen!r}: use 'keyword' or 'package.module:factory' (a callable taking the themes)"
        )
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ClassifierSettingError(f"{CLASSIFIER_ENV}={chosen!r}: cannot be loaded: {exc}") from exc
    found = factory(themes)
    if not (callable(getattr(found, "classify", None)) and callable(getattr(found, "split", None))):
        raise ClassifierSettingError(f"{CLASSIFIER_ENV}={chosen!r}: {name}() returned no split/classify classifier")
    return found


# --- loading ------------------------------------------------------------------------------------


def themes_path(setting: str | None = None) -> Path:
    """`setting`, else `NPS_THEMES`, else the shipped `rules/themes.yaml` (relative paths are from
    the project's folder)."""
    return rule_files.resolve_path(setting, THEMES_ENV, DEFAULT_THEMES)


def load_themes(path: Path | str | None = None) -> Themes:
    """The themes of `path` (default: `themes_path()`), checked; read again when the file changes."""
    return rule_files.load_checked(themes_path(str(path) if path else None), parse, ThemesError)


def parse(data: Any, where: str = "themes") -> Themes:
    """Check the file's content and build the themes; ThemesError lists every problem found."""
    if not isinstance(data, Mapping):
        raise ThemesError([f"{where}: expected a mapping with version, risk, themes and cues, got {kind_of(data)}"])
    problems = rule_files.unknown_fields(data, TOP_LEVEL, where, "")
    version = data.get("version")
    if version not in VERSIONS or isinstance(version, bool):
        problems.append(f"{where}: version: must be {' or '.join(map(str, VERSIONS))}, got {version!r}")
    risk = _risk(data.get("risk"), where, problems)
    open_from = data.get("open_items_from", "high")
    if open_from not in RISKS:
        problems.append(f"{where}: open_items_from: must be high, medium or low, got {open_from!r}")
    themes = _themes(data.get("themes"), where, problems)
    cues = _cues(data.get("cues"), where, problems)
    if problems:
        raise ThemesError(problems)
    assert isinstance(version, int)  # checked above: a problem otherwise
    return Themes(tuple(themes), cues, risk, str(open_from), int(version), where)


def _risk(raw: Any, where: str, problems: list[str]) -> dict[str, RiskRule]:
    rules = dict(DEFAULT_RISK)
    if raw is None:
        return rules
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: risk: expected high and medium, each with min_detractors and min_share")
        return rules
    problems += rule_files.unknown_fields(raw, ("high", "medium"), where, "risk.")
    for level in ("high", "medium"):
        given = raw.get(level)
        if given is None:
            continue
        label = f"{where}: risk.{level}"
        if not isinstance(given, Mapping):
            problems.append(f"{label}: expected min_detractors and min_share, got {kind_of(given)}")
            continue
        problems += rule_files.unknown_fields(given, RISK_FIELDS, where, f"risk.{level}.")
        count = given.get("min_detractors", rules[level].min_detractors)
        share = given.get("min_share", rules[level].min_share)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problems.append(f"{label}.min_detractors: expected a whole number of at least 1, got {count!r}")
            count = rules[level].min_detractors
        if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share <= 1:
            problems.append(f"{label}.min_share: expected a share between 0 and 1 (0.25 is 25%), got {share!r}")
            share = rules[level].min_share
        rules[level] = RiskRule(count, float(share))
    high, medium = rules["high"], rules["medium"]
    if high.min_detractors < medium.min_detractors or high.min_share < medium.min_share:
        problems.append(f"{where}: risk: high must need at least as many detractors and as large a share as medium")
    return rules


def _themes(raw: Any, where: str, problems: list[str]) -> list[Theme]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: themes: expected a list of themes (id, name, keywords), got {kind_of(raw)}")
        return []
    themes: list[Theme] = []
    ids: dict[str, int] = {}
    owners_of_terms: dict[tuple[str, str], str] = {}
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, Mapping):
            problems.append(
                f"{where}: theme {number}: expected a mapping with id, name and keywords, got {kind_of(entry)}"
            )
            continue
        theme_id = entry.get("id")
        label = f"{where}: theme {number}" + (f" {theme_id!r}" if isinstance(theme_id, str) else "")
        problems += rule_files.unknown_fields(entry, THEME_FIELDS, label, "")
        if not isinstance(theme_id, str) or not THEME_ID.match(theme_id):
            problems.append(f"{label}: id: expected lowercase letters, digits, - or _ (at most 48), got {theme_id!r}")
        elif theme_id in ids:
            problems.append(f"{label}: id: also the id of theme {ids[theme_id]}")
        else:
            ids[theme_id] = number
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            problems.append(f"{label}: name: expected a name of 1 to 100 characters, got {kind_of(name)}")
        owner = entry.get("owner")
        if owner is not None and not (isinstance(owner, str) and re.fullmatch(r"[^@\s]+@[^@\s]+", owner.strip())):
            problems.append(f"{label}: owner: expected an email address, got {owner!r}")
        keywords = _lexicon(entry.get("keywords"), f"{label}: keywords", problems)
        if not any(keywords.values()):
            problems.append(f"{label}: keywords: expected at least one keyword in en, ja, zh, he or nb")
        for language, terms in keywords.items():
            for term in terms:
                first = owners_of_terms.setdefault((language, term), str(theme_id))
                if first != str(theme_id):
                    problems.append(f"{label}: keywords.{language}: {term!r} is also a keyword of theme {first!r}")
        labels = _labels(entry.get("label"), f"{label}: label", problems)
        description = entry.get("description", "")
        if isinstance(theme_id, str) and isinstance(name, str):
            owner_text = owner.strip() if isinstance(owner, str) else None
            themes.append(Theme(theme_id, name.strip(), keywords, owner_text, str(description or ""), labels))
    return themes


def _labels(raw: Any, label: str, problems: list[str]) -> dict[str, str]:
    """{language: text} of a theme's optional `label` (what customers read in the flash results)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: expected a text per language (en, ja, zh, he, nb), got {kind_of(raw)}")
        return {}
    labels: dict[str, str] = {}
    for language, text in raw.items():
        if language not in LANGUAGES:
            problems.append(_unknown_language(language, label))
        elif not isinstance(text, str) or not text.strip() or len(text) > LABEL_CHARS:
            problems.append(
                f"{label}.{language}: expected a text of 1 to {LABEL_CHARS} characters, got {kind_of(text)}"
            )
        else:
            labels[language] = " ".join(text.split())
    return labels


def _cues(raw: Any, where: str, problems: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: cues: expected suggestion, negative, positive and contrast, got {kind_of(raw)}")
        return {}
    problems += rule_files.unknown_fields(raw, CUES, where, "cues.")
    for cue in REQUIRED_CUES:
        if cue not in raw:
            problems.append(f"{where}: cues.{cue}: missing; give its words per language")
    return {cue: _lexicon(raw[cue], f"{where}: cues.{cue}", problems) for cue in CUES if cue in raw}


def _lexicon(raw: Any, label: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """{language: normalised terms} of one `language: [terms]` mapping."""
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: expected lists of words per language (en, ja, zh, he, nb), got {kind_of(raw)}")
        return {}
    lexicon: dict[str, tuple[str, ...]] = {}
    for language, terms in raw.items():
        if language not in LANGUAGES:
            problems.append(_unknown_language(language, label))
            continue
        if not isinstance(terms, list):
            problems.append(f"{label}.{language}: expected a list of words, got {kind_of(terms)}")
            continue
        checked = [_term(term, language, f"{label}.{language}[{i}]", problems) for i, term in enumerate(terms, 1)]
        lexicon[language] = tuple(dict.fromkeys(term for term in checked if term))
    return lexicon


def _unknown_language(language: Any, label: str) -> str:
    hint = LANGUAGE_HINTS.get(str(language).lower())
    close = f"use {hint!r}" if hint else f"use one of {', '.join(LANGUAGES)}"
    return f"{label}.{language}: unknown language; {close}"


def _term(term: Any, language: str, label: str, problems: list[str]) -> str | None:
    if not isinstance(term, str):
        problems.append(f"{label}: expected a word or phrase, got {kind_of(term)}; put it in quotes")
        return None
    folded = normalize(term).strip()
    if not any(char.isalnum() for char in folded):
        problems.append(f"{label}: {term!r} has no letter")
        return None
    if "*" in folded.rstrip("*") or folded.endswith("**"):
        problems.append(f"{label}: {term!r}: * is allowed once, at the end (price* = words starting with price)")
        return None
    if folded.endswith("*") and language in SUBSTRING_LANGUAGES:
        problems.append(f"{label}: {term!r}: {language} words match anywhere in the text already; drop the *")
        return None
    return folded
