"""The wave dashboard as a FastAPI app, mounted by the project's Airflow plugin in Airflow's API
server at `/nps` and listed in the Airflow UI's navigation.

Airflow's own authentication guards every route: the UI's session cookie (the page is shown in
the UI) or a bearer token from `/auth/token` (scripts). The user must be allowed to read the runs
of `nps_wave`. The app reads the NPS DB only.
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

from include.nps.storage import PROJECT_ROOT

WAVE_DAG_ID = "nps_wave"
URL_PREFIX = "/nps"
TEMPLATES = PROJECT_ROOT / "include" / "templates" / "dashboard"
DEFAULT_LIMIT = 200
Limit = Annotated[int, Query(ge=1, le=2000, description="Most waves to show, latest first")]


async def airflow_reader(request: Request) -> Any:
    """The signed-in Airflow user, if allowed to read nps_wave's runs (401 / 403 otherwise)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme

    user = await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))
    allowed = get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=WAVE_DAG_ID), user=user
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"reading the runs of {WAVE_DAG_ID} is not allowed")
    return user


@cache
def _default_engine() -> Engine:
    from include.nps.connections import nps_engine

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


def create_app(engine: Callable[[], Engine] = _default_engine, authorize: Callable = airflow_reader) -> FastAPI:
    """The dashboard app over the NPS DB that `engine()` returns, behind `authorize`."""
    from include.nps import dashboard

    app = FastAPI(title="NPS waves", docs_url=None, redoc_url=None, dependencies=[Depends(authorize)])

    @app.get("/api/waves")
    def waves(program: str | None = None, limit: Limit = DEFAULT_LIMIT) -> list[dict]:
        return dashboard.overview(engine(), program=program, limit=limit)

    @app.get("/api/waves/{wave_id}")
    def wave(wave_id: str) -> dict:
        return _found(dashboard.wave_detail(engine(), wave_id), wave_id)

    @app.get("/", response_class=HTMLResponse)
    def page(program: str | None = None, limit: Limit = DEFAULT_LIMIT) -> str:
        rows = dashboard.overview(engine(), program=program, limit=limit)
        return _render("index.html", waves=rows, program=program, prefix=URL_PREFIX)

    @app.get("/waves/{wave_id}", response_class=HTMLResponse)
    def wave_page(wave_id: str) -> str:
        found = _found(dashboard.wave_detail(engine(), wave_id), wave_id)
        return _render("wave.html", wave=found, prefix=URL_PREFIX)

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


def _milestones() -> tuple[str, ...]:
    from include.nps.calendar import MILESTONES

    return MILESTONES
