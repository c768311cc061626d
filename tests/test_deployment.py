"""The compose deployment. No Docker engine runs here, so the compose file, Dockerfile and .env.example
are checked as files. The pieces that can run without Docker are run: the postgres init script on a
real PostgreSQL server, airflow-init's NPS migration as the nps user, the passwords file read back
by Airflow's own SimpleAuthManager, and the script that fits Airflow's constraints file to our pins.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

import pytest
import yaml

from include.nps.core import migrations
from include.nps.core.storage import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
INIT_SCRIPT = PROJECT_ROOT / "deploy" / "airflow-init.sh"
PASSWORDS_SCRIPT = PROJECT_ROOT / "deploy" / "simple_auth_passwords.py"
NPS_DB_SCRIPT = PROJECT_ROOT / "deploy" / "postgres-init" / "10-nps-database.sh"
CONSTRAINTS_SCRIPT = PROJECT_ROOT / "deploy" / "constraints_without_pins.py"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
IMAGE = "nps-orchestrator-airflow:latest"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}

# Each service, what it is for, and the command or image that makes it that.
SERVICES = {
    "postgres": ("Airflow's metadata DB and the NPS DB (own database and user)", "image", "postgres:16"),
    "redis": ("Celery broker", "image", "redis:7.2-bookworm"),
    "airflow-init": (
        "one-shot: migrations, passwords file, volume owners",
        "command",
        ["bash", "/opt/airflow/deploy/airflow-init.sh"],
    ),
    "airflow-apiserver": ("UI, REST API and the execution API", "command", "api-server"),
    "airflow-scheduler": ("schedules runs, queues tasks", "command", "scheduler"),
    "airflow-dag-processor": ("parses dags/", "command", "dag-processor"),
    "airflow-triggerer": ("runs deferred waits between milestones", "command", "triggerer"),
    "airflow-worker": ("Celery worker: runs the tasks", "command", "celery worker"),
    # As in Airflow's own compose file: `docker compose run --rm airflow-cli airflow <command>`.
    "airflow-cli": ("the Airflow CLI, profile debug, never started by `up`", "command", ["bash", "-c", "airflow"]),
    "survey": ("the internet-facing survey form", "command", ["python", "-m", "include.nps.web.survey_form"]),
    "mailpit": ("catches outgoing mail (UI 8025, SMTP 1025)", "image", "axllent/mailpit:v1.21"),
}

HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"
BACKENDS = {"postgres": HEALTHY, "redis": HEALTHY}
AFTER_INIT = {**BACKENDS, "airflow-init": COMPLETED}
DEPENDS_ON = {
    "postgres": {},
    "redis": {},
    "mailpit": {},
    "airflow-init": BACKENDS,
    "airflow-apiserver": AFTER_INIT,
    "airflow-scheduler": AFTER_INIT,
    "airflow-dag-processor": AFTER_INIT,
    "airflow-triggerer": AFTER_INIT,
    "airflow-worker": {**AFTER_INIT, "airflow-apiserver": HEALTHY},
    "airflow-cli": BACKENDS,
    # airflow-init migrates the NPS DB before the form (or any worker) connects to it.
    "survey": {"postgres": HEALTHY, "airflow-init": COMPLETED},
}

# Every Airflow process, the CLI included.
AIRFLOW_CORE_ENV = {
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "NPS_HOME",
    "PYTHONPATH",
}
# Airflow 3.3's config reference ([api_auth] jwt_secret): the components that sign or check JWTs, the
# scheduler (each queued task's token) and the API server. [api] secret_key: the API server, and the
# log servers of workers and the triggerer, which check its log requests.
JWT_ENV, API_KEY_ENV = "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"
# What the NPS tasks read: the NPS DB, mail and chat, the key that signs links and where links point.
NPS_TASK_ENV = {
    "AIRFLOW_CONN_NPS_DB",
    "AIRFLOW_CONN_NPS_SMTP",
    "AIRFLOW_CONN_NPS_CHAT",
    "NPS_SECRET_KEY",
    "NPS_SECRET_KEY_PREVIOUS",
    "NPS_SURVEY_BASE_URL",
    "NPS_PRIVACY_SALT",
    "NPS_HOME",
    "PYTHONPATH",
}
LOGIN_ENV = {
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
}
ENV_NEEDED = {
    "airflow-worker": AIRFLOW_CORE_ENV | NPS_TASK_ENV | {API_KEY_ENV},
    "airflow-scheduler": AIRFLOW_CORE_ENV | {JWT_ENV},
    # Deferred waits and nps_wave's deadline alert (which reads the NPS DB, mails and posts) run here.
    "airflow-triggerer": AIRFLOW_CORE_ENV | NPS_TASK_ENV | {API_KEY_ENV},
    # The failure callback of a task whose worker died runs in the dag-processor.
    "airflow-dag-processor": AIRFLOW_CORE_ENV | NPS_TASK_ENV,
    # The wave dashboard (the plugin's app) reads the NPS DB.
    "airflow-apiserver": AIRFLOW_CORE_ENV | LOGIN_ENV | {JWT_ENV, API_KEY_ENV, "AIRFLOW_CONN_NPS_DB"},
    "airflow-cli": AIRFLOW_CORE_ENV,
    "airflow-init": AIRFLOW_CORE_ENV
    | LOGIN_ENV
    | {
        "AIRFLOW_CONN_NPS_DB",
        "AIRFLOW_ADMIN_USER",
        "AIRFLOW_ADMIN_PASSWORD",
        "NPS_SURVEY_AIRFLOW_PASSWORD",
        "AIRFLOW_UID",
    },
    "survey": {
        "NPS_DB_URL",
        "NPS_SECRET_KEY",
        "NPS_SECRET_KEY_PREVIOUS",
        "NPS_SURVEY_HOST",
        "NPS_SURVEY_PORT",
        "NPS_SURVEY_TRUSTED_PROXIES",
        "NPS_SURVEY_REQUESTS_PER_ADDRESS",
        "NPS_SURVEY_SUBMISSIONS_PER_LINK",
        "NPS_SURVEY_MAX_BODY_BYTES",
        "AIRFLOW_CONN_NPS_AIRFLOW_API",
        "PYTHONPATH",
    },
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "NPS_DB_PASSWORD"},
}
# Must be the same string in every Airflow service that has it (airflow-init and airflow-cli included).
SHARED_AIRFLOW_ENV = AIRFLOW_CORE_ENV | LOGIN_ENV | NPS_TASK_ENV | {JWT_ENV, API_KEY_ENV}

# Which service may see which secret of .env: it gets exactly these, and nothing else.
AIRFLOW_SECRETS = {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY"}
LINK_KEYS = {"NPS_SECRET_KEY", "NPS_SECRET_KEY_PREVIOUS"}
TASK_SECRETS = {"NPS_DB_PASSWORD", "AIRFLOW_CONN_NPS_SMTP", "AIRFLOW_CONN_NPS_CHAT", "NPS_PRIVACY_SALT"} | LINK_KEYS
SECRETS_SEEN = {
    "postgres": {"POSTGRES_PASSWORD", "NPS_DB_PASSWORD"},
    "redis": set(),
    "mailpit": set(),
    "airflow-init": AIRFLOW_SECRETS | {"NPS_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "NPS_SURVEY_AIRFLOW_PASSWORD"},
    "airflow-apiserver": AIRFLOW_SECRETS | {"AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "NPS_DB_PASSWORD"},
    "airflow-scheduler": AIRFLOW_SECRETS | {"AIRFLOW_JWT_SECRET"},
    "airflow-dag-processor": AIRFLOW_SECRETS | TASK_SECRETS,
    "airflow-triggerer": AIRFLOW_SECRETS | TASK_SECRETS | {"AIRFLOW_API_SECRET_KEY"},
    "airflow-worker": AIRFLOW_SECRETS | TASK_SECRETS | {"AIRFLOW_API_SECRET_KEY"},
    "airflow-cli": AIRFLOW_SECRETS,
    "survey": {"NPS_DB_PASSWORD", "NPS_SENDGRID_WEBHOOK_PUBLIC_KEY", "NPS_SES_WEBHOOK_TOKEN"}
    | LINK_KEYS
    | {"NPS_SURVEY_AIRFLOW_PASSWORD"},
}
# The optional files of extra settings (never .env itself): Airflow's settings for every Airflow
# service, the tasks' further connections and settings only where task code runs.
AIRFLOW_SETTINGS_FILE, TASK_SETTINGS_FILE = ".env.airflow", ".env.tasks"
TASK_SERVICES = {"airflow-worker", "airflow-triggerer", "airflow-dag-processor"}
ONE_SHOT = {"airflow-init", "airflow-cli"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $${...} is an escaped dollar.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD$|SECRET|FERNET|JWT|_KEY$|SALT$")


def _is_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) or name.endswith("_TOKEN") or name.startswith("AIRFLOW_CONN_")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _strings(node: object) -> list[str]:
    """Every string in the compose file (keys and values; comments are not part of it)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _interpolations() -> list[re.Match]:
    return [m for s in _strings(_compose()) for m in INTERPOLATION.finditer(s)]


