-- Permissions (docs/permissions.md): group roles, the owner -> asset mapping, GRANTs and row-level
-- security so that an asset owner's connection sees only its assets' rows.
--
-- Roles are cluster-wide (created once, idempotently: another database of the same cluster may
-- have created them already, even concurrently); GRANTs, the mapping and the policies belong to
-- this database. Applied on plain PostgreSQL and on TimescaleDB; 005_permissions.timescale.sql
-- adds the TimescaleDB part (chunk schema).
--
-- Who bypasses all of this (reliability-notes.md 9): superusers, roles with BYPASSRLS, and views
-- owned by such roles. The table owner does NOT bypass it: every RLS table is FORCEd, and the
-- writer (the sink, the migrator) passes through an explicit `intraday_writer` policy.

-- ---------------------------------------------------------------------------------------------
-- 1. group roles (NOLOGIN); logins are made members of them (sink/permissions.py)

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['intraday_desk', 'intraday_ops', 'intraday_back_office',
                             'intraday_asset_owner', 'intraday_writer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                               'NOBYPASSRLS', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database of this cluster
            END;
        END IF;
    END LOOP;
    -- a pre-existing role with a bypass would silently void the policies: refuse it
    IF EXISTS (SELECT 1 FROM pg_roles
               WHERE rolname IN ('intraday_desk', 'intraday_ops', 'intraday_back_office',
                                 'intraday_asset_owner', 'intraday_writer')
                 AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'an intraday_* group role is SUPERUSER or BYPASSRLS; fix it first '
                        '(ALTER ROLE ... NOSUPERUSER NOBYPASSRLS)';
    END IF;
    -- the migrator owns the tables; with FORCE ROW LEVEL SECURITY it needs the writer policy too
    IF NOT pg_has_role(current_user, 'intraday_writer', 'USAGE') THEN
        BEGIN
            EXECUTE format('GRANT intraday_writer TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role % owns the tables but cannot join intraday_writer: as a superuser run '
                            '"GRANT intraday_writer TO %I" and migrate again', current_user, current_user;
        END;
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- 2. which owner role may read which asset (one row per pair; maintained by sink/permissions.py)

CREATE TABLE IF NOT EXISTS asset_owners (
    owner_role  text NOT NULL
                CHECK (owner_role <> '' AND lower(owner_role) <> 'public' AND owner_role !~ '^pg_'
                       AND owner_role NOT IN ('intraday_desk', 'intraday_ops', 'intraday_back_office',
                                              'intraday_asset_owner', 'intraday_writer')),
    asset_id    text NOT NULL,
    PRIMARY KEY (owner_role, asset_id)
);
CREATE INDEX IF NOT EXISTS asset_owners_asset_id ON asset_owners (asset_id);

-- The public market per QH (the `public` book of trading_qh: exchange data, not ours), for roles
-- that must not read the private book. security_barrier: the WHERE runs before any function of
-- the caller's query, so no private row ever reaches one. trading_qh carries no RLS, so the view's
-- owner confers nothing beyond these columns of these rows.
CREATE OR REPLACE VIEW market_index_qh WITH (security_barrier = true) AS
SELECT delivery_start, trades, vwap_eur_mwh, idx_full_eur_mwh, idx_3h_eur_mwh, idx_1h_eur_mwh, known_at
FROM trading_qh
WHERE book = 'public';

-- invoices_current (003) is a view: by default it reads with its owner's rights (the migrator,
-- often a superuser), which would bypass the policies on invoices. Make it read as the caller.
DO $$
BEGIN
    IF to_regclass('invoices_current') IS NOT NULL THEN
        ALTER VIEW invoices_current SET (security_invoker = true, security_barrier = true);
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- 3. GRANTs (nothing is granted to PUBLIC; a role outside these groups reads nothing)

DO $$
DECLARE
    schema_name text := current_schema();
    staff_read  text[] := ARRAY['asset_qh', 'trading_qh', 'asset_imbalance_qh', 'portfolio_qh',
                                'portfolio_qh_history', 'alerts', 'contracts', 'technical_data',
                                'imbalance_prices', 'redispatch_compensation', 'portfolio_hourly',
                                'invoices', 'invoice_lines', 'invoices_current', 'asset_owners',
                                'market_index_qh'];
    ops_extra   text[] := ARRAY['quarantine', 'sink_progress', 'schema_migrations'];
    owner_read  text[] := ARRAY['asset_qh', 'asset_imbalance_qh', 'contracts', 'technical_data',
                                'invoices', 'invoices_current', 'asset_owners', 'market_index_qh'];
    t text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO intraday_desk, intraday_ops, intraday_back_office, '
                   'intraday_asset_owner, intraday_writer', schema_name);
    FOREACH t IN ARRAY staff_read LOOP
        CONTINUE WHEN to_regclass(t) IS NULL;
        EXECUTE format('GRANT SELECT ON %I TO intraday_desk, intraday_ops, intraday_back_office', t);
    END LOOP;
    FOREACH t IN ARRAY ops_extra LOOP
        CONTINUE WHEN to_regclass(t) IS NULL;
        EXECUTE format('GRANT SELECT ON %I TO intraday_ops, intraday_back_office', t);
    END LOOP;
    FOREACH t IN ARRAY owner_read LOOP
        CONTINUE WHEN to_regclass(t) IS NULL;
        EXECUTE format('GRANT SELECT ON %I TO intraday_asset_owner', t);
    END LOOP;
    -- the desk and ops acknowledge alerts: these two columns only
    GRANT UPDATE (acknowledged_by, acknowledged_at) ON alerts TO intraday_desk, intraday_ops;
    -- the back office issues invoice versions
    FOREACH t IN ARRAY ARRAY['invoices', 'invoice_lines'] LOOP
        CONTINUE WHEN to_regclass(t) IS NULL;
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO intraday_back_office', t);
    END LOOP;
    -- the writer (the sink, or a dedicated sink login made a member) writes every table
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO intraday_writer',
                   schema_name);
    -- tables of later migrations: readable by staff, writable by the writer, never by owners
    -- (an asset-scoped table must add its own RLS and owner policy: docs/permissions.md)
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO intraday_desk, '
                   'intraday_ops, intraday_back_office', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                   'TO intraday_writer', schema_name);
