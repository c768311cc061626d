"""What the wave dashboard shows, read from the NPS DB only: every wave with its milestones (done,
next, late), audience, messages per kind, responses, live NPS with its interval, detractors'
follow-ups and the data-check results of each step.

Set-based: one grouped query per kind of figure for all waves at once, so the page costs the same
handful of queries with five waves or five hundred.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.core.business_days import MILESTONES
from include.nps.wave.stats import nps_interval

# A milestone is late once it is this far past its time and still not done.
LATE_AFTER = dt.timedelta(minutes=30)


def overview(
    engine: Engine, now: dt.datetime | None = None, program: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The latest `limit` waves (of `program`, or all), each with its figures."""
    rows = storage.fetch_all(engine, storage.query("dashboard_waves"), program=program, wave_id=None, limit=limit)
    return _with_figures(engine, rows, now or storage.utcnow())


def wave_detail(engine: Engine, wave_id: str, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """One wave's figures plus each detractor's follow-up."""
    rows = storage.fetch_all(engine, storage.query("dashboard_waves"), program=None, wave_id=wave_id, limit=1)
    if not rows:
        return None
    (wave,) = _with_figures(engine, rows, now or storage.utcnow())
    followups = storage.fetch_all(engine, storage.query("dashboard_wave_followups"), wave_id=wave_id)
    wave["followup_list"] = [{**f, "created_at": _iso(f["created_at"])} for f in followups]
    return wave


def _with_figures(engine: Engine, rows: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    if not rows:
        return []
    figures = _figures(engine, [row["wave_id"] for row in rows])
    return [_wave(row, figures, now) for row in rows]


def _figures(engine: Engine, wave_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each figure of the given waves, keyed by wave id: one grouped query per kind of figure."""
    figures: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"milestones": [], "messages": defaultdict(dict), "followups": {}, "checks": []}
    )

    def rows(name: str) -> list[dict[str, Any]]:
        return storage.fetch_all(engine, storage.query(name), wave_ids=wave_ids)

    for row in rows("dashboard_milestones"):
        figures[row["wave_id"]]["milestones"].append(row)
    for row in rows("dashboard_audience"):
        figures[row["wave_id"]]["audience"] = {"included": int(row["included"]), "excluded": int(row["excluded"])}
    for row in rows("dashboard_messages"):
        figures[row["wave_id"]]["messages"][row["kind"]][row["status"]] = int(row["n"])
    for row in rows("dashboard_responses"):
        figures[row["wave_id"]]["responses"] = {k: int(v) for k, v in row.items() if k != "wave_id"}
    for row in rows("dashboard_followups"):
        figures[row["wave_id"]]["followups"][row["status"]] = int(row["n"])
    for row in rows("dashboard_checks"):
        figures[row["wave_id"]]["checks"].append(_check(row))
    return figures


def _wave(row: dict[str, Any], figures: dict[str, dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    found = figures[row["wave_id"]]
    messages = {kind: dict(sorted(by_status.items())) for kind, by_status in sorted(found["messages"].items())}
    invited = messages.get("invitation", {}).get("sent", 0)
    answers = found.get("responses") or {"responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "completed": 0}
    checks = found["checks"]
    return {
        "wave_id": row["wave_id"],
        "program": row["program"],
        "name": row["name"],
        "country": row["country"],
        "status": row["status"],
        "open_at": _iso(row["open_at"]),
        "close_at": _iso(row["close_at"]),
        "run": {"dag_id": row["dag_id"], "run_id": row["run_id"]} if row["run_id"] else None,
        "milestones": milestone_states(found["milestones"], now),
        "audience": found.get("audience", {"included": 0, "excluded": 0}),
        "messages": messages,
        "invited": invited,
        **answers,
        "response_rate": round(100.0 * answers["responses"] / invited, 1) if invited else None,
        "nps": _nps(answers, invited),
        "followups": dict(sorted(found["followups"].items())),
        "checks": checks,
        "checks_failed": sum(1 for c in checks if not c["success"]),
    }


def milestone_states(rows: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """The wave's milestones in order: done, late (past due and not done), next (the first one
    still to come) or planned."""
    by_name = {r["milestone"]: r for r in rows}
    states, next_found = [], False
    for name in (m for m in MILESTONES if m in by_name):
        due, done = storage.as_utc(by_name[name]["due_at"]), storage.as_utc(by_name[name]["done_at"])
        assert due is not None  # wave_milestones.due_at is NOT NULL
        if done:
            state = "done"
        elif now > due + LATE_AFTER:
            state = "late"
        elif not next_found:
            state, next_found = "next", True
        else:
            state = "planned"
        states.append({"milestone": name, "due_at": _iso(due), "done_at": _iso(done), "state": state})
    return states


def _nps(answers: dict[str, int], invited: int) -> dict[str, Any] | None:
    if not answers["responses"]:
        return None
    counts = (answers["promoters"], answers["passives"], answers["detractors"])
    interval = nps_interval(*counts, population=invited or None)
    return {"score": round(100.0 * (counts[0] - counts[2]) / answers["responses"], 1), **asdict(interval)}


def _check(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": row["step"],
        "suite": row["suite"],
        "success": bool(row["success"]),
        "evaluated": int(row["evaluated"]),
        "failed": int(row["failed"]),
        "warnings": int(row["warnings"]),
        "summary": row["summary"],
        "checked_at": _iso(row["checked_at"]),
    }


def _iso(value: Any) -> str | None:
    moment = storage.as_utc(value)
    return moment.isoformat() if moment else None
