"""The performance report's SELECTs: the period's rows per asset and for the portfolio, per-QH series, redispatch, names."""

from __future__ import annotations

from intraday.core.units import kw_to_mwh_sql

_WITH = f"""
WITH a AS (
    SELECT a.asset_id, a.delivery_start AS t,
           {kw_to_mwh_sql('a.best_kw')} AS q,
           {kw_to_mwh_sql('a.latest_kw')} AS fd,
           {kw_to_mwh_sql('a.tradeable_kw')} AS fg,
           (a.best_source IN ('final', 'live') AND NOT a.redispatched) AS measured,
           a.best_source = 'final' AS is_final,
           a.redispatched AS rd,
           i.imbalance_mwh AS imb, i.price_eur_mwh AS price, i.cost_eur AS cost
    FROM asset_qh a
    LEFT JOIN asset_imbalance_qh i ON i.asset_id = a.asset_id AND i.delivery_start = a.delivery_start
    WHERE a.in_scope AND a.delivery_start >= %(start)s AND a.delivery_start < %(end)s),
pf AS (
    SELECT delivery_start AS t, true AS in_pf,
           {kw_to_mwh_sql('best_of_infeed_kw')} AS qq,
           {kw_to_mwh_sql('latest_forecast_kw')} AS fdq,
           {kw_to_mwh_sql('tradeable_forecast_kw')} AS fgq,
           imbalance_mwh AS pimb, imbalance_price_eur_mwh AS pprice, imbalance_cost_eur AS pcost,
           coalesce(balanced_mwh, 0) AS bal
    FROM portfolio_qh WHERE in_scope AND delivery_start >= %(start)s AND delivery_start < %(end)s),
pr AS (
    SELECT delivery_start AS t, trades, sold_mwh, bought_mwh, net_mwh, revenue_eur, vwap_eur_mwh
    FROM trading_qh WHERE book = 'private' AND delivery_start >= %(start)s AND delivery_start < %(end)s),
pu AS (
    SELECT delivery_start AS t, idx_full_eur_mwh AS x
    FROM trading_qh WHERE book = 'public' AND delivery_start >= %(start)s AND delivery_start < %(end)s),
comp AS (
    SELECT delivery_start AS t, price_eur_mwh AS comp
    FROM redispatch_compensation WHERE delivery_start >= %(start)s AND delivery_start < %(end)s),
pos AS (SELECT t, sum(greatest(q, 0)) AS qpos FROM a GROUP BY t),
qh AS (
    SELECT k.t, pf.in_pf, pf.qq, pf.fdq, pf.fgq, pf.pimb, pf.pprice, pf.pcost, pf.bal,
           pr.trades, pr.sold_mwh, pr.bought_mwh, pr.net_mwh, pr.revenue_eur, pr.vwap_eur_mwh,
           pu.x, pos.qpos,
           coalesce(pr.revenue_eur, 0) - coalesce(pr.net_mwh, 0) * coalesce(pu.x, 0) AS uplift,
           coalesce(pf.bal, 0) * coalesce(pu.x, 0) AS bal_at_index,
           -(coalesce(pf.qq, 0) + coalesce(pf.bal, 0) - coalesce(pr.net_mwh, 0)) * coalesce(pu.x, 0) AS imb_at_index
    FROM (SELECT t FROM pf UNION SELECT t FROM pr UNION SELECT t FROM pu) k
    LEFT JOIN pf ON pf.t = k.t LEFT JOIN pr ON pr.t = k.t LEFT JOIN pu ON pu.t = k.t
    LEFT JOIN pos ON pos.t = k.t),
aw AS (
    SELECT a.*, qh.x, comp.comp, qh.uplift, qh.imb_at_index, qh.revenue_eur AS rev, qh.net_mwh AS net,
           qh.pcost,
           CASE WHEN qh.qpos > 0 THEN greatest(a.q, 0) / qh.qpos ELSE 0 END AS w
    FROM a LEFT JOIN qh ON qh.t = a.t LEFT JOIN comp ON comp.t = a.t)
"""

_FE = """
       count(*) FILTER (WHERE {elig}) AS fe_{k}_qh,
       sum(abs({e})) FILTER (WHERE {elig}) AS fe_{k}_abs_mwh,
       sum({e}) FILTER (WHERE {elig}) AS fe_{k}_sum_mwh,
       sum(abs({e}) * {p}) FILTER (WHERE {elig}) AS fe_{k}_abs_eur,
       sum(-({e}) * {p}) FILTER (WHERE {elig}) AS fe_{k}_cost_eur,
       count(*) FILTER (WHERE {elig} AND {p} IS NULL) AS fe_{k}_unpriced_qh,"""

