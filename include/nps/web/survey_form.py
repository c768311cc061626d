"""The survey form: a small FastAPI app, its own process, reading and writing the NPS DB.

A GET never records an answer (mail scanners follow every link): a score link opens the form
with that score selected; only a POST records, and it needs the form's CSRF token. The score
counts on click: the page's own script (`survey.js`, allowed by the CSP's `script-src 'self'`)
posts it as a provisional answer once the page has been visible for `VISIBLE_SECONDS` or at the
first interaction, and Send completes it. Scanners are kept out by four things together: a GET
records nothing; the post needs a script to run and the form's token; scanners that run scripts
rarely keep a page visible for seconds or touch it; and the page holds a hidden probe link
(`/s/<token>/p`, not shown, not focusable, `rel=nofollow`) that no person can follow but a
crawler that fetches every link does: a provisional answer within `responses.PROBE_WINDOW` of a
probe is withdrawn, or not taken. Each page
is in the contact's language. Run it with `make survey` or `python -m include.nps.web.survey_form`.

Guards, in the order a request meets them: a per-address rate limit, the signed link (forged ->
404, expired -> 410), the request's type and size (415, 413), the wave still open (410), a
per-invitation limit on submissions (429), the CSRF token (403), the answer itself (422). A
refused answer comes back in the form with what the respondent typed, and a clear message.

Each answer recorded is announced to Airflow (`answer_events`: the `nps_survey_answers` asset,
coalesced, from a background thread), so `nps_responses` alerts a detractor within seconds; the
submit never waits for Airflow, and when Airflow is down the DAG's timer picks the answer up.

The same app serves the internal follow-up form (`followup_form`) and the email services'
webhooks (`esp_webhooks`); the guards every page shares are in `form_guards`.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine

from include.nps.core import i18n, signed_links, storage
from include.nps.core.rate_limits import SlidingWindowLimit
from include.nps.wave import responses
from include.nps.wave.responses import ResponseRejected
from include.nps.web import esp_webhooks, followup_form
from include.nps.web.answer_events import AnswerEvents
from include.nps.web.form_guards import (
    FormSettings,
    Refused,
    csrf_ok,
    install_guards,
    page,
    read_form,
    script,
    stylesheet,
    verified_link,
)

__all__ = ["FormSettings", "create_app"]

VISIBLE_SECONDS = 3  # how long the page is visible before survey.js posts the clicked score
STATUS_FOR_ERROR = {
    "score_missing": 422,
    "comment_too_long": 422,
    "pillar_out_of_range": 422,
    "csrf": 403,
    "rate_limited": 429,
}


def create_app(
    engine: Engine, settings: FormSettings | None = None, answer_events: AnswerEvents | None = None
) -> FastAPI:
    """The survey app: its guards, the survey and unsubscribe pages, the follow-up form and the
    email services' webhooks. `answer_events`: how answers are announced to Airflow (by default
    from the environment; `app.state.answer_events`)."""
    settings = settings or FormSettings.from_env()
    events = answer_events or AnswerEvents.from_env()
    app = FastAPI(title="NPS survey", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.answer_events = events
    install_guards(app, settings)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    app.include_router(survey_router(engine, settings, events))
    app.include_router(unsubscribe_router(engine, settings))
    app.include_router(followup_form.router(engine, settings))
    app.include_router(esp_webhooks.router(engine))  # ESP bounce and complaint webhooks (/hooks/...)
    return app


def survey_router(engine: Engine, settings: FormSettings, events: AnswerEvents) -> APIRouter:
    """The survey form a personal link opens, its submission (announced to Airflow through
    `events`) and the thank-you page."""
    routes = APIRouter()
    per_link = SlidingWindowLimit(settings.submissions_per_link, settings.submission_window)

    @routes.get("/assets/survey.css")
    def survey_stylesheet() -> Response:
        return stylesheet("survey.css")

    @routes.get("/assets/survey.js")
    def survey_script() -> Response:
        return script("survey.js")

    @routes.post("/s/{token}/provisional")
    async def record_provisional(token: str, request: Request) -> Response:
        invitation = verified_link("survey", token)
        form = await read_form(request, settings.max_body_bytes)
        _open_survey(engine, token, invitation)
        score = responses.parse_score(form.get("score"))
        if per_link.hit(f"{invitation.wave_id}\x00{invitation.contact_id}") is not None:
            return Response(status_code=429)
        if score is None or not csrf_ok(request, token, form, settings):
            return Response(status_code=403 if score is not None else 422)
        recorded = responses.record_provisional(engine, invitation.wave_id, invitation.contact_id, score)
        return Response(status_code=204 if recorded else 409)  # 409: kept as it was (sent, or a scanner's)

    @routes.get("/s/{token}/p")
    def probe(token: str) -> Response:
        # The page's hidden link: only a crawler fetches it (see the module's docstring).
        invitation = verified_link("survey", token)
        responses.record_probe(engine, invitation.wave_id, invitation.contact_id)
        return Response(status_code=204)

    @routes.get("/s/{token}", response_class=HTMLResponse)
    def show_form(token: str, score: str | None = None) -> HTMLResponse:
        ctx = _open_survey(engine, token)
        preset = responses.parse_score(score)
        previous = ctx.response or {}
        answer = {
            "score": preset if preset is not None else previous.get("score"),
            "comment": previous.get("comment") or "",
            "pillars": previous.get("pillar_answers") or {},
        }
        return _form(ctx, token, answer, answered=bool(previous))

    @routes.post("/s/{token}", response_class=HTMLResponse)
    async def submit_form(token: str, request: Request) -> Response:
        invitation = verified_link("survey", token)
        form = await read_form(request, settings.max_body_bytes)
        ctx = _open_survey(engine, token, invitation)
        typed = responses.submitted_answer(form, ctx.pillars)
        wait = per_link.hit(f"{invitation.wave_id}\x00{invitation.contact_id}")
        if wait is not None:
            return _form(ctx, token, typed, error="rate_limited", headers={"Retry-After": str(int(wait) + 1)})
        if not csrf_ok(request, token, form, settings):
            return _form(ctx, token, typed, error="csrf")
        try:
            answer = responses.parse_submission(form, ctx.pillars)
            responses.record_response(engine, invitation.wave_id, invitation.contact_id, answer)
        except ResponseRejected as exc:
            if exc.code == "closed":
                raise _closed(ctx) from exc
            return _form(ctx, token, typed, error=exc.code, error_pillar=exc.field)
        events.recorded(invitation.wave_id)  # returns at once: a background thread tells Airflow
        return RedirectResponse(f"/s/{token}/thanks", status_code=303)

    @routes.get("/s/{token}/thanks", response_class=HTMLResponse)
    def thanks(token: str) -> Response:
        ctx = _open_survey(engine, token)
        if not ctx.response:
            return RedirectResponse(f"/s/{token}", status_code=303)
        context = {"wave": ctx.wave, "contact": ctx.contact, "token": token, "answer": ctx.response}
        return page("thanks", ctx.contact["locale"], context)

    return routes


def unsubscribe_router(engine: Engine, settings: FormSettings) -> APIRouter:
    """The unsubscribe page and the RFC 8058 one-click endpoint."""
    routes = APIRouter()

    @routes.get("/u/{token}", response_class=HTMLResponse)
    def show_unsubscribe(token: str) -> HTMLResponse:
        invitation = verified_link("unsubscribe", token)
        context = {"token": token, "csrf_token": signed_links.csrf_token(token), "error": None}
        return page("unsubscribe", _locale_of(engine, invitation.contact_id), context)

    @routes.post("/u/{token}", response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        # Also the RFC 8058 one-click endpoint: a mail client POSTs `List-Unsubscribe=One-Click`
        # with no cookie and no page; that body is all the proof RFC 8058 asks for.
        invitation = verified_link("unsubscribe", token)
        form = await read_form(request, settings.max_body_bytes)
        locale = _locale_of(engine, invitation.contact_id)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click and not csrf_ok(request, token, form, settings):
            context = {"token": token, "csrf_token": signed_links.csrf_token(token), "error": "csrf"}
            return page("unsubscribe", locale, context, 403)
        responses.record_opt_out(engine, invitation.contact_id)
        return page("unsubscribed", locale, {})

    return routes


def _open_survey(
    engine: Engine, token: str, invitation: signed_links.Invitation | None = None
) -> responses.SurveyContext:
    """The survey a link opens, or the page that says why it does not."""
    invitation = invitation or verified_link("survey", token)
    try:
        ctx = responses.survey_context(engine, invitation.wave_id, invitation.contact_id)
    except ResponseRejected as exc:
        raise Refused("invalid", 404) from exc
    if not ctx.is_open(storage.utcnow()):
        raise _closed(ctx)
    return ctx


def _closed(ctx: responses.SurveyContext) -> Refused:
    return Refused("closed", 410, {"wave": ctx.wave, "contact": ctx.contact}, ctx.contact["locale"])


def _form(
    ctx: responses.SurveyContext,
    token: str,
    answer: dict[str, Any],
    error: str | None = None,
    error_pillar: str | None = None,
    answered: bool = False,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    pillar = next((p for p in ctx.pillars if p["id"] == error_pillar), None)
    context = {
        "wave": ctx.wave,
        "contact": ctx.contact,
        "pillars": ctx.pillars,
        "scales": responses.PILLAR_SCALES,
        "answer": answer,
        "answered": answered,
        "provisional": not (ctx.response or {}).get("completed"),  # survey.js may post the score
        "visible_ms": VISIBLE_SECONDS * 1000,
        "token": token,
        "csrf_token": signed_links.csrf_token(token),
        "max_comment": responses.MAX_COMMENT_LENGTH,
        "error": error,
        "error_pillar": pillar,
        "error_pillar_range": responses.PILLAR_SCALES[pillar["scale"]] if pillar else None,
    }
    response = page("form", ctx.contact["locale"], context, STATUS_FOR_ERROR.get(error or "", 200))
    response.headers.update(headers or {})
    return response


def _locale_of(engine: Engine, contact_id: str) -> str:
    row = storage.fetch_one(engine, "SELECT locale FROM contacts WHERE contact_id = :c", c=contact_id)
    return row["locale"] if row else i18n.DEFAULT_LOCALE


def main() -> None:
    import uvicorn

    from include.nps.core.connections import nps_engine

    uvicorn.run(
        create_app(nps_engine()),
        host=os.environ.get("NPS_SURVEY_HOST", "127.0.0.1"),
        port=int(os.environ.get("NPS_SURVEY_PORT", "8090")),
        proxy_headers=True,  # behind a reverse proxy, rate limits count the real client address
        forwarded_allow_ips=os.environ.get("NPS_SURVEY_TRUSTED_PROXIES", "127.0.0.1"),
        server_header=False,
    )


if __name__ == "__main__":
    main()
