-- 002_timescale.timescale.sql
-- TimescaleDB only (applied when CREATE EXTENSION timescaledb succeeded at migration time).
-- Every unique key includes the time column, as hypertables require.
SELECT create_hypertable('asset_qh', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('trading_qh', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('asset_imbalance_qh', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('portfolio_qh', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('portfolio_qh_history', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);

-- History is append-only and large: compress after a week, keep two years.
ALTER TABLE portfolio_qh_history SET (timescaledb.compress, timescaledb.compress_orderby = 'known_at');
SELECT add_compression_policy('portfolio_qh_history', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('portfolio_qh_history', INTERVAL '730 days', if_not_exists => TRUE);

-- Hourly roll-up for the dashboard and reports; real-time aggregation on (off by default since 2.13).
CREATE MATERIALIZED VIEW IF NOT EXISTS portfolio_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', delivery_start) AS hour,
       sum(best_of_infeed_kw) * 0.25 / 1000 AS best_of_infeed_mwh,
       sum(net_sold_mwh) AS net_sold_mwh,
       sum(imbalance_mwh) AS imbalance_mwh,
       sum(imbalance_cost_eur) AS imbalance_cost_eur
FROM portfolio_qh WHERE in_scope GROUP BY 1
WITH NO DATA;
SELECT add_continuous_aggregate_policy('portfolio_hourly', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes', if_not_exists => TRUE);
-- 005_permissions.timescale.sql
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
-- 009_history.timescale.sql
-- TimescaleDB only: the history tables are hypertables, compressed after a week, kept two years.
SELECT create_hypertable('asset_qh_history', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('trading_qh_history', by_range('delivery_start', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE asset_qh_history SET (timescaledb.compress, timescaledb.compress_segmentby = 'asset_id',
                                  timescaledb.compress_orderby = 'delivery_start, known_at');
ALTER TABLE trading_qh_history SET (timescaledb.compress, timescaledb.compress_orderby = 'delivery_start, known_at');
SELECT add_compression_policy('asset_qh_history', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('trading_qh_history', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('asset_qh_history', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('trading_qh_history', INTERVAL '730 days', if_not_exists => TRUE);
-- 015_secure_children.timescale.sql
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
