#!/bin/sh
# Runs once, when the postgres container initialises an empty volume: the run catalog gets its own
# database next to Prefect's (POSTGRES_DB), owned by the same role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
SELECT 'CREATE DATABASE "${FUXIOPS_CATALOG_DB:-fuxiops}" OWNER "$POSTGRES_USER"'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${FUXIOPS_CATALOG_DB:-fuxiops}')\gexec
SQL
