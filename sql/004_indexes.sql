-- The dashboard's replay clock and freshness read max(known_at); keep them index lookups.
CREATE INDEX IF NOT EXISTS asset_qh_known_at ON asset_qh (known_at);
CREATE INDEX IF NOT EXISTS portfolio_qh_known_at ON portfolio_qh (known_at);
CREATE INDEX IF NOT EXISTS trading_qh_known_at ON trading_qh (known_at);
CREATE INDEX IF NOT EXISTS alerts_detected_at ON alerts (detected_at DESC);
