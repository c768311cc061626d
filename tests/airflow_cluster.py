"""The real Airflow processes (api-server, scheduler, dag-processor, triggerer) on LocalExecutor and a
PostgreSQL metadata DB, each a child process of the test with its own log file, driven through the
REST API exactly as a user would (a token from the login endpoint, then /api/v2). A short test that
needs no triggerer may run them on a SQLite metadata DB (`sqlite_url`); the UI's user is `ADMIN_USER`
with `ADMIN_PASSWORD` (the simple auth manager).

With `CeleryWorkers` the cluster runs CeleryExecutor as docker-compose.yaml does: a Redis broker
(`RedisServer`, Debian's redis-server), results in the metadata DB, and N `airflow celery worker`
processes (`worker-1` ... `worker-N`) that run every task; `celery_task_workers()` tells from their
logs which worker ran which Celery task (a task instance's `external_executor_id`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from devkit.servers import free_port
from include.nps.core.storage import PROJECT_ROOT

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SEND_POOL = "nps_email"  # the pool of every wave's send tasks (dags/nps_wave.py), which a deployment creates
ADMIN_USER = "admin"
ADMIN_PASSWORD = "e2e-admin-password"  # a throwaway cluster on loopback
AIRFLOW = Path(sys.executable).with_name("airflow")
REDIS_SERVER = Path("/usr/bin/redis-server")
# What the Celery provider logs when one of its workers starts a task: the Celery task id, which the
# executor stores as the task instance's external_executor_id.
EXECUTING = re.compile(r"\[([0-9a-f-]{36})\] Executing workload in Celery")


def sqlite_url(home: Path) -> str:
    """A SQLite metadata DB under `home`: enough for the api-server, dag-processor and scheduler of a
    short test (LocalExecutor, one writer at a time); long waves and restarts use PostgreSQL."""
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'airflow.db'}"


def create_database(server_url: str, name: str) -> str:
    """A new database `name` on the PostgreSQL server of `server_url`; its URL."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


