"""The monthly closed-loop report to management: what became of the detractors' follow-ups.

For a month [start, end) in UTC, from the follow-ups and their call log as they stood at `end`
(events logged later do not count, so the report of a past month can be made again and says
the same):

- loops opened (follow-ups created in the month), closed and marked unreachable in the month
  (and still unreachable at its end), and still open at its end, by state;
- median hours from a follow-up's creation to its first contact (the first change that took it
  out of `open`: a call attempt, or the CRM task started), over the follow-ups first contacted
  in the month; and to its close, over the loops closed in the month;
- root-cause Pareto of the loops closed in the month: count, share and cumulative share, most
  frequent first and `other` last (as a Pareto chart shows it), loops closed without a root
  cause (only the CRM can close them so) counted apart;
- the `other` answers of those loops grouped so that recurring ones can become categories (see
  `group_other_answers`);
- incentive variants compared within the root cause they were drawn for: recovery rate (the
  owner's "recovered" at close) with its 95% Wilson interval, over every loop closed before
  `end` (a month alone is too few follow-ups to compare arms);
- detractors who came back: each followed-up detractor whose program's next wave closed before
  `end`, by their score in that wave (promoter 9-10, passive 7-8, detractor 0-6, no answer).

The report is emailed once per month (ledger kind `closed_loop_report`, recipient the month
`YYYY-MM`) to the management recipients (`NPS_MANAGEMENT_RECIPIENTS`) and kept as an HTML file
in the reports folder (`reports/closed-loop/closed-loop-YYYY-MM.html`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from include.nps.closed_loop.followups import IN_PROGRESS, Rules
from include.nps.core import emails, storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import Transport
from include.nps.wave.responses import band
from include.nps.wave.stats import wilson_interval

REPORT_KIND = "closed_loop_report"
LEDGER_SCOPE = "closed-loop"  # the ledger's wave_id column: the report belongs to no wave
RECIPIENTS_SETTING = "NPS_MANAGEMENT_RECIPIENTS"
SENDER_ENV = "NPS_REPORT_SENDER"
DEFAULT_SENDER = "NPS closed loop <nps-reports@localhost>"
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CAME_BACK_LISTED = 30
# Words that say nothing about a root cause; everything else of 3+ letters is significant.
STOP_WORDS = frozenset((
    "about", "after", "again", "all", "also", "and", "any", "are", "because", "been", "but", "can", "cannot",
    "could", "did", "does", "doesn", "don", "dont", "for", "from", "get", "got", "had", "has", "have", "how",
    "into", "its", "just", "like", "more", "most", "much", "need", "needs", "never", "not", "now", "off",
    "once", "only", "our", "out", "over", "please", "really", "should", "some", "still", "such", "than", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "too", "very", "was", "were", "what",
    "when", "where", "which", "while", "who", "why", "will", "with", "would", "you", "your", "yet",
))  # fmt: skip


class ReportError(ValueError):
    """The report cannot be made or sent as asked (a bad month, no recipients)."""


# --- the month --------------------------------------------------------------------------------


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of `YYYY-MM` in UTC."""
    found = MONTH.match(month.strip())
    if not found:
        raise ReportError(f"a month is written YYYY-MM (for example 2026-03), got {month!r}")
    year, number = int(found[1]), int(found[2])
    start = dt.datetime(year, number, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def previous_month(moment: dt.datetime) -> str:
    """The month before the one `moment` falls in, as YYYY-MM."""
    last_day = moment.astimezone(dt.UTC).replace(day=1) - dt.timedelta(days=1)
    return f"{last_day:%Y-%m}"


# --- the figures ------------------------------------------------------------------------------


def build_report(engine: Engine, month: str, rules: Rules, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every figure of the month's report (JSON-able but for datetimes)."""
    start, end = month_bounds(month)
    followups = storage.fetch_all(engine, storage.query("closed_loop_followups"), end=end)
    logs = storage.fetch_all(engine, storage.query("closed_loop_events"), end=end)
    lines = timelines(logs)
    rows = []
    for f in followups:
        f["created_at"] = storage.as_utc(f["created_at"])
        f["recovered"] = None if f["recovered"] is None else bool(f["recovered"])
        rows.append({**f, **lines.get((f["wave_id"], f["contact_id"]), _no_events())})

    def within(moment: dt.datetime | None) -> bool:
        return moment is not None and start <= moment < end

    opened = [r for r in rows if within(r["created_at"])]
    closed = [r for r in rows if within(r["closed_at"])]
    unreachable = [r for r in rows if r["status_at_end"] == "unreachable" and within(r["unreachable_at"])]
    still_open = [r for r in rows if r["status_at_end"] in IN_PROGRESS]
    first_contacted = [r for r in rows if within(r["first_contact_at"])]
    return {
        "month": month,
        "start": start,
        "end": end,
        "last_day": (end - dt.timedelta(days=1)).date(),
        "generated_at": now or storage.utcnow(),
        "rules_version": rules.version,
        "counts": {
            "opened": len(opened),
            "closed": len(closed),
            "unreachable": len(unreachable),
            "still_open": len(still_open),
            "still_open_by_status": {s: sum(r["status_at_end"] == s for r in still_open) for s in IN_PROGRESS},
            "recovered": sum(r["recovered"] is True for r in closed),
        },
        "median_hours_to_first_contact": median_hours(first_contacted, "first_contact_at"),
        "first_contacted": len(first_contacted),
        "median_hours_to_close": median_hours(closed, "closed_at"),
        "pareto": pareto([r["root_cause"] for r in closed if r["root_cause"]], rules),
        "closed_without_root_cause": sum(not r["root_cause"] for r in closed),
        "other_groups": group_other_answers(
            [{"text": r["root_cause_other"] or "", **_who(r)} for r in closed if r["root_cause"] == "other"]
        ),
        "incentives": incentive_comparison([r for r in rows if r["closed_at"] is not None], rules),
        "came_back": came_back(engine, end),
    }


def timelines(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per follow-up, from its call log (oldest first): first contact, close, last time marked
    unreachable and the state at the end of the log. A follow-up without events is open."""
    found: dict[tuple[str, str], dict[str, Any]] = defaultdict(_no_events)
    for event in events:
        line = found[(event["wave_id"], event["contact_id"])]
        at = storage.as_utc(event["event_at"])
        if line["first_contact_at"] is None and event["to_status"] != "open":
            line["first_contact_at"] = at
        if event["to_status"] != event["from_status"]:
            if event["to_status"] == "closed":
                line["closed_at"] = at
            elif event["to_status"] == "unreachable":
                line["unreachable_at"] = at
        line["status_at_end"] = event["to_status"]
    return found


def _no_events() -> dict[str, Any]:
    return {"first_contact_at": None, "closed_at": None, "unreachable_at": None, "status_at_end": "open"}


def median_hours(rows: list[dict[str, Any]], moment: str) -> float | None:
    """Median of (`moment` - created_at) in hours, one decimal; None without rows."""
    hours = [(r[moment] - r["created_at"]).total_seconds() / 3600 for r in rows]
    return round(statistics.median(hours), 1) if hours else None


def pareto(root_causes: list[str], rules: Rules) -> list[dict[str, Any]]:
    """Count, share and cumulative share (%) per root cause: most frequent first (ties in the
    taxonomy's order), `other` last."""
    counts = Counter(root_causes)
    order = list(rules.root_causes)

    def rank(cause: str) -> tuple:
        return cause == "other", -counts[cause], order.index(cause) if cause in order else len(order), cause

    total, cumulative, rows = sum(counts.values()), 0, []
    for cause in sorted(counts, key=rank):
        cumulative += counts[cause]
        known = rules.root_causes.get(cause)
        rows.append(
            {
                "root_cause": cause,
                "label": known.label if known else cause,
                "count": counts[cause],
                "share": round(100.0 * counts[cause] / total, 1),
                "cumulative_share": round(100.0 * cumulative / total, 1),
            }
        )
    return rows


def significant_words(text: str) -> list[str]:
    """The words of an answer that can name a category: Unicode-normalised (NFKC) and case-folded,
    split on anything but letters and digits, 3+ characters, not a stop word nor a number, a
    plural `-s` dropped (invoices -> invoice, but not "access"); each word once, in order."""
    words = re.split(r"[^\w]+|_", unicodedata.normalize("NFKC", text).casefold())
    found: list[str] = []
    for word in words:
        if len(word) < 3 or word.isdigit() or word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if word not in found and word not in STOP_WORDS:
            found.append(word)
    return found


def group_other_answers(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Group the "Other" answers by the significant word they share most.

    Each answer's words are counted over all answers (in how many answers each appears); an
    answer joins the group of its word found in the most answers (ties: alphabetical). A group
    of two or more answers is a candidate category, named by its word; answers whose words are
    all unique stay ungrouped. Simple on purpose: anyone can check a group by reading it."""
    words = [significant_words(a["text"]) for a in answers]
    frequency = Counter(word for found in words for word in found)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ungrouped = []
    for answer, found in zip(answers, words, strict=True):
        best = min(found, key=lambda w: (-frequency[w], w)) if found else None
        if best is None or frequency[best] < 2:
            ungrouped.append(answer)
        else:
            groups[best].append(answer)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "groups": [{"word": word, "count": len(items), "answers": items} for word, items in ordered],
        "ungrouped": ungrouped,
        "total": len(answers),
    }


def incentive_comparison(closed: list[dict[str, Any]], rules: Rules) -> list[dict[str, Any]]:
    """Per root cause the incentive was drawn for, per variant: loops closed with an outcome,
    recovered, recovery rate and its 95% Wilson interval (%), in the rules' order."""
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in closed:
        if row["incentive"] and row["recovered"] is not None:
            counts = tally[(row["incentive_root_cause"] or row["root_cause"] or "", row["incentive"])]
            counts[0] += 1
            counts[1] += row["recovered"]
    order = list(rules.root_causes)

    def rank(key: tuple[str, str]) -> tuple:
        cause, arm = key
        known = rules.root_causes.get(cause)
        arms = list(known.incentives) if known else []
        return (order.index(cause) if known else len(order), cause, arms.index(arm) if arm in arms else 99, arm)

    by_cause: dict[str, list[dict[str, Any]]] = {}
    for cause, arm in sorted(tally, key=rank):
        n, recovered = tally[(cause, arm)]
        low, high = wilson_interval(recovered, n) or (0.0, 0.0)
        by_cause.setdefault(cause, []).append(
            {
                "incentive": arm,
                "label": rules.incentives.get(arm, arm),
                "control": arm == "none",
                "n": n,
                "recovered": recovered,
                "rate": round(100.0 * recovered / n, 1),
                "low": round(100.0 * low, 1),
                "high": round(100.0 * high, 1),
            }
        )
    return [
        {"root_cause": cause, "label": getattr(rules.root_causes.get(cause), "label", cause), "variants": variants}
        for cause, variants in by_cause.items()
    ]


def came_back(engine: Engine, end: dt.datetime) -> dict[str, Any]:
    """Followed-up detractors by their score at the program's next wave (next waves closed
    before `end`), per pair of waves, and who came back as a passive or promoter."""
    rows = storage.fetch_all(engine, storage.query("followup_next_waves"), end=end, wave_id="", contact_id="")
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    people = []
    for row in rows:
        pair = pairs.setdefault(
            (row["wave_id"], row["next_wave_id"]),
            {
                "wave": row["wave_name"],
                "next_wave": row["next_wave_name"],
                "next_close_at": storage.as_utc(row["next_close_at"]),
                "followed_up": 0,
                "answered": 0,
                "promoters": 0,
                "passives": 0,
                "detractors": 0,
            },
        )
        pair["followed_up"] += 1
        score = row["next_score"]
        if score is None:
            continue
        pair["answered"] += 1
        group = band(score)
        pair["detractors" if group == "critical" else f"{group}s"] += 1
        if group in ("promoter", "passive"):
            people.append({**_who(row), "score": row["score"], "next_score": score, "next_wave": row["next_wave_name"]})
    for pair in pairs.values():
        pair["came_back"] = pair["promoters"] + pair["passives"]
    people.sort(key=lambda p: (-p["next_score"], p["account_name"] or "", p["contact_name"]))
    return {
        "pairs": list(pairs.values()),
        "total": sum(p["came_back"] for p in pairs.values()),
        "people": people[:CAME_BACK_LISTED],
        "more": max(0, len(people) - CAME_BACK_LISTED),
    }


def _who(row: dict[str, Any]) -> dict[str, Any]:
    return {"contact_name": row["contact_name"], "account_name": row["account_name"]}


# --- rendering and sending --------------------------------------------------------------------


def render(report: dict[str, Any], recipients: list[str]) -> emails.RenderedEmail:
    """The report as an email (subject, text and HTML parts, `email/closed_loop_report.*`)."""
    return emails.render_email(REPORT_KIND, "en", ", ".join(recipients), {"report": report})


def write_html(report: dict[str, Any], html: str) -> Path:
    """Keep the report's HTML in the reports folder; return its path."""
    from include.nps.core.connections import reports_dir

    path = reports_dir(LEDGER_SCOPE) / f"closed-loop-{report['month']}.html"
    path.write_text(html, encoding="utf-8")
    return path


def management_recipients(setting: str | None) -> list[str]:
    """Addresses from the Airflow Variable's value (or, without it, `NPS_MANAGEMENT_RECIPIENTS`):
    separated by commas, semicolons, spaces or new lines; each once, in order."""
    raw = setting if setting and setting.strip() else os.environ.get(RECIPIENTS_SETTING, "")
    found: list[str] = []
    for address in re.split(r"[,;\s]+", raw.strip()):
        if address and address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found


def report_sent(engine: Engine, month: str) -> bool:
    """Whether the month's report went out (or was refused for good): the ledger says so."""
    row = storage.fetch_one(
        engine,
        "SELECT status FROM outbox WHERE wave_id = :w AND kind = :k AND recipient = :r",
        w=LEDGER_SCOPE,
        k=REPORT_KIND,
        r=month,
    )
    return row is not None and row["status"] in ("sent", "failed")


def report_due(engine: Engine, run_after: dt.datetime, requested: str | None = None) -> str | None:
    """The month whose report this run makes: `requested` (checked), else the month before
    `run_after` until its report went out; None when there is nothing to do. A missed first of
    the month is thus caught up by the next day's run."""
    if requested:
        if month_bounds(requested)[1] > run_after:
            raise ReportError(f"{requested.strip()} has not ended yet: its report can be made from its last day on")
        return requested.strip()
    month = previous_month(run_after)
    return None if report_sent(engine, month) else month


def send(
    engine: Engine, report: dict[str, Any], recipients: list[str], sender: str, transport: Transport
) -> outbox.Outcome:
    """Email the report once per month: one message to all `recipients`, keyed by the month."""
    if not recipients:
        raise ReportError(f"no management recipients: set the Airflow Variable or env {RECIPIENTS_SETTING}")
    address = ", ".join(recipients)
    if len(address) > 500:
        raise ReportError("the management recipients are longer than 500 characters: use a distribution list")
    outbox.enqueue(engine, LEDGER_SCOPE, REPORT_KIND, [(report["month"], address)])

    def build(row: dict[str, Any]) -> Any:
        email = render(report, recipients)
        email.headers = {"X-NPS-Kind": REPORT_KIND, "X-NPS-Month": report["month"]}
        msg_id = emails.message_id(sender, LEDGER_SCOPE, REPORT_KIND, row["recipient"])
        return emails.build_mime(email, sender, msg_id)

    return outbox.deliver(engine, LEDGER_SCOPE, REPORT_KIND, build, transport)


def run_monthly_report(month: str, recipients_setting: str | None) -> dict[str, Any]:
    """The `nps_followups` DAG's report task: build the month's report, keep its HTML, email it once."""
    from include.nps.closed_loop import followups
    from include.nps.core.connections import nps_engine
    from include.nps.delivery.transports import SmtpTransport

    engine = nps_engine()
    report = build_report(engine, month, followups.load_rules())
    recipients = management_recipients(recipients_setting)
    path = write_html(report, render(report, recipients or ["management"]).html)
    if not recipients:
        raise ReportError(
            f"the closed-loop report of {month} is in {path} but was not emailed: no management recipients "
            f"(set the Airflow Variable or env {RECIPIENTS_SETTING})"
        )
    with SmtpTransport() as transport:
        outcome = send(engine, report, recipients, os.environ.get(SENDER_ENV) or DEFAULT_SENDER, transport)
    return {"month": month, "html": str(path), **report["counts"], "email": outcome.__dict__}
