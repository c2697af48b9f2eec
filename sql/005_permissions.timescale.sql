-- TimescaleDB only, after 005_permissions.sql (docs/permissions.md, "TimescaleDB").
--
-- RLS policies of a hypertable are applied when the hypertable is queried, but not when one of its
-- chunk tables is queried by name, and chunks copy the hypertable's GRANTs (timescaledb #7830).
-- An asset owner, who has SELECT on asset_qh, could read every owner's rows from a chunk. The
-- chunks are closed by 015_secure_children.sql (every child of an RLS table readable by the staff
-- and the writer only), not by revoking USAGE on the chunk schema: TimescaleDB's planner looks up
-- its own types in _timescaledb_internal with the caller's rights, so without USAGE no owner could
-- read a hypertable at all.
--
-- Also: RLS and compression cannot be combined (#6827; TimescaleDB refuses to compress a table
-- with RLS and to enable RLS on a compressed one), and continuous aggregates do not carry
-- policies (#6832). Only portfolio_qh_history is compressed and only portfolio_hourly is a
-- continuous aggregate; neither is asset-scoped nor granted to owners. Keep it that way.

DO $$
BEGIN
    -- refuse a setup in which an RLS table is compressed (it could not be, but say it plainly)
    IF EXISTS (
        SELECT 1 FROM timescaledb_information.hypertables h
        JOIN pg_class c ON c.relname = h.hypertable_name
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = h.hypertable_schema
        WHERE h.compression_enabled AND c.relrowsecurity) THEN
        RAISE EXCEPTION 'a compressed hypertable has row-level security: not supported (timescaledb #6827)';
    END IF;
END $$;
