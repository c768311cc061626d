# The project's Airflow image: the official image of the pinned Airflow version plus our requirements.
# DAGs, plugins, include/, sql/ and the init scripts are baked in, so every service (and workers on
# other machines) runs the same code. The tag must name the apache-airflow version pinned in
# requirements.txt (tests/test_deployment.py checks it). The survey form runs from this image too.
FROM apache/airflow:3.3.2-python3.11

# The flash-results chart draws Japanese and Chinese text with Noto Sans CJK.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# Naming apache-airflow at the image's own version (AIRFLOW_VERSION is set by the official image)
# keeps pip from upgrading or downgrading Airflow while it installs our pins.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

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
