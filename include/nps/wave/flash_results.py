"""The flash-results email's content: this wave's NPS and pillars against the previous wave's,
checked before anyone is emailed, and each reader's context (the chart in their language, the
quotes, "you told us, we did" and "what we will do next" of `flash_content`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import charts, i18n
from include.nps.core.emails import Attachment
from include.nps.wave import audience, data_checks, flash_content, responses, retrospective, stats, waves

if TYPE_CHECKING:
    import pandas as pd

    from include.nps.wave.comment_themes import CommentClassifier, Themes


def figures(engine: Engine, wave: waves.WaveParams) -> dict[str, Any]:
    """This wave's NPS and pillars, the previous wave's, and the direction of each: 'up' or
    'down' only when the change is larger than chance (see `stats`)."""
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    current = stats.wave_summary(engine, wave.wave_id, wave.pillar_questions)
    answers = responses.responses_frame(engine, wave.wave_id, pillar_ids)
    previous_id = waves.previous_wave_id(engine, wave.wave_id)
    previous = stats.wave_summary(engine, previous_id, wave.pillar_questions) if previous_id else None
    earlier = responses.responses_frame(engine, previous_id, pillar_ids) if previous_id else None
    prev_pillars = (previous or {}).get("pillars", {})

    def pillar_direction(pillar_id: str) -> str:
        column = f"pillar_{pillar_id}"
        return "new" if earlier is None else stats.mean_change(answers[column], earlier[column])

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
                "interval": stats.mean_interval(answers[f"pillar_{p['id']}"]),
                "previous": prev_pillars.get(p["id"]),
                "direction": pillar_direction(p["id"]),
            }
            for p in wave.pillar_questions
        ],
    }


def check_figures(engine: Engine, wave: waves.WaveParams) -> None:
    """The flash figures add up (promoters + passives + detractors = responses), checked and kept."""
    current = figures(engine, wave)["current"]
    suite = data_checks.flash_suite(current["promoters"], current["detractors"], current["responses"])
    data_checks.run_check(engine, current["wave_id"], "flash_figures", "flash_results", _one_row(current), suite)


def reader_context(
    engine: Engine, wave: waves.WaveParams, themes: Themes, sorter: CommentClassifier
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Each contact's flash context: the figures, whether they answered, the chart (drawn once per
    language), the done action items' notes, quotes and focus themes in their language."""
    shown = figures(engine, wave)
    answers = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    respondents = set(answers["contact_id"])
    trend = [charts.WavePoint(name, nps) for name, nps in stats.nps_trend(engine, wave.wave_id)]
    split = {group: shown["current"][group] for group in ("promoters", "passives", "detractors")}

    @functools.cache
    def chart(locale: str) -> Attachment:
        png = charts.flash_chart(trend, split, locale)
        return Attachment("nps-chart.png", png, "image/png", content_id=charts.CONTENT_ID)

    we_did = flash_content.done_items(engine, waves.previous_wave_id(engine, wave.wave_id))
    quotes = _quotes(engine, wave, answers) if wave.share_quotes else {}
    parts = retrospective.classify_comments(answers, sorter)
    focus = flash_content.focus_themes(parts, themes, shown["current"]["detractors"])

    def context(contact: dict[str, Any]) -> dict[str, Any]:
        locale = i18n.normalize_locale(contact.get("locale"))
        return {
            **shown,
            "responded": contact["contact_id"] in respondents,
            "chart_cid": charts.CONTENT_ID,
            "inline_images": [chart(locale)],
            "we_did": [flash_content.note_in(item, locale) for item in we_did],
            "quotes": quotes.get(locale, []),
            "focus_themes": [theme.label_in(locale) for theme in focus],
        }

    return context


def _quotes(engine: Engine, wave: waves.WaveParams, answers: pd.DataFrame) -> dict[str, list[str]]:
    """Anonymised promoter quotes per language; no name of the wave's audience shows."""
    names = flash_content.names_in(audience.audience_frame(engine, wave.wave_id))
    return flash_content.quotes_by_locale(answers, names)


def _one_row(current: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    row = {k: v for k, v in current.items() if k not in ("pillars", "wave_id", "interval")}
    row["count_gap"] = current["responses"] - current["promoters"] - current["passives"] - current["detractors"]
    return pd.DataFrame([row])
