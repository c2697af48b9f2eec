#!/bin/sh
# Run once by the TimescaleDB image on an empty data directory, after its own scripts (it runs
# /docker-entrypoint-initdb.d/* in name order: this is mounted as 010_intraday.sh). It makes the
# schema's owner login from deploy/timescaledb-init.sql (mounted as /etc/intraday/init.sql).
set -eu
: "${INTRADAY_OWNER_DB_PASSWORD:?set INTRADAY_OWNER_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner_password="$INTRADAY_OWNER_DB_PASSWORD" -v dbname="$POSTGRES_DB" \
     -f /etc/intraday/init.sql
