"""What people do from the wave dashboard instead of a command line: mark an action item done with
what customers are told was done (the next wave's flash results show it under "you told us, we
did"), open a detractor's follow-up form, read and download the wave's quarantined input rows, and
read the messages of each mailing that failed or are in doubt, and settle one in doubt (it arrived,
or send it again: `outbox.decide_in_doubt`).

Reading needs what every dashboard page needs (the app's guard); marking done, settling a message
and opening a follow-up's form (which hands out its signed link) also need `authorize_write`, which the Airflow
plugin sets to "may edit nps_wave's runs". A POST carries a CSRF token bound to the signed-in user
(`signed_links.csrf_token`, valid `CSRF_MAX_AGE`) and must come from this origin (`Origin` and
`Sec-Fetch-Site`, when the browser sends them): the session cookie alone never changes anything.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from include.nps.closed_loop import followups
from include.nps.core import i18n, signed_links, storage
from include.nps.delivery import outbox
from include.nps.wave import flash_content
from include.nps.wave.sales_drops import neutralise

CSRF_MAX_AGE = dt.timedelta(hours=8)
QUARANTINE_SHOWN = 500  # rows on the page
QUARANTINE_DOWNLOADED = 5_000_000  # rows in the download: all of them (a wave's audience is smaller)
MAX_FORM_BYTES = 32 * 1024
QUARANTINE_COLUMNS = ("source", "row_number", "field", "value", "reason")


def user_name(request: Request) -> str:
    """The signed-in user, as the app's guard left it (`request.state.nps_user`)."""
    name = getattr(request.state, "nps_user", None)
    if not name:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not signed in")
    return str(name)


def csrf_token(request: Request) -> str:
    return signed_links.csrf_token(_csrf_key(request))


def _csrf_key(request: Request) -> str:
    return f"nps-dashboard\x00{user_name(request)}"


def same_origin(request: Request) -> bool:
    """A POST from a page of this server: the browser's `Origin` and `Sec-Fetch-Site` say so when sent."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form, once the CSRF token and the origin are right (403 otherwise)."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "form too large")
    form = {k: v for k, v in (await request.form(max_files=0, max_fields=20)).items() if isinstance(v, str)}
    token_ok = signed_links.csrf_valid(_csrf_key(request), form.get("csrf_token"), CSRF_MAX_AGE)
    if not (same_origin(request) and token_ok):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing, expired or from another site")
    return form


def router(
    engine: Callable[[], Engine], authorize_write: Callable, render: Callable[..., str], prefix: str
) -> APIRouter:
    """The dashboard's routes for people's actions (see the module's docstring)."""
    routes = APIRouter()
    writer = [Depends(authorize_write)]

    @routes.get("/waves/{wave_id}/actions", response_class=HTMLResponse)
    def actions_page(wave_id: str, request: Request, done: str | None = None, decided: str | None = None) -> str:
        context = {"csrf_token": csrf_token(request), "done": done, "decided": decided}
        return render("actions.html", **wave_work(engine(), wave_id), **context)

    @routes.post("/waves/{wave_id}/action-items/{item_key:path}/done", dependencies=writer)
    async def mark_done(wave_id: str, item_key: str, request: Request) -> Response:
        form = await checked_form(request)
        notes = {loc: text.strip() for loc in i18n.SUPPORTED_LOCALES if (text := form.get(f"note_{loc}", "")).strip()}
        if not notes:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "say what was done, in at least one language")
        if not flash_content.complete_action_item(engine(), wave_id, item_key, notes):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action item {item_key!r} in wave {wave_id!r}")
        target = f"{prefix}/waves/{quote(wave_id, safe='')}/actions?done={quote(item_key, safe='')}#action-items"
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)

    @routes.post("/waves/{wave_id}/messages/{kind}/{recipient:path}/decide", dependencies=writer)
    async def decide_in_doubt(wave_id: str, kind: str, recipient: str, request: Request) -> Response:
        form = await checked_form(request)
        decision = form.get("decision", "")
        if decision not in outbox.IN_DOUBT_DECISIONS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "decide 'arrived' or 'resend'")
        if not outbox.decide_in_doubt(engine(), wave_id, kind, recipient, decision):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} message to {recipient!r} is in doubt")
        target = f"{prefix}/waves/{quote(wave_id, safe='')}/actions?decided={quote(recipient, safe='')}#messages"
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)

    @routes.get("/waves/{wave_id}/followups/{contact_id:path}", dependencies=writer)
    def open_followup(wave_id: str, contact_id: str) -> Response:
        found = storage.fetch_one(engine(), storage.query("followup"), wave_id=wave_id, contact_id=contact_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no follow-up of {contact_id!r} in wave {wave_id!r}")
        url = followups.followup_url(wave_id, contact_id, storage.utcnow())
        return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)

    @routes.get("/waves/{wave_id}/quarantine.csv")
    def quarantine_download(wave_id: str) -> Response:
        query = storage.query("dashboard_quarantine")
        rows = storage.fetch_all(engine(), query, wave_id=wave_id, limit=QUARANTINE_DOWNLOADED)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", wave_id)
        headers = {"Content-Disposition": f'attachment; filename="quarantine-{name}.csv"'}
        return Response(quarantine_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)

    return routes


def wave_work(engine: Engine, wave_id: str) -> dict[str, Any]:
    """What the wave's actions page shows: its action items, follow-ups, quarantined rows (the first
    `QUARANTINE_SHOWN`, and how many in all) and undelivered messages per mailing."""
    wave = storage.fetch_one(engine, "SELECT wave_id, name, program, status FROM waves WHERE wave_id = :w", w=wave_id)
    if wave is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no wave {wave_id!r}")
    items = storage.fetch_all(engine, storage.query("dashboard_action_items"), wave_id=wave_id)
    for item in items:
        item["public_note"] = json.loads(item["public_note"]) if item["public_note"] else {}
    counted = storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM quarantine WHERE wave_id = :w", w=wave_id)
    undelivered: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in storage.fetch_all(engine, storage.query("dashboard_undelivered"), wave_id=wave_id):
        undelivered[row["kind"]].append(row)
    return {
        "wave": wave,
        "items": items,
        "locales": i18n.SUPPORTED_LOCALES,
        "followups": storage.fetch_all(engine, storage.query("dashboard_wave_followups"), wave_id=wave_id),
        "quarantine": storage.fetch_all(
            engine, storage.query("dashboard_quarantine"), wave_id=wave_id, limit=QUARANTINE_SHOWN
        ),
        "quarantined": int(counted["n"]) if counted else 0,
        "undelivered": dict(undelivered),
    }


def quarantine_csv(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV for a spreadsheet: UTF-8 with a BOM, every cell a spreadsheet would run as a
    formula made inert (`sales_drops.neutralise`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(QUARANTINE_COLUMNS)
    for row in rows:
        writer.writerow([neutralise("" if row[c] is None else str(row[c])) for c in QUARANTINE_COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
