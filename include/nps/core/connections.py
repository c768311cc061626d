"""Where the NPS DB, the survey form and the output folder are: Airflow connections and env.

Secrets live only in Airflow connections or environment variables, never in code.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from include.nps.core import storage

NPS_DB_CONN_ID = "nps_db"
DEFAULT_HOME = storage.PROJECT_ROOT / "var"


def nps_home() -> Path:
    """The folder for the embedded default's files: SQLite DB, mail spool, reports."""
    return Path(os.environ.get("NPS_HOME", DEFAULT_HOME))


def reports_dir(wave_id: str) -> Path:
    path = nps_home() / "reports" / wave_id.replace(":", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


def survey_base_url() -> str:
    return os.environ.get("NPS_SURVEY_BASE_URL", "http://127.0.0.1:8090").rstrip("/")


def db_url() -> str:
    """SQLAlchemy URL of the NPS DB: `NPS_DB_URL`, the `nps_db` connection, else SQLite in NPS_HOME."""
    if os.environ.get("NPS_DB_URL"):
        return os.environ["NPS_DB_URL"]
    conn = _airflow_connection(NPS_DB_CONN_ID)
    if conn is None:
        return f"sqlite:///{nps_home() / 'nps.db'}"
    return url_from_connection(conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema)


def url_from_connection(
    conn_type: str, host: str | None, login: str | None, password: str | None, port: int | None, schema: str | None
) -> str:
    from sqlalchemy import URL

    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    if conn_type in ("postgres", "postgresql"):
        return URL.create(
            "postgresql+psycopg2", username=login, password=password, host=host, port=port, database=schema
        ).render_as_string(hide_password=False)
    raise ValueError(f"connection {NPS_DB_CONN_ID!r} has type {conn_type!r}; use sqlite or postgres")


def _airflow_connection(conn_id: str):
    """The Airflow connection, or None when it is not defined (a broken one raises: no silent fallback)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def connection_defined(conn_id: str) -> bool:
    """Is the Airflow connection defined (UI, secrets backend or AIRFLOW_CONN_* variable)? One that
    cannot be read raises."""
    return _airflow_connection(conn_id) is not None


@cache
def engine_for(url: str) -> Engine:
    engine = storage.make_engine(url)
    storage.migrate(engine)
    return engine


def nps_engine() -> Engine:
    """The NPS DB, migrated to the latest version."""
    return engine_for(db_url())


def env_connection(conn_id: str) -> dict[str, Any] | None:
    """The connection `conn_id` as its `AIRFLOW_CONN_<ID>` variable gives it (JSON or URI), read
    without Airflow: for processes that do not run Airflow (the survey form). None when not set."""
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "").strip()
    if not value:
        return None
    if value.startswith("{"):
        fields = json.loads(value)
        return {key: fields.get(key) for key in ("conn_type", "host", "login", "password", "port", "schema")}
    parts = urlsplit(value)
    return {
        "conn_type": parts.scheme,
        "host": parts.hostname,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "port": parts.port,
        "schema": parts.path.lstrip("/") or None,
    }