def _services() -> dict:
    return _compose()["services"]


def _env_example() -> dict[str, str]:
    """The KEY=VALUE lines of .env.example (comments and blank lines skipped)."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _filled_env() -> dict[str, str]:
    """.env.example with every empty secret filled in, as a user's .env would be."""
    return {key: value or f"filled-{key.lower().replace('_', '-')}" for key, value in _env_example().items()}


def _resolve(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one value."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return arg
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return current or ""

    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


def _env(service: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment, interpolated from `env` (default: a filled-in .env)."""
    env = _filled_env() if env is None else env
    return {key: _resolve(str(value), env) for key, value in _services()[service].get("environment", {}).items()}


def _mounts(service: str) -> dict[str, str]:
    """target -> source of a service's volumes."""
    mounts = {}
    for volume in _services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _named_volumes(service: str) -> set[str]:
    return {source for source in _mounts(service).values() if not source.startswith((".", "/"))}


def _readme_deploy_section() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    return text.split("## Deploy with docker compose", 1)[1].split("\n## ", 1)[0]


# --- services, dependencies, health ------------------------------------------------------------------


def test_every_service_of_the_deployment_is_there_with_a_health_check():
    services = _services()
    assert AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init", "survey", "mailpit"} <= set(services)
    for name in AIRFLOW_SERVICES | {"postgres", "redis", "survey"}:
        assert "healthcheck" in services[name], name


def test_each_service_is_there_for_its_purpose_and_no_other_service():
    services = _services()
    assert set(services) == set(SERVICES), "a new service needs its purpose in SERVICES"
    for name, (purpose, key, expected) in SERVICES.items():
        assert services[name].get(key) == expected, f"{name} ({purpose})"
    for name in AIRFLOW_SERVICES | ONE_SHOT | {"survey"}:
        assert services[name]["image"] == IMAGE and services[name]["build"] == ".", name


@pytest.mark.parametrize("service", sorted(DEPENDS_ON))
def test_each_service_waits_for_what_it_needs(service):
    depends = _services()[service].get("depends_on", {})
    assert {name: dep["condition"] for name, dep in depends.items()} == DEPENDS_ON[service]


def test_every_long_running_service_has_a_health_check_and_restarts():
    for name, service in _services().items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service and service.get("restart", "no") == "no"
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "always", name
    assert _services()["mailpit"]["healthcheck"]["test"] == ["CMD", "/mailpit", "readyz"]


def test_postgres_is_healthy_only_once_it_serves_tcp():
    """The image's first-start server runs the init scripts on a socket only: a TCP check means the
    nps database exists by the time anything depends on postgres being healthy."""
    test = _services()["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"] and test[test.index("-h") + 1] == "localhost"


def test_health_checks_probe_the_port_and_path_the_service_serves(engine):
    from include.nps.web.survey_form import create_app

    survey = _services()["survey"]
    url = urlsplit(survey["healthcheck"]["test"][-1])
    assert str(url.port) == _env("survey")["NPS_SURVEY_PORT"] == survey["ports"][0].split(":")[-1]
    assert url.path in {route.path for route in create_app(engine).routes}

    api = _services()["airflow-apiserver"]
    assert urlsplit(api["healthcheck"]["test"][-1]).port == int(api["ports"][0].split(":")[-1])


def test_the_worker_scales():
    worker = _services()["airflow-worker"]
    assert not {"container_name", "ports", "hostname"} & set(worker)
    assert not [name for name, service in _services().items() if "container_name" in service]


# --- volumes -----------------------------------------------------------------------------------------


def test_named_volumes_are_declared_and_used():
    declared = set(_compose()["volumes"])
    used = set().union(*(_named_volumes(name) for name in _services()))
    assert used == declared == {"postgres-db", "airflow-logs", "airflow-auth", "nps-reports"}


def test_data_lives_in_volumes_where_each_service_finds_it():
    assert _mounts("postgres")["/var/lib/postgresql/data"] == "postgres-db"
    assert _mounts("postgres")["/docker-entrypoint-initdb.d"] == "./deploy/postgres-init"
    for name in AIRFLOW_SERVICES | ONE_SHOT:
        mounts = _mounts(name)
        assert mounts["/opt/airflow/logs"] == "airflow-logs", name
        assert mounts[_env(name)["NPS_HOME"]] == "nps-reports", name
        assert mounts["/opt/airflow/data"] == "./data", name
    assert "volumes" not in _services()["survey"]


def test_dags_plugins_calendar_and_rules_are_mounted_read_only_where_airflow_runs_code():
    """An edit to a DAG, the plugin, the calendar or a rules file reaches the next parse or run
    without a rebuild; the image keeps its own copy (checked below) for hosts without the checkout."""
    for name in AIRFLOW_SERVICES | {"airflow-cli"}:
        volumes = _services()[name]["volumes"]
        for folder in ("dags", "plugins", "calendar", "rules"):
            assert f"./{folder}:/opt/airflow/{folder}:ro" in volumes, (name, folder)
            assert (PROJECT_ROOT / folder).is_dir()
    # Nothing mounted over the code of the one-shot init or the internet-facing form.
    assert "/opt/airflow/dags" not in _mounts("airflow-init")


def test_the_readme_contacts_path_is_inside_the_data_mount():
    section = _readme_deploy_section()
    path = PurePosixPath(re.search(r"`(/opt/airflow/data/[^`]+\.csv)`", section)[1])
    worker_mounts = _mounts("airflow-worker")
    assert any(path.is_relative_to(target) and worker_mounts[target] == "./data" for target in worker_mounts)
    assert "audience_csv" in (PROJECT_ROOT / "include" / "nps" / "wave" / "trigger_form.py").read_text()


# --- environment -------------------------------------------------------------------------------------


def test_airflow_services_share_executor_databases_and_connections():
    services = _services()
    for name in AIRFLOW_SERVICES | ONE_SHOT:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in TASK_SERVICES | {"airflow-apiserver", "airflow-init"}:
        assert services[name]["environment"]["AIRFLOW_CONN_NPS_DB"].startswith("postgres://nps:")


def _secrets_seen(service: str) -> set[str]:
    """The secrets of .env a service is given: every ${...} in its definition that names one."""
    node = _services()[service]
    return {m["name"] for s in _strings(node) for m in INTERPOLATION.finditer(s) if _is_secret(m["name"])}


@pytest.mark.parametrize("service", sorted(SECRETS_SEEN))
def test_each_service_gets_only_the_secrets_it_needs(service):
    assert set(_services()) == set(SECRETS_SEEN), "a new service needs its row in SECRETS_SEEN"
    assert _secrets_seen(service) == SECRETS_SEEN[service]


def test_no_service_reads_the_env_file_whole():
    """.env holds every secret: compose reads it only to fill in ${...}. A service's env_file may
    name only the optional files of extra settings, and never requires them."""
    for name, service in _services().items():
        files = service.get("env_file", [])
        paths = [entry["path"] for entry in files]
        assert all(entry["required"] is False for entry in files), name
        if name in TASK_SERVICES:
            assert paths == [AIRFLOW_SETTINGS_FILE, TASK_SETTINGS_FILE], name
        elif name in AIRFLOW_SERVICES | ONE_SHOT:
            assert paths == [AIRFLOW_SETTINGS_FILE], name
        else:
            assert paths == [], name
    assert "env_file" not in COMPOSE.read_text().split("x-airflow-common:", 1)[1].split("\nservices:", 1)[0]


def _example_names(path: Path) -> set[str]:
    """The variables an example file shows, commented out or not."""
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", path.read_text(), re.M))


def test_the_optional_settings_files_have_examples_and_stay_out_of_the_image():
    airflow_names = _example_names(PROJECT_ROOT / f"{AIRFLOW_SETTINGS_FILE}.example")
    task_names = _example_names(PROJECT_ROOT / f"{TASK_SETTINGS_FILE}.example")
    # Airflow's own settings only (they reach every Airflow service); no secret among them.
    assert airflow_names and all(re.fullmatch(r"AIRFLOW__[A-Z_]+__[A-Z_]+", name) for name in airflow_names)
    assert not [name for name in airflow_names if _is_secret(name)]
    # Connections and NPS settings the tasks read.
    source = "\n".join(path.read_text() for path in (PROJECT_ROOT / "include" / "nps").rglob("*.py"))
    for name in task_names:
        if name.startswith("AIRFLOW_CONN_"):
            assert f'"{name.removeprefix("AIRFLOW_CONN_").lower()}"' in source, name
        else:
            assert name.startswith("NPS_") and f'"{name}"' in source, name
    assert "AIRFLOW_CONN_NPS_ALERTS_CHAT" in task_names
    for name in (AIRFLOW_SETTINGS_FILE, TASK_SETTINGS_FILE):
        assert _dockerignored(name) and not _dockerignored(".env.example")


@pytest.mark.parametrize("service", sorted(ENV_NEEDED))
def test_each_service_gets_the_environment_it_needs(service):
    env = _env(service)
    assert ENV_NEEDED[service] - set(env) == set()
    required = ENV_NEEDED[service] - {"NPS_SECRET_KEY_PREVIOUS"}
    assert [name for name in required if not env[name]] == []


@pytest.mark.parametrize("name", sorted(SHARED_AIRFLOW_ENV))
def test_airflow_services_share_one_value(name):
    services = AIRFLOW_SERVICES | ONE_SHOT
    values = {s: _services()[s]["environment"][name] for s in services if name in _services()[s]["environment"]}
    assert len(values) >= 2 and len(set(values.values())) == 1, values


def test_the_execution_api_url_names_the_api_server():
    url = urlsplit(_env("airflow-worker")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    api_ports = {int(mapping.split(":")[-1]) for mapping in _services()["airflow-apiserver"]["ports"]}
    assert url.hostname == "airflow-apiserver" and url.port in api_ports and url.path == "/execution/"


def test_tasks_and_the_form_reach_the_same_nps_database_as_the_nps_user():
    task_db = urlsplit(_env("airflow-worker")["AIRFLOW_CONN_NPS_DB"])
    form_db = urlsplit(_env("survey")["NPS_DB_URL"])
    for url in (task_db, form_db):
        assert (url.username, url.hostname, url.path) == ("nps", "postgres", "/nps")
        assert url.password == _filled_env()["NPS_DB_PASSWORD"]
    assert task_db.hostname in _services()


def test_default_mail_goes_to_the_mailpit_service():
    smtp = json.loads(_env("airflow-worker")["AIRFLOW_CONN_NPS_SMTP"])
    assert smtp["conn_type"] == "smtp" and smtp["host"] == "mailpit" and smtp["port"] == 1025
    assert smtp["extra"]["disable_tls"] and smtp["extra"]["disable_ssl"]
    assert json.loads(_env("airflow-worker")["AIRFLOW_CONN_NPS_CHAT"])["conn_type"] == "http"


def test_the_survey_form_is_its_own_service_not_part_of_the_api_server():
    survey = _services()["survey"]
    assert survey["command"] == ["python", "-m", "include.nps.web.survey_form"]
    assert "NPS_DB_URL" in survey["environment"] and survey["ports"] == ["8090:8090"]


def test_the_airflow_cli_runs_on_demand_with_the_common_settings():
    cli = _services()["airflow-cli"]
    assert cli["profiles"] == ["debug"], "only `docker compose run` or --profile debug starts it"
    assert not {"ports", "healthcheck", "restart"} & set(cli)
    assert cli["user"] == "${AIRFLOW_UID:-50000}:0"
    assert cli["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"
    assert _env("airflow-cli")["AIRFLOW__CORE__FERNET_KEY"] == _env("airflow-scheduler")["AIRFLOW__CORE__FERNET_KEY"]
    assert "airflow-auth" not in _named_volumes("airflow-cli")
    section = _readme_deploy_section()
    assert "docker compose run --rm airflow-cli airflow pools set nps_email" in section
    assert "docker compose run --rm airflow-cli airflow" in COMPOSE.read_text()


def test_the_internet_facing_survey_service_gets_no_airflow_secret():
    """Only its own service account (role op: it posts the answers' asset events), none of Airflow's
    keys, settings or the admin's password."""
    survey = _services()["survey"]
    assert "env_file" not in survey and "volumes" not in survey
    assert set(survey["environment"]) >= {"NPS_DB_URL", "NPS_SECRET_KEY", "NPS_SECRET_KEY_PREVIOUS"}
    airflow = [name for name in survey["environment"] if name.startswith(("AIRFLOW", "POSTGRES"))]
    assert airflow == ["AIRFLOW_CONN_NPS_AIRFLOW_API"]
    account = urlsplit(_env("survey")["AIRFLOW_CONN_NPS_AIRFLOW_API"])
    assert (account.username, account.password) == ("nps-survey", _filled_env()["NPS_SURVEY_AIRFLOW_PASSWORD"])
    assert "nps-survey:op" in _env("airflow-apiserver")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")


def test_the_survey_settings_are_ones_the_form_reads():
    source = "".join(path.read_text() for path in (PROJECT_ROOT / "include" / "nps" / "web").glob("*.py"))
    for name in _services()["survey"]["environment"]:
        if name.startswith("NPS_SURVEY_"):
            assert f'"{name}"' in source, name


# --- secrets and .env --------------------------------------------------------------------------------


def test_secrets_come_from_the_env_file_only():
    text = COMPOSE.read_text()
    example = ENV_EXAMPLE.read_text()
    for variable in ("POSTGRES_PASSWORD", "NPS_DB_PASSWORD", "NPS_SECRET_KEY", "AIRFLOW_JWT_SECRET"):
        assert f"{variable}=" in example
    assert "change-me" not in text
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_every_required_compose_variable_is_in_env_example_and_every_entry_is_used():
    used = _interpolations()
    required = {m["name"] for m in used if m["op"] in (None, ":?", "?")}
    example = _env_example()
    assert required - set(example) == set()
    assert set(example) - {m["name"] for m in used} == set(), "stale .env.example entries"


def test_secrets_are_required_and_have_no_example_value():
    """An empty secret stops `docker compose up` with its name instead of running with a known value."""
    secrets = {name for name in _env_example() if SECRET_NAME.search(name) and not name.endswith("_PREVIOUS")}
    assert {"POSTGRES_PASSWORD", "NPS_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_FERNET_KEY"} <= secrets
    assert {"AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "NPS_SECRET_KEY"} <= secrets
    for name in secrets:
        assert _env_example()[name] == "", name
        ops = {m["op"] for m in _interpolations() if m["name"] == name}
        assert ops == {":?"}, name
    with pytest.raises(ValueError, match="NPS_SECRET_KEY"):
        _env("survey", {**_filled_env(), "NPS_SECRET_KEY": ""})


def test_no_secret_is_written_into_compose_or_the_image():
    for name, service in _services().items():
        for key, value in service.get("environment", {}).items():
            if (SECRET_NAME.search(key) or key.startswith("AIRFLOW_CONN_")) and value:
                assert "${" in str(value), f"{name}: {key} is a literal"
    dockerfile = DOCKERFILE.read_text()
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|FERNET|JWT)", dockerfile, re.M | re.I)
    assert ".env" not in dockerfile


def test_env_is_ignored_by_git_and_the_example_is_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=PROJECT_ROOT).returncode == 0  # noqa: S603, S607

    assert ignored(".env") and not ignored(".env.example")


def _python_output(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()  # noqa: S603


def test_the_readme_secret_commands_make_valid_keys():
    from cryptography.fernet import Fernet

    commands = re.findall(r"python3 -c '([^']+)'", _readme_deploy_section())
    token, fernet_key = (_python_output(code) for code in commands)
    assert quote(token, safe="") == token and len(token) >= 32, "a secret must fit into a URL unquoted"
    Fernet(fernet_key.encode())  # raises when the key is not a Fernet key


# --- image -------------------------------------------------------------------------------------------


def test_the_image_is_the_airflow_version_pinned_in_requirements():
    pinned = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M)[1]
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert froms == [f"apache/airflow:{pinned}-python3.11"]
    install = next(line for line in DOCKERFILE.read_text().splitlines() if "pip install" in line)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install and "-r /opt/airflow/requirements.txt" in install


def _install_step() -> str:
    """The Dockerfile's RUN that installs requirements.txt, its continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return next(line for line in text.splitlines() if line.startswith("RUN") and "pip install" in line)


def test_the_image_installs_the_requirements_with_airflows_constraints_file():
    """Airflow's docs for extending the image: the constraints of the image's Airflow version and
    Python. Our own pins are taken out of it, so they win; everything else is Airflow's tested set."""
    step = _install_step()
    url = "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
    assert f'"{url}"' in step
    # The Python version is asked of the image's own interpreter, never typed in.
    assert 'PYTHON_VERSION="$(python -c ' in step and "sys.version_info.minor" in step
    script = "/opt/airflow/deploy/constraints_without_pins.py"
    filtered = re.search(rf"python {script} (\S+) /opt/airflow/requirements.txt\s+> (\S+)", step)
    assert filtered and f"-o {filtered[1]}" in step
    assert f"--constraint {filtered[2]}" in step.split("pip install", 1)[1]
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", DOCKERFILE.read_text(), re.M)
    assert "deploy/constraints_without_pins.py /opt/airflow/deploy/" in copies
    dockerfile = DOCKERFILE.read_text()
    assert dockerfile.index("constraints_without_pins.py /opt/airflow/deploy/") < dockerfile.index(step[:40])


def test_the_constraints_keep_airflows_versions_except_where_requirements_pin_their_own(tmp_path):
    constraints = tmp_path / "constraints-3.11.txt"
    constraints.write_text(
        "# This constraints file was automatically generated\n"
        "SQLAlchemy==2.0.40\n"  # pinned by us as SQLAlchemy
        "jinja2==3.1.5\n"  # Jinja2: case does not matter
        "psycopg2_binary==2.9.10\n"  # psycopg2-binary: nor - _ .
        "apache-airflow-providers-smtp==2.1.0\n"
        "numpy==2.2.0\n"
        "celery==5.5.2\n"
        "zope.interface==7.2\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(CONSTRAINTS_SCRIPT), str(constraints), str(REQUIREMENTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    kept = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert kept == ["numpy==2.2.0", "celery==5.5.2", "zope.interface==7.2"]

    # Every pin of requirements.txt is an exact pin, so pip has one version to take for each.
    from packaging.requirements import Requirement

    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    pins = [Requirement(line) for line in lines if line]
    assert pins and all(len(p.specifier) == 1 and next(iter(p.specifier)).operator == "==" for p in pins)


def test_the_image_holds_the_code_and_the_init_scripts_compose_runs():
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", DOCKERFILE.read_text(), re.M)
    copied = {}
    for line in copies:
        *sources, target = line.split()
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
            copied[source] = target.rstrip("/") if len(sources) == 1 else f"{target.rstrip('/')}/{Path(source).name}"
    for folder in ("dags", "plugins", "include", "sql"):
        assert copied[folder] == f"/opt/airflow/{folder}"
    init_command = _services()["airflow-init"]["command"]
    assert copied["deploy/airflow-init.sh"] == init_command[-1]
    assert f"python {copied['deploy/simple_auth_passwords.py']}" in INIT_SCRIPT.read_text()


def _dockerignore_patterns() -> list[str]:
    patterns = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()]
    return [p for p in patterns if p and not p.startswith("#")]


def _dockerignored(path: str) -> bool:
    result = False
    for pattern in _dockerignore_patterns():
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")):
            result = not negated
    return result


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build():
    assert {".env", ".venv", "var", ".airflow", ".git", "data"} <= set(_dockerignore_patterns())
    assert _dockerignored(".env") and _dockerignored(".env.production")
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", DOCKERFILE.read_text(), re.M)
    for source in " ".join(copied).split():
        assert not _dockerignored(source), f"{source} is copied into the image but ignored"


# --- airflow-init: NPS migrations and the passwords file ----------------------------------------------


def _init_script_step(marker: str) -> str:
    return next(line for line in INIT_SCRIPT.read_text().splitlines() if marker in line and not line.startswith("#"))


def test_airflow_init_migrates_both_databases_before_anything_else_starts():
    script = INIT_SCRIPT.read_text()
    assert "set -euo pipefail" in script
    steps = [
        _init_script_step(marker) for marker in ("airflow db migrate", "nps_engine()", "simple_auth_passwords", "chown")
    ]
    # In this order: the chown comes last, so whatever root wrote on the shared volumes is handed over.
    assert [script.index(step) for step in steps] == sorted(script.index(step) for step in steps)
    # Nothing that connects to the NPS DB starts before airflow-init has exited 0.
    for name, service in _services().items():
        if name in AIRFLOW_SERVICES or "NPS_DB_URL" in service.get("environment", {}):
            assert service["depends_on"]["airflow-init"]["condition"] == COMPLETED, name


def test_the_send_pool_of_the_wave_dag_is_created_wherever_airflow_runs():
    """A task in a pool that does not exist is never scheduled: every way of running Airflow here
    creates the pool the wave's send tasks use."""
    dag_file = (PROJECT_ROOT / "dags" / "nps_wave.py").read_text()
    pool = re.search(r'^SEND_POOL = "([\w-]+)"', dag_file, re.MULTILINE).group(1)
    assert "pool=SEND_POOL" in dag_file
    assert f"airflow pools set {pool} " in INIT_SCRIPT.read_text()
    from devkit import localui
    from tests.airflow_cluster import SEND_POOL

    assert "devkit.localui" in (PROJECT_ROOT / "Makefile").read_text()  # `make airflow`
    assert pool == SEND_POOL == localui.SEND_POOL[0]


def test_the_passwords_file_is_written_by_init_and_read_by_the_api_server_on_a_shared_volume():
    path = PurePosixPath(_env("airflow-apiserver")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert _env("airflow-init")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(path)
    api_volume, init_volume = (_mounts(name)[str(path.parent)] for name in ("airflow-apiserver", "airflow-init"))
    assert api_volume == init_volume and api_volume in _compose()["volumes"]
    # Only those two services see the passwords.
    assert {name for name in _services() if api_volume in _named_volumes(name)} == {"airflow-init", "airflow-apiserver"}
    # The admin named in the users list is the one whose password init writes.
    users = _env("airflow-apiserver")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    assert users == f"{_env('airflow-init')['AIRFLOW_ADMIN_USER']}:admin,nps-survey:op"  # and the form's account
    assert _services()["airflow-init"]["environment"]["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")
    # init runs the script that writes the file, then hands the folder to the api-server's user.
    assert "simple_auth_passwords.py" in _init_script_step("simple_auth_passwords.py")
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in _init_script_step("auth_dir=")
    assert '"${auth_dir}"' in _init_script_step("chown -R")
    assert _services()["airflow-init"]["user"] == "0:0"
    assert _services()["airflow-apiserver"]["user"] == "${AIRFLOW_UID:-50000}:0"
    assert _env("airflow-init")["AIRFLOW_UID"] == _filled_env()["AIRFLOW_UID"]


def _write_passwords(
    path: Path, password: str, user: str = "admin", survey_password: str = ""
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path),
        "AIRFLOW_ADMIN_USER": user,
        "AIRFLOW_ADMIN_PASSWORD": password,
        "NPS_SURVEY_AIRFLOW_PASSWORD": survey_password,
    }
    return subprocess.run([sys.executable, str(PASSWORDS_SCRIPT)], env=env, capture_output=True, text=True)  # noqa: S603


def _simple_auth_manager_passwords(path: Path, users: str) -> dict[str, str]:
    """What the api-server does at start: SimpleAuthManager.init(), then the passwords it logs in with."""
    code = (
        "import json\n"
        "from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager\n"
        "SimpleAuthManager().init()\n"
        "print('PASSWORDS=' + json.dumps(SimpleAuthManager.get_passwords()))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)  # noqa: S603
    return json.loads(out.stdout.split("PASSWORDS=", 1)[1])


def test_airflow_logs_in_with_the_password_from_env_and_keeps_it(tmp_path):
    path = tmp_path / "auth" / "simple_auth_manager_passwords.json"
    assert _write_passwords(path, "first-password").returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # The api-server keeps the admin's password and generates one only for a user missing from the file.
    first = _simple_auth_manager_passwords(path, "admin:admin,viewer:viewer")
    assert first["admin"] == "first-password" and first["viewer"]

    # A changed .env and a new `docker compose up`: the admin's password follows .env, the viewer's stays.
    assert _write_passwords(path, "second-password").returncode == 0
    second = _simple_auth_manager_passwords(path, "admin:admin,viewer:viewer")
    assert second == {"admin": "second-password", "viewer": first["viewer"]}


def test_the_survey_forms_service_account_logs_in_with_its_password_from_env(tmp_path):
    path = tmp_path / "auth" / "simple_auth_manager_passwords.json"
    assert _write_passwords(path, "admin-password", survey_password="survey-password").returncode == 0
    users = _env("airflow-apiserver")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    assert _simple_auth_manager_passwords(path, users) == {"admin": "admin-password", "nps-survey": "survey-password"}


def test_the_passwords_script_refuses_an_empty_password(tmp_path):
    result = _write_passwords(tmp_path / "passwords.json", "")
    assert result.returncode != 0 and "AIRFLOW_ADMIN_PASSWORD" in result.stderr
    assert not (tmp_path / "passwords.json").exists()


# --- postgres init script ----------------------------------------------------------------------------


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier (pg_authid.rolpassword) was made from `password`."""
    method, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def test_the_postgres_init_script_is_run_by_the_image_with_the_password_from_env():
    assert NPS_DB_SCRIPT.stat().st_mode & stat.S_IXUSR, "the postgres image runs executable *.sh files"
    assert "NPS_DB_PASSWORD" in ENV_NEEDED["postgres"]
    assert _services()["postgres"]["environment"]["NPS_DB_PASSWORD"].startswith("${NPS_DB_PASSWORD:?")
    shell, quoted_heredoc, sql = NPS_DB_SCRIPT.read_text().partition("<<'SQL'")
    assert quoted_heredoc and "NPS_DB_PASSWORD" not in sql, "the password must not be pasted into the SQL"
    assert 'nps_password="$NPS_DB_PASSWORD"' in shell and ":'nps_password'" in sql


@pytest.mark.postgres
def test_the_postgres_init_script_creates_the_nps_user_and_database_and_init_migrates_it(postgres_url):
    from sqlalchemy import create_engine, text

    server = urlsplit(postgres_url)
    password = 'it\'s a "quoted" p@ss; DROP ROLE x'  # what a password with SQL in it must survive
    psql_dir = next(Path("/usr/lib/postgresql").glob("*/bin/psql")).parent
    env = {
        **os.environ,
        "PATH": f"{psql_dir}:{os.environ['PATH']}",
        "PGHOST": server.hostname,
        "PGPORT": str(server.port),
        "POSTGRES_USER": server.username,
        "POSTGRES_DB": server.path.lstrip("/"),
        "NPS_DB_PASSWORD": password,
    }
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        subprocess.run(["bash", str(NPS_DB_SCRIPT)], env=env, check=True, capture_output=True)  # noqa: S603, S607
        with admin.connect() as conn:
            verifier = conn.execute(text("SELECT rolpassword FROM pg_authid WHERE rolname = 'nps'")).scalar_one()
            owner = conn.execute(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'nps'")
            ).scalar_one()
        assert owner == "nps"
        assert _scram_matches(verifier, password) and not _scram_matches(verifier, "another password")

        # airflow-init's NPS step, through the same nps_db connection the tasks use, as the nps user.
        step = _init_script_step("nps_engine")
        code = shlex.split(step)[shlex.split(step).index("-c") + 1]
        conn_uri = f"postgres://nps:{quote(password, safe='')}@{server.hostname}:{server.port}/nps"
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", code], env={**os.environ, "AIRFLOW_CONN_NPS_DB": conn_uri}, check=True
        )
        nps = create_engine(f"{server.scheme}://{server.username}@{server.hostname}:{server.port}/nps")
        with nps.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            tables = conn.execute(text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
            owners = dict(tables.tuples().all())
        nps.dispose()
        assert revision == migrations.head()
        assert "outbox" in owners and set(owners.values()) == {"nps"}  # alembic_version included
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS nps WITH (FORCE)"))
            conn.execute(text("DROP ROLE IF EXISTS nps"))
        admin.dispose()
