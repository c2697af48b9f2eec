-- TimescaleDB only. An earlier 005_permissions.timescale.sql revoked USAGE on the chunk schema,
-- which kept owners from reading any hypertable (TimescaleDB's planner resolves its own types
-- in _timescaledb_internal with the caller's rights). Give it back as TimescaleDB sets it; the
-- chunks themselves are closed by 015_secure_children.sql. A migrating login that may not grant
-- it (not the schema's owner) is told what an administrator must run instead of failing.
DO $$
BEGIN
    GRANT USAGE ON SCHEMA _timescaledb_internal TO PUBLIC;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'as a superuser run: GRANT USAGE ON SCHEMA _timescaledb_internal TO PUBLIC '
                  '(asset owners cannot read hypertables without it)';
END $$;
