"""The wave's retrospective as a step: review the wave (figures, accounts, how the survey went,
every comment classified, themes ranked, action items stored and checked), then publish the
report to `reports/<wave>/retrospective.html` and by email to CS ops. The analysis itself is in
`retrospective`; opening the items as tracker issues (closed loop) happens between the two.

The review reads each wave's responses once, counts the invited contacts in the database (per
account and per role, no row per contact) and reads the kept comment classification
(`comment_parts`). The report file holds everything (every account, item and comment), written
as it is rendered; the email is bounded whatever the wave's size (the top comments of each theme,
the accounts that need attention, the first items, each with what the file holds more) and carries
the file: attached when the email stays within `MAX_EMAIL_BYTES` and the wave's mail size limit,
else linked where it is stored (the drop location when drops are stored, as the sales drops do,
else the local reports folder).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import business_days, emails, i18n, storage
from include.nps.core.connections import reports_dir
from include.nps.core.emails import Attachment
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import comment_parts, data_checks, flash_results, mailings, retrospective, stats, waves

if TYPE_CHECKING:
    import pandas as pd

    from include.nps.wave.comment_themes import CommentClassifier, Themes

MAX_EMAIL_BYTES = 1_000_000  # the whole email, report attached or not
BASE64_GROWTH = 1.37  # an attachment's bytes on the wire: base64 and its line breaks
COMMENTS_PER_THEME = 3  # per kind, in the email: the lowest scores of each theme (and of no theme)
THEMES_IN_EMAIL = 10  # the top of the themes' ranking whose comments the email shows
EMAIL_COMMENT_CHARS = 500  # a longer comment part is cut in the email (the file holds it whole)
ACCOUNTS_IN_EMAIL = 20  # silent accounts first (VIP first), then the lowest response rates
ITEMS_IN_EMAIL = 30
SEGMENT_VALUES = 12  # per segment in the email: the values with the most contacts invited
QUARANTINE_SHOWN = 20
LISTS = {"cons": "con", "pros": "pro", "suggestions": "suggestion"}
Comment = namedtuple("Comment", "score account_name theme comment")
AccountRow = namedtuple("AccountRow", "account_name responses invited response_rate")


@dataclass(frozen=True)
class Review:
    """What the retrospective found; `stored` is the action items as kept in the NPS DB."""

    figures: dict[str, Any]
    accounts: pd.DataFrame
    invited: stats.Invited
    collection: dict[str, Any]
    parts: comment_parts.Parts
    ranking: list[dict[str, Any]]
    items: list[dict[str, Any]]
    stored: pd.DataFrame

    def reread(self, engine: Engine, wave_id: str) -> Review:
        """The same review with the action items read again (after tracker issues were linked)."""
        return replace(self, stored=retrospective.action_items_frame(engine, wave_id, self.items))


def review(engine: Engine, wave: waves.WaveParams, themes: Themes, sorter: CommentClassifier) -> Review:
    """Analyse the wave and store its action items (re-running updates them), checked."""
    answers = flash_results.read_answers(engine, wave)
    shown = flash_results.figures(engine, wave, answers)
    invited = stats.invited_counts(engine, wave.wave_id)
    accounts = stats.account_rates(invited)
    zone = business_days.country_timezone(wave.country)
    collection = stats.collection_review(invited, zone, stats.answer_minutes(engine, wave.wave_id))
    parts = comment_parts.kept(engine, wave.wave_id, themes, sorter)
    ranking = retrospective.rank_themes(parts, themes, shown["current"]["detractors"])
    owner = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else wave.sender
    items = retrospective.action_items(
        shown["current"],
        shown["previous"],
        accounts,
        parts,
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
    """Write the report file, email it to CS ops (attached or linked), and mark the wave done;
    return a summary."""
    shared = _context(engine, wave, found, themes, tracker)
    chart = retrospective.themes_chart(found.ranking)
    report = reports_dir(wave.wave_id) / "retrospective.html"
    file_context = {
        **shared,
        **_everything(found),
        "wave": mailings.wave_context(wave),
        "chart_src": retrospective.data_url(chart),
        "report": None,
    }
    template = emails.environment(i18n.DEFAULT_LOCALE).get_template("email/retrospective.html")
    retrospective.write_report(report, template.generate(**file_context))
    images = [Attachment("themes.png", chart, "image/png", content_id=retrospective.CHART_CONTENT_ID)] if chart else []
    context = {
        **shared,
        **_bounded(found),
        "chart_src": f"cid:{retrospective.CHART_CONTENT_ID}" if chart else None,
    }
    context["report"], attachments = _carry(wave, report, context, len(chart or b""))
    with SmtpTransport() as transport:
        outcome = mailings.send_internal(
            engine,
            wave,
            "retrospective",
            wave.cs_ops_recipients,
            context,
            transport,
            attachments=attachments,
            inline_images=images,
        )
    waves.set_status(engine, wave.wave_id, "done")
    waves.mark_done(engine, wave.wave_id, "retrospective")
    return {
        "action_items": len(found.stored),
        "themes": len(found.ranking),
        "tracker_issues": int(found.stored["tracker_issue"].notna().sum()),
        "report": str(report),
        "report_attached": bool(attachments),
        **outcome.__dict__,
    }


def _context(
    engine: Engine, wave: waves.WaveParams, found: Review, themes: Themes, tracker: str | None
) -> dict[str, Any]:
    """What the report's template reads in the file and the email alike."""
    quarantine = storage.fetch_all(
        engine, storage.query("quarantine_shown"), wave_id=wave.wave_id, limit=QUARANTINE_SHOWN
    )
    counted = storage.fetch_one(engine, storage.query("quarantine_count"), wave_id=wave.wave_id)
    return {
        "figures": found.figures,
        "themes": found.ranking,
        "theme_names": {theme.id: theme.name for theme in themes.themes},
        "tracker": tracker,
        "coverage": stats.account_coverage(found.invited),
        "account_nps": stats.account_level_nps(found.invited),
        "collection": found.collection,
        "checks": storage.records(data_checks.results_frame(engine, wave.wave_id)),
        "quarantined": quarantine,
        "quarantined_count": int(counted["n"]) if counted else 0,
        "sent": outbox.counts(engine, wave.wave_id),
    }


