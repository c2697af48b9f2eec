-- domain.md 4 (second edition): the portfolio imbalance counts a redispatched asset as delivering
-- its position. balanced_mwh = the sum of those positions (tradeable forecast MWh) in the QH, so
-- imbalance_mwh = best_of_infeed_kw x 0.25 / 1000 + balanced_mwh - net_sold_mwh row by row.
ALTER TABLE portfolio_qh ADD COLUMN IF NOT EXISTS balanced_mwh double precision;
ALTER TABLE portfolio_qh_history ADD COLUMN IF NOT EXISTS balanced_mwh double precision;
