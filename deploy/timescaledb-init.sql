-- Run once by the database's administrator (the superuser of a new server), before the first
-- `intraday migrate`: docker-compose.yml mounts it into the TimescaleDB image's
-- /docker-entrypoint-initdb.d/ with deploy/timescaledb-init.sh, which passes the variables.
--
-- It makes the one login that owns the schema and runs the migrations: intraday_owner, not a
-- superuser. CREATEROLE lets `intraday migrate` create the group roles and the services' logins
-- (sink, dashboard, replay: intraday/backoffice/permissions.py SERVICE_LOGINS); owning the database makes it the
-- owner of its public schema. No app service connects as the superuser (docs/deploy.md).
--
-- psql variables: owner_password, dbname.

SELECT format('CREATE ROLE intraday_owner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION '
              'NOBYPASSRLS PASSWORD %L', :'owner_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intraday_owner')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO intraday_owner', :'dbname')
\gexec
