"""The wave's retrospective: what customers said, how the survey itself went, and what to improve.

1. Comments: every comment is split into parts, each a pro, a con or a suggestion linked to a
   theme of the program (`rules/themes.yaml`, read by the classifier of `comment_themes`).
2. Themes are ranked by the distinct detractors (score 0-6) raising them, then by all the
   comments naming them, then in the file's order. A theme with cons gets a risk (high / medium /
   low) from its detractors, with the thresholds of the themes file.
3. Action items, cons first, collection problems next, suggestions last:
   - cons: one per con theme at the file's `open_items_from` risk or above (owner: the theme's
     owner, else CS ops); the NPS drop (high when larger than chance, else medium); each pillar's
     drop (medium); `review-cons` for the cons no theme item covers (no theme, or a theme below
     the threshold), so that none is lost (medium when `risk.high.min_detractors` detractors or
     more wrote them, else low);
   - collection (the survey itself): a response rate below TARGET_RESPONSE_RATE (high) or down by
     RATE_DROP_POINTS or more since the previous wave (medium); bounces above MAX_BOUNCE_RATE
     (medium, high at twice that); opt-outs above MAX_OPT_OUT_RATE (medium); a reminder after which
     fewer than MIN_REMINDER_YIELD % of the reminded answered (low); each silent account (high for
     a VIP account, else medium; owner: its CSM);
   - suggestions (low): one per theme customers made suggestions about (`suggestion-<theme>`, owner:
     the theme's owner, else CS ops), in the themes' ranking; `review-suggestions` for those with
     no theme.
   Within a group: high, medium, low, then the themes' ranking. Each item is due DUE_BUSINESS_DAYS
   (by risk) after the retrospective, with checkpoints: plan agreed (1 business day), halfway
   review, done (the due date). Keys are stable (`theme-pricing`, `silent-A012`), so a re-run
   updates an item and never duplicates it; it never reassigns or re-dates one either.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from include.nps.core import business_days, storage
from include.nps.wave import comment_parts
from include.nps.wave.comment_parts import Parts
from include.nps.wave.comment_themes import (
    DETRACTOR_MAX,
    RISKS,
    CommentClassifier,
    KeywordClassifier,
    Themes,
    load_themes,
)

if TYPE_CHECKING:
    import pandas as pd

TARGET_RESPONSE_RATE = 30.0  # % of the invited
RATE_DROP_POINTS = 5.0  # response-rate fall since the previous wave that is a problem
MAX_BOUNCE_RATE = 3.0  # % of the invited
MAX_OPT_OUT_RATE = 2.0
MIN_REMINDER_YIELD = 10.0  # % of the reminded who answered after the reminder
MIN_REMINDED = 10  # below this, the reminder's yield says little
DUE_BUSINESS_DAYS = {"high": 5, "medium": 10, "low": 20}
GROUPS = ("con", "collection", "suggestion")
CHART_CONTENT_ID = "retrospective-themes"
CHART_THEMES = 10  # bars at most
QUOTE_CHARS = 200


# --- comments and themes ------------------------------------------------------------------------


def classify_comments(frame: pd.DataFrame, sorter: CommentClassifier) -> list[dict[str, Any]]:
    """Every part of every comment, classified: contact, account, score, locale, the part's text
    (`comment`), kind (pro / con / suggestion), theme and the words that decided; lowest score first."""
    commented = frame[frame["comment"].notna() & (frame["comment"].astype(str).str.strip() != "")]
    parts: list[dict[str, Any]] = []
    for row in storage.records(commented.sort_values(["score", "contact_id"])):
        locale = row.get("locale") or "en"
        for text in sorter.split(str(row["comment"]), locale):
            found = sorter.classify(text, locale, int(row["score"]))
            parts.append(
                {
                    "contact_id": row["contact_id"],
                    "account_name": row.get("account_name"),
                    "score": int(row["score"]),
                    "locale": locale,
                    "comment": text,
                    "kind": found.kind,
                    "theme": found.theme,
                    "matched": list(found.matched),
                }
            )
    return parts


def by_kind(parts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Classified parts as cons, pros and suggestions (lowest score first in each)."""
    return {group: [p for p in parts if p["kind"] == kind] for group, kind in _LISTS.items()}


def split_comments(frame: pd.DataFrame, sorter: CommentClassifier | None = None) -> dict[str, list[dict[str, Any]]]:
    """A wave's comments split into cons, pros and suggestions by `sorter` (default: the keyword
    classifier over the themes file)."""
    return by_kind(classify_comments(frame, sorter or KeywordClassifier(load_themes())))


