"""The internal follow-up form (`/followup/<signed link>`, in English): the owner of a detractor's
follow-up claims it, logs each call, records the root cause and closes the loop (the moves are
`closed_loop/followups.py`'s). The survey app's guards apply: signed link, CSRF token, size and
type of the body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from include.nps.closed_loop import followups
from include.nps.core import i18n, signed_links, storage
from include.nps.web.form_guards import FormSettings, Refused, csrf_ok, page, read_form, stylesheet, verified_link

ACTOR_COOKIE = "nps_followup_actor"  # who acted last from this browser: the form's default actor
ACTOR_COOKIE_AGE = 180 * 24 * 3600


def router(engine: Engine, settings: FormSettings) -> APIRouter:
    """The follow-up form's routes."""
    routes = APIRouter()

    @routes.get("/assets/followup.css")
    def followup_stylesheet() -> Response:
        return stylesheet("followup.css")

    @routes.get("/followup/{token}", response_class=HTMLResponse)
    def show_followup(token: str, request: Request, done: str | None = None) -> HTMLResponse:
        link = verified_link("followup", token)
        actor = request.cookies.get(ACTOR_COOKIE)
        return _followup_page(engine, token, link, actor, done=done if done in followups.ACTIONS else None)

    @routes.post("/followup/{token}", response_class=HTMLResponse)
    async def act_on_followup(token: str, request: Request) -> Response:
        link = verified_link("followup", token)
        form = await read_form(request, settings.max_body_bytes)
        actor = form.get("actor") or request.cookies.get(ACTOR_COOKIE)
        if not csrf_ok(request, token, form, settings):
            error = followups.FollowupError("csrf", "CSRF token missing or expired")
            return _followup_page(engine, token, link, actor, form, error, status=403)
        try:
            action = followups.perform(
                engine, link.wave_id, link.contact_id, form, followups.load_rules(), storage.utcnow()
            )
        except followups.FollowupNotFound as exc:
            raise Refused("invalid", 404) from exc
        except followups.FollowupError as exc:
            return _followup_page(engine, token, link, actor, form, exc, status=exc.status)
        response = RedirectResponse(f"/followup/{token}?done={action}", status_code=303)
        response.set_cookie(
            ACTOR_COOKIE,
            " ".join(form.get("actor", "").split())[: followups.MAX_ACTOR],
            max_age=ACTOR_COOKIE_AGE,
            path="/followup/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    return routes


def _followup_page(
    engine: Engine,
    token: str,
    link: signed_links.Invitation,
    actor: str | None,
    typed: dict[str, str] | None = None,
    error: followups.FollowupError | None = None,
    status: int = 200,
    done: str | None = None,
) -> HTMLResponse:
    """The follow-up form: the customer, the call log, the current claim and what can be done now."""
    now = storage.utcnow()
    try:
        card = followups.card(engine, link.wave_id, link.contact_id, followups.load_rules(), now)
    except followups.FollowupNotFound as exc:
        raise Refused("invalid", 404) from exc
    context = {
        **card,
        "token": token,
        "csrf_token": signed_links.csrf_token(token),
        "actor": actor or card["f"]["owner"],
        "typed": {"outcome": "", "note": "", "root_cause": "", "root_cause_other": "", "recovered": ""} | (typed or {}),
        "error": {"code": error.code, "details": error.details} if error else None,
        "done": done,
    }
    return page("followup", i18n.DEFAULT_LOCALE, context, status)
