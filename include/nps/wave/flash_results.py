"""The flash-results email's content: this wave's NPS and pillars against the previous wave's,
checked before anyone is emailed, and each reader's context (the chart in their language, the
quotes, "you told us, we did" and "what we will do next" of `flash_content`).

What every reader shares is computed once, when the mailing is prepared (`check_figures`): the
figures from each wave's responses read once, the themes from the kept comment classification
(`comment_parts`), the quotes from a few candidates per language. It is kept in the NPS DB
(`flash_contents`), so every send task tells its readers the same and none reads the responses
again; a send task looks up whether its readers answered once per chunk.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import charts, i18n, storage
from include.nps.core.emails import Attachment
from include.nps.wave import bulk_reads, comment_parts, data_checks, flash_content, retrospective, stats, waves
from include.nps.wave.comment_themes import DETRACTOR_MAX

if TYPE_CHECKING:
    import pandas as pd

    from include.nps.wave.comment_themes import CommentClassifier, Themes

QUOTE_CANDIDATES = 25  # promoter comments per language read for the quotes (more when too few qualify)
# Characters Python's case-insensitive matching takes for another (re._casefix), each mapped to one of
# its class, and U+0130, whose lowercase is two characters: `_fold`ed texts contain a name whenever
# the anonymiser's case-insensitive search would find it.
CASE_CLASSES = str.maketrans(
    {
        "ı": "i", "ſ": "s", "μ": "µ", "ͅ": "ι", "ι": "ι", "ΐ": "ΐ", "ΰ": "ΰ", "ϐ": "β", "ϵ": "ε",
        "ϑ": "θ", "ϰ": "κ", "ϖ": "π", "ϱ": "ρ", "ς": "σ", "ϕ": "φ", "ᲀ": "в", "ᲁ": "д", "ᲂ": "о",
        "ᲃ": "с", "ᲄ": "т", "ᲅ": "т", "ᲆ": "ъ", "ᲇ": "ѣ", "ꙋ": "ᲈ", "ẛ": "ṡ", "ﬆ": "ﬅ",
    }
)  # fmt: skip
DOTTED_I = str.maketrans({"İ": "i"})


@dataclass(frozen=True)
class Answers:
    """A wave's responses that count and its previous wave's, counted once per step (`stats.tally`)."""

    current: stats.Tally
    previous: stats.Tally | None
    previous_id: str | None


def read_answers(engine: Engine, wave: waves.WaveParams) -> Answers:
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    previous_id = waves.previous_wave_id(engine, wave.wave_id)
    previous = stats.tally(engine, previous_id, pillar_ids) if previous_id else None
    return Answers(stats.tally(engine, wave.wave_id, pillar_ids), previous, previous_id)


def figures(engine: Engine, wave: waves.WaveParams, answers: Answers | None = None) -> dict[str, Any]:
    """This wave's NPS and pillars, the previous wave's, and the direction of each: 'up' or
    'down' only when the change is larger than chance (see `stats`). `answers`: counted already."""
    answers = answers or read_answers(engine, wave)
    now, earlier = answers.current, answers.previous
    current = stats.wave_summary(engine, wave.wave_id, wave.pillar_questions, now)
    previous = (
        stats.wave_summary(engine, answers.previous_id, wave.pillar_questions, earlier)
        if answers.previous_id and earlier is not None
        else None
    )
    prev_pillars = (previous or {}).get("pillars", {})

    def pillar_direction(pillar_id: str) -> str:
        return "new" if earlier is None else stats.mean_change(now.pillars[pillar_id], earlier.pillars[pillar_id])

    return {
        "current": current,
        "previous": previous,
        "nps_direction": stats.nps_direction(current, previous),
        "pillar_rows": [
            {
                "text": p["text"],
                "translations": p.get("translations", {}),
                "scale": p["scale"],
                "score": current["pillars"].get(p["id"]),
                "interval": stats.mean_interval(now.pillars[p["id"]]),
                "previous": prev_pillars.get(p["id"]),
                "direction": pillar_direction(p["id"]),
            }
            for p in wave.pillar_questions
        ],
    }


def check_figures(
    engine: Engine, wave: waves.WaveParams, reader: tuple[Themes, CommentClassifier] | None = None
) -> None:
    """Compute what every reader shares (classifying the comments not classified yet), check that
    the flash figures add up (promoters + passives + detractors = responses; the result is kept),
    then keep it for the send tasks. `reader`: the themes and classifier (default: the settings')."""
    shared = content(engine, wave, *(reader or _settings_reader()))
    current = shared["figures"]["current"]
    suite = data_checks.flash_suite(current["promoters"], current["detractors"], current["responses"])
    data_checks.run_check(engine, current["wave_id"], "flash_figures", "flash_results", _one_row(current), suite)
    row = {"wave_id": wave.wave_id, "content": storage.dumps(shared), "now": storage.utcnow()}
    storage.execute(engine, storage.query("upsert_flash_content"), row)


def content(engine: Engine, wave: waves.WaveParams, themes: Themes, sorter: CommentClassifier) -> dict[str, Any]:
    """What every reader's flash results share, as plain JSON-able values: the figures, the NPS
    trend, the done action items' notes, the quotes per language and the ids of the themes to work on."""
    answers = read_answers(engine, wave)
    shown = figures(engine, wave, answers)
    known = {wave.wave_id: shown["current"]}
    if answers.previous_id and shown["previous"]:
        known[answers.previous_id] = shown["previous"]
    trend = stats.nps_trend(engine, wave.wave_id, known=known)
    parts = comment_parts.kept(engine, wave.wave_id, themes, sorter)
    focus = focus_themes(parts, themes, shown["current"]["detractors"])
    return json.loads(
        storage.dumps(
            {
                "figures": shown,
                "trend": trend,
                "we_did": [item["public_note"] for item in flash_content.done_items(engine, answers.previous_id)],
                "quotes": quotes(engine, wave) if wave.share_quotes else {},
                "focus": [theme.id for theme in focus],
            }
        )
    )


def reader_context(
    engine: Engine, wave: waves.WaveParams, themes: Themes, sorter: CommentClassifier
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Each contact's flash context: the figures, whether they answered, the chart (drawn once per
    language), the done action items' notes, quotes and focus themes in their language. What they
    share is the content kept by `check_figures` (computed here when there is none)."""
    shared = _kept(engine, wave.wave_id) or content(engine, wave, themes, sorter)
    shown = shared["figures"]
    trend = [charts.WavePoint(name, nps) for name, nps in shared["trend"]]
    split = {group: shown["current"][group] for group in ("promoters", "passives", "detractors")}
    focus = [theme for theme in map(themes.get, shared["focus"]) if theme]
    responded = _respondents(engine, wave.wave_id)

    @functools.cache
    def chart(locale: str) -> Attachment:
        png = charts.flash_chart(trend, split, locale)
        return Attachment("nps-chart.png", png, "image/png", content_id=charts.CONTENT_ID)

    def context(contact: dict[str, Any]) -> dict[str, Any]:
        locale = i18n.normalize_locale(contact.get("locale"))
        return {
            **shown,
            "responded": responded(contact),
            "chart_cid": charts.CONTENT_ID,
            "inline_images": [chart(locale)],
            "we_did": [flash_content.note_in({"public_note": note}, locale) for note in shared["we_did"]],
            "quotes": shared["quotes"].get(locale, []),
            "focus_themes": [theme.label_in(locale) for theme in focus],
        }

    return context


def _kept(engine: Engine, wave_id: str) -> dict[str, Any] | None:
    row = storage.fetch_one(engine, storage.query("flash_content"), wave_id=wave_id)
    return json.loads(row["content"]) if row else None


def _respondents(engine: Engine, wave_id: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a contact answered: `responded` when the contact carries it, else looked up for the
    whole ledger chunk of the contact's flash results at once (a send task's contacts are a chunk)."""
    known: dict[str, bool] = {}

    def responded(contact: dict[str, Any]) -> bool:
        if contact.get("responded") is not None:
            return bool(contact["responded"])
        contact_id = contact["contact_id"]
        if contact_id not in known:
            chunk = storage.fetch_all(
                engine, storage.query("flash_chunk_respondents"), wave_id=wave_id, contact_id=contact_id
            )
            known.update({row["contact_id"]: bool(row["responded"]) for row in chunk})
        if contact_id not in known:  # no flash-results ledger row (a contact given directly)
            found = storage.fetch_one(engine, storage.query("responded"), wave_id=wave_id, contact_id=contact_id)
            known[contact_id] = bool(found and found["n"])
        return known[contact_id]

    return responded


def focus_themes(parts: comment_parts.Parts, themes: Themes, wave_detractors: int) -> list[Any]:
    """`flash_content.focus_themes` over the kept classification: the themes detractors
    complained about most, in the retrospective's ranking."""
    frame = parts.frame
    complained = set(frame.loc[(frame["kind"] == "con") & (frame["score"] <= DETRACTOR_MAX), "theme"].dropna())
    ranked = [themes.get(row["theme"]) for row in retrospective.rank_themes(parts, themes, wave_detractors)]
    return [theme for theme in ranked if theme and theme.id in complained][: flash_content.FOCUS_THEMES]


def quotes(engine: Engine, wave: waves.WaveParams) -> dict[str, list[str]]:
    """Anonymised promoter quotes per language (`flash_content.quotes_by_locale`); no name of the
    wave's audience shows. The same quotes as from every promoter comment, chosen from the first
    few of each locale (`promoter_candidates`): per language, the candidates up to the first place
    where one of its locales was cut off are all its comments up to there, in the same order; when
    the quotes are not all found before it, more are read."""
    names: list[str] | None = None
    limit = QUOTE_CANDIDATES
    while True:
        found = bulk_reads.frame(engine, storage.query("promoter_candidates"), wave_id=wave.wave_id, limit=limit)
        if found.empty:
            return {}
        found = found.assign(language=found["locale"].map(i18n.normalize_locale))
        ordered = found.sort_values(["score", "answered_at"], ascending=[False, True], kind="stable", ignore_index=True)
        cut = ordered[(ordered["written"] > limit) & (ordered["place"] == limit)]
        cut_at = cut.index.to_series().groupby(cut["language"]).min()
        whole = ordered[ordered.index <= ordered["language"].map(cut_at).fillna(len(ordered))]
        names = names if names is not None else _audience_names(engine, wave.wave_id)
        chosen = flash_content.quotes_by_locale(whole, _names_within(names, whole["comment"]))
        if all(len(chosen.get(language, [])) >= flash_content.QUOTES_PER_EMAIL for language in cut_at.index):
            return chosen
        limit *= 4


def _audience_names(engine: Engine, wave_id: str) -> list[str]:
    return bulk_reads.frame(engine, storage.query("audience_names"), wave_id=wave_id)["name"].tolist()


def _fold(text: str) -> str:
    """`text` as names are looked for in it (see CASE_CLASSES)."""
    return text.translate(DOTTED_I).lower().translate(CASE_CLASSES)


def _names_within(names: list[str], texts: pd.Series) -> list[str]:
    """The names `flash_content.anonymise` redacts (stripped, two characters or more) that may
    occur in any of `texts`: every one its case-insensitive search finds (a few more at most), so
    redacting with these alone redacts the same. Each name is looked up among the texts' pieces of
    its length, not searched for in each text; names holding a character the redaction itself
    writes are always kept."""
    stripped = [name.strip() for name in names if name]
    lengths = {len(name) for name in stripped if len(name) > 1}
    folded = [_fold(str(text)) for text in texts]
    pieces = {text[i : i + k] for text in folded for k in lengths for i in range(len(text) - k + 1)}
    redaction = set(flash_content.REDACTED)
    found = []
    for name in stripped:
        if len(name) < 2:
            continue
        if name.isascii():  # folding is lowering; of the redaction's characters only [ and ] are ASCII
            if name.lower() in pieces or "[" in name or "]" in name:
                found.append(name)
        elif _fold(name) in pieces or not redaction.isdisjoint(name):
            found.append(name)
    return found


def _one_row(current: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    row = {k: v for k, v in current.items() if k not in ("pillars", "wave_id", "interval")}
    row["count_gap"] = current["responses"] - current["promoters"] - current["passives"] - current["detractors"]
    return pd.DataFrame([row])


def _settings_reader() -> tuple[Themes, CommentClassifier]:
    from include.nps.wave import comment_themes

    themes = comment_themes.load_themes()
    return themes, comment_themes.classifier_from_setting(themes)
