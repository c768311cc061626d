#!/bin/bash
# Creates the NPS database and its own user beside Airflow's metadata DB. The postgres image runs
# this once, when it initialises an empty data volume. To change NPS_DB_PASSWORD later, run
# ALTER USER nps PASSWORD '...' as well.
# The password is passed as a psql variable (:'nps_password' quotes it), never pasted into the SQL.
set -euo pipefail
: "${NPS_DB_PASSWORD:?NPS_DB_PASSWORD is empty: set it in .env}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set nps_password="$NPS_DB_PASSWORD" <<'SQL'
CREATE USER nps WITH PASSWORD :'nps_password';
CREATE DATABASE nps OWNER nps;
SQL