class RedisServer:
    """Debian's redis-server on a free loopback port, in its own folder, persisting nothing: the
    Celery broker of a cluster. `url` is its broker URL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> RedisServer:
        if not REDIS_SERVER.exists():
            raise FileNotFoundError(f"{REDIS_SERVER} (apt-get install redis-server; .ci/run installs it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        options += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log"]
        self._process = subprocess.Popen([str(REDIS_SERVER), *options], start_new_session=True)  # noqa: S603
        wait_until(self._answers, 30, f"redis-server answering PING on port {self.port}", every=0.1)
        return self

    def _answers(self) -> bool:
        import redis

        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"redis-server exited ({self._process.returncode}); see {self.folder / 'redis.log'}")
        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def __exit__(self, *exc: Any) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)


@dataclass(frozen=True)
class CeleryWorkers:
    """CeleryExecutor with `workers` Celery workers of `concurrency` task slots each, on `broker_url`."""

    broker_url: str
    workers: int = 2
    concurrency: int = 2

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"worker-{n}" for n in range(1, self.workers + 1))


def result_backend(metadata_url: str) -> str:
    """Celery's result backend in the metadata DB, as docker-compose.yaml sets it (db+postgresql://)."""
    url = make_url(metadata_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("CeleryExecutor needs a PostgreSQL metadata DB here")
    return "db+" + url.set(drivername="postgresql").render_as_string(hide_password=False)


class AirflowCluster:
    """Airflow as a deployment runs it, on loopback; `stop()` ends every process it started."""

    def __init__(
        self,
        home: Path,
        metadata_url: str,
        extra_env: dict[str, str],
        celery: CeleryWorkers | None = None,
        users: dict[str, tuple[str, str]] | None = None,
        service_accounts: dict[str, str] | None = None,
    ) -> None:
        """`users`: more UI users than the admin, by name: (simple auth manager role, password);
        `service_accounts`: more users (name: password) with the `op` role, which may post asset
        events and trigger runs but not administer."""
        self.home = home
        self.celery = celery
        self.components = COMPONENTS + (celery.names if celery else ())
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        passwords = home / "passwords.json"
        home.mkdir(parents=True, exist_ok=True)
        accounts = {name: ("op", password) for name, password in (service_accounts or {}).items()}
        self.users = {ADMIN_USER: ("admin", ADMIN_PASSWORD), **accounts, **(users or {})}
        passwords.write_text(json.dumps({name: password for name, (_, password) in self.users.items()}))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _) in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": "e2e-api-secret",
            "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-jwt-secret",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # The scheduler's and triggerer's log servers, on free ports rather than 8793 and 8794.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONPATH": str(PROJECT_ROOT),
            "GX_ANALYTICS_ENABLED": "False",
            **(self._celery_env(celery, metadata_url) if celery else {}),
            **extra_env,
        }
        self._tokens: dict[str, str] = {}

    @staticmethod
    def _celery_env(celery: CeleryWorkers, metadata_url: str) -> dict[str, str]:
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(celery.workers * celery.concurrency),
            "AIRFLOW__CELERY__BROKER_URL": celery.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend(metadata_url),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(celery.concurrency),
        }

    # processes

    def migrate(self, send_pool: bool = True) -> None:
        """`airflow db migrate` against the metadata DB and the send pool, as a deployment's init does
        (a cluster that runs no wave can do without the pool)."""
        subprocess.run([str(AIRFLOW), "db", "migrate"], env=self.env, check=True, capture_output=True)  # noqa: S603
        if not send_pool:
            return
        pool = [str(AIRFLOW), "pools", "set", SEND_POOL, "4", "NPS email sends of every wave"]
        subprocess.run(pool, env=self.env, check=True, capture_output=True)  # noqa: S603

    def start(self, *components: str) -> None:
        """Start `components` (by default every one: Airflow's, then the Celery workers, if any)."""
        for name in components or self.components:
            command, env = self._command(name)
            log = (self.home / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(  # noqa: S603
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if "api-server" in (components or self.components):
            wait_until(self._api_up, 120, "the api-server answering on /api/v2/version")

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """A component's command line and environment; a Celery worker serves its task logs on a port
        of its own (compose gives each its own host), and its Celery node is `celery@<name>`."""
        if self.celery is None or name not in self.celery.names:
            return [str(AIRFLOW), name], self.env
        command = [str(AIRFLOW), "celery", "worker", "--celery-hostname", name, "--concurrency"]
        env = {**self.env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return [*command, str(self.celery.concurrency)], env

    def celery_task_workers(self) -> dict[str, str]:
        """Which Celery worker ran each Celery task (the task instance's external_executor_id), from
        the line each worker logs when it starts a task."""
        ran = {}
        for name in self.celery.names if self.celery else ():
            path = self.home / f"{name}.log"
            for match in EXECUTING.finditer(path.read_text(errors="replace") if path.exists() else ""):
                ran[match[1]] = name
        return ran

    def stop(self, *components: str, timeout: float = 30) -> None:
        """SIGTERM each process group (its children too), SIGKILL what is left after `timeout` s."""
        names = [n for n in (components or list(self.processes)) if n in self.processes]
        for name in names:
            self._signal(self.processes[name], signal.SIGTERM)
        for name in names:
            process = self.processes.pop(name)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=10)

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    @staticmethod
    def _signal(process: subprocess.Popen, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # REST API

    def _api_up(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/api/v2/version", timeout=5).ok
        except requests.ConnectionError:
            return False

    def token(self, user: str = ADMIN_USER) -> str:
        """An access token from the login endpoint, with the user's name and password (the admin's)."""
        if user not in self._tokens:
            response = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": user, "password": self.users[user][1]},
                timeout=30,
            )
            response.raise_for_status()
            self._tokens[user] = response.json()["access_token"]
        return self._tokens[user]

    def api(self, method: str, path: str, as_user: str = ADMIN_USER, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(as_user)}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        response.raise_for_status()
        return response.json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500})
        response.raise_for_status()
        return response.json()["task_instances"]

    def failed_task_logs(self, dag_id: str, run_id: str) -> str:
        """The Airflow log of every failed task instance of the run, for the test's failure output."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] != "failed":
                continue
            path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}"
            response = self.api("GET", path, params={"map_index": ti["map_index"], "full_content": True})
            lines = [_log_line(event) for event in response.json().get("content", [])] if response.ok else []
            parts.append(f"--- {ti['task_id']}[{ti['map_index']}] ---\n" + "\n".join(lines or [response.text]))
        return "\n".join(parts)


def _log_line(event: Any) -> str:
    if isinstance(event, dict):
        keys = ("timestamp", "level", "event", "error_detail")
        return " ".join(str(event[key]) for key in keys if key in event)
    return str(event)