ASSETS_SQL = _WITH + """
SELECT asset_id,
       count(*) AS qh, sum(q) AS produced_mwh, count(*) FILTER (WHERE is_final) AS final_qh,""" + \
    _FE.format(k="gate", e="q - fg", p="price", elig="measured AND fg IS NOT NULL") + \
    _FE.format(k="delivery", e="q - fd", p="price", elig="measured AND fd IS NOT NULL") + """
       sum(q * x) FILTER (WHERE x IS NOT NULL) AS market_value_eur,
       sum(q) FILTER (WHERE x IS NOT NULL) AS priced_mwh,
       coalesce(sum(fg) FILTER (WHERE rd), 0) AS balanced_mwh,
       coalesce(sum(fg * x) FILTER (WHERE rd), 0) AS balanced_at_index_eur,
       sum(w * coalesce(rev, 0)) AS revenue_eur,
       sum(w * coalesce(net, 0)) AS net_sold_mwh,
       sum(w * coalesce(uplift, 0)) AS trading_uplift_eur,
       sum(w * coalesce(imb_at_index, 0)) AS imbalance_volume_at_index_eur,
       sum(w * coalesce(pcost, 0)) AS imbalance_cost_allocated_eur,
       sum(imb) AS imbalance_mwh, sum(abs(imb)) AS imbalance_abs_mwh, sum(cost) AS imbalance_cost_eur,
       count(*) FILTER (WHERE imb IS NOT NULL AND cost IS NULL) AS imbalance_unpriced_qh,
       count(*) FILTER (WHERE rd) AS redispatch_qh,
       count(*) FILTER (WHERE rd AND comp IS NULL) AS redispatch_unpriced_qh
FROM aw GROUP BY asset_id ORDER BY asset_id"""

PORTFOLIO_SQL = _WITH + """,
fe AS (
    SELECT t,
           sum(q - fg) FILTER (WHERE measured AND fg IS NOT NULL) AS eg,
           sum(q - fd) FILTER (WHERE measured AND fd IS NOT NULL) AS ed
    FROM a GROUP BY t),
fq AS (SELECT fe.*, qh.pprice FROM fe LEFT JOIN qh ON qh.t = fe.t),
fe_sums AS (
    SELECT""" + _FE.format(k="gate", e="eg", p="pprice", elig="eg IS NOT NULL") + \
    _FE.format(k="delivery", e="ed", p="pprice", elig="ed IS NOT NULL") + """
           0 AS _end
    FROM fq),
asset_sums AS (
    SELECT count(*) FILTER (WHERE is_final) AS final_qh,
           sum(cost) AS standalone_imbalance_cost_eur,
           count(*) FILTER (WHERE rd) AS redispatch_qh,
           count(*) FILTER (WHERE rd AND comp IS NULL) AS redispatch_unpriced_qh
    FROM aw),
qh_sums AS (
    SELECT count(*) FILTER (WHERE in_pf) AS qh,
           sum(qq) AS produced_mwh,
           sum(qq * x) FILTER (WHERE x IS NOT NULL) AS market_value_eur,
           sum(qq) FILTER (WHERE x IS NOT NULL) AS priced_mwh,
           coalesce(sum(bal), 0) AS balanced_mwh,
           coalesce(sum(bal_at_index), 0) AS balanced_at_index_eur,
           avg(x) AS base_price_eur_mwh,
           coalesce(sum(revenue_eur), 0) AS revenue_eur,
           coalesce(sum(trades), 0) AS trades,
           coalesce(sum(sold_mwh), 0) AS sold_mwh,
           coalesce(sum(bought_mwh), 0) AS bought_mwh,
           coalesce(sum(net_mwh), 0) AS net_sold_mwh,
           sum(vwap_eur_mwh * (sold_mwh + bought_mwh))
             / nullif(sum(sold_mwh + bought_mwh) FILTER (WHERE vwap_eur_mwh IS NOT NULL), 0) AS vwap_eur_mwh,
           sum(uplift) AS trading_uplift_eur,
           sum(imb_at_index) AS imbalance_volume_at_index_eur,
           sum(pimb) AS imbalance_mwh, sum(abs(pimb)) AS imbalance_abs_mwh,
           sum(pcost) AS imbalance_cost_eur,
           count(*) FILTER (WHERE pimb IS NOT NULL AND pcost IS NULL) AS imbalance_unpriced_qh
    FROM qh)
SELECT * FROM qh_sums, fe_sums, asset_sums"""

SERIES_SQL = _WITH + """
SELECT t AS delivery_start, qq AS produced_mwh, fgq AS tradeable_forecast_mwh, fdq AS latest_forecast_mwh,
       net_mwh AS net_sold_mwh, x AS idx_full_eur_mwh, vwap_eur_mwh, pimb AS imbalance_mwh,
       pprice AS imbalance_price_eur_mwh, pcost AS imbalance_cost_eur, revenue_eur,
       coalesce(sold_mwh, 0) + coalesce(bought_mwh, 0) AS traded_mwh, bal AS balanced_mwh
FROM qh ORDER BY t"""

# redispatched asset QHs: the compensation is computed by the invoice's rule, in exact decimals
REDISPATCH_SQL = """
SELECT a.asset_id, a.latest_kw, c.price_eur_mwh
FROM asset_qh a LEFT JOIN redispatch_compensation c ON c.delivery_start = a.delivery_start
WHERE a.in_scope AND a.redispatched AND a.delivery_start >= %(start)s AND a.delivery_start < %(end)s"""

NAMES_SQL = "SELECT asset_id, name, asset_type, capacity_kw FROM technical_data"


# the event-time "now" while a replay runs (its clock, or a newer result row); None once the
# replay has sent its last event or without any replay (then the wall clock is "now")
CLOCK_SQL = """
SELECT CASE WHEN bool_and(done) THEN NULL ELSE greatest(
    max(now),
    (SELECT max(known_at) FROM asset_qh), (SELECT max(known_at) FROM portfolio_qh),
    (SELECT max(known_at) FROM trading_qh)) END
FROM replay_clock"""
