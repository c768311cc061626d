"""The audit trail on the dashboard: `/audit` (a page) and `/api/audit` (JSON), newest first.

Who triggered a wave, a drop, an erasure, an export, a retention run or applied sales decisions,
when, on what and with which counts (`include/nps/privacy/audit.py`). The events hold no customer's
personal data; every value is escaped all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from include.nps.privacy import audit

Action = Annotated[str | None, Query(description="Only events of this action")]
Limit = Annotated[int, Query(ge=1, le=2000, description="Most events to show, newest first")]


def router(engine: Callable[[], Engine], render: Callable[..., str], prefix: str) -> APIRouter:
    """The audit routes over the NPS DB that `engine()` returns, rendered by the dashboard's `render`."""
    routes = APIRouter()

    @routes.get("/api/audit")
    def audit_events(action: Action = None, wave_id: str | None = None, limit: Limit = 200) -> list[dict[str, Any]]:
        return [_plain(e) for e in audit.events(engine(), action=action, wave_id=wave_id, limit=limit)]

    @routes.get("/audit", response_class=HTMLResponse)
    def audit_page(action: Action = None, wave_id: str | None = None, limit: Limit = 200) -> str:
        found = audit.events(engine(), action=action, wave_id=wave_id, limit=limit)
        return render("audit.html", events=found, action=action, actions=audit.ACTIONS, prefix=prefix)

    return routes


def _plain(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_at": event["occurred_at"].isoformat() if event["occurred_at"] else None}
