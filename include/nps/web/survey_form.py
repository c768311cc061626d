"""The survey form: a small FastAPI app, its own process, reading and writing the NPS DB.

A GET never records anything (mail scanners follow every link): a score link opens the form
with that score selected; only the POST records, and it needs the form's CSRF token. Each page
is in the contact's language. Run it with `make survey` or `python -m include.nps.web.survey_form`.

Guards, in the order a request meets them: a per-address rate limit, the signed link (forged ->
404, expired -> 410), the request's type and size (415, 413), the wave still open (410), a
per-invitation limit on submissions (429), the CSRF token (403), the answer itself (422). A
refused answer comes back in the form with what the respondent typed, and a clear message.

The same app serves the internal follow-up form (`/followup/<signed link>`, English): the owner of
a detractor's follow-up claims it, logs each call, records the root cause and closes the loop
(`include/nps/closed_loop/followups.py`). Same guards: signed link, CSRF token, size and type of the body.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.nps.closed_loop import followups
from include.nps.core import emails, i18n, signed_links, storage
from include.nps.core.rate_limits import SlidingWindowLimit
from include.nps.wave import responses
from include.nps.wave.responses import ResponseRejected
from include.nps.web import esp_webhooks

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
STATUS_FOR_ERROR = {
    "score_missing": 422,
    "comment_too_long": 422,
    "pillar_out_of_range": 422,
    "csrf": 403,
    "rate_limited": 429,
}
FOLLOWUP_ACTOR_COOKIE = "nps_followup_actor"
FOLLOWUP_ACTOR_COOKIE_AGE = 180 * 24 * 3600
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link token is in the URL: never pass it on
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class FormSettings:
    """Limits of the form; each can be set from the environment (`NPS_SURVEY_*`)."""

    max_body_bytes: int = 64 * 1024
    submissions_per_link: int = 10  # per `submission_window` seconds, per invitation
    submission_window: float = 600
    requests_per_address: int = 300  # per `address_window` seconds, per client address; 0 = off
    address_window: float = 60
    csrf_max_age: dt.timedelta = dt.timedelta(hours=24)

    @classmethod
    def from_env(cls) -> FormSettings:
        env = os.environ.get
        return cls(
            max_body_bytes=int(env("NPS_SURVEY_MAX_BODY_BYTES", cls.max_body_bytes)),
            submissions_per_link=int(env("NPS_SURVEY_SUBMISSIONS_PER_LINK", cls.submissions_per_link)),
            requests_per_address=int(env("NPS_SURVEY_REQUESTS_PER_ADDRESS", cls.requests_per_address)),
        )


class Refused(Exception):
    """A request the form turns away with a page: `page` (a template) and its HTTP status."""

    def __init__(self, page: str, status: int, context: dict[str, Any] | None = None, locale: str = "en") -> None:
        super().__init__(page)
        self.page, self.status, self.context, self.locale = page, status, context or {}, locale


def create_app(engine: Engine, settings: FormSettings | None = None) -> FastAPI:
    settings = settings or FormSettings.from_env()
    per_address = SlidingWindowLimit(settings.requests_per_address, settings.address_window)
    per_link = SlidingWindowLimit(settings.submissions_per_link, settings.submission_window)
    app = FastAPI(title="NPS survey", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = per_address.hit(address) if request.url.path.startswith(("/s/", "/u/", "/followup/")) else None
        if wait is None:
            response = await call_next(request)
        else:
            log.warning("rate limit: too many requests from %s", address)
            response = _refusal(request, Refused("problem", 429, {"problem": "rate_limited"}))
            response.headers["Retry-After"] = str(int(wait) + 1)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        return _refusal(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        page = Refused("invalid", 404) if exc.status_code == 404 else Refused("problem", exc.status_code)
        return _refusal(request, page)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return _refusal(request, Refused("invalid", 404))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTMLResponse:
        log.exception("survey form error on %s %s", request.method, request.url.path.split("/")[1])
        return _refusal(request, Refused("problem", 500, {"problem": "server_error"}))

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/assets/survey.css")
    def stylesheet() -> Response:
        css = (emails.TEMPLATES_DIR / "survey" / "survey.css").read_bytes()
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/s/{token}", response_class=HTMLResponse)
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

    @app.post("/s/{token}", response_class=HTMLResponse)
    async def submit_form(token: str, request: Request) -> Response:
        invitation = _invitation("survey", token)
        form = await _read_form(request, settings.max_body_bytes)
        ctx = _open_survey(engine, token, invitation)
        typed = responses.submitted_answer(form, ctx.pillars)
        wait = per_link.hit(f"{invitation.wave_id}\x00{invitation.contact_id}")
        if wait is not None:
            return _form(ctx, token, typed, error="rate_limited", headers={"Retry-After": str(int(wait) + 1)})
        if not _csrf_ok(request, token, form, settings):
            return _form(ctx, token, typed, error="csrf")
        try:
            answer = responses.parse_submission(form, ctx.pillars)
            responses.record_response(engine, invitation.wave_id, invitation.contact_id, answer)
        except ResponseRejected as exc:
            if exc.code == "closed":
                raise _closed(ctx) from exc
            return _form(ctx, token, typed, error=exc.code, error_pillar=exc.field)
        return RedirectResponse(f"/s/{token}/thanks", status_code=303)

    @app.get("/s/{token}/thanks", response_class=HTMLResponse)
    def thanks(token: str) -> Response:
        ctx = _open_survey(engine, token)
        if not ctx.response:
            return RedirectResponse(f"/s/{token}", status_code=303)
        context = {"wave": ctx.wave, "contact": ctx.contact, "token": token, "answer": ctx.response}
        return _page("thanks", ctx.contact["locale"], context)

    @app.get("/u/{token}", response_class=HTMLResponse)
    def show_unsubscribe(token: str) -> HTMLResponse:
        invitation = _invitation("unsubscribe", token)
        context = {"token": token, "csrf_token": signed_links.csrf_token(token), "error": None}
        return _page("unsubscribe", _locale_of(engine, invitation.contact_id), context)

    @app.post("/u/{token}", response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        # Also the RFC 8058 one-click endpoint: a mail client POSTs `List-Unsubscribe=One-Click`
        # with no cookie and no page; that body is all the proof RFC 8058 asks for.
        invitation = _invitation("unsubscribe", token)
        form = await _read_form(request, settings.max_body_bytes)
        locale = _locale_of(engine, invitation.contact_id)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click and not _csrf_ok(request, token, form, settings):
            context = {"token": token, "csrf_token": signed_links.csrf_token(token), "error": "csrf"}
            return _page("unsubscribe", locale, context, 403)
        responses.record_opt_out(engine, invitation.contact_id)
        return _page("unsubscribed", locale, {})

    @app.get("/assets/followup.css")
    def followup_stylesheet() -> Response:
        css = (emails.TEMPLATES_DIR / "survey" / "followup.css").read_bytes()
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/followup/{token}", response_class=HTMLResponse)
    def show_followup(token: str, request: Request, done: str | None = None) -> HTMLResponse:
        link = _invitation("followup", token)
        actor = request.cookies.get(FOLLOWUP_ACTOR_COOKIE)
        return _followup_page(engine, token, link, actor, done=done if done in followups.ACTIONS else None)

    @app.post("/followup/{token}", response_class=HTMLResponse)
    async def act_on_followup(token: str, request: Request) -> Response:
        link = _invitation("followup", token)
        form = await _read_form(request, settings.max_body_bytes)
        actor = form.get("actor") or request.cookies.get(FOLLOWUP_ACTOR_COOKIE)
        if not _csrf_ok(request, token, form, settings):
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
            FOLLOWUP_ACTOR_COOKIE,
            " ".join(form.get("actor", "").split())[: followups.MAX_ACTOR],
            max_age=FOLLOWUP_ACTOR_COOKIE_AGE,
            path="/followup/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    app.include_router(esp_webhooks.router(engine))  # ESP bounce and complaint webhooks (/hooks/...)
    return app


def _invitation(purpose: str, token: str) -> signed_links.Invitation:
    try:
        return signed_links.verify(purpose, token)
    except signed_links.ExpiredToken as exc:
        raise Refused("expired", 410) from exc
    except signed_links.InvalidToken as exc:
        raise Refused("invalid", 404) from exc


def _open_survey(
    engine: Engine, token: str, invitation: signed_links.Invitation | None = None
) -> responses.SurveyContext:
    """The survey a link opens, or the page that says why it does not."""
    invitation = invitation or _invitation("survey", token)
    try:
        ctx = responses.survey_context(engine, invitation.wave_id, invitation.contact_id)
    except ResponseRejected as exc:
        raise Refused("invalid", 404) from exc
    if not ctx.is_open(storage.utcnow()):
        raise _closed(ctx)
    return ctx


def _closed(ctx: responses.SurveyContext) -> Refused:
    return Refused("closed", 410, {"wave": ctx.wave, "contact": ctx.contact}, ctx.contact["locale"])


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    """The posted form fields, refusing other content types and bodies over `limit` bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if not content_type and declared in ("", "0"):
        return {}  # an empty POST is an empty form
    if content_type not in FORM_TYPES:
        raise Refused("problem", 415, {"problem": "wrong_content_type"})
    if declared.isdigit() and int(declared) > limit:
        raise Refused("problem", 413, {"problem": "too_large"})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused("problem", 413, {"problem": "too_large"})

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    from starlette.formparsers import MultiPartException

    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=50)
    except MultiPartException as exc:
        raise Refused("problem", 415, {"problem": "wrong_content_type"}) from exc
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _csrf_ok(request: Request, token: str, form: dict[str, str], settings: FormSettings) -> bool:
    """The form's own token, and, where the browser says so, a post from our own pages."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    return signed_links.csrf_valid(token, form.get("csrf_token"), settings.csrf_max_age)


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
        "token": token,
        "csrf_token": signed_links.csrf_token(token),
        "max_comment": responses.MAX_COMMENT_LENGTH,
        "error": error,
        "error_pillar": pillar,
        "error_pillar_range": responses.PILLAR_SCALES[pillar["scale"]] if pillar else None,
    }
    response = _page("form", ctx.contact["locale"], context, STATUS_FOR_ERROR.get(error or "", 200))
    response.headers.update(headers or {})
    return response


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
    return _page("followup", i18n.DEFAULT_LOCALE, context, status)


def _locale_of(engine: Engine, contact_id: str) -> str:
    row = storage.fetch_one(engine, "SELECT locale FROM contacts WHERE contact_id = :c", c=contact_id)
    return row["locale"] if row else i18n.DEFAULT_LOCALE


def _refusal(request: Request, refusal: Refused) -> HTMLResponse:
    """The page of a refusal, in the contact's language when known, else the browser's."""
    locale = refusal.locale if refusal.context.get("wave") else i18n.best_match(request.headers.get("accept-language"))
    context = {"problem": "server_error", **refusal.context}
    return _page(refusal.page, locale, context, refusal.status)


def _page(name: str, locale: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return HTMLResponse(emails.render(f"survey/{name}.html", context, locale), status_code=status)


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
