"""Performance report per asset and for the portfolio over a period (definitions: docs/report.md).

``performance_report(conn, start_utc, end_utc, assets=None) -> dict`` reads the result tables
(every aggregate is computed in SQL, one statement per scope) and the owner payments of the
contracts (the invoice rules of ``intraday.backoffice.invoices``, applied to the period), and returns a JSON-able
dict::

    period      start / end (UTC, end exclusive), Berlin first / last day, QHs in the period
                (``qh_count``), of them delivered (``delivered_qh``, until ``delivered_until``;
                ``in_progress`` while a period reaches past now: then every figure counts the
                delivered QHs only)
    portfolio   the metrics of the whole portfolio, with its attribution waterfall
    assets      one entry per asset (sorted by id): the same metrics, the portfolio's trading and
                imbalance amounts allocated by produced MWh per QH, and its own waterfall
    assets_total  the listed assets summed (ratios recomputed from the sums)
    contracts   owner payments per contract of the newest CRM file (net amounts, no VAT)
    series      per QH of the portfolio: produced, forecasts, net sold, idx_full, VWAP, imbalance
    warnings    what the reader must know (contracts in error, QHs without prices ...)

``write_report(report, out_dir)`` writes it as JSON, CSV (summary, waterfall, per-QH, contracts)
and a self-contained HTML page with inline SVG charts; ``run_report`` is the command's body.

The waterfall (EUR), for the portfolio; for an asset the trading and imbalance steps are its
allocated share (docs/report.md)::

      market value at idx_full        sum Q x idx_full
    + redispatched positions          sum B x idx_full  (B = balanced_mwh: the positions of the
                                      redispatched assets, which the grid operator delivers for us)
    + trading uplift                  sum (revenue - net_sold x idx_full)  [= (VWAP - idx_full) x volume]
    + imbalance volume at idx_full    - sum (Q + B - net_sold) x idx_full
    - imbalance cost                  - sum imbalance_cost
    = realised revenue                (= trading revenue - imbalance cost)
    + redispatch compensation         sum over redispatched QHs latest forecast MWh x DSO price
    - payouts to owners               infeed payouts + redispatch payouts (invoice rules)
    + fees from owners
    = margin
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import html
import io
import json
import math
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from intraday.backoffice.invoices import (
    MonthData,
    contract_period,
    exact_decimal,
    invoice_contract,
    load_month,
)
from intraday.core.qh import BERLIN, QH_S, UTC, berlin_month_bounds, iso
from intraday.core.settlement import redispatch_compensation, vwap_minus_index
from intraday.sink.db import connect

__all__ = ["ASSET_METRICS", "PORTFOLIO_METRICS", "WATERFALL_STEPS", "delivered_text", "delivered_until", "parse_period",
           "performance_report", "render_html", "report_csv", "report_json", "run_report", "write_report"]

REPORT_VERSION = 1

WATERFALL_STEPS = (  # (key, label, kind): kind absolute = first bar, total = running sum, relative = step
    ("market_value", "Market value at idx_full", "absolute"),
    ("balanced_at_index", "Redispatched positions at idx_full", "relative"),
    ("trading_uplift", "Trading uplift", "relative"),
    ("imbalance_volume_at_index", "Imbalance volume at idx_full", "relative"),
    ("imbalance_cost", "Imbalance cost", "relative"),
    ("realised_revenue", "Realised revenue", "total"),
    ("redispatch_compensation", "Redispatch compensation", "relative"),
    ("owner_payouts", "Payouts to owners", "relative"),
    ("owner_fees", "Fees from owners", "relative"),
    ("margin", "Our margin", "total"),
)

# the metrics of every scope, in the order of the CSV columns
_COMMON = [
    "qh", "produced_mwh", "final_qh",
    "fe_gate_qh", "fe_gate_mae_mwh", "fe_gate_bias_mwh", "fe_gate_abs_mwh", "fe_gate_abs_eur",
    "fe_gate_cost_eur", "fe_gate_unpriced_qh",
    "fe_delivery_qh", "fe_delivery_mae_mwh", "fe_delivery_bias_mwh", "fe_delivery_abs_mwh",
    "fe_delivery_abs_eur", "fe_delivery_cost_eur", "fe_delivery_unpriced_qh",
    "market_value_eur", "priced_mwh", "market_capture_price_eur_mwh", "base_price_eur_mwh", "market_value_factor",
    "balanced_mwh", "balanced_at_index_eur", "revenue_eur", "net_sold_mwh", "trading_uplift_eur", "imbalance_volume_at_index_eur",
    "imbalance_mwh", "imbalance_abs_mwh", "imbalance_cost_eur", "imbalance_unpriced_qh",
    "imbalance_cost_eur_per_mwh", "imbalance_abs_share",
    "realised_revenue_eur", "capture_price_eur_mwh", "capture_rate",
    "redispatch_qh", "redispatch_mwh", "redispatch_compensation_eur", "redispatch_unpriced_qh",
    "infeed_payout_eur", "redispatch_payout_eur", "fees_eur", "contracts", "contracts_in_error",
    "margin_eur", "margin_eur_per_mwh",
]
ASSET_METRICS = _COMMON + ["imbalance_cost_allocated_eur"]
PORTFOLIO_METRICS = _COMMON + [
    "trades", "sold_mwh", "bought_mwh", "vwap_eur_mwh", "matched_vwap_eur_mwh", "idx_on_traded_eur_mwh",
    "vwap_minus_idx_eur_mwh",
    "standalone_imbalance_cost_eur", "netting_benefit_eur", "allocation_residual_eur",
]
# summed over assets as they are (everything else is a ratio, recomputed)
_ADDITIVE = [
    "qh", "produced_mwh", "final_qh",
    "fe_gate_qh", "fe_gate_abs_mwh", "fe_gate_sum_mwh", "fe_gate_abs_eur", "fe_gate_cost_eur", "fe_gate_unpriced_qh",
    "fe_delivery_qh", "fe_delivery_abs_mwh", "fe_delivery_sum_mwh", "fe_delivery_abs_eur", "fe_delivery_cost_eur",
    "fe_delivery_unpriced_qh", "market_value_eur", "priced_mwh", "balanced_mwh", "balanced_at_index_eur",
    "revenue_eur", "net_sold_mwh",
    "trading_uplift_eur", "imbalance_volume_at_index_eur", "imbalance_mwh", "imbalance_abs_mwh",
    "imbalance_cost_eur", "imbalance_unpriced_qh", "imbalance_cost_allocated_eur", "redispatch_qh",
    "redispatch_mwh", "redispatch_compensation_eur", "redispatch_unpriced_qh", "infeed_payout_eur",
    "redispatch_payout_eur", "fees_eur", "contracts", "contracts_in_error",
]

# ---------------------------------------------------------------------------------------------
# SQL: the period's rows, the per-QH portfolio values, the allocation weights

_WITH = """
WITH a AS (
    SELECT a.asset_id, a.delivery_start AS t,
           a.best_kw * 0.25 / 1000 AS q,
           a.latest_kw * 0.25 / 1000 AS fd,
           a.tradeable_kw * 0.25 / 1000 AS fg,
           (a.best_source IN ('final', 'live') AND NOT a.redispatched) AS measured,
           a.best_source = 'final' AS is_final,
           a.redispatched AS rd,
           i.imbalance_mwh AS imb, i.price_eur_mwh AS price, i.cost_eur AS cost
    FROM asset_qh a
    LEFT JOIN asset_imbalance_qh i ON i.asset_id = a.asset_id AND i.delivery_start = a.delivery_start
    WHERE a.in_scope AND a.delivery_start >= %(start)s AND a.delivery_start < %(end)s),
