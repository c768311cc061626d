#!/usr/bin/env bash
# The airflow-init service. It runs on every `docker compose up`, before the long-running services,
# which wait for it to exit 0. It runs as root (to own the shared volumes) through the image's
# entrypoint, which first waits until the metadata DB answers.
set -euo pipefail

echo "1/5 Airflow metadata DB: migrating"
airflow db migrate

# Done once here: the survey form and the tasks then find the schema up to date. Their own
# migrate-on-connect finds nothing left to do, so workers starting together never wait for its lock.
echo "2/5 NPS DB: upgrading to the latest alembic revision (sql/alembic) through the nps_db connection"
python -c 'from include.nps.core.connections import nps_engine; nps_engine()'

echo "3/5 Airflow login: the passwords file gets AIRFLOW_ADMIN_PASSWORD"
python /opt/airflow/deploy/simple_auth_passwords.py

# Made once with 4 slots; a size set later (`airflow pools set nps_email 8 ...`) is kept.
echo "4/5 Airflow pool nps_email: the send tasks of every wave share its slots"
airflow pools get nps_email >/dev/null 2>&1 \
  || airflow pools set nps_email 4 "NPS email sends of every wave: slots x nps_smtp rate_per_second = the relay's most"

auth_dir="$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")"
echo "5/5 Shared volumes: owned by ${AIRFLOW_UID}:0"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs /opt/airflow/var "${auth_dir}"
chmod 0700 "${auth_dir}"
