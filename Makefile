# The two commands: `make demo` runs a whole NPS wave locally; `make test` runs the tests.
# Each creates and fills .venv when it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: demo test test-fast lint airflow survey clean bench bench-checks bench-dashboard bench-delivery bench-scale bench-celery i18n

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m devkit.demo

test: $(BIN)/.installed
	$(BIN)/pytest

# Style, formatting and the import contracts between packages (pyproject.toml, ARCHITECTURE.md).
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The inner loop: everything but the whole-wave, browser and real-process tests.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not e2e and not browser and not processes"

# Airflow UI with this project's DAGs: http://localhost:8080 (credentials printed at start), over the
# demo's NPS DB (var/demo/nps.db; NPS_HOME or NPS_DB_URL to change it): see devkit/localui.py.
airflow: $(BIN)/.installed
	$(BIN)/python -m devkit.localui

# The survey form on http://127.0.0.1:8090 against the same NPS DB as `make airflow` (var/demo/nps.db).
survey: $(BIN)/.installed
	NPS_HOME=$${NPS_HOME:-$(CURDIR)/var/demo} NPS_SECRET_KEY=$${NPS_SECRET_KEY:-local-dev-secret} $(BIN)/python -m include.nps.web.survey_form

clean:
	rm -rf var .airflow .pytest_cache

# Figures for the set-based steps on a large audience (prints timings; asserts nothing).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_wave_steps 20000 2000

bench-checks: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_checks 5000 7

bench-dashboard: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_dashboard 300 200

# Every set-based step at SIZE contacts (10k, 100k, 1M) on SQLite and PostgreSQL, beside the plain way.
SIZE ?= 100k
bench-scale: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_scale $(SIZE) both

bench-delivery: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_delivery 10000 10

# One mailing of 20,000 messages through nps_wave on CeleryExecutor (Redis, PostgreSQL): one worker
# of two slots, then two; beside the same mailing in one process without Airflow.
bench-celery: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_celery 20000 1x2 2x2

# Re-extract the translatable text of the templates and update every locale's catalog.
i18n: $(BIN)/.installed
	$(BIN)/pybabel extract -F babel.cfg --no-location --omit-header --sort-output -o include/translations/messages.pot .
	for locale in ja zh he nb; do \
	  test -f include/translations/$$locale/LC_MESSAGES/messages.po \
	    || $(BIN)/pybabel init -i include/translations/messages.pot -d include/translations -l $$locale; \
	  $(BIN)/pybabel update --no-fuzzy-matching --ignore-pot-creation-date -i include/translations/messages.pot -d include/translations -l $$locale; \
	done
