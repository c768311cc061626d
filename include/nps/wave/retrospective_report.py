"""The wave's retrospective as a step: review the wave (figures, accounts, how the survey went,
every comment classified, themes ranked, action items stored and checked), then publish the
report to `reports/<wave>/retrospective.html` and by email to CS ops. The analysis itself is in
`retrospective`; opening the items as tracker issues (closed loop) happens between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import business_days, emails, storage
from include.nps.core.connections import reports_dir
from include.nps.core.emails import Attachment
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import audience, data_checks, flash_results, mailings, responses, retrospective, stats, waves

if TYPE_CHECKING:
    import pandas as pd

    from include.nps.wave.comment_themes import CommentClassifier, Themes


@dataclass(frozen=True)
class Review:
    """What the retrospective found; `stored` is the action items as kept in the NPS DB."""

    figures: dict[str, Any]
    accounts: pd.DataFrame
    invited: pd.DataFrame
    collection: dict[str, Any]
    parts: list[dict[str, Any]]
    ranking: list[dict[str, Any]]
    items: list[dict[str, Any]]
    stored: pd.DataFrame

    def reread(self, engine: Engine, wave_id: str) -> Review:
        """The same review with the action items read again (after tracker issues were linked)."""
        return replace(self, stored=retrospective.action_items_frame(engine, wave_id, self.items))


def review(engine: Engine, wave: waves.WaveParams, themes: Themes, sorter: CommentClassifier) -> Review:
    """Analyse the wave and store its action items (re-running updates them), checked."""
    shown = flash_results.figures(engine, wave)
    accounts = stats.per_account(engine, wave.wave_id)
    invited = stats.invited_contacts(engine, wave.wave_id)
    collection = stats.collection_review(invited, business_days.country_timezone(wave.country))
    answers = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    parts = retrospective.classify_comments(answers, sorter)
    ranking = retrospective.rank_themes(parts, themes, shown["current"]["detractors"])
    owner = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else wave.sender
    items = retrospective.action_items(
        shown["current"],
        shown["previous"],
        accounts,
        retrospective.by_kind(parts),
        wave.pillar_questions,
        owner,
        themes=themes,
        ranking=ranking,
        collection=collection,
        nps_direction=shown["nps_direction"],
    )
    retrospective.store_action_items(engine, wave.wave_id, items, storage.utcnow(), wave.country)
    stored = retrospective.action_items_frame(engine, wave.wave_id, items)
    suite = data_checks.retrospective_suite()
    data_checks.run_check(engine, wave.wave_id, "retrospective", "retrospective", stored, suite, row_key="item_key")
    return Review(shown, accounts, invited, collection, parts, ranking, items, stored)


def publish(
    engine: Engine, wave: waves.WaveParams, found: Review, themes: Themes, tracker: str | None
) -> dict[str, Any]:
    """Write the report file, email it to CS ops, and mark the wave done; return a summary."""
    context = _context(engine, wave, found, themes, tracker)
    chart = retrospective.themes_chart(found.ranking)
    file_context = {**context, "wave": mailings.wave_context(wave), "chart_src": retrospective.data_url(chart)}
    report = reports_dir(wave.wave_id) / "retrospective.html"
    retrospective.write_report(report, emails.render("email/retrospective.html", file_context))
    images = [Attachment("themes.png", chart, "image/png", content_id=retrospective.CHART_CONTENT_ID)] if chart else []
    context["chart_src"] = f"cid:{retrospective.CHART_CONTENT_ID}" if chart else None
    with SmtpTransport() as transport:
        outcome = mailings.send_internal(
            engine, wave, "retrospective", wave.cs_ops_recipients, context, transport, inline_images=images
        )
    waves.set_status(engine, wave.wave_id, "done")
    waves.mark_done(engine, wave.wave_id, "retrospective")
    return {
        "action_items": len(found.stored),
        "themes": len(found.ranking),
        "tracker_issues": int(found.stored["tracker_issue"].notna().sum()),
        "report": str(report),
        **outcome.__dict__,
    }


def _context(
    engine: Engine, wave: waves.WaveParams, found: Review, themes: Themes, tracker: str | None
) -> dict[str, Any]:
    """What the report's template reads (file and email alike)."""
    return {
        "figures": found.figures,
        "accounts": storage.records(found.accounts),
        "themes": found.ranking,
        "theme_names": {theme.id: theme.name for theme in themes.themes},
        "comments": retrospective.by_kind(found.parts),
        "items": storage.records(found.stored),
        "tracker": tracker,
        "segments": {s: storage.records(stats.segment_rates(found.invited, s)) for s in stats.SEGMENTS},
        "coverage": stats.account_coverage(found.invited),
        "account_nps": stats.account_level_nps(found.invited),
        "collection": found.collection,
        "checks": storage.records(data_checks.results_frame(engine, wave.wave_id)),
        "quarantined": audience.quarantined(engine, wave.wave_id),
        "sent": outbox.counts(engine, wave.wave_id),
    }
