"""What every page of the survey app shares: its limits, the guards a request meets before a
route runs (a per-address rate limit, security headers, refusals rendered as pages in the reader's
language), reading a posted form within a size limit, the CSRF check and the signed link's check.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.nps.core import emails, i18n, signed_links
from include.nps.core.rate_limits import SlidingWindowLimit

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
GUARDED_PATHS = ("/s/", "/u/", "/followup/")  # the pages a link opens: rate-limited per address
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; "
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


def install_guards(app: FastAPI, settings: FormSettings) -> None:
    """The per-address rate limit and security headers on every response, and every refusal or
    error as a page (a 404 for a malformed path, a 500 page that shows no detail)."""
    per_address = SlidingWindowLimit(settings.requests_per_address, settings.address_window)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = per_address.hit(address) if request.url.path.startswith(GUARDED_PATHS) else None
        if wait is None:
            response = await call_next(request)
        else:
            log.warning("rate limit: too many requests from %s", address)
            response = refusal_page(request, Refused("problem", 429, {"problem": "rate_limited"}))
            response.headers["Retry-After"] = str(int(wait) + 1)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        return refusal_page(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        refusal = Refused("invalid", 404) if exc.status_code == 404 else Refused("problem", exc.status_code)
        return refusal_page(request, refusal)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return refusal_page(request, Refused("invalid", 404))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTMLResponse:
        log.exception("survey form error on %s %s", request.method, request.url.path.split("/")[1])
        return refusal_page(request, Refused("problem", 500, {"problem": "server_error"}))


def verified_link(purpose: str, token: str) -> signed_links.Invitation:
    """The signed link's wave and contact; a forged one is a 404 page, an expired one a 410."""
    try:
        return signed_links.verify(purpose, token)
    except signed_links.ExpiredToken as exc:
        raise Refused("expired", 410) from exc
    except signed_links.InvalidToken as exc:
        raise Refused("invalid", 404) from exc


async def read_form(request: Request, limit: int) -> dict[str, str]:
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


def csrf_ok(request: Request, token: str, form: dict[str, str], settings: FormSettings) -> bool:
    """The form's own token, and, where the browser says so, a post from our own pages."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    return signed_links.csrf_valid(token, form.get("csrf_token"), settings.csrf_max_age)


def refusal_page(request: Request, refusal: Refused) -> HTMLResponse:
    """The page of a refusal, in the contact's language when known, else the browser's."""
    locale = refusal.locale if refusal.context.get("wave") else i18n.best_match(request.headers.get("accept-language"))
    context = {"problem": "server_error", **refusal.context}
    return page(refusal.page, locale, context, refusal.status)


def page(name: str, locale: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """The `survey/<name>.html` template in `locale`."""
    return HTMLResponse(emails.render(f"survey/{name}.html", context, locale), status_code=status)


def script(name: str) -> Response:
    """One of the app's own scripts (`survey/<name>`), cached for a day."""
    code = (emails.TEMPLATES_DIR / "survey" / name).read_bytes()
    return Response(code, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


def stylesheet(name: str) -> Response:
    """One of the app's own stylesheets (`survey/<name>`), cached for a day."""
    css = (emails.TEMPLATES_DIR / "survey" / name).read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})