pf AS (
    SELECT delivery_start AS t, true AS in_pf,
           best_of_infeed_kw * 0.25 / 1000 AS qq,
           latest_forecast_kw * 0.25 / 1000 AS fdq,
           tradeable_forecast_kw * 0.25 / 1000 AS fgq,
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

_ASSETS_SQL = _WITH + """
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

_PORTFOLIO_SQL = _WITH + """,
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

_SERIES_SQL = _WITH + """
SELECT t AS delivery_start, qq AS produced_mwh, fgq AS tradeable_forecast_mwh, fdq AS latest_forecast_mwh,
       net_mwh AS net_sold_mwh, x AS idx_full_eur_mwh, vwap_eur_mwh, pimb AS imbalance_mwh,
       pprice AS imbalance_price_eur_mwh, pcost AS imbalance_cost_eur, revenue_eur,
       coalesce(sold_mwh, 0) + coalesce(bought_mwh, 0) AS traded_mwh, bal AS balanced_mwh
FROM qh ORDER BY t"""

# redispatched asset QHs: the compensation is computed by the invoice's rule, in exact decimals
_REDISPATCH_SQL = """
SELECT a.asset_id, a.latest_kw, c.price_eur_mwh
FROM asset_qh a LEFT JOIN redispatch_compensation c ON c.delivery_start = a.delivery_start
WHERE a.in_scope AND a.redispatched AND a.delivery_start >= %(start)s AND a.delivery_start < %(end)s"""

_NAMES_SQL = "SELECT asset_id, name, asset_type, capacity_kw FROM technical_data"


# ---------------------------------------------------------------------------------------------
# helpers


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        raise TypeError("give an instant, not a date (parse_period turns Berlin days into instants)")
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValueError(f"an aware instant is needed, not {value!r}")
    return value.astimezone(UTC)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def _num(v: Any) -> float | int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    f = float(v)
    return None if math.isnan(f) else (0.0 if f == 0 else f)


def _z(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _redispatch_amounts(rows: Iterable[dict], asset_rows: dict[str, dict], port: dict) -> None:
    """``redispatch_mwh`` / ``redispatch_compensation_eur`` per asset and for the portfolio by
    ``intraday.core.settlement.redispatch_compensation`` (as on the invoices), in place."""
    mwh: dict[str, Decimal] = {}
    eur: dict[str, Decimal] = {}
    for r in rows:
        q, amount = redispatch_compensation(exact_decimal(r["latest_kw"]), exact_decimal(r["price_eur_mwh"]))
        mwh[r["asset_id"]] = mwh.get(r["asset_id"], Decimal(0)) + q
        eur[r["asset_id"]] = eur.get(r["asset_id"], Decimal(0)) + (amount or Decimal(0))
    for a, row in asset_rows.items():
        row["redispatch_mwh"] = float(mwh.get(a, Decimal(0)))
        row["redispatch_compensation_eur"] = float(eur.get(a, Decimal(0)))
    port["redispatch_mwh"] = float(sum(mwh.values(), Decimal(0)))
    port["redispatch_compensation_eur"] = float(sum(eur.values(), Decimal(0)))


def parse_period(from_text: str, to_text: str) -> tuple[dt.datetime, dt.datetime]:
    """``--from`` / ``--to`` as UTC ``[start, end)``: Berlin calendar days (``YYYY-MM-DD``, both
    inclusive) or ISO instants (``2025-06-08T10:00Z``; ``--to`` exclusive; naive = UTC)."""
    def one(text: str, is_end: bool) -> dt.datetime:
        text = text.strip()
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if is_end else 0)
            return dt.datetime.combine(day, dt.time(0), tzinfo=BERLIN).astimezone(UTC)
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)

    start, end = one(from_text, False), one(to_text, True)
    if end <= start:
        raise ValueError(f"empty period: {from_text} .. {to_text}")
    return start, end


