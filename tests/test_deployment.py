"""The compose file is checked as a file (no Docker engine runs here)."""

import yaml

from include.nps.storage import PROJECT_ROOT

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


def _compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


def test_every_service_of_the_deployment_is_there_with_a_health_check():
    services = _compose()["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init", "survey", "mailpit"} <= set(services)
    for name in AIRFLOW_SERVICES | {"postgres", "redis", "survey"}:
        assert "healthcheck" in services[name], name


def test_airflow_services_share_executor_databases_and_connections():
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW_CONN_NPS_DB"].startswith("postgres://nps:")
        assert services[name]["env_file"] == ".env"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_secrets_come_from_the_env_file_only():
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    example = (PROJECT_ROOT / ".env.example").read_text()
    for variable in ("POSTGRES_PASSWORD", "NPS_DB_PASSWORD", "NPS_SECRET_KEY", "AIRFLOW_JWT_SECRET"):
        assert f"{variable}=" in example
    assert "change-me" not in text
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_the_survey_form_is_its_own_service_not_part_of_the_api_server():
    survey = _compose()["services"]["survey"]
    assert survey["command"] == ["python", "-m", "include.nps.survey"]
    assert "NPS_DB_URL" in survey["environment"] and survey["ports"] == ["8090:8090"]


def test_the_internet_facing_survey_service_gets_no_airflow_secret():
    survey = _compose()["services"]["survey"]
    assert "env_file" not in survey and "volumes" not in survey
    assert set(survey["environment"]) >= {"NPS_DB_URL", "NPS_SECRET_KEY", "NPS_SECRET_KEY_PREVIOUS"}
    assert not [name for name in survey["environment"] if name.startswith(("AIRFLOW", "POSTGRES"))]
