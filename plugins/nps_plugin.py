"""The NPS program's Airflow plugin: business-day macros for templates, and the wave dashboard.

`{{ macros.nps_plugin.add_business_days(dag_run.start_date, 3, "JP") }}` is the moment three
business days later in Japan. The dashboard is served by Airflow's API server at `/nps/` (behind
Airflow's login) and listed as "NPS waves" in the UI's navigation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from airflow.plugins_manager import AirflowPlugin
from fastapi import HTTPException, Request, status

from include.nps.monitoring.deadlines import WaveRetrospective


def add_business_days(moment: dt.datetime | str, days: int, country: str = "US") -> dt.datetime:
    """`moment` moved by `days` business days of `country` (counted on its local dates, keeping the
    local time of day), in UTC; a time without an offset is UTC."""
    from include.nps.core import business_days

    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return business_days.add_business_days(moment, days, country)


def is_business_day(day: dt.date | dt.datetime, country: str = "US") -> bool:
    """Whether `day` is a business day of `country`; a moment counts by its local date there."""
    from include.nps.core import business_days

    local = business_days.local_time(day, country).date() if isinstance(day, dt.datetime) else day
    return business_days.is_business_day(local, country)


WAVE_DAG_ID = "nps_wave"


async def airflow_reader(request: Request) -> Any:
    """The dashboard's guard: the signed-in Airflow user, if allowed to read nps_wave's runs
    (401 / 403 otherwise). The user's name is left in `request.state.nps_user` (the dashboard binds
    its CSRF tokens to it)."""
    return await _authorized(request, "GET", "reading")


async def airflow_editor(request: Request) -> Any:
    """The guard of the dashboard's actions (marking an action item done, opening a follow-up's
    form): the signed-in user, if allowed to edit nps_wave's runs (Airflow's "User" role or above
    with the simple auth manager; 403 otherwise)."""
    return await _authorized(request, "PUT", "changing")


async def _authorized(request: Request, method: Literal["GET", "PUT"], doing: str) -> Any:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme

    user = await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))
    allowed = get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=WAVE_DAG_ID), user=user
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{doing} the runs of {WAVE_DAG_ID} is not allowed")
    request.state.nps_user = user.get_name()
    return user


def _dashboard() -> dict:
    from include.nps.web.dashboard_app import URL_PREFIX, create_app

    app = create_app(airflow_reader, authorize_write=airflow_editor)
    return {"app": app, "url_prefix": URL_PREFIX, "name": "NPS wave dashboard"}


class NpsPlugin(AirflowPlugin):
    name = "nps_plugin"
    macros = [add_business_days, is_business_day]  # noqa: RUF012 - Airflow's plugin interface
    fastapi_apps = [_dashboard()]  # noqa: RUF012
    deadline_references = [WaveRetrospective]  # noqa: RUF012 - nps_wave's deadline: its retrospective
    external_views = [  # noqa: RUF012
        {"name": "NPS waves", "href": "/nps/", "destination": "nav", "url_route": "nps-waves", "icon": None},
    ]