# ---------------------------------------------------------------------------------------------
# owner payments: the invoice rules of intraday.backoffice.invoices over the period


@dataclasses.dataclass(frozen=True)
class _PeriodData(MonthData):
    """A month's data seen through the part ``[seg_start, seg_end)`` of it that the report covers."""

    seg_start: int = 0
    seg_end: int = 0

    @property
    def bounds(self) -> tuple[int, int]:
        return self.seg_start, self.seg_end


def _months(start_s: int, end_s: int) -> Iterable[tuple[int, int, int, int]]:
    """(year, month, month_start, month_end) of every Berlin month overlapping [start, end)."""
    d = dt.datetime.fromtimestamp(start_s, tz=UTC).astimezone(BERLIN)
    y, m = d.year, d.month
    while True:
        m0, m1 = berlin_month_bounds(y, m)
        if m0 >= end_s:
            return
        yield y, m, m0, m1
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def owner_payments(conn: psycopg.Connection, start_s: int, end_s: int) -> list[dict]:
    """Per contract of the newest CRM file: infeed payout, redispatch payout and fees (net EUR,
    exact sums of the invoice lines) for the invoiced QHs of ``[start_s, end_s)``; a
    ``fixed_for_capacity`` fee for the Berlin days of the period the contract covers, pro rata of
    the month's days (``intraday.core.settlement.capacity_fee``, as on the invoice).
    A contract in status ``error`` gets no amounts (``status: error`` and its ``errors``)."""
    out: dict[str, dict] = {}
    for y, m, m0, m1 in _months(start_s, end_s):
        s0, s1 = max(start_s, m0), min(end_s, m1)
        data = load_month(conn, y, m)
        seg = _PeriodData(**{f.name: getattr(data, f.name) for f in dataclasses.fields(MonthData)},
                          seg_start=s0, seg_end=s1)
        for c in data.contracts:
            c0, c1 = contract_period(c, s0, s1)
            inv = invoice_contract(c, seg)
            p = inv.payload
            rec = out.setdefault(c.contract_id, {
                "contract_id": c.contract_id, "asset_id": c.asset_id, "status": "ok", "errors": [],
                "price_model": c.price_model, "fee_model": c.fee_model, "qh": 0, "volume_mwh": Decimal(0),
                "infeed_payout_eur": Decimal(0), "redispatch_payout_eur": Decimal(0), "fees_eur": Decimal(0),
                "unpriced_qh": 0})
            if p["status"] == "error":
                rec["status"], rec["errors"] = "error", p["errors"]
                continue
            if c1 <= c0:
                continue
            rec["qh"] += p["qh_count"]
            rec["unpriced_qh"] += p["unpriced_qh"]
            for ln in inv.lines:
                amount = ln.amount_eur or Decimal(0)
                if ln.kind == "infeed":
                    rec["infeed_payout_eur"] += amount
                    rec["volume_mwh"] += ln.mwh or Decimal(0)
                elif ln.kind == "redispatch":
                    rec["redispatch_payout_eur"] += amount
                else:  # fee lines; a capacity fee is one line, pro rata of the days covered
                    rec["fees_eur"] += amount
    records = []
    for rec in sorted(out.values(), key=lambda r: r["contract_id"]):
        if rec["status"] == "error":
            for k in ("infeed_payout_eur", "redispatch_payout_eur", "fees_eur", "volume_mwh"):
                rec[k] = None
        records.append({k: (float(v) if isinstance(v, Decimal) else v) for k, v in rec.items()})
    return records


# ---------------------------------------------------------------------------------------------
# the report


def _finish(m: dict[str, Any], base_price: float | None) -> dict[str, Any]:
    """Derived figures of one scope from its sums (in place; returns ``m``)."""
    for k in ("gate", "delivery"):
        n = m.get(f"fe_{k}_qh") or 0
        m[f"fe_{k}_mae_mwh"] = _div(m.get(f"fe_{k}_abs_mwh"), n)
        m[f"fe_{k}_bias_mwh"] = _div(m.get(f"fe_{k}_sum_mwh"), n)
    produced = m.get("produced_mwh")
    m["market_capture_price_eur_mwh"] = _div(m.get("market_value_eur"), m.get("priced_mwh"))
    m["base_price_eur_mwh"] = base_price
    m["market_value_factor"] = _div(m["market_capture_price_eur_mwh"], base_price)
    cost = m["imbalance_cost_allocated_eur"] if "imbalance_cost_allocated_eur" in m else m.get("imbalance_cost_eur")
    steps = {
        "market_value": _z(m.get("market_value_eur")),
        "balanced_at_index": _z(m.get("balanced_at_index_eur")),
        "trading_uplift": _z(m.get("trading_uplift_eur")),
        "imbalance_volume_at_index": _z(m.get("imbalance_volume_at_index_eur")),
        "imbalance_cost": 0.0 - _z(cost),  # 0.0 - x: never a negative zero
    }
    realised = sum(steps.values())
    steps["realised_revenue"] = realised
    steps["redispatch_compensation"] = _z(m.get("redispatch_compensation_eur"))
    steps["owner_payouts"] = 0.0 - (_z(m.get("infeed_payout_eur")) + _z(m.get("redispatch_payout_eur")))
    steps["owner_fees"] = _z(m.get("fees_eur"))
    margin = realised + steps["redispatch_compensation"] + steps["owner_payouts"] + steps["owner_fees"]
    steps["margin"] = margin
    m["realised_revenue_eur"] = realised
    m["capture_price_eur_mwh"] = _div(realised, produced)
    m["capture_rate"] = _div(m["capture_price_eur_mwh"], m["market_capture_price_eur_mwh"])
    m["imbalance_cost_eur_per_mwh"] = _div(m.get("imbalance_cost_eur"), produced)
    m["imbalance_abs_share"] = _div(m.get("imbalance_abs_mwh"), produced)
    m["margin_eur"] = margin
    m["margin_eur_per_mwh"] = _div(margin, produced)
    m["waterfall"] = [{"step": key, "label": label, "kind": kind, "eur": steps[key]}
                      for key, label, kind in WATERFALL_STEPS]
    return m


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k in ("waterfall", "asset_id", "name", "asset_type") else _num(v)) for k, v in d.items()}