def _everything(found: Review) -> dict[str, Any]:
    """The file's lists: every account, item, segment value and comment (comments read as rendered)."""
    accounts = found.accounts
    return {
        "accounts": (AccountRow(*row) for row in accounts[list(AccountRow._fields)].itertuples(index=False)),
        "items": storage.records(found.stored),
        "segments": {s: storage.records(stats.segment_rates(found.invited, s)) for s in stats.SEGMENTS},
        "comments": {group: _comments(found.parts, kind) for group, kind in LISTS.items()},
        "more": {},
    }


def _comments(parts: comment_parts.Parts, kind: str) -> Iterator[Comment]:
    """Every part of `kind`, lowest score first, for the template, read as it is rendered."""
    return (Comment(*part) for part in parts.of_kind(kind))


def _bounded(found: Review) -> dict[str, Any]:
    """The email's lists, bounded whatever the wave's size, how much more the file holds of each,
    and whether nothing was left out (`complete`: then the email is the whole report)."""
    comments: dict[str, list[Comment]] = {}
    more: dict[str, int] = {}
    cut = False
    shown_themes = [row["theme"] for row in found.ranking[:THEMES_IN_EMAIL]] + [""]  # "": no theme
    frame = found.parts.frame
    for group, kind in LISTS.items():
        of_kind = frame[frame["kind"] == kind]
        theme = of_kind["theme"].astype(object).fillna("")
        top = of_kind[theme.isin(shown_themes)].groupby(theme, sort=False).head(COMMENTS_PER_THEME)
        comments[group] = []
        for part in found.parts.load(comment_parts.positions(top.sort_index())):
            text = part["comment"]
            cut = cut or len(text) > EMAIL_COMMENT_CHARS
            short = text if len(text) <= EMAIL_COMMENT_CHARS else text[: EMAIL_COMMENT_CHARS - 1].rstrip() + "…"
            comments[group].append(Comment(part["score"], part["account_name"], part["theme"], short))
        more[group] = len(of_kind) - len(comments[group])
    accounts = _accounts_to_mention(found.accounts)
    segments = {}
    for segment in stats.SEGMENTS:
        rates = stats.segment_rates(found.invited, segment)
        top = rates.sort_values("invited", ascending=False, kind="stable").head(SEGMENT_VALUES).sort_index()
        segments[segment] = storage.records(top)
        more[segment] = len(rates) - len(top)
    items = storage.records(found.stored.head(ITEMS_IN_EMAIL))
    more.update(accounts=len(found.accounts) - len(accounts), items=len(found.stored) - len(items))
    return {
        "accounts": [AccountRow(*row) for row in accounts[list(AccountRow._fields)].itertuples(index=False)],
        "items": items,
        "segments": segments,
        "comments": comments,
        "more": more,
        "complete": not cut and not any(more.values()),
    }


def _accounts_to_mention(accounts: pd.DataFrame) -> pd.DataFrame:
    """The accounts the email names: the silent ones (VIP first, then the most invited), then the
    lowest response rates, at most ACCOUNTS_IN_EMAIL."""
    ranked = accounts.assign(
        _silent=accounts["responses"] == 0, _vip=accounts["vip"].fillna(False).astype(bool)
    ).sort_values(
        ["_silent", "_vip", "response_rate", "invited", "account_id"],
        ascending=[False, False, True, False, True],
        kind="stable",
    )
    return ranked.head(ACCOUNTS_IN_EMAIL)


def _carry(
    wave: waves.WaveParams, report: Path, context: dict[str, Any], images: int
) -> tuple[dict[str, Any], list[Attachment]]:
    """How the email carries the report file: not at all when the email holds all of it, else
    attached when the email stays within MAX_EMAIL_BYTES and the wave's mail size limit, else as
    a link to where it is stored."""
    size = report.stat().st_size
    about = {"complete": context.pop("complete"), "attached": False, "name": report.name, "size_kb": -(-size // 1024)}
    if about["complete"]:
        return {**about, "link": str(report)}, []
    limit = min(MAX_EMAIL_BYTES, int(wave.mail_size_limit_mb * 1024 * 1024))
    attached = {**about, "attached": True, "link": None}
    probe = {**context, "wave": mailings.wave_context(wave), "recipient": "", "report": attached}
    body = emails.render_email("retrospective", i18n.DEFAULT_LOCALE, "", probe)
    if (len(body.html.encode()) + len(body.text.encode()) + images + size) * BASE64_GROWTH <= limit:
        return attached, [Attachment(report.name, report.read_bytes(), "text/html")]
    return {**about, "link": _stored(wave, report)}, []


def _stored(wave: waves.WaveParams, report: Path) -> str:
    """Where the report is for the link: a copy in the drop location when drops are stored there
    (`ObjectStoragePath`: a local folder, S3 or GCS), else the local reports folder."""
    if "storage" not in wave.drop_channels or not wave.drop_location:
        return str(report)
    from airflow.sdk import ObjectStoragePath

    folder = ObjectStoragePath(wave.drop_location, conn_id=wave.drop_storage_conn_id or None) / wave.wave_id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / report.name
    with report.open("rb") as source, target.open("wb") as copy:
        while block := source.read(1 << 20):
            copy.write(block)
    return str(target)
