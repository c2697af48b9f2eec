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