def _payments_of(records: list[dict], asset: str | None = None) -> dict[str, Any]:
    mine = [r for r in records if asset is None or r["asset_id"] == asset]
    ok = [r for r in mine if r["status"] == "ok"]
    return {"infeed_payout_eur": sum((r["infeed_payout_eur"] for r in ok), 0.0),
            "redispatch_payout_eur": sum((r["redispatch_payout_eur"] for r in ok), 0.0),
            "fees_eur": sum((r["fees_eur"] for r in ok), 0.0),
            "contracts": len(mine), "contracts_in_error": len(mine) - len(ok)}


# the event-time "now" while a replay runs (its clock, or a newer result row); None once the
# replay has sent its last event or without any replay (then the wall clock is "now")
_CLOCK_SQL = """
SELECT CASE WHEN bool_and(done) THEN NULL ELSE greatest(
    max(now),
    (SELECT max(known_at) FROM asset_qh), (SELECT max(known_at) FROM portfolio_qh),
    (SELECT max(known_at) FROM trading_qh)) END
FROM replay_clock"""


def delivered_until(conn: psycopg.Connection, clock: Any = None) -> dt.datetime:
    """The end of the last delivered QH: a QH ``[t, t + 15 min)`` is delivered once the clock has
    reached ``t + 15 min``. The clock is ``clock`` if given, else the running replay's clock, else
    the wall clock (a finished replay has delivered its whole day)."""
    if clock is None:
        clock = conn.execute(_CLOCK_SQL).fetchone()[0]
        if clock is None:
            clock = dt.datetime.now(tz=UTC)
    s = int(_utc(clock).timestamp())
    return dt.datetime.fromtimestamp(s - s % QH_S, tz=UTC)


