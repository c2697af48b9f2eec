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
