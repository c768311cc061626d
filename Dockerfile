# The project's Airflow image: the official image of the pinned Airflow version plus our requirements.
# DAGs, plugins, include/, sql/ and the init scripts are baked in, so every service (and workers on
# other machines) runs the same code; docker-compose.yaml also mounts dags/ and plugins/ over them,
# so an edit there needs no rebuild. The tag must name the apache-airflow version pinned in
# requirements.txt (tests/test_deployment.py checks it). The survey form runs from this image too.
FROM apache/airflow:3.3.2-python3.11

# The flash-results chart draws Japanese and Chinese text with Noto Sans CJK.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
COPY --chown=airflow:0 deploy/constraints_without_pins.py /opt/airflow/deploy/
# Installed with Airflow's constraints file for the image's Airflow version and Python (Airflow's
# docs, "Building the image"): every dependency requirements.txt does not pin stays at the version
# Airflow was released and tested with. Our own pins are taken out of the constraints (pip refuses a
# pin that differs from its constraint), so a pin in requirements.txt wins and pip still reports any
# real conflict. Naming apache-airflow at the image's own version (AIRFLOW_VERSION is set by the
# official image) keeps pip from upgrading or downgrading Airflow.
RUN PYTHON_VERSION="$(python -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')" \
    && curl -fsSL -o /tmp/airflow-constraints.txt \
        "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt" \
    && python /opt/airflow/deploy/constraints_without_pins.py /tmp/airflow-constraints.txt /opt/airflow/requirements.txt \
        > /tmp/constraints.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt --constraint /tmp/constraints.txt \
    && rm /tmp/airflow-constraints.txt /tmp/constraints.txt

# Mount points of named volumes: a new volume takes the owner (airflow, group 0) and mode from here.
RUN mkdir -p /opt/airflow/var /opt/airflow/auth && chmod 0775 /opt/airflow/var && chmod 0770 /opt/airflow/auth

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 sql /opt/airflow/sql
COPY --chown=airflow:0 calendar /opt/airflow/calendar
COPY --chown=airflow:0 rules /opt/airflow/rules
COPY --chown=airflow:0 deploy/airflow-init.sh deploy/simple_auth_passwords.py /opt/airflow/deploy/
ENV PYTHONPATH=/opt/airflow
