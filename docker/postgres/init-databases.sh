#!/usr/bin/env bash
# Runs once, when the postgres service initialises an empty data volume (the official image runs
# /docker-entrypoint-initdb.d/*.sh as the superuser). Creates one role and one database per user
# of the server, each role owning only its own database:
#
#   airflow / airflow             Airflow's metadata database (AIRFLOW_DB_PASSWORD)
#   yorisoi / yorisoi_activation  the activation store (YORISOI_DB_PASSWORD): sync runs, changelog,
#                                 snapshots and the send ledger (yorisoi.activation.delivery.store)
#
# Passwords arrive as environment variables from .env and are passed to psql as variables, so
# they are quoted by psql (:'name') and never appear in this file or on a command line.
# To re-run it, remove the volume (docker compose down -v): it is skipped on a non-empty volume.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}"
: "${YORISOI_DB_PASSWORD:?set YORISOI_DB_PASSWORD in .env}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v airflow_password="${AIRFLOW_DB_PASSWORD}" \
    -v yorisoi_password="${YORISOI_DB_PASSWORD}" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8';
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE yorisoi LOGIN PASSWORD :'yorisoi_password';
CREATE DATABASE yorisoi_activation OWNER yorisoi ENCODING 'UTF8';
REVOKE ALL ON DATABASE yorisoi_activation FROM PUBLIC;
SQL
