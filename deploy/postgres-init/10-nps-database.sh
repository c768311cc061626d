#!/bin/bash
# Creates the NPS database and its own user beside Airflow's metadata DB (first start only).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE USER nps WITH PASSWORD '${NPS_DB_PASSWORD}';
CREATE DATABASE nps OWNER nps;
SQL