END $$;

-- ---------------------------------------------------------------------------------------------
-- 4. row-level security on the asset-scoped tables
--
-- Policies are permissive (OR-ed) and per role:
--   staff_read   desk, ops, back office: every row (SELECT)
--   writer_all   intraday_writer (sink, migrator = table owner under FORCE): every row, any command
--   owner_read   intraday_asset_owner: rows whose asset is mapped in asset_owners to current_user or
--                to a role current_user is a member of (SELECT)
-- A role in none of these groups gets no row even if someone GRANTs it the table.
-- pg_has_role over pg_roles.oid (not over the text) so that a mapping row naming a dropped role
-- is ignored instead of failing every query.

DO $$
DECLARE
    owned constant text :=
        '(SELECT o.asset_id FROM asset_owners o WHERE o.owner_role IN '
        '(SELECT r.rolname FROM pg_roles r WHERE pg_has_role(current_user, r.oid, ''MEMBER'')))';
    t text;
BEGIN
    -- the mapping itself: an owner sees its own pairs
    ALTER TABLE asset_owners ENABLE ROW LEVEL SECURITY;
    ALTER TABLE asset_owners FORCE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS staff_read ON asset_owners;
    DROP POLICY IF EXISTS writer_all ON asset_owners;
    DROP POLICY IF EXISTS owner_read ON asset_owners;
    CREATE POLICY staff_read ON asset_owners FOR SELECT
        TO intraday_desk, intraday_ops, intraday_back_office USING (true);
    CREATE POLICY writer_all ON asset_owners FOR ALL TO intraday_writer USING (true) WITH CHECK (true);
    CREATE POLICY owner_read ON asset_owners FOR SELECT TO intraday_asset_owner
        USING (owner_role IN (SELECT r.rolname FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')));

    -- tables with an asset_id column
    FOREACH t IN ARRAY ARRAY['asset_qh', 'asset_imbalance_qh', 'contracts', 'technical_data'] LOOP
        CONTINUE WHEN to_regclass(t) IS NULL;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS staff_read ON %I', t);
        EXECUTE format('DROP POLICY IF EXISTS writer_all ON %I', t);
        EXECUTE format('DROP POLICY IF EXISTS owner_read ON %I', t);
        EXECUTE format('CREATE POLICY staff_read ON %I FOR SELECT TO intraday_desk, intraday_ops, '
                       'intraday_back_office USING (true)', t);
        EXECUTE format('CREATE POLICY writer_all ON %I FOR ALL TO intraday_writer USING (true) '
                       'WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY owner_read ON %I FOR SELECT TO intraday_asset_owner '
                       'USING (asset_id IN %s)', t, owned);
    END LOOP;

    -- invoices: the asset is in the payload (the contract's asset when the version was issued)
    IF to_regclass('invoices') IS NOT NULL THEN
        ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS staff_read ON invoices;
        DROP POLICY IF EXISTS writer_all ON invoices;
        DROP POLICY IF EXISTS back_office_all ON invoices;
        DROP POLICY IF EXISTS owner_read ON invoices;
        CREATE POLICY staff_read ON invoices FOR SELECT TO intraday_desk, intraday_ops USING (true);
        CREATE POLICY writer_all ON invoices FOR ALL TO intraday_writer USING (true) WITH CHECK (true);
        CREATE POLICY back_office_all ON invoices FOR ALL TO intraday_back_office USING (true) WITH CHECK (true);
        EXECUTE format('CREATE POLICY owner_read ON invoices FOR SELECT TO intraday_asset_owner '
                       'USING ((payload ->> ''asset_id'') IN %s)', owned);
    END IF;
    -- invoice_lines carries no RLS: COPY FROM, with which invoice versions are stored, is refused on
    -- a table with RLS for every role subject to it (the table owner included, under FORCE). Owners
    -- read their lines through my_invoice_lines instead (below), never through the table.
    IF to_regclass('invoice_lines') IS NOT NULL THEN
        EXECUTE format('CREATE OR REPLACE VIEW my_invoice_lines WITH (security_barrier = true) AS '
                       'SELECT l.* FROM invoice_lines l WHERE EXISTS (SELECT 1 FROM invoices i '
                       'WHERE i.contract_id = l.contract_id AND i.month = l.month AND i.version = l.version '
                       'AND (i.payload ->> ''asset_id'') IN %s)', owned);
        -- an owner's view only (the default privileges would give it to staff and the writer)
        REVOKE ALL ON my_invoice_lines FROM PUBLIC, intraday_desk, intraday_ops, intraday_back_office,
                                            intraday_writer;
        GRANT SELECT ON my_invoice_lines TO intraday_asset_owner;
    END IF;
END $$;
