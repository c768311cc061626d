"""The NPS program's Airflow plugin: business-day macros for templates, and the wave dashboard.

`{{ macros.nps_plugin.add_business_days(dag_run.start_date, 3, "JP") }}` is the moment three
business days later in Japan. The dashboard is served by Airflow's API server at `/nps/` (behind
Airflow's login) and listed as "NPS waves" in the UI's navigation.
"""

from __future__ import annotations

import datetime as dt

from airflow.plugins_manager import AirflowPlugin

from include.nps.deadlines import WaveRetrospective


def add_business_days(moment: dt.datetime | str, days: int, country: str = "US") -> dt.datetime:
    """`moment` moved by `days` business days of `country` (counted on its local dates, keeping the
    local time of day), in UTC; a time without an offset is UTC."""
    from include.nps import calendar

    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return calendar.add_business_days(moment, days, country)


def is_business_day(day: dt.date | dt.datetime, country: str = "US") -> bool:
    """Whether `day` is a business day of `country`; a moment counts by its local date there."""
    from include.nps import calendar

    local = calendar.local_time(day, country).date() if isinstance(day, dt.datetime) else day
    return calendar.is_business_day(local, country)


def _dashboard() -> dict:
    from include.nps.dashboard_app import URL_PREFIX, create_app

    return {"app": create_app(), "url_prefix": URL_PREFIX, "name": "NPS wave dashboard"}


class NpsPlugin(AirflowPlugin):
    name = "nps_plugin"
    macros = [add_business_days, is_business_day]  # noqa: RUF012 - Airflow's plugin interface
    fastapi_apps = [_dashboard()]  # noqa: RUF012
    deadline_references = [WaveRetrospective]  # noqa: RUF012 - nps_wave's deadline: its retrospective
    external_views = [  # noqa: RUF012
        {"name": "NPS waves", "href": "/nps/", "destination": "nav", "url_route": "nps-waves", "icon": None}
    ]