def performance_report(conn: psycopg.Connection, start_utc: Any, end_utc: Any,
                       assets: Sequence[str] | None = None, *, clock: Any = None) -> dict[str, Any]:
    """The performance report of ``[start_utc, end_utc)`` (aware instants or ISO text).

    ``assets``: the assets listed (default every asset with in-scope rows or a contract); the
    portfolio is always the whole portfolio. Reads portfolio-wide tables: a staff report, not
    for asset owners (it shows our trading result and margin).

    A period that reaches past "now" (``clock``, default :func:`delivered_until`'s) is a period
    in progress: every figure (produced volume, revenue, imbalance, payments, margin) counts the
    delivered QHs only, and ``period`` says how many of the expected QHs those are.
    """
    start, end = _utc(start_utc), _utc(end_utc)
    if end <= start:
        raise ValueError(f"empty period {start.isoformat()} .. {end.isoformat()}")
    expected_qh = int((end - start).total_seconds()) // QH_S
    cut = min(end, max(start, delivered_until(conn, clock)))
    in_progress = cut < end
    end_of_period = end
    end = cut
    params = {"start": start, "end": end}
    with conn.cursor(row_factory=dict_row) as cur:
        asset_rows = {r["asset_id"]: dict(r) for r in cur.execute(_ASSETS_SQL, params)}
        port = dict(cur.execute(_PORTFOLIO_SQL, params).fetchone())
        series = [dict(r) for r in cur.execute(_SERIES_SQL, params)]
        names = {r["asset_id"]: r for r in cur.execute(_NAMES_SQL)}
        redispatched = cur.execute(_REDISPATCH_SQL, params).fetchall()
    _redispatch_amounts(redispatched, asset_rows, port)
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    payments = owner_payments(conn, start_s, end_s) if end > start else []
    base = _num(port.pop("base_price_eur_mwh"))
    port.pop("_end", None)

    # every asset: rows in the period or a contract with amounts
    all_assets = sorted(set(asset_rows) | {r["asset_id"] for r in payments})
    per_asset: dict[str, dict[str, Any]] = {}
    for a in all_assets:
        m: dict[str, Any] = dict.fromkeys(_ADDITIVE)  # an asset with a contract but no rows: no values
        m.update({k: 0 for k in _ADDITIVE if k == "qh" or k.endswith("_qh")})
        m.update({k: _num(v) for k, v in asset_rows.get(a, {}).items() if k != "asset_id"})
        m.update(_payments_of(payments, a))
        per_asset[a] = _finish(m, base)

    port.update(_payments_of(payments))
    for k in ("redispatch_mwh", "redispatch_compensation_eur", "standalone_imbalance_cost_eur"):
        port[k] = _num(port.get(k))
    p = _finish({k: _num(v) for k, v in port.items()}, base)
    # our VWAP against idx_full over the QHs that have both (the desk's rule, one function)
    matched, index, delta = vwap_minus_index(
        (s["vwap_eur_mwh"], s["idx_full_eur_mwh"], s["traded_mwh"]) for s in series)
    p["matched_vwap_eur_mwh"], p["idx_on_traded_eur_mwh"], p["vwap_minus_idx_eur_mwh"] = matched, index, delta
    p["netting_benefit_eur"] = _z(p.get("standalone_imbalance_cost_eur")) - _z(p.get("imbalance_cost_eur"))
    p["allocation_residual_eur"] = p["margin_eur"] - sum(m["margin_eur"] for m in per_asset.values())

    listed = all_assets if assets is None else [a for a in all_assets if a in set(assets)]
    warnings = []
    if assets is not None:
        unknown = sorted(set(assets) - set(all_assets))
        if unknown:
            warnings.append(f"no data in the period for asset(s) {', '.join(unknown)}")
    asset_list = []
    for a in listed:
        n = names.get(a) or {}
        asset_list.append(_clean({"asset_id": a, "name": n.get("name"), "asset_type": n.get("asset_type"),
                                  "capacity_kw": n.get("capacity_kw"), **per_asset[a]}))
    total = {k: sum(_z(per_asset[a].get(k)) for a in listed) for k in _ADDITIVE}
    total = _finish(total, base)

    for r in payments:
        if r["status"] == "error":
            warnings.append(f"contract {r['contract_id']} ({r['asset_id']}) is in error, its payments are not "
                            f"counted: {'; '.join(r['errors'])}")
    if p.get("imbalance_unpriced_qh"):
        warnings.append(f"{p['imbalance_unpriced_qh']} portfolio QHs have no imbalance price: their cost counts 0")
    unpriced_market = sum(1 for s in series if s["idx_full_eur_mwh"] is None and s["produced_mwh"])
    if unpriced_market:
        warnings.append(f"{unpriced_market} QHs with production have no idx_full (no public trade): they count at "
                        "0 EUR/MWh in the market value; their revenue appears as uplift")
    if p.get("redispatch_unpriced_qh"):
        warnings.append(f"{p['redispatch_unpriced_qh']} redispatched asset QHs have no DSO compensation price")
    if abs(p["allocation_residual_eur"]) > 0.005:
        warnings.append(f"{p['allocation_residual_eur']:.2f} EUR of the portfolio result is not allocated to "
                        "assets (QHs without positive production, or negative production)")

    delivered_qh = (end_s - start_s) // QH_S
    if in_progress:
        until = end.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z")
        warnings.insert(0, f"period in progress: {delivered_qh} of {expected_qh} QHs delivered (until {until}); "
                           "every figure counts the delivered QHs only")
    first_day = start.astimezone(BERLIN).date()
    last_day = (end_of_period - dt.timedelta(microseconds=1)).astimezone(BERLIN).date()
    return {
        "report": "performance", "version": REPORT_VERSION, "currency": "EUR", "definitions": "docs/report.md",
        "generated_at": dt.datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "period": {"start": iso(start_s), "end": iso(int(end_of_period.timestamp())),
                   "first_day": first_day.isoformat(), "last_day": last_day.isoformat(), "qh_count": expected_qh,
                   "delivered_qh": delivered_qh, "delivered_until": iso(end_s), "in_progress": in_progress},
        "portfolio": _clean(p),
        "assets": asset_list,
        "assets_total": _clean({**total, "asset_count": len(listed)}),
        "contracts": payments if assets is None else [r for r in payments if r["asset_id"] in set(listed)],
        "series": [{**{k: _num(v) for k, v in s.items() if k != "delivery_start"},
                    "delivery_start": s["delivery_start"].astimezone(UTC).isoformat().replace("+00:00", "Z")}
                   for s in series],
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------
# files


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _scopes(report: dict) -> list[tuple[str, str, dict]]:
    """(scope, label, metrics) for the portfolio, every asset and the assets' total."""
    out = [("portfolio", "Portfolio", report["portfolio"])]
    out += [(a["asset_id"], a["asset_id"] + (f" · {a['name']}" if a.get("name") else ""), a) for a in report["assets"]]
    out.append(("assets_total", "Listed assets (total; ratios from the totals)", report["assets_total"]))
    return out


def _csv_text(header: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in r])
    return buf.getvalue()


def report_csv(report: dict) -> str:
    """The summary CSV: one row per scope (portfolio, assets, assets total), one column per metric."""
    cols = list(dict.fromkeys(PORTFOLIO_METRICS + ASSET_METRICS))
    return _csv_text(["scope", "period_start", "period_end"] + cols,
                     ([scope, report["period"]["start"], report["period"]["end"]] + [m.get(c) for c in cols]
                      for scope, _, m in _scopes(report)))


def waterfall_csv(report: dict) -> str:
    return _csv_text(["scope", "step", "label", "kind", "eur"],
                     ([scope, s["step"], s["label"], s["kind"], s["eur"]]
                      for scope, _, m in _scopes(report) for s in m["waterfall"]))


def series_csv(report: dict) -> str:
    cols = ["delivery_start", "produced_mwh", "tradeable_forecast_mwh", "latest_forecast_mwh", "net_sold_mwh",
            "idx_full_eur_mwh", "vwap_eur_mwh", "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_cost_eur",
            "revenue_eur"]
    return _csv_text(cols, ([s.get(c) for c in cols] for s in report["series"]))


