-- TimescaleDB only, after 005_permissions.sql (docs/permissions.md, "TimescaleDB").
--
-- RLS policies of a hypertable are applied when the hypertable is queried, but not when one of its
-- chunk tables is queried by name, and chunks copy the hypertable's GRANTs (timescaledb #7830).
-- So an asset owner, who has SELECT on asset_qh, could read every owner's rows from
-- _timescaledb_internal._hyper_N_M_chunk. Close that door: nobody but the roles that may read every
-- row anyway may look up names in the chunk schemas. Queries through the hypertable do not need
-- it (chunks are reached by OID, and privileges are checked on the hypertable).
--
-- Also: RLS and compression cannot be combined (#6827; TimescaleDB refuses to compress a table
-- with RLS and to enable RLS on a compressed one), and continuous aggregates do not carry
-- policies (#6832). Only portfolio_qh_history is compressed and only portfolio_hourly is a
-- continuous aggregate; neither is asset-scoped nor granted to owners. Keep it that way.

DO $$
DECLARE
    s text;
BEGIN
    FOR s IN
        SELECT n.nspname FROM pg_namespace n
        WHERE n.nspname = '_timescaledb_internal'
           OR n.nspname IN (SELECT h.associated_schema_name::text FROM _timescaledb_catalog.hypertable h)
    LOOP
        CONTINUE WHEN s = current_schema() OR s NOT LIKE '\_timescaledb%';  -- never the tables' own schema
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM PUBLIC', s);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM intraday_asset_owner', s);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO intraday_desk, intraday_ops, intraday_back_office, '
                       'intraday_writer', s);
    END LOOP;
    -- refuse a setup in which an RLS table is compressed (it could not be, but say it plainly)
    IF EXISTS (
        SELECT 1 FROM timescaledb_information.hypertables h
        JOIN pg_class c ON c.relname = h.hypertable_name
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = h.hypertable_schema
        WHERE h.compression_enabled AND c.relrowsecurity) THEN
        RAISE EXCEPTION 'a compressed hypertable has row-level security: not supported (timescaledb #6827)';
    END IF;
END $$;
