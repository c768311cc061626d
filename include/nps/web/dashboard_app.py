"""The wave dashboard as a FastAPI app, mounted by the project's Airflow plugin in Airflow's API
server at `/nps` and listed in the Airflow UI's navigation.

Airflow's own authentication guards every route: the UI's session cookie (the page is shown in
the UI) or a bearer token from `/auth/token` (scripts). The user must be allowed to read the runs
of `nps_wave`: the plugin passes that check in (`plugins/nps_plugin.py`), so this app imports no
Airflow itself. The app reads the NPS DB only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine

from include.nps.core.storage import PROJECT_ROOT

URL_PREFIX = "/nps"
TEMPLATES = PROJECT_ROOT / "include" / "templates" / "dashboard"
DEFAULT_LIMIT = 200
Limit = Annotated[int, Query(ge=1, le=2000, description="Most waves to show, latest first")]


@cache
def _default_engine() -> Engine:
    from include.nps.core.connections import nps_engine

    return nps_engine()


@cache
def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    env.filters["when"] = _when
    env.filters["quote"] = lambda value: quote(str(value), safe="")
    return env


def _when(value: str | None) -> str:
    return dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M") if value else ""


def create_app(
    authorize: Callable, engine: Callable[[], Engine] = _default_engine, authorize_write: Callable | None = None
) -> FastAPI:
    """The dashboard app over the NPS DB that `engine()` returns, behind `authorize` (a FastAPI
    dependency: the Airflow plugin passes Airflow's login and permission check); people's actions
    (`dashboard_actions`) also behind `authorize_write` (else `authorize`)."""
    from include.nps.web import audit_page, dashboard_actions, dashboard_figures

    app = FastAPI(title="NPS waves", docs_url=None, redoc_url=None, dependencies=[Depends(authorize)])

    @app.get("/api/waves")
    def waves(program: str | None = None, limit: Limit = DEFAULT_LIMIT) -> list[dict]:
        return dashboard_figures.overview(engine(), program=program, limit=limit)

    @app.get("/api/waves/{wave_id}")
    def wave(wave_id: str) -> dict:
        return _found(dashboard_figures.wave_detail(engine(), wave_id), wave_id)

    @app.get("/", response_class=HTMLResponse)
    def page(program: str | None = None, limit: Limit = DEFAULT_LIMIT) -> str:
        rows = dashboard_figures.overview(engine(), program=program, limit=limit)
        return _render("index.html", waves=rows, program=program, prefix=URL_PREFIX)

    @app.get("/waves/{wave_id}", response_class=HTMLResponse)
    def wave_page(wave_id: str) -> str:
        found = _found(dashboard_figures.wave_detail(engine(), wave_id), wave_id)
        return _render("wave.html", wave=found, prefix=URL_PREFIX)

    actions = dashboard_actions.router(engine, authorize_write or authorize, render_page, URL_PREFIX)
    app.include_router(actions)
    app.include_router(audit_page.router(engine, _render, URL_PREFIX))

    @app.exception_handler(HTTPException)
    async def plain_errors(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


def _found(wave: dict | None, wave_id: str) -> dict:
    if wave is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no wave {wave_id!r}")
    return wave


def _render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context, milestone_order=_milestones())


def render_page(name: str, **context: Any) -> str:
    """A dashboard template (`include/templates/dashboard/<name>`) under the app's URL prefix."""
    return _render(name, prefix=URL_PREFIX, **context)


def _milestones() -> tuple[str, ...]:
    from include.nps.core.business_days import MILESTONES

    return MILESTONES
