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

:mod:`intraday.backoffice.report.files` writes it as JSON, CSV (summary, waterfall, per-QH,
contracts) and a self-contained HTML page (:mod:`intraday.backoffice.report.page`); its SELECTs
are :mod:`intraday.readmodels.performance`.

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

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from intraday.core.invoicing import MonthData, contract_period, exact_decimal, invoice_contract
from intraday.core.qh import BERLIN, QH_S, UTC, as_utc, berlin_month_bounds, floor_qh, iso, to_dt
from intraday.core.settlement import redispatch_compensation, vwap_minus_index
from intraday.readmodels.invoicing import load_month
from intraday.readmodels.performance import (
    ASSETS_SQL,
    CLOCK_SQL,
    NAMES_SQL,
    PORTFOLIO_SQL,
    REDISPATCH_SQL,
    SERIES_SQL,
)

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



def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        raise TypeError("give an instant, not a date (parse_period turns Berlin days into instants)")
    if not isinstance(value, dt.datetime | str):
        raise ValueError(f"an aware instant is needed, not {value!r}")
    return as_utc(value)


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
    d = to_dt(start_s).astimezone(BERLIN)
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


def delivered_until(conn: psycopg.Connection, clock: Any = None) -> dt.datetime:
    """The end of the last delivered QH: a QH ``[t, t + 15 min)`` is delivered once the clock has
    reached ``t + 15 min``. The clock is ``clock`` if given, else the running replay's clock, else
    the wall clock (a finished replay has delivered its whole day)."""
    if clock is None:
        clock = conn.execute(CLOCK_SQL).fetchone()[0]
        if clock is None:
            clock = dt.datetime.now(tz=UTC)
    s = int(_utc(clock).timestamp())
    return to_dt(floor_qh(s))


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
        asset_rows = {r["asset_id"]: dict(r) for r in cur.execute(ASSETS_SQL, params)}
        port = dict(cur.execute(PORTFOLIO_SQL, params).fetchone())
        series = [dict(r) for r in cur.execute(SERIES_SQL, params)]
        names = {r["asset_id"]: r for r in cur.execute(NAMES_SQL)}
        redispatched = cur.execute(REDISPATCH_SQL, params).fetchall()
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


def report_scopes(report: dict) -> list[tuple[str, str, dict]]:
    """(scope, label, metrics) for the portfolio, every asset and the assets' total."""
    out = [("portfolio", "Portfolio", report["portfolio"])]
    out += [(a["asset_id"], a["asset_id"] + (f" · {a['name']}" if a.get("name") else ""), a) for a in report["assets"]]
    out.append(("assets_total", "Listed assets (total; ratios from the totals)", report["assets_total"]))
    return out