def contracts_csv(report: dict) -> str:
    cols = ["contract_id", "asset_id", "status", "price_model", "fee_model", "qh", "volume_mwh", "infeed_payout_eur",
            "redispatch_payout_eur", "fees_eur", "unpriced_qh", "errors"]
    return _csv_text(cols, ([("; ".join(r[c]) if c == "errors" else r.get(c)) for c in cols]
                            for r in report["contracts"]))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """``performance_report.json``, ``.csv`` (summary), ``_waterfall.csv``, ``_qh.csv``,
    ``_contracts.csv`` and ``.html`` in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        _write(out / "performance_report.json", report_json(report)),
        _write(out / "performance_report.csv", report_csv(report)),
        _write(out / "performance_report_waterfall.csv", waterfall_csv(report)),
        _write(out / "performance_report_qh.csv", series_csv(report)),
        _write(out / "performance_report_contracts.csv", contracts_csv(report)),
        _write(out / "performance_report.html", render_html(report)),
    ]


# ---------------------------------------------------------------------------------------------
# HTML with inline SVG charts (no script, no network: it can be mailed and printed)

_GOOD, _BAD, _TOTAL, _GREY = "#2ca02c", "#d62728", "#1f4e79", "#9ecae1"


def _fmt(v: Any, digits: int = 2, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if pct:
        return f"{100 * v:,.1f} %"
    return f"{v:,.{digits}f}"


def _scale(lo: float, hi: float, top: float, bottom: float):
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    return lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _axis(y, ticks: list[float], left: float, right: float, unit: str) -> str:
    e = html.escape
    parts = []
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">'
                     f'{e(_fmt(t, 0 if abs(t) >= 10 else 2))}</text>')
    parts.append(f'<text x="{left - 4}" y="{y(ticks[-1]) - 10 if ticks else 30:.1f}" text-anchor="end" '
                 f'font-size="11" fill="#555">{e(unit)}</text>')
    return "".join(parts)


def _title(text: str) -> str:
    return f'<text x="8" y="16" font-size="13" font-weight="600">{html.escape(text)}</text>'


def _plot_area(width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` of a chart's plot: room for the title, the axis labels and,
    below, the category labels or the legend."""
    return 70, width - 10, 40, height - 50


def _svg_open(title: str, width: int, height: int) -> str:
    """The opening ``<svg>`` element of a chart, with its title."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}" font-family="system-ui, sans-serif">' + _title(title))


def _zero_line(y, left: float, right: float) -> str:
    return f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>'


def _legend(series: list[tuple[str, list[float | None], str]], left: float, height: int,
            swatch: int, text_dy: int) -> list[str]:
    """One entry per series along the bottom: a swatch ``swatch`` px high in its colour, the name
    with its baseline ``text_dy`` px above the bottom edge."""
    out, lx = [], left
    for name, _, color in series:
        out.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="{swatch}" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{height - text_dy}" font-size="11">{html.escape(name)}</text>')
        lx += 14 + 7 * len(name) + 20
    return out


def _wrap(label: str, width: int = 14) -> list[str]:
    """A label in lines of at most ``width`` characters (words kept whole)."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def svg_waterfall(steps: list[dict], title: str, width: int = 760, height: int = 330) -> str:
    """A waterfall chart of ``report[...]['waterfall']``: green up, red down, blue totals."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    running, bars = 0.0, []
    for s in steps:
        if s["kind"] == "absolute":
            y0, y1 = 0.0, s["eur"]
            running = s["eur"]
        elif s["kind"] == "total":
            y0, y1 = 0.0, running
        else:
            y0, y1 = running, running + s["eur"]
            running = y1
        bars.append((s, y0, y1))
    lo = min(0.0, *(min(b[1], b[2]) for b in bars))
    hi = max(0.0, *(max(b[1], b[2]) for b in bars))
    pad = 0.05 * (hi - lo or 1)
    y = _scale(lo - pad, hi + pad, top, bottom)
    slot = (right - left) / max(1, len(bars))
    out = [_svg_open(title, width, height), _axis(y, _nice_ticks(lo - pad, hi + pad), left, right, "EUR")]
    for i, (s, y0, y1) in enumerate(bars):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        color = _TOTAL if s["kind"] != "relative" else (_GOOD if s["eur"] >= 0 else _BAD)
        top_y, h = min(y(y0), y(y1)), max(1.0, abs(y(y0) - y(y1)))
        out.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}">'
                   f'<title>{e(s["label"])}: {e(_fmt(s["eur"]))} EUR</title></rect>')
        out.append(f'<text x="{x + w / 2:.1f}" y="{top_y - 3:.1f}" text-anchor="middle" font-size="10">'
                   f'{e(_fmt(s["eur"], 0))}</text>')
        lines = "".join(f'<tspan x="{x + w / 2:.1f}" dy="{0 if k == 0 else 11}">{e(t)}</tspan>'
                        for k, t in enumerate(_wrap(s["label"])))
        out.append(f'<text x="{x + w / 2:.1f}" y="{bottom + 13}" text-anchor="middle" font-size="10">{lines}</text>')
    out += [_zero_line(y, left, right), "</svg>"]
    return "".join(out)


def svg_bars(categories: list[str], series: list[tuple[str, list[float | None], str]], title: str, unit: str,
             width: int = 760, height: int = 260) -> str:
    """Grouped vertical bars: one group per category, one bar per series (name, values, colour)."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    lo, hi = min(0.0, *vals) if vals else 0.0, max(0.0, *vals) if vals else 1.0
    y = _scale(lo, hi * 1.08 if hi > 0 else hi, top, bottom)
    slot = (right - left) / max(1, len(categories))
    bw = slot * 0.8 / max(1, len(series))
    out = [_svg_open(title, width, height),
           _axis(y, _nice_ticks(lo, hi * 1.08 if hi > 0 else hi), left, right, unit)]
    for i, cat in enumerate(categories):
        for j, (name, vs, color) in enumerate(series):
            v = vs[i]
            if v is None:
                continue
            x = left + i * slot + slot * 0.1 + j * bw
            top_y, h = min(y(0), y(v)), max(1.0, abs(y(0) - y(v)))
            out.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{color}">'
                       f'<title>{e(cat)} {e(name)}: {e(_fmt(v))} {e(unit)}</title></rect>')
        out.append(f'<text x="{left + (i + 0.5) * slot:.1f}" y="{bottom + 14}" text-anchor="middle" '
                   f'font-size="10">{e(cat)}</text>')
    out += _legend(series, left, height, swatch=10, text_dy=7)
    out += [_zero_line(y, left, right), "</svg>"]
    return "".join(out)


