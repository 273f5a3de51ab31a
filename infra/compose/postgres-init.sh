#!/bin/sh
# Run once by the postgres image, on an empty data volume (/docker-entrypoint-initdb.d): one role
# and one database per service of the stack. The passwords come from the postgres service's
# environment in infra/docker-compose.yml. psql quotes them (:'password'), so any character works.
set -e

create_database() {  # role password database
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$1" -v password="$2" -v db="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
SQL
}

create_database prefect "$PREFECT_DB_PASSWORD" prefect        # Prefect server (asyncpg)
create_database mlflow "$MLFLOW_DB_PASSWORD" mlflow           # MLflow tracking and model registry
create_database tradeflow "$TRADEFLOW_DB_PASSWORD" tradeflow  # the trading ledger ([ledger] url)

# Prefect's migrations create pg_trgm; create it here as the superuser, so the prefect role
# needs no extra privilege.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname prefect \
  -c 'CREATE EXTENSION IF NOT EXISTS pg_trgm;'
