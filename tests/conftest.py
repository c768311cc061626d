"""Shared fixtures. Airflow reads its settings at first import, so the environment is set here,
before any test module imports Airflow: a throwaway AIRFLOW_HOME with a SQLite metadata DB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.localrun import configure_airflow

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="nps-airflow-"))
configure_airflow(AIRFLOW_HOME)
os.environ["NPS_SECRET_KEY"] = "test-secret"
os.environ.pop("NPS_SECRET_KEY_PREVIOUS", None)
os.environ.pop("NPS_DB_URL", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The Airflow metadata DB, migrated once per session."""
    from devkit.localrun import migrate_airflow_db

    migrate_airflow_db()
    return AIRFLOW_HOME


@pytest.fixture
def nps_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NPS_HOME", str(tmp_path))
    monkeypatch.delenv("NPS_DB_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_NPS_DB", raising=False)
    return tmp_path


@pytest.fixture
def engine(nps_home: Path):
    """A fresh, migrated SQLite NPS DB (the embedded default)."""
    from include.nps.core.connections import nps_engine

    return nps_engine()


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A real SMTP server on loopback keeping each message as .eml; `bounce*@` gets a 550."""
    from devkit.servers import SmtpServer

    with SmtpServer(tmp_path / "mail") as server:
        monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", server.connection_uri())
        yield server


@pytest.fixture
def chat(httpserver, monkeypatch: pytest.MonkeyPatch):
    """A chat incoming webhook on a real local HTTP server."""
    httpserver.expect_request("/hooks/nps", method="POST").respond_with_data("ok")
    monkeypatch.setenv(
        "AIRFLOW_CONN_NPS_CHAT", f'{{"conn_type": "http", "host": "{httpserver.url_for("/hooks/nps")}"}}'
    )
    return httpserver


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (Debian's binaries, run as `postgres` when root)."""
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs it")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    from devkit.servers import free_port

    data = Path(tempfile.mkdtemp(prefix="nps-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True)  # noqa: E731, S603
    run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_engine(postgres_url: str):
    """A fresh database on the session's PostgreSQL server, migrated."""
    from sqlalchemy import create_engine, text

    from include.nps.core import storage

    name = f"nps_{time.time_ns()}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    engine = storage.make_engine(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    storage.migrate(engine)
    yield engine
    engine.dispose()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("Chromium not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