def svg_lines(labels: list[str], series: list[tuple[str, list[float | None], str]], title: str, unit: str,
              width: int = 760, height: int = 240) -> str:
    """Lines over the QHs (labels: Berlin HH:MM), gaps where a value is missing."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    y = _scale(lo, hi, top, bottom)
    n = max(1, len(labels) - 1)
    x = lambda i: left + i / n * (right - left)  # noqa: E731
    out = [_svg_open(title, width, height), _axis(y, _nice_ticks(lo, hi), left, right, unit)]
    step = max(1, len(labels) // 8)
    for i in range(0, len(labels), step):
        out.append(f'<text x="{x(i):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{e(labels[i])}</text>')
    for name, vs, color in series:
        path, pen = [], False
        for i, v in enumerate(vs):
            if v is None:
                pen = False
                continue
            path.append(f"{'L' if pen else 'M'}{x(i):.1f},{y(v):.1f}")
            pen = True
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.6">'
                   f'<title>{e(name)}</title></path>')
    out += _legend(series, left, height, swatch=3, text_dy=11)
    out.append("</svg>")
    return "".join(out)


_KPI_ROWS = [  # (metric, label, digits or "pct")
    ("produced_mwh", "Produced (MWh)", 3),
    ("fe_gate_mae_mwh", "Forecast MAE at gate closure (MWh/QH)", 4),
    ("fe_gate_bias_mwh", "Forecast bias at gate closure (MWh/QH)", 4),
    ("fe_delivery_mae_mwh", "Forecast MAE at delivery (MWh/QH)", 4),
    ("fe_delivery_bias_mwh", "Forecast bias at delivery (MWh/QH)", 4),
    ("fe_gate_abs_eur", "|Error| x imbalance price, gate closure (EUR)", 2),
    ("fe_delivery_abs_eur", "|Error| x imbalance price, delivery (EUR)", 2),
    ("market_capture_price_eur_mwh", "Market capture price, idx_full weighted by production (EUR/MWh)", 2),
    ("base_price_eur_mwh", "Base price, mean idx_full (EUR/MWh)", 2),
    ("capture_price_eur_mwh", "Realised capture price (EUR/MWh)", 2),
    ("capture_rate", "Capture rate (realised / market capture)", "pct"),
    ("revenue_eur", "Trading revenue (EUR)", 2),
    ("imbalance_mwh", "Imbalance, net (MWh)", 3),
    ("imbalance_abs_mwh", "Imbalance, absolute (MWh)", 3),
    ("imbalance_cost_eur", "Imbalance cost (EUR)", 2),
    ("imbalance_cost_eur_per_mwh", "Imbalance cost per produced MWh (EUR/MWh)", 2),
    ("redispatch_mwh", "Redispatch volume (MWh, latest forecast)", 3),
    ("redispatch_compensation_eur", "Redispatch compensation (EUR)", 2),
    ("infeed_payout_eur", "Infeed payouts to owners (EUR)", 2),
    ("fees_eur", "Fees from owners (EUR)", 2),
    ("margin_eur", "Our margin (EUR)", 2),
    ("margin_eur_per_mwh", "Our margin per produced MWh (EUR/MWh)", 2),
]


def _berlin_label(text: str) -> str:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(BERLIN)
    return t.strftime("%d.%m. %H:%M")


def delivered_text(period: dict) -> str:
    """"96 quarter-hours", or for a period in progress "40 of 96 quarter-hours delivered (until
    2025-06-08 10:00 CEST)"."""
    if not period.get("in_progress"):
        return f"{period['qh_count']} quarter-hours"
    until = dt.datetime.fromisoformat(period["delivered_until"].replace("Z", "+00:00")).astimezone(BERLIN)
    return (f"{period['delivered_qh']} of {period['qh_count']} quarter-hours delivered "
            f"(until {until.strftime('%Y-%m-%d %H:%M %Z')})")


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (tables and inline SVG charts)."""
    e = html.escape
    scopes = _scopes(report)
    period = report["period"]
    head = "".join(f"<th>{e(label)}</th>" for _, label, _ in scopes)
    rows = []
    for key, label, digits in _KPI_ROWS:
        cells = "".join(f"<td class=n>{e(_fmt(m.get(key), 2 if digits == 'pct' else digits, digits == 'pct'))}</td>"
                        for _, _, m in scopes)
        rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    wf_rows = []
    for step, label, _ in WATERFALL_STEPS:
        cells = "".join(f"<td class=n>{e(_fmt(next(s['eur'] for s in m['waterfall'] if s['step'] == step)))}</td>"
                        for _, _, m in scopes)
        wf_rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    assets = report["assets"]
    cats = [a["asset_id"] for a in assets]
    charts = [svg_waterfall(report["portfolio"]["waterfall"], "Portfolio attribution")]
    if assets:
        charts.append(svg_bars(cats, [("produced MWh", [a["produced_mwh"] for a in assets], _TOTAL)],
                               "Produced per asset", "MWh"))
        charts.append(svg_bars(cats, [("MAE gate closure", [a["fe_gate_mae_mwh"] for a in assets], "#ff7f0e"),
                                      ("MAE delivery", [a["fe_delivery_mae_mwh"] for a in assets], _GREY)],
                               "Forecast error per asset", "MWh/QH"))
        charts.append(svg_bars(cats, [("capture rate", [None if a["capture_rate"] is None else 100 * a["capture_rate"]
                                                        for a in assets], _GOOD),
                                      ("market value factor",
                                       [None if a["market_value_factor"] is None else 100 * a["market_value_factor"]
                                        for a in assets], _GREY)], "Capture per asset", "%"))
        charts.append(svg_bars(cats, [("margin", [a["margin_eur"] for a in assets], _TOTAL)],
                               "Our margin per asset", "EUR"))
    series = report["series"]
    if series:
        labels = [_berlin_label(s["delivery_start"]) for s in series]
        charts.append(svg_lines(labels, [("produced", [s["produced_mwh"] for s in series], "#111111"),
                                         ("tradeable forecast", [s["tradeable_forecast_mwh"] for s in series],
                                          "#1f77b4"),
                                         ("net sold", [s["net_sold_mwh"] for s in series], _GOOD)],
                                "Portfolio per QH", "MWh"))
        charts.append(svg_lines(labels, [("idx_full", [s["idx_full_eur_mwh"] for s in series], "#1f77b4"),
                                         ("our VWAP", [s["vwap_eur_mwh"] for s in series], "#111111"),
                                         ("imbalance price", [s["imbalance_price_eur_mwh"] for s in series],
                                          "#ff7f0e")],
                                "Prices per QH", "EUR/MWh"))
    contract_rows = "".join(
        f"<tr><td>{e(r['contract_id'])}</td><td>{e(r['asset_id'])}</td><td>{e(r['status'])}</td>"
        f"<td>{e(str(r['price_model']))} / {e(str(r['fee_model']))}</td><td class=n>{e(_fmt(r['volume_mwh'], 3))}</td>"
        f"<td class=n>{e(_fmt(r['infeed_payout_eur']))}</td><td class=n>{e(_fmt(r['redispatch_payout_eur']))}</td>"
        f"<td class=n>{e(_fmt(r['fees_eur']))}</td><td>{e('; '.join(r['errors']))}</td></tr>"
        for r in report["contracts"])
    warnings = "".join(f"<li>{e(w)}</li>" for w in report["warnings"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Performance report {e(period['first_day'])} to {e(period['last_day'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:80em;margin:1.5em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border-bottom:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.9em}}.n{{text-align:right;font-variant-numeric:tabular-nums}}
.charts svg{{display:block;margin:.5em 0 1.2em}}.warn{{color:#a60}}</style></head><body>
<h1>Performance report</h1>
<p>Delivery {e(period['first_day'])} to {e(period['last_day'])} (Europe/Berlin), UTC [{e(period['start'])},
{e(period['end'])}), {delivered_text(period)}. Amounts in EUR, net of VAT. Definitions:
{e(report['definitions'])}. Generated {e(report['generated_at'])}.</p>
{f'<ul class="warn">{warnings}</ul>' if warnings else ''}
<h2>Key figures</h2>
<table><tr><th></th>{head}</tr>{''.join(rows)}</table>
<h2>Attribution waterfall (EUR)</h2>
<table><tr><th></th>{head}</tr>{''.join(wf_rows)}</table>
<div class="charts">{''.join(charts)}</div>
<h2>Owner payments per contract (net EUR)</h2>
<table><tr><th>Contract</th><th>Asset</th><th>Status</th><th>Price / fee model</th><th class=n>MWh</th>
<th class=n>Infeed payout</th><th class=n>Redispatch payout</th><th class=n>Fees</th><th>Errors</th></tr>
{contract_rows}</table>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# command


def run_report(database_url: str, start: dt.datetime, end: dt.datetime, out_dir: Path,
               assets: Sequence[str] | None = None) -> int:
    """``intraday report --from --to --out``: compute and write; prints the files and the headline."""
    with connect(database_url) as conn:
        report = performance_report(conn, start, end, assets)
    listed = {a["asset_id"] for a in report["assets"]}
    unknown = sorted(set(assets or ()) - listed)
    if unknown:  # a typo must not give an empty report and exit 0
        print(f"intraday report: no data in {report['period']['first_day']} .. {report['period']['last_day']}"
              f" for asset(s) {', '.join(unknown)} (known: {', '.join(sorted(listed)) or 'none'})", file=sys.stderr)
        return 1
    paths = write_report(report, Path(out_dir))
    p = report["portfolio"]
    print(f"{report['period']['first_day']} .. {report['period']['last_day']}: produced {_fmt(p['produced_mwh'], 3)} "
          f"MWh, realised revenue {_fmt(p['realised_revenue_eur'])} EUR, margin {_fmt(p['margin_eur'])} EUR, "
          f"capture rate {_fmt(p['capture_rate'], pct=True)}")
    for w in report["warnings"]:
        print(f"note: {w}")
    for path in paths:
        print(path)
    return 0