def _flat(comments: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return sorted((p for group in _LISTS for p in comments.get(group, [])), key=lambda p: p["score"])


_LISTS = {"cons": "con", "pros": "pro", "suggestions": "suggestion"}


def rank_themes(parts: list[dict[str, Any]] | Parts, themes: Themes, wave_detractors: int) -> list[dict[str, Any]]:
    """The themes raised, most detractors first (then most comments, then the file's order):
    per theme the distinct detractors and comments naming it, its pros, cons and suggestions,
    a con's risk and an example quote (a con from the lowest score when there is one)."""
    found = comment_parts.listed(parts)
    frame = found.frame
    themed = frame[frame["theme"].notna() & (frame["theme"].astype(object) != "")]
    if themed.empty:
        return []
    by_theme = themed.groupby("theme", observed=True, sort=False)
    first = themed.index.to_series().groupby(themed["theme"], observed=True).min()
    cons = themed[themed["kind"] == "con"]
    first_con = cons.index.to_series().groupby(cons["theme"], observed=True).min()
    example_at = first_con.reindex(first.index).fillna(first).astype("int64")
    mentions = by_theme["contact_id"].nunique()
    detractors = themed[themed["score"] <= DETRACTOR_MAX].groupby("theme", observed=True)["contact_id"].nunique()
    kinds = themed.groupby(["theme", "kind"], observed=True)["contact_id"].nunique()
    order = {theme.id: position for position, theme in enumerate(themes.themes)}

    def count(series: pd.Series, key: Any) -> int:
        return int(series.get(key, 0))

    ranked_ids = sorted(
        first.index,
        key=lambda t: (-count(detractors, t), -count(mentions, t), order.get(t, len(order)), first[t]),
    )
    examples = found.load([int(example_at[t]) for t in ranked_ids])
    ranked = []
    for rank, (theme_id, example) in enumerate(zip(ranked_ids, examples, strict=True), start=1):
        theme = themes.get(theme_id)
        counts = {"detractors": count(detractors, theme_id), "mentions": count(mentions, theme_id)}
        counts.update({name: count(kinds, (theme_id, kind)) for name, kind in _KINDS.items()})
        risk = themes.risk_of(counts["detractors"], wave_detractors) if counts["cons"] else None
        ranked.append(
            {
                "theme": theme_id,
                "name": theme.name if theme else theme_id,
                "owner": theme.owner if theme else None,
                "example": _quote(example),
                "rank": rank,
                "risk": risk,
                **counts,
            }
        )
    return ranked


_KINDS = {"cons": "con", "pros": "pro", "suggestions": "suggestion"}


def short(comment: str) -> str:
    """A comment on one line, cut to QUOTE_CHARS."""
    text = " ".join(comment.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"


def _quote(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": short(part["comment"]),
        "score": part["score"],
        "account_name": part["account_name"],
        "kind": part["kind"],
    }


def _of_themes(theme: pd.Series, themes: set[str | None]) -> pd.Series:
    """Whether each part's theme is one of `themes` (None stands for no theme)."""
    inside = theme.isin([t for t in themes if t])
    return inside | theme.isna() if None in themes else inside


def _quotes(found: Parts, where: pd.Series, limit: int) -> list[dict]:
    chosen = found.frame[where].sort_values("score", kind="stable").head(limit)
    return [_quote(part) for part in found.load(comment_parts.positions(chosen))]


def quotes(
    parts: list[dict[str, Any]] | Parts, kind: str, themes: set[str | None] | None = None, limit: int = 3
) -> list[dict]:
    """Up to `limit` quotes of `kind` (of `themes` when given; None stands for no theme), lowest
    score first."""
    found = comment_parts.listed(parts)
    where = found.frame["kind"] == kind
    return _quotes(found, where if themes is None else where & _of_themes(found.frame["theme"], themes), limit)


def item_quotes(item: dict[str, Any], parts: list[dict[str, Any]] | Parts, items: list[dict[str, Any]]) -> list[dict]:
    """What customers wrote behind an item: its theme's cons (or suggestions); for `review-cons`
    the cons no theme item covers; for `review-suggestions` the suggestions with no theme."""
    key = item["item_key"]
    found = comment_parts.listed(parts)
    if key.startswith("theme-"):
        return quotes(found, "con", {item.get("theme")})
    if key.startswith("suggestion-"):
        return quotes(found, "suggestion", {item.get("theme")})
    if key == "review-cons":
        covered = {i.get("theme") for i in items if i["item_key"].startswith("theme-")}
        frame = found.frame
        return _quotes(found, (frame["kind"] == "con") & ~_of_themes(frame["theme"], covered), 3)
    if key == "review-suggestions":
        return quotes(found, "suggestion", {None})
    return []


# --- action items -------------------------------------------------------------------------------


def action_items(
    summary: dict[str, Any],
    previous: dict[str, Any] | None,
    accounts: pd.DataFrame,
    comments: dict[str, list[dict[str, Any]]] | Parts,
    pillars: list[dict[str, Any]],
    owner: str,
    *,
    themes: Themes | None = None,
    ranking: list[dict[str, Any]] | None = None,
    collection: dict[str, Any] | None = None,
    nps_direction: str = "new",
) -> list[dict[str, Any]]:
    """The improvement items of the module docstring, cons first and suggestions last, from the
    wave's figures, its comments (`split_comments`, or the kept classification), the themes ranking
    (computed when not given) and the survey's review (`stats.collection_review`); `owner` (CS ops)
    owns what no theme owner or CSM does."""
    themes = themes or load_themes()
    parts = comments if isinstance(comments, Parts) else comment_parts.listed(_flat(comments))
    wave_detractors = int(summary.get("detractors") or 0)
    ranking = ranking if ranking is not None else rank_themes(parts, themes, wave_detractors)
    items: list[dict[str, Any]] = []

    def add(
        group: str, key: str, title: str, reason: str, risk: str, item_owner: str | None = None, **extra: Any
    ) -> None:
        items.append(
            {
                "group": group,
                "item_key": key,
                "title": title[:300],
                "reason": reason,
                "risk": risk,
                "priority": risk,
                "owner": item_owner or owner,
                "theme": extra.get("theme"),
            }
        )

    covered = set()
    for row in ranking:
        if row["cons"] and themes.opens_item(row["risk"]):
            covered.add(row["theme"])
            share = f" ({100.0 * row['detractors'] / wave_detractors:.0f}% of them)" if wave_detractors else ""
            reason = (
                f"raised by {row['detractors']} of {wave_detractors} detractor(s){share}; "
                f"{row['cons']} con(s), {row['suggestions']} suggestion(s), {row['pros']} pro(s)"
            )
            title = f"Act on what detractors say about {row['name']}"
            add("con", f"theme-{row['theme']}", title, reason, row["risk"], row["owner"], theme=row["theme"])
    before_nps, now_nps = (previous or {}).get("nps"), summary.get("nps")
    if before_nps is not None and now_nps is not None and now_nps < before_nps:
        beyond = nps_direction == "down"
        add(
            "con",
            "nps-drop",
            "Explain the NPS drop",
            f"NPS {now_nps:+.0f}, down from {before_nps:+.0f} ({'larger than chance' if beyond else 'within chance'})",
            "high" if beyond else "medium",
        )
    for pillar in pillars:
        now_score = summary.get("pillars", {}).get(pillar["id"])
        before = (previous or {}).get("pillars", {}).get(pillar["id"])
        if now_score is not None and before is not None and now_score < before:
            title = f"Investigate the drop in '{pillar['text']}'"
            add("con", f"pillar-{pillar['id']}", title, f"mean {now_score} vs {before}", "medium")
    frame = parts.frame
    left = frame[(frame["kind"] == "con") & ~_of_themes(frame["theme"], covered)]
    if len(left):
        voices = left.loc[left["score"] <= DETRACTOR_MAX, "contact_id"].nunique()
        add(
            "con",
            "review-cons",
            "Review the other cons and pick fixes",
            f"{len(left)} con(s) no item above covers ({_by_theme(left['theme'], ranking)}), {voices} from detractors",
            "medium" if voices >= themes.risk["high"].min_detractors else "low",
        )
    _collection_items(add, summary, previous, collection or {}, accounts)
    _suggestion_items(add, frame, ranking)
    position = {item["item_key"]: index for index, item in enumerate(items)}
    return sorted(items, key=lambda i: (GROUPS.index(i["group"]), RISKS.index(i["risk"]), position[i["item_key"]]))


def _suggestion_items(add: Callable[..., None], parts: pd.DataFrame, ranking: list[dict[str, Any]]) -> None:
    """One item per theme customers made suggestions about, in ranking order, then one for the
    suggestions no theme covers (`parts`: `Parts.frame`)."""
    suggestions = parts[parts["kind"] == "suggestion"]
    per_theme = suggestions.groupby("theme", observed=True)["contact_id"].agg(["size", "nunique"])
    for row in ranking:
        if row["theme"] in per_theme.index:
            count, voices = (int(n) for n in per_theme.loc[row["theme"]])
            reason = f"{count} suggestion(s) from {voices} customer(s)"
            title = f"Consider what customers suggest about {row['name']}"
            add("suggestion", f"suggestion-{row['theme']}", title, reason, "low", row["owner"], theme=row["theme"])
    unthemed = suggestions[suggestions["theme"].isna()]
    if len(unthemed):
        voices = unthemed["contact_id"].nunique()
        reason = f"{len(unthemed)} suggestion(s) from {voices} customer(s) that no theme covers"
        add("suggestion", "review-suggestions", "Review the other suggestions", reason, "low")


def _by_theme(themes: pd.Series, ranking: list[dict[str, Any]]) -> str:
    """'Pricing 2, Support 1, no theme 1': parts counted per theme (`themes`: each part's), in
    ranking order."""
    names = {row["theme"]: row["name"] for row in ranking}
    order = {row["theme"]: row["rank"] for row in ranking}
    counts: dict[str | None, int] = {}
    for theme in themes.astype(object).tolist():
        theme = theme if isinstance(theme, str) and theme else None
        counts[theme] = counts.get(theme, 0) + 1
    ranked = sorted(counts, key=lambda theme: order.get(theme, len(order) + 1) if theme else len(order) + 2)
    return ", ".join(f"{names.get(theme, theme) if theme else 'no theme'} {counts[theme]}" for theme in ranked)


def _collection_items(
    add: Callable[..., None],
    summary: dict[str, Any],
    previous: dict[str, Any] | None,
    collection: dict[str, Any],
    accounts: Any,
) -> None:
    """Items about the survey itself: response rate, bounces, opt-outs, the reminder, silent accounts."""
    rate = summary.get("response_rate")
    before = (previous or {}).get("response_rate")
    fell = rate is not None and before is not None and before - rate >= RATE_DROP_POINTS
    if rate is not None and (rate < TARGET_RESPONSE_RATE or fell):
        reasons = [f"{rate}% answered"]
        if rate < TARGET_RESPONSE_RATE:
            reasons.append(f"below the {TARGET_RESPONSE_RATE:.0f}% target")
        if fell:
            reasons.append(f"down from {before}% in the previous wave")
        add(
            "collection",
            "response-rate",
            "Raise the response rate",
            ", ".join(reasons),
            "high" if rate < TARGET_RESPONSE_RATE else "medium",
        )
    bounces = collection.get("bounce_rate")
    if bounces is not None and bounces > MAX_BOUNCE_RATE:
        add(
            "collection",
            "bounce-rate",
            "Clean the contact list",
            f"{bounces}% of the invitations bounced (over {MAX_BOUNCE_RATE:.0f}%)",
            "high" if bounces > 2 * MAX_BOUNCE_RATE else "medium",
        )
    opt_outs = collection.get("opt_out_rate")
    if opt_outs is not None and opt_outs > MAX_OPT_OUT_RATE:
        add(
            "collection",
            "opt-out-rate",
            "Review who is surveyed and how often",
            f"{opt_outs}% opted out after the invitation (over {MAX_OPT_OUT_RATE:.0f}%)",
            "medium",
        )
    reminded, yielded = collection.get("reminded") or 0, collection.get("reminder_yield")
    if reminded >= MIN_REMINDED and yielded is not None and yielded < MIN_REMINDER_YIELD:
        add(
            "collection",
            "reminder",
            "Rethink the reminder",
            f"{yielded}% of the {reminded} reminded contact(s) answered after it",
            "low",
        )
    for account in accounts[accounts["responses"] == 0].itertuples():
        add(
            "collection",
            f"silent-{account.account_id}",
            f"Reach out to silent account {account.account_name}",
            f"none of {account.invited} invited contact(s) answered",
            "high" if account.vip else "medium",
            account.csm if isinstance(account.csm, str) and account.csm.strip() else None,
        )


def schedule(risk: str, start: dt.datetime, country: str) -> tuple[dt.date, list[dict[str, str]]]:
    """An item's due date (DUE_BUSINESS_DAYS by risk) and its dated checkpoints."""
    days = DUE_BUSINESS_DAYS[risk]

    def after(n: int) -> dt.date:  # a date on the wave country's calendar, not the UTC one
        return business_days.local_time(business_days.add_business_days(start, n, country), country).date()

    checkpoints = [
        {"name": "plan agreed", "date": after(1).isoformat()},
        {"name": "halfway review", "date": after(math.ceil(days / 2)).isoformat()},
        {"name": "done", "date": after(days).isoformat()},
    ]
    return after(days), checkpoints


def store_action_items(
    engine: Engine, wave_id: str, items: list[dict[str, Any]], start: dt.datetime, country: str
) -> int:
    """Upsert the items (see `upsert_action_item.sql`: a re-run refreshes the finding only)."""
    now = storage.utcnow()
    rows = []
    for item in items:
        due, checkpoints = schedule(item["risk"], start, country)
        row = {key: item.get(key) for key in ("item_key", "title", "reason", "owner", "priority", "risk", "theme")}
        rows.append({**row, "wave_id": wave_id, "due_date": due, "checkpoints": json.dumps(checkpoints), "now": now})
    storage.execute(engine, storage.query("upsert_action_item"), rows)
    return len(rows)


def group_of(item_key: str) -> str:
    """con, collection or suggestion, from an item's key."""
    if item_key == "review-suggestions" or item_key.startswith("suggestion-"):
        return "suggestion"
    if item_key.startswith(("theme-", "pillar-")) or item_key in ("nps-drop", "review-cons"):
        return "con"
    return "collection"


def action_items_frame(engine: Engine, wave_id: str, order: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The wave's stored items with their tracker issue and its ledger status, cons first, then
    collection problems, then suggestions; by risk within each, then in `order` (this run's items)."""
    frame = storage.read_frame(engine, storage.query("action_items"), wave_id=wave_id)
    position = {item["item_key"]: index for index, item in enumerate(order or [])}
    frame["group"] = frame["item_key"].map(group_of)
    frame["risk"] = frame["risk"].fillna(frame["priority"])
    frame["checkpoints"] = frame["checkpoints"].map(lambda text: json.loads(text) if text else [])
    frame["due_date"] = frame["due_date"].map(lambda value: str(value)[:10])
    rows = frame.to_dict("records")
    sequence = sorted(
        range(len(rows)),
        key=lambda i: (
            GROUPS.index(rows[i]["group"]),
            RISKS.index(rows[i]["risk"]),
            position.get(rows[i]["item_key"], len(position)),
            rows[i]["item_key"],
        ),
    )
    frame = frame.iloc[sequence]
    return frame.astype(object).where(frame.notna(), None).reset_index(drop=True)


# --- the report ---------------------------------------------------------------------------------


def themes_chart(ranking: list[dict[str, Any]]) -> bytes | None:
    """A bar chart of the themes by detractors raising them (most first), as PNG; None when no
    detractor raised a theme. Only theme names and numbers are drawn: its words are in the report."""
    shown = [row for row in ranking if row["detractors"]][:CHART_THEMES]
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from include.nps.core.charts import COLOURS, DEFAULT_FONTS, visual
    from include.nps.wave.comment_themes import SCRIPTS

    names = [visual(row["name"], "he" if SCRIPTS["he"].search(row["name"]) else "en") for row in reversed(shown)]
    values = [row["detractors"] for row in reversed(shown)]
    with plt.rc_context({"font.family": DEFAULT_FONTS, "font.size": 9}):
        figure, axes = plt.subplots(figsize=(5.6, 0.5 + 0.3 * len(shown)), dpi=200)
        axes.barh(range(len(values)), values, color=COLOURS["detractors"])
        for y, value in enumerate(values):
            axes.annotate(str(value), (value, y), textcoords="offset points", xytext=(4, 0), va="center")
        axes.set_yticks(range(len(names)), names)
        axes.set_xticks([])
        axes.set_xlim(0, max(values) * 1.15)
        axes.spines[["top", "right", "bottom"]].set_visible(False)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png", facecolor="white")
        plt.close(figure)
    return out.getvalue()


def data_url(png: bytes | None) -> str | None:
    """The image as a data: URL, so a report file stands alone."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}" if png else None


def write_report(path: Path, html: str | Iterable[str]) -> Path:
    """Write the report file (atomically: a reader never sees half of it), from its text or from
    its pieces as they are rendered (memory holds one piece)."""
    partial = path.with_suffix(".html.part")
    with partial.open("w", encoding="utf-8") as out:
        if isinstance(html, str):
            out.write(html)
        else:
            out.writelines(html)
    partial.replace(path)
    return path
