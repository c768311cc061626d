"""The survey form: a small FastAPI app, its own process, reading and writing the NPS DB.

A GET never records anything (mail scanners follow every link): a score link opens the form
with that score selected; only the POST records. Run it with `python -m include.nps.survey`.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import Engine

from include.nps import messages, responses, tokens
from include.nps.responses import ResponseRejected

STATUS_FOR_ERROR = {
    "invalid": 404,
    "closed": 410,
    "score_missing": 422,
    "comment_too_long": 422,
    "pillar_out_of_range": 422,
}


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="NPS survey", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/s/{token}", response_class=HTMLResponse)
    def show_form(token: str, score: int | None = None) -> HTMLResponse:
        try:
            invitation = tokens.verify("survey", token)
            ctx = responses.survey_context(engine, invitation.wave_id, invitation.contact_id)
        except (tokens.InvalidToken, ResponseRejected):
            return _page("invalid", "en", {}, 404)
        if ctx.wave["status"] != "open":
            return _page("closed", ctx.contact["locale"], {"wave": ctx.wave}, 410)
        selected = score if score is not None and 0 <= score <= 10 else (ctx.response or {}).get("score")
        return _page("form", ctx.contact["locale"], _form_context(ctx, token, selected))

    @app.post("/s/{token}", response_class=HTMLResponse)
    async def submit_form(token: str, request: Request) -> HTMLResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            invitation = tokens.verify("survey", token)
            ctx = responses.survey_context(engine, invitation.wave_id, invitation.contact_id)
        except (tokens.InvalidToken, ResponseRejected):
            return _page("invalid", "en", {}, 404)
        locale = ctx.contact["locale"]
        try:
            answer = responses.parse_submission(form, ctx.pillars)
            responses.record_response(engine, invitation.wave_id, invitation.contact_id, answer)
        except ResponseRejected as exc:
            if exc.code == "closed":
                return _page("closed", locale, {"wave": ctx.wave}, 410)
            selected = form.get("score")
            context = {
                **_form_context(ctx, token, int(selected) if (selected or "").isdigit() else None),
                "error": exc.code,
            }
            return _page("form", locale, context, STATUS_FOR_ERROR[exc.code])
        return _page("thanks", locale, {"wave": ctx.wave, "contact": ctx.contact})

    @app.get("/u/{token}", response_class=HTMLResponse)
    def show_unsubscribe(token: str) -> HTMLResponse:
        try:
            invitation = tokens.verify("unsubscribe", token)
        except tokens.InvalidToken:
            return _page("invalid", "en", {}, 404)
        return _page("unsubscribe", _locale_of(engine, invitation.contact_id), {"token": token})

    @app.post("/u/{token}", response_class=HTMLResponse)
    def unsubscribe(token: str) -> HTMLResponse:
        # Also the RFC 8058 one-click endpoint: mail clients POST List-Unsubscribe=One-Click here.
        try:
            invitation = tokens.verify("unsubscribe", token)
        except tokens.InvalidToken:
            return _page("invalid", "en", {}, 404)
        responses.record_opt_out(engine, invitation.contact_id)
        return _page("unsubscribed", _locale_of(engine, invitation.contact_id), {})

    return app


def _form_context(ctx: responses.SurveyContext, token: str, selected: int | None) -> dict[str, Any]:
    return {
        "wave": ctx.wave,
        "contact": ctx.contact,
        "pillars": ctx.pillars,
        "scales": responses.PILLAR_SCALES,
        "previous": ctx.response or {},
        "selected": selected,
        "token": token,
        "max_comment": responses.MAX_COMMENT_LENGTH,
        "error": None,
    }


def _locale_of(engine: Engine, contact_id: str) -> str:
    from include.nps import storage

    row = storage.fetch_one(engine, "SELECT locale FROM contacts WHERE contact_id = :c", c=contact_id)
    return row["locale"] if row else messages.FALLBACK_LOCALE


def _page(name: str, locale: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    html = messages.render(messages.localized_path("survey", locale, f"{name}.html"), {"locale": locale, **context})
    return HTMLResponse(
        html,
        status_code=status,
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"},
    )


def main() -> None:
    import uvicorn

    from include.nps.connections import nps_engine

    engine = nps_engine()
    uvicorn.run(
        create_app(engine),
        host=os.environ.get("NPS_SURVEY_HOST", "127.0.0.1"),
        port=int(os.environ.get("NPS_SURVEY_PORT", "8090")),
    )


if __name__ == "__main__":
    main()
