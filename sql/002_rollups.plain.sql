-- Plain PostgreSQL (no TimescaleDB): the same roll-up as a view, with date_bin, which runs on both.
CREATE OR REPLACE VIEW portfolio_hourly AS
SELECT date_bin(INTERVAL '1 hour', delivery_start, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
       sum(best_of_infeed_kw) * 0.25 / 1000 AS best_of_infeed_mwh,
       sum(net_sold_mwh) AS net_sold_mwh,
       sum(imbalance_mwh) AS imbalance_mwh,
       sum(imbalance_cost_eur) AS imbalance_cost_eur
FROM portfolio_qh WHERE in_scope GROUP BY 1;
