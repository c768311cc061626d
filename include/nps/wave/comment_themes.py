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

import hashlib
import importlib
import itertools
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from include.nps.core import i18n, rule_files, storage

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
LABEL_CHARS = 100
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


def classifier_key(themes: Themes, sorter: CommentClassifier) -> str:
    """What a kept classification was made with: the classifier's type and the themes and cues it
    reads (not their risk rules). A classification kept under another key is made again."""
    made_with = (type(sorter).__module__, type(sorter).__qualname__, themes.version, themes.themes, themes.cues)
    return hashlib.sha256(repr(made_with).encode()).hexdigest()[:32]


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
    checked = rule_files.check(ThemesFile, data, where, ThemesError, MESSAGES)
    cues = checked.cues
    return Themes(
        themes=tuple(entry.theme() for entry in checked.themes),
        cues={cue: _terms(getattr(cues, cue)) for cue in CUES},
        risk=checked.risk.rules() if checked.risk else dict(DEFAULT_RISK),
        open_items_from=checked.open_items_from,
        version=checked.version,
        source=where,
    )


def _terms(lexicon: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {language: tuple(dict.fromkeys(terms)) for language, terms in lexicon.items()}


# --- the file's models ----------------------------------------------------------------------------

LEXICON = "expected lists of words per language (en, ja, zh, he, nb), got {kind}"
TERM = "expected a word or phrase, got {kind}; put it in quotes"
MESSAGES = rule_files.Messages(
    reasons={
        "": "expected a mapping with version, risk, themes and cues, got {kind}",
        "version": f"must be {' or '.join(map(str, VERSIONS))}, got {{value!r}}",
        "risk": "expected high and medium, each with min_detractors and min_share, got {kind}",
        "risk.*": "expected min_detractors and min_share, got {kind}",
        "risk.*.min_detractors": "expected a whole number of at least 1, got {value!r}",
        "risk.*.min_share": "expected a share between 0 and 1 (0.25 is 25%), got {value!r}",
        "open_items_from": "must be high, medium or low, got {value!r}",
        "themes": "expected a list of themes (id, name, keywords), got {kind}",
        "themes[]": "expected a mapping with id, name and keywords, got {kind}",
        "themes[].id": "expected lowercase letters, digits, - or _ (at most 48), got {value!r}",
        "themes[].name": "expected a name of 1 to 100 characters, got {kind}",
        "themes[].owner": "expected an email address, got {value!r}",
        "themes[].description": "expected a text, got {kind}",
        "themes[].keywords": LEXICON,
        "themes[].keywords.*": "expected a list of words, got {kind}",
        "themes[].keywords.*[]": TERM,
        "themes[].label": "expected a text per language (en, ja, zh, he, nb), got {kind}",
        "themes[].label.*": f"expected a text of 1 to {LABEL_CHARS} characters, got {{kind}}",
        "cues": "expected suggestion, negative, positive and contrast, got {kind}",
        "cues.*": {"missing": "missing; give its words per language", "": LEXICON},
        "cues.*.*": "expected a list of words, got {kind}",
        "cues.*.*[]": TERM,
    },
    items={"themes": ("theme", "id")},
)


def _known_version(version: int) -> int:
    if version not in VERSIONS:
        raise rule_files.unexpected()
    return version


def _language(value: Any) -> Any:
    """A lexicon's or label's key: one of LANGUAGES (with a hint for the usual other codes)."""
    if isinstance(value, str) and value in LANGUAGES:
        return value
    hint = LANGUAGE_HINTS.get(str(value).lower())
    raise rule_files.invalid(f"unknown language; {f'use {hint!r}' if hint else 'use one of ' + ', '.join(LANGUAGES)}")


def _term(term: str) -> str:
    """A keyword or cue as matching compares it (`normalize`d), `*` once at the end at most."""
    folded = normalize(term).strip()
    if not any(char.isalnum() for char in folded):
        raise rule_files.invalid(f"{term!r} has no letter")
    if "*" in folded.rstrip("*") or folded.endswith("**"):
        raise rule_files.invalid(f"{term!r}: * is allowed once, at the end (price* = words starting with price)")
    return folded


def _checked_term(term: Any) -> str | None:
    """`_term(term)`, or None when it is not a usable term in any language."""
    try:
        return _term(term) if isinstance(term, str) else None
    except PydanticCustomError:
        return None


def _usable(term: Any, language: str) -> str | None:
    """`term` as matching compares it in `language`, or None when it has a problem of its own."""
    folded = _checked_term(term)
    return None if folded and folded.endswith("*") and language in SUBSTRING_LANGUAGES else folded


def _usable_terms(raw: Any) -> dict[str, list[str]]:
    """{language: usable terms} of a lexicon as written, whatever its other problems."""
    found: dict[str, list[str]] = {}
    for language, terms in raw.items() if isinstance(raw, Mapping) else ():
        if isinstance(language, str) and language in LANGUAGES and isinstance(terms, list):
            found[language] = [term for term in (_usable(t, language) for t in terms) if term]
    return found


def _lexicon(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """{language: [terms]}; in ja and zh a word matches anywhere already, so a `*` is a mistake.
    Problems in the file's order (language by language)."""
    problems = []
    for language, terms in raw.items() if isinstance(raw, Mapping) else ():
        if language in SUBSTRING_LANGUAGES and isinstance(terms, list):
            for number, term in enumerate(terms):
                folded = _checked_term(term)
                if folded and folded.endswith("*"):
                    reason = f"{term!r}: {language} words match anywhere in the text already; drop the *"
                    problems.append(((language, number), reason))
    keys = {key: position for position, key in enumerate(raw)} if isinstance(raw, Mapping) else {}

    def in_file(loc: rule_files.Loc) -> tuple[int, int]:
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
        return (keys.get(loc[0], len(keys)), index) if loc else (-1, -1)

    return rule_files.checked(raw, handler, problems, order=in_file)


def _label_text(text: str) -> str:
    if not text.strip() or len(text) > LABEL_CHARS:
        raise rule_files.unexpected()
    return " ".join(text.split())


def _theme_id(value: str) -> str:
    if not THEME_ID.fullmatch(value):
        raise rule_files.unexpected()
    return value


def _address(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", value.strip()):
        raise rule_files.unexpected()
    return value.strip()


Language = Annotated[str, BeforeValidator(_language)]
Lexicon = Annotated[dict[Language, list[Annotated[str, AfterValidator(_term)]]], WrapValidator(_lexicon)]


class RiskLevel(rule_files.RuleModel):
    min_detractors: Annotated[int, Field(ge=1)] | None = None
    min_share: Annotated[float, Field(gt=0, le=1)] | None = None


class Risk(rule_files.RuleModel):
    high: RiskLevel | None = None
    medium: RiskLevel | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _high_above_medium(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return rule_files.checked(data, handler, _risk_problems(data))

    def rules(self) -> dict[str, RiskRule]:
        levels = {"high": self.high, "medium": self.medium}
        return {level: _risk_rule(given, DEFAULT_RISK[level]) for level, given in levels.items()}


def _risk_rule(given: RiskLevel | None, default: RiskRule) -> RiskRule:
    if given is None:
        return default
    count = default.min_detractors if given.min_detractors is None else given.min_detractors
    return RiskRule(count, default.min_share if given.min_share is None else float(given.min_share))


def _risk_problems(raw: Any) -> list[tuple[rule_files.Loc, str]]:
    """High needs at least what medium needs (each value as written when valid, else its default)."""
    if not isinstance(raw, Mapping):
        return []
    levels = {}
    for level in ("high", "medium"):
        given = raw.get(level) if isinstance(raw.get(level), Mapping) else {}
        try:
            levels[level] = _risk_rule(RiskLevel.model_validate(given), DEFAULT_RISK[level])
        except ValidationError:
            levels[level] = DEFAULT_RISK[level]  # its own problem
    high, medium = levels["high"], levels["medium"]
    if high.min_detractors < medium.min_detractors or high.min_share < medium.min_share:
        return [((), "high must need at least as many detractors and as large a share as medium")]
    return []


class ThemeEntry(rule_files.RuleModel):
    """One theme as written; its checks in the order people read a theme."""

    id: Annotated[str, AfterValidator(_theme_id)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    owner: Annotated[str, AfterValidator(_address)] | None = None
    keywords: Lexicon = Field(None, validate_default=True)
    label: dict[Language, Annotated[str, AfterValidator(_label_text)]] | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any, info: ValidationInfo) -> Any:
        seen = rule_files.shared(info, "themes")
        seen["number"] = seen.get("number", 0) + 1
        seen["id"] = str(data.get("id")) if isinstance(data, Mapping) else "None"
        return data

    @field_validator("id")
    @classmethod
    def _unique(cls, theme_id: str, info: ValidationInfo) -> str:
        seen = rule_files.shared(info, "themes")
        ids = seen.setdefault("ids", {})
        if theme_id in ids:
            raise rule_files.invalid(f"also the id of theme {ids[theme_id]}")
        ids[theme_id] = seen.get("number", 0)
        return theme_id

    @field_validator("keywords", mode="wrap")
    @classmethod
    def _own_keywords(cls, raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """At least one keyword, and none that another theme has (a part gets one theme)."""
        problems: list[tuple[rule_files.Loc, str]] = []
        terms = _usable_terms(raw)
        if not any(terms.values()):
            problems.append(((), "expected at least one keyword in en, ja, zh, he or nb"))
        seen = rule_files.shared(info, "themes")
        owners = seen.setdefault("keywords", {})
        for language, found in terms.items():
            for term in dict.fromkeys(found):
                first = owners.setdefault((language, term), seen.get("id"))
                if first != seen.get("id"):
                    problems.append(((language,), f"{term!r} is also a keyword of theme {first!r}"))
        return rule_files.checked(raw, handler, problems)

    def theme(self) -> Theme:
        owner, label = self.owner, dict(self.label or {})
        return Theme(self.id, self.name, _terms(self.keywords), owner, self.description or "", label)


class Cues(rule_files.RuleModel):
    suggestion: Lexicon
    negative: Lexicon
    positive: Lexicon
    contrast: Lexicon = Field(default_factory=dict)


class ThemesFile(rule_files.RuleModel):
    version: Annotated[int, AfterValidator(_known_version)]
    risk: Risk | None = None
    open_items_from: Literal["high", "medium", "low"] = "high"
    themes: Annotated[list[ThemeEntry], Field(min_length=1)]
    cues: Cues
