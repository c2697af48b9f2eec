-- The dashboard's sessions, kept on the server so that a logout ends a session everywhere: a
-- copied session cookie is worth nothing after its user logged out (or after 12 hours). Shared
-- by every dashboard worker and container. Written by the dashboard's login only: a group of its
-- own, so that no staff login (ops, desk) can forge or end another user's session.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intraday_web') THEN
        BEGIN
            CREATE ROLE intraday_web NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by the migration of another database of this cluster
        END;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    sid_hash    text        PRIMARY KEY,  -- sha256 of the session id: the table holds no usable token
    username    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- the default privileges of 005 give later tables to staff (read) and the writer: not this one
REVOKE ALL ON dashboard_sessions FROM PUBLIC, intraday_desk, intraday_ops, intraday_back_office,
                                      intraday_asset_owner, intraday_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard_sessions TO intraday_web;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO intraday_web', current_schema());
END $$;
