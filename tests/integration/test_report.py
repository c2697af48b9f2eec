"""The performance report (intraday/backoffice/report/, docs/report.md) on the real PostgreSQL.

1. A generated day through the real pipeline (broker, Faust worker, sink): every figure of the
   report equals an independent pandas computation of docs/report.md over the *reference* tables
   (tests/reference.py), the CRM file and the DSO compensation file of the day directory; not
   over the database, not with the report's SQL.
2. A small case inserted by hand, every expected number worked out in the comments.
3. Files (JSON, CSV, HTML with SVG), the period parser, the dashboard page's figure builders.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest
from pipeline import run_pipeline
from reference import compute_reference

from intraday.backoffice.report.compute import WATERFALL_STEPS, parse_period, performance_report
from intraday.backoffice.report.files import report_csv, write_report
from intraday.backoffice.report.page import render_html
from intraday.ingest.generate.day import generate_day

pytestmark = pytest.mark.integration

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
KWQH = 0.25 / 1000  # kW over a QH -> MWh


def close(a, b, rel=1e-9, abs_=1e-6) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and (
            b is None or (isinstance(b, float) and math.isnan(b)))
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


def mismatches(label: str, got: dict, want: dict) -> list[str]:
    return [f"{label}.{k}: report {got.get(k)!r} != expected {v!r}" for k, v in want.items()
            if not close(got.get(k), v)]


# =============================================================================================
# 1. the generated day against an independent pandas computation


def _ratio(a, b):
    return None if b is None or b == 0 or (isinstance(b, float) and math.isnan(b)) else a / b


def _read_crm(day_dir: Path) -> pd.DataFrame:
    newest = sorted((day_dir / "crm").glob("asset_contracts_*.csv"))[-1]  # the name's time sorts as text
    return pd.read_csv(newest, dtype=str, keep_default_na=False)


def _read_compensation(day_dir: Path) -> pd.Series:
    frames = [pd.read_csv(p, dtype=str) for p in (day_dir / "distribution_system_operator").glob(
        "redispatch_compensation_*.csv")]
    df = pd.concat(frames)
    t = pd.to_datetime(df["delivery_start__utc_"].str.replace(" UTC", ""), utc=True)
    return pd.Series(df["price__euro_per_mwh_"].astype(float).to_numpy(), index=t.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _contract_errors(c: pd.Series) -> bool:
    """True if the contract cannot be invoiced (the fields its models need are missing)."""
    if not c["contract_begin"] or c["price_model"] not in ("fixed", "market"):
        return True
    if c["price_model"] == "fixed" and not c["price"]:
        return True
    if c["fee_model"] in ("fixed_as_produced", "fixed_for_capacity") and not c["fee"]:
        return True
    if c["fee_model"] == "percent_of_market" and not c["fee_percent"]:
        return True
    return c["fee_model"] not in ("fixed_as_produced", "fixed_for_capacity", "percent_of_market")


def _berlin_midnight(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.combine(day, dt.time(0), tzinfo=BERLIN)).tz_convert(UTC)


def expected_report(ref: dict[str, pd.DataFrame], day_dir: Path, start: pd.Timestamp, end: pd.Timestamp) -> dict:
    """docs/report.md, read once more, in pandas over the reference tables of the day."""
    iso = lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    lo, hi = iso(start), iso(end)

    a = ref["forecast_qh.csv"].merge(ref["infeed_qh.csv"], on=["asset_id", "delivery_start"]).merge(
        ref["asset_imbalance_qh.csv"], on=["asset_id", "delivery_start"])
    a = a[(a["delivery_start"] >= lo) & (a["delivery_start"] < hi)].copy()
    tr = ref["trading_qh.csv"]
    tr = tr[(tr["delivery_start"] >= lo) & (tr["delivery_start"] < hi)]
    private = tr[tr["book"] == "private"].set_index("delivery_start")
    public = tr[tr["book"] == "public"].set_index("delivery_start")
    p = ref["portfolio_qh.csv"]
    p = p[(p["delivery_start"] >= lo) & (p["delivery_start"] < hi)].set_index("delivery_start")
    comp = _read_compensation(day_dir)

    qhs = sorted(set(p.index) | set(private.index) | set(public.index))
    Q = (p["best_of_infeed_kw"] * KWQH).reindex(qhs)
    x = public["idx_full_eur_mwh"].reindex(qhs)
    R = private["revenue_eur"].reindex(qhs)
    S = private["net_mwh"].reindex(qhs)
    C = p["imbalance_cost_eur"].reindex(qhs)
    # domain.md 4: a redispatched asset counts as delivering its position (tradeable forecast)
    rd_rows = a[a["redispatched"]]
    B = (rd_rows["tradeable_kw"] * KWQH).groupby(rd_rows["delivery_start"]).sum().reindex(qhs).fillna(0.0)
    uplift = R.fillna(0) - S.fillna(0) * x.fillna(0)
    at_index = -(Q.fillna(0) + B - S.fillna(0)) * x.fillna(0)

    a["q"] = a["best_kw"] * KWQH
    a["fg"] = a["tradeable_kw"] * KWQH
    a["fd"] = a["latest_kw"] * KWQH
    a["measured"] = a["best_source"].isin(["final", "live"]) & ~a["redispatched"]
    a["x"] = a["delivery_start"].map(x)
    a["comp"] = a["delivery_start"].map(comp)
    qpos = a.assign(qp=a["q"].clip(lower=0).fillna(0)).groupby("delivery_start")["qp"].sum()
    a["w"] = a["q"].clip(lower=0).fillna(0) / a["delivery_start"].map(qpos)
    a.loc[a["delivery_start"].map(qpos) <= 0, "w"] = 0.0
    a["rev"] = a["delivery_start"].map(R).fillna(0) * a["w"]
    a["net"] = a["delivery_start"].map(S).fillna(0) * a["w"]
    a["upl"] = a["delivery_start"].map(uplift) * a["w"]
    a["atx"] = a["delivery_start"].map(at_index) * a["w"]
    a["pc"] = a["delivery_start"].map(C).fillna(0) * a["w"]
    base = x.dropna().mean()

    def errors(df: pd.DataFrame, e: pd.Series, price: pd.Series, key: str) -> dict:
        n = len(e)
        return {f"fe_{key}_qh": n, f"fe_{key}_abs_mwh": e.abs().sum() if n else None,
                f"fe_{key}_mae_mwh": e.abs().sum() / n if n else None,
                f"fe_{key}_bias_mwh": e.sum() / n if n else None,
                f"fe_{key}_abs_eur": (e.abs() * price).sum() if price.notna().any() else None,
                f"fe_{key}_cost_eur": (-e * price).sum() if price.notna().any() else None,
                f"fe_{key}_unpriced_qh": int(price.isna().sum())}

    def capture(m: dict, priced: float, produced: float | None) -> dict:
        m["market_capture_price_eur_mwh"] = _ratio(m["market_value_eur"], priced)
        m["base_price_eur_mwh"] = base
        m["market_value_factor"] = _ratio(m["market_capture_price_eur_mwh"], base)
        m["capture_price_eur_mwh"] = _ratio(m["realised_revenue_eur"], produced)
        m["capture_rate"] = _ratio(m["capture_price_eur_mwh"], m["market_capture_price_eur_mwh"])
        return m

    # --- owner payments: the invoice rules over the period's invoiced QHs
    crm = _read_crm(day_dir)
    measured_qhs = set(a.loc[a["live_kw"].notna() | a["final_kw"].notna(), "delivery_start"])
    month_start = _berlin_midnight(start.tz_convert(BERLIN).date().replace(day=1))
    nm = month_start.tz_convert(BERLIN).date()
    month_end = _berlin_midnight((nm.replace(day=28) + dt.timedelta(days=4)).replace(day=1))
    month_days = (month_end.tz_convert(BERLIN).date() - month_start.tz_convert(BERLIN).date()).days
    contracts = {}
    for _, c in crm.iterrows():
        c0 = max(start, _berlin_midnight(dt.date.fromisoformat(c["contract_begin"])))
        c1 = end if not c["contract_end"] else min(  # half-open: the end day is not covered
            end, _berlin_midnight(dt.date.fromisoformat(c["contract_end"])))
        rec = {"asset_id": c["asset_id"], "error": _contract_errors(c)}
        if not rec["error"]:
            mine = a[(a["asset_id"] == c["asset_id"]) & a["delivery_start"].isin(measured_qhs)
                     & (a["delivery_start"] >= iso(c0)) & (a["delivery_start"] < iso(c1))]
            invoiced = sorted(q for q in measured_qhs if iso(c0) <= q < iso(c1))
            mwh = mine.set_index("delivery_start")["q"].reindex(invoiced).fillna(0.0)
            vwap = public["vwap_eur_mwh"].reindex(invoiced)
            market = (mwh * vwap).sum()  # NaN VWAP: nothing
            rec["infeed_payout_eur"] = mwh.sum() * float(c["price"]) if c["price_model"] == "fixed" else market
            if c["fee_model"] == "fixed_as_produced":
                rec["fees_eur"] = mwh.sum() * float(c["fee"])
            elif c["fee_model"] == "fixed_for_capacity":
                # pro rata of Berlin days (a DST day is one day), over the month's days
                days = max(0, (c1.tz_convert(BERLIN).date() - c0.tz_convert(BERLIN).date()).days)
                rec["fees_eur"] = float(c["capacity"]) * float(c["fee"]) * days / month_days
            else:
                rec["fees_eur"] = market * float(c["fee_percent"]) / 100
            rd = mine[mine["redispatched"]]
            rec["redispatch_payout_eur"] = (rd["fd"].fillna(0) * rd["comp"]).sum()
        contracts[c["contract_id"]] = rec

    def payments(asset: str | None) -> dict:
        mine = [r for r in contracts.values() if asset is None or r["asset_id"] == asset]
        ok = [r for r in mine if not r["error"]]
        return {"infeed_payout_eur": sum(r["infeed_payout_eur"] for r in ok),
                "redispatch_payout_eur": sum(r["redispatch_payout_eur"] for r in ok),
                "fees_eur": sum(r["fees_eur"] for r in ok), "contracts": len(mine),
                "contracts_in_error": len(mine) - len(ok)}

    def finish(m: dict, cost_in_waterfall: float) -> dict:
        realised = m["market_value_eur"] + m["balanced_at_index_eur"] + m["trading_uplift_eur"] \
            + m["imbalance_volume_at_index_eur"] - cost_in_waterfall
        m["realised_revenue_eur"] = realised
        m["margin_eur"] = realised + m["redispatch_compensation_eur"] - m["infeed_payout_eur"] \
            - m["redispatch_payout_eur"] + m["fees_eur"]
        m["waterfall"] = {"market_value": m["market_value_eur"], "balanced_at_index": m["balanced_at_index_eur"],
                          "trading_uplift": m["trading_uplift_eur"],
                          "imbalance_volume_at_index": m["imbalance_volume_at_index_eur"],
                          "imbalance_cost": -cost_in_waterfall, "realised_revenue": realised,
                          "redispatch_compensation": m["redispatch_compensation_eur"],
                          "owner_payouts": -(m["infeed_payout_eur"] + m["redispatch_payout_eur"]),
                          "owner_fees": m["fees_eur"], "margin": m["margin_eur"]}
        return m

    out = {"assets": {}}
    for asset, g in a.groupby("asset_id"):
        eg = g[g["measured"] & g["fg"].notna()]
        ed = g[g["measured"] & g["fd"].notna()]
        rd = g[g["redispatched"]]
        produced = g["q"].sum()
        priced = g[g["x"].notna()]
        m = {"qh": len(g), "produced_mwh": produced, "final_qh": int((g["best_source"] == "final").sum()),
             **errors(g, eg["q"] - eg["fg"], eg["price_eur_mwh"], "gate"),
             **errors(g, ed["q"] - ed["fd"], ed["price_eur_mwh"], "delivery"),
             "revenue_eur": g["rev"].sum(), "net_sold_mwh": g["net"].sum(), "trading_uplift_eur": g["upl"].sum(),
             "imbalance_volume_at_index_eur": g["atx"].sum(), "imbalance_cost_allocated_eur": g["pc"].sum(),
             "imbalance_mwh": g["imbalance_mwh"].sum(), "imbalance_abs_mwh": g["imbalance_mwh"].abs().sum(),
             "imbalance_cost_eur": g["cost_eur"].sum(),
             "imbalance_unpriced_qh": int((g["imbalance_mwh"].notna() & g["cost_eur"].isna()).sum()),
             "balanced_mwh": rd["fg"].fillna(0).sum(),
             "balanced_at_index_eur": (rd["fg"] * rd["x"]).sum(),
             "redispatch_qh": len(rd), "redispatch_mwh": rd["fd"].sum(),
             "redispatch_compensation_eur": (rd["fd"] * rd["comp"]).sum(),
             "redispatch_unpriced_qh": int(rd["comp"].isna().sum()),
             **payments(asset)}
        m["imbalance_cost_eur_per_mwh"] = _ratio(m["imbalance_cost_eur"], produced)
        m["imbalance_abs_share"] = _ratio(m["imbalance_abs_mwh"], produced)
        m["market_value_eur"] = (priced["q"] * priced["x"]).sum()
        finish(m, m["imbalance_cost_allocated_eur"])
        capture(m, priced["q"].sum(), produced)
        m["margin_eur_per_mwh"] = _ratio(m["margin_eur"], produced)
        out["assets"][asset] = m

    # --- portfolio: forecast errors netted across assets per QH
    elig_g = a[a["measured"] & a["fg"].notna()].assign(e=lambda d: d["q"] - d["fg"])
    elig_d = a[a["measured"] & a["fd"].notna()].assign(e=lambda d: d["q"] - d["fd"])
    price = p["imbalance_price_eur_mwh"]
    eg = elig_g.groupby("delivery_start")["e"].sum()
    ed = elig_d.groupby("delivery_start")["e"].sum()
    traded = (private["sold_mwh"] + private["bought_mwh"]).reindex(qhs)
    vw = private["vwap_eur_mwh"].reindex(qhs)
    both = vw.notna() & x.notna() & (traded > 0)
    produced = Q.sum()
    m = {"qh": len(p), "produced_mwh": produced, "final_qh": int((a["best_source"] == "final").sum()),
         **errors(p, eg, eg.index.map(price).to_series(index=eg.index), "gate"),
         **errors(p, ed, ed.index.map(price).to_series(index=ed.index), "delivery"),
         "revenue_eur": R.fillna(0).sum(), "trades": int(private["trades"].sum()),
         "sold_mwh": private["sold_mwh"].sum(), "bought_mwh": private["bought_mwh"].sum(),
         "net_sold_mwh": S.fillna(0).sum(),
         "vwap_eur_mwh": (vw * traded).sum() / traded[vw.notna()].sum(),
         # against the index only over the QHs that have both prices
         "matched_vwap_eur_mwh": (vw * traded)[both].sum() / traded[both].sum(),
         "idx_on_traded_eur_mwh": (x * traded)[both].sum() / traded[both].sum(),
         "balanced_mwh": B.sum(), "balanced_at_index_eur": (B * x).sum(),
         "trading_uplift_eur": uplift.sum(), "imbalance_volume_at_index_eur": at_index.sum(),
         "imbalance_mwh": p["imbalance_mwh"].sum(), "imbalance_abs_mwh": p["imbalance_mwh"].abs().sum(),
         "imbalance_cost_eur": C.sum(),
         "imbalance_unpriced_qh": int((p["imbalance_mwh"].notna() & p["imbalance_cost_eur"].isna()).sum()),
         "redispatch_qh": int(a["redispatched"].sum()),
         "redispatch_mwh": a.loc[a["redispatched"], "fd"].sum(),
         "redispatch_compensation_eur": (a.loc[a["redispatched"], "fd"] * a.loc[a["redispatched"], "comp"]).sum(),
         "standalone_imbalance_cost_eur": a["cost_eur"].sum(),
         **payments(None)}
    m["vwap_minus_idx_eur_mwh"] = m["matched_vwap_eur_mwh"] - m["idx_on_traded_eur_mwh"]
    m["netting_benefit_eur"] = m["standalone_imbalance_cost_eur"] - m["imbalance_cost_eur"]
    m["imbalance_cost_eur_per_mwh"] = m["imbalance_cost_eur"] / produced
    m["imbalance_abs_share"] = m["imbalance_abs_mwh"] / produced
    m["market_value_eur"] = (Q * x).sum()
    finish(m, m["imbalance_cost_eur"])
    capture(m, Q[x.notna()].sum(), produced)
    m["margin_eur_per_mwh"] = m["margin_eur"] / produced
    m["allocation_residual_eur"] = m["margin_eur"] - sum(v["margin_eur"] for v in out["assets"].values())
    out["portfolio"] = m
    out["contracts"] = contracts
    out["realised_check"] = R.fillna(0).sum() - C.fillna(0).sum()
    return out


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("day") / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=4, public_trades=2000, seed=7)
    return d


def test_the_report_of_a_generated_day_equals_pandas_over_the_reference(day, fresh_db, settings_for, tmp_path):
    run_pipeline(day, settings_for(fresh_db), tmp_path / "export")
    start, end = parse_period("2025-06-08", "2025-06-08")  # the Berlin day: 96 QHs
    with psycopg.connect(fresh_db) as conn:
        report = performance_report(conn, start, end)
    want = expected_report(compute_reference(day), day, pd.Timestamp(start), pd.Timestamp(end))

    bad: list[str] = []
    wp = want["portfolio"]
    bad += mismatches("portfolio", report["portfolio"], {k: v for k, v in wp.items() if k != "waterfall"})
    got_wf = {s["step"]: s["eur"] for s in report["portfolio"]["waterfall"]}
    bad += mismatches("portfolio.waterfall", got_wf, wp["waterfall"])
    got_assets = {r["asset_id"]: r for r in report["assets"]}
    assert sorted(got_assets) == sorted(want["assets"])
    for asset, wa in want["assets"].items():
        bad += mismatches(asset, got_assets[asset], {k: v for k, v in wa.items() if k != "waterfall"})
        bad += mismatches(f"{asset}.waterfall", {s["step"]: s["eur"] for s in got_assets[asset]["waterfall"]},
                          wa["waterfall"])
    for r in report["contracts"]:
        w = want["contracts"][r["contract_id"]]
        assert (r["status"] == "error") == w["error"], r
        if not w["error"]:
            bad += mismatches(r["contract_id"], r, {k: w[k] for k in ("infeed_payout_eur", "redispatch_payout_eur",
                                                                        "fees_eur")})
    # the listed assets' sums
    total = report["assets_total"]
    for k in ("produced_mwh", "revenue_eur", "trading_uplift_eur", "imbalance_cost_eur", "fees_eur", "margin_eur",
              "redispatch_mwh", "infeed_payout_eur"):
        bad += mismatches("assets_total", total, {k: sum(_z(w[k]) for w in want["assets"].values())})
    assert not bad, "\n".join(bad[:40])

    # what the numbers must mean, beyond equality
    p = report["portfolio"]
    assert p["qh"] == 96 and len(report["series"]) == 96
    assert math.isclose(p["realised_revenue_eur"], want["realised_check"], rel_tol=1e-9)
    assert math.isclose(sum(s["eur"] for s in p["waterfall"] if s["kind"] != "total"), p["margin_eur"], rel_tol=1e-9)
    assert p["redispatch_qh"] > 0 and p["fe_gate_qh"] > 0 and p["contracts_in_error"] == 1
    assert any("CTR-2024-0003" in w for w in report["warnings"])  # the inconsistent contract of the day
    # solar assets consume at night (negative production): their market value is negative, their
    # share of the trading result 0; the wind assets always produce, so nothing stays unallocated
    assert abs(p["allocation_residual_eur"]) < 1e-6
    assert min(a["produced_mwh"] for a in report["assets"]) > 0


def _z(v):
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v


# =============================================================================================
# 2. a small case by hand

QH1, QH2 = dt.datetime(2025, 6, 10, 10, 0, tzinfo=UTC), dt.datetime(2025, 6, 10, 10, 15, tzinfo=UTC)
END = dt.datetime(2025, 6, 10, 10, 30, tzinfo=UTC)
CRM = "2025-06-01T04:45:00Z"


@pytest.fixture
def hand(fresh_db):
    """Two QHs, assets A (redispatched in QH2) and B, a contract-only asset C, an erroneous contract.

    kW x 0.25 / 1000 = MWh:  A: q 1.0 / 0.0, latest 0.9 / 0.5, tradeable 0.8 / 0.5
                             B: q 0.5 / 1.0, latest 0.6 / 1.1, tradeable 0.7 / 1.2
    """
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        def ins(table, **cols):
            conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                         list(cols.values()))
        ins("asset_qh", asset_id="A", delivery_start=QH1, best_kw=4000.0, best_source="final", final_kw=4000.0,
            latest_kw=3600.0, tradeable_kw=3200.0)
        ins("asset_qh", asset_id="A", delivery_start=QH2, best_kw=0.0, best_source="redispatch", redispatched=True,
            latest_kw=2000.0, tradeable_kw=2000.0)
        ins("asset_qh", asset_id="B", delivery_start=QH1, best_kw=2000.0, best_source="live", live_kw=2000.0,
            live_samples=3, latest_kw=2400.0, tradeable_kw=2800.0)
        ins("asset_qh", asset_id="B", delivery_start=QH2, best_kw=4000.0, best_source="final", final_kw=4000.0,
            latest_kw=4400.0, tradeable_kw=4800.0)
        # standalone imbalance = actual - position; cost = -imbalance x price (0 when redispatched)
        for asset, t, pos, act, imb, price, cost in (("A", QH1, 0.8, 1.0, 0.2, 100.0, -20.0),
                                                     ("A", QH2, 0.5, 0.0, 0.0, 50.0, 0.0),
                                                     ("B", QH1, 0.7, 0.5, -0.2, 120.0, 24.0),
                                                     ("B", QH2, 1.2, 1.0, -0.2, 60.0, 12.0)):
            ins("asset_imbalance_qh", asset_id=asset, delivery_start=t, position_mwh=pos, actual_mwh=act,
                imbalance_mwh=imb, price_eur_mwh=price, price_source="final", cost_eur=cost)
        # portfolio: Q 1.5 / 1.0, balanced (A's position while redispatched) 0 / 0.5, net sold 1.4 / 1.5
        # -> imbalance Q + B - S = 0.1 / 0.0, price 90 / 70, cost -9 / 0
        ins("portfolio_qh", delivery_start=QH1, best_of_infeed_kw=6000.0, net_sold_mwh=1.4, imbalance_mwh=0.1,
            imbalance_price_eur_mwh=90.0, imbalance_price_source="final", imbalance_cost_eur=-9.0, balanced_mwh=0.0)
        ins("portfolio_qh", delivery_start=QH2, best_of_infeed_kw=4000.0, net_sold_mwh=1.5, imbalance_mwh=0.0,
            imbalance_price_eur_mwh=70.0, imbalance_price_source="final", imbalance_cost_eur=0.0, balanced_mwh=0.5)
        # QH1: sell 6 MW @ 80 (1.5 MWh), buy 0.4 MW @ 70 (0.1 MWh): revenue 120 - 7 = 113,
        #      VWAP (480 + 28) / 6.4 = 79.375; QH2: sell 6 MW @ 60: revenue 90, VWAP 60
        ins("trading_qh", delivery_start=QH1, book="private", trades=2, sold_mwh=1.5, bought_mwh=0.1, net_mwh=1.4,
            revenue_eur=113.0, vwap_eur_mwh=79.375)
        ins("trading_qh", delivery_start=QH2, book="private", trades=1, sold_mwh=1.5, bought_mwh=0.0, net_mwh=1.5,
            revenue_eur=90.0, vwap_eur_mwh=60.0)
        ins("trading_qh", delivery_start=QH1, book="public", trades=9, sold_mwh=0, bought_mwh=0, net_mwh=0,
            vwap_eur_mwh=75.0, idx_full_eur_mwh=75.0)
        ins("trading_qh", delivery_start=QH2, book="public", trades=9, sold_mwh=0, bought_mwh=0, net_mwh=0,
            vwap_eur_mwh=55.0, idx_full_eur_mwh=55.0)
        ins("redispatch_compensation", delivery_start=QH2, published_at=QH2, price_eur_mwh=40.0)
        for cid, asset, pm, price, fm, fee, pct, cap in (
                ("C-A", "A", "fixed", 70.0, "fixed_as_produced", 2.0, None, 3.0),
                ("C-B", "B", "market", None, "percent_of_market", None, 10.0, 3.0),
                ("C-C", "C", "fixed", 80.0, "fixed_for_capacity", 300.0, None, 2.0),
                ("C-E", "B", "fixed", None, "fixed_as_produced", 1.0, None, 3.0)):  # fixed without price: error
            ins("contracts", file_time=CRM, contract_id=cid, asset_id=asset, metering_point_id=f"MP-{asset}",
                capacity_mw=cap, contract_begin=dt.date(2025, 1, 1), price_model=pm, price_eur_mwh=price,
                fee_model=fm, fee=fee, fee_percent=pct)
        ins("technical_data", asset_id="A", published_at=CRM, name="Windpark Alpha", asset_type="wind",
            capacity_kw=3000.0, payload=json.dumps({}))
    return fresh_db


def test_a_small_case_computed_by_hand(hand):
    with psycopg.connect(hand) as conn:
        r = performance_report(conn, QH1, END)
    p, assets = r["portfolio"], {a["asset_id"]: a for a in r["assets"]}
    assert sorted(assets) == ["A", "B", "C"] and assets["A"]["name"] == "Windpark Alpha"
    # weights (positive produced share): QH1 A 1.0/1.5 = 2/3, B 1/3; QH2 A 0, B 1
    # per QH: uplift = revenue - net x idx: 113 - 1.4 x 75 = 8, 90 - 1.5 x 55 = 7.5
    #         imbalance volume at idx = -(Q + B - net) x idx: -(0.1) x 75 = -7.5, -(1.0 + 0.5 - 1.5) x 55 = 0
    #         redispatched positions at idx: A's 0.5 MWh in QH2 x 55 = 27.5 (A's own)
    a = {
        "qh": 2, "produced_mwh": 1.0, "final_qh": 1,
        # gate closure: only QH1 counts (QH2 redispatched): 1.0 - 0.8 = 0.2 at 100 EUR/MWh
        "fe_gate_qh": 1, "fe_gate_mae_mwh": 0.2, "fe_gate_bias_mwh": 0.2, "fe_gate_abs_eur": 20.0,
        "fe_gate_cost_eur": -20.0,
        "fe_delivery_qh": 1, "fe_delivery_mae_mwh": 0.1, "fe_delivery_bias_mwh": 0.1, "fe_delivery_abs_eur": 10.0,
        "market_value_eur": 75.0, "market_capture_price_eur_mwh": 75.0,
        "base_price_eur_mwh": 65.0, "market_value_factor": 75 / 65,     # (75 + 55) / 2
        "revenue_eur": 113 * 2 / 3, "net_sold_mwh": 1.4 * 2 / 3,
        "trading_uplift_eur": 8 * 2 / 3, "imbalance_volume_at_index_eur": -5.0,
        "imbalance_cost_allocated_eur": -6.0,                            # 2/3 x -9
        "balanced_mwh": 0.5, "balanced_at_index_eur": 27.5,
        "realised_revenue_eur": 75 + 27.5 + 16 / 3 - 5 + 6,              # = 2/3 x (113 + 9) + 27.5 = 108.83
        "capture_price_eur_mwh": 244 / 3 + 27.5, "capture_rate": (244 / 3 + 27.5) / 75,
        "imbalance_mwh": 0.2, "imbalance_abs_mwh": 0.2, "imbalance_cost_eur": -20.0,
        "imbalance_cost_eur_per_mwh": -20.0,
        "redispatch_qh": 1, "redispatch_mwh": 0.5, "redispatch_compensation_eur": 20.0,  # 0.5 x 40
        "infeed_payout_eur": 70.0, "fees_eur": 2.0, "redispatch_payout_eur": 20.0,       # 1.0 MWh x 70, x 2
        "margin_eur": 244 / 3 + 27.5 + 20 - 90 + 2,                      # 40.83
    }
    b = {
        "produced_mwh": 1.5, "final_qh": 1,
        # gate: -0.2 at 120, -0.2 at 60: MAE 0.2, bias -0.2, |e| x p = 24 + 12, cost = -e x p = 36
        "fe_gate_qh": 2, "fe_gate_mae_mwh": 0.2, "fe_gate_bias_mwh": -0.2, "fe_gate_abs_eur": 36.0,
        "fe_gate_cost_eur": 36.0,
        "fe_delivery_qh": 2, "fe_delivery_mae_mwh": 0.1, "fe_delivery_bias_mwh": -0.1, "fe_delivery_abs_eur": 18.0,
        "market_value_eur": 92.5, "market_capture_price_eur_mwh": 92.5 / 1.5,   # 0.5 x 75 + 1.0 x 55
        "revenue_eur": 113 / 3 + 90, "trading_uplift_eur": 8 / 3 + 7.5, "imbalance_volume_at_index_eur": -2.5,
        "imbalance_cost_allocated_eur": -3.0,                                    # 1/3 x -9 + 1 x 0
        "balanced_mwh": 0.0, "balanced_at_index_eur": 0.0,
        "realised_revenue_eur": 92.5 + 8 / 3 + 7.5 - 2.5 + 3,                    # = 103.17
        "imbalance_mwh": -0.4, "imbalance_abs_mwh": 0.4, "imbalance_cost_eur": 36.0,
        "redispatch_qh": 0, "redispatch_compensation_eur": 0.0,
        "infeed_payout_eur": 92.5, "fees_eur": 9.25, "contracts": 2, "contracts_in_error": 1,  # C-E in error
        "margin_eur": 92.5 + 8 / 3 + 7.5 - 2.5 + 3 - 92.5 + 9.25,                 # 19.92
    }
    c = {"qh": 0, "produced_mwh": None, "infeed_payout_eur": 0.0,
         "fees_eur": 2 * 300 * (1 / 48) / 30,  # capacity x fee x (30 min = 1/48 of a Berlin day) / 30 days
         "margin_eur": 600 / 48 / 30, "capture_rate": None}
    port = {
        "qh": 2, "produced_mwh": 2.5, "final_qh": 2,
        # netted per QH: QH1 0.2 - 0.2 = 0, QH2 -0.2 (A redispatched): MAE 0.1, bias -0.1; 0.2 x 70 = 14
        "fe_gate_qh": 2, "fe_gate_mae_mwh": 0.1, "fe_gate_bias_mwh": -0.1, "fe_gate_abs_eur": 14.0,
        "fe_delivery_qh": 2, "fe_delivery_mae_mwh": 0.05, "fe_delivery_bias_mwh": -0.05, "fe_delivery_abs_eur": 7.0,
        "market_value_eur": 167.5, "market_capture_price_eur_mwh": 67.0, "base_price_eur_mwh": 65.0,
        "revenue_eur": 203.0, "trades": 3, "sold_mwh": 3.0, "bought_mwh": 0.1, "net_sold_mwh": 2.9,
        "vwap_eur_mwh": 70.0,                     # (79.375 x 1.6 + 60 x 1.5) / 3.1 = 217 / 3.1
        "matched_vwap_eur_mwh": 70.0,             # both QHs have an idx_full
        "idx_on_traded_eur_mwh": 202.5 / 3.1,     # (75 x 1.6 + 55 x 1.5) / 3.1
        "vwap_minus_idx_eur_mwh": 70 - 202.5 / 3.1,
        "trading_uplift_eur": 15.5, "imbalance_volume_at_index_eur": -7.5,
        "balanced_mwh": 0.5, "balanced_at_index_eur": 27.5,
        "imbalance_mwh": 0.1, "imbalance_abs_mwh": 0.1, "imbalance_cost_eur": -9.0,
        "imbalance_cost_eur_per_mwh": -3.6, "imbalance_abs_share": 0.04,
        "realised_revenue_eur": 212.0,            # 167.5 + 27.5 + 15.5 - 7.5 + 9 = 203 + 9
        "capture_price_eur_mwh": 84.8, "capture_rate": 84.8 / 67,
        "redispatch_qh": 1, "redispatch_mwh": 0.5, "redispatch_compensation_eur": 20.0,
        "infeed_payout_eur": 162.5, "redispatch_payout_eur": 20.0, "fees_eur": 11.25 + 600 / 48 / 30,
        "contracts": 4, "contracts_in_error": 1,
        "margin_eur": 212 + 20 - 182.5 + 11.25 + 600 / 48 / 30,
        "standalone_imbalance_cost_eur": 16.0, "netting_benefit_eur": 25.0,  # (-20 + 36) - (-9)
        "allocation_residual_eur": 0.0,
    }
    bad = (mismatches("A", assets["A"], a) + mismatches("B", assets["B"], b) + mismatches("C", assets["C"], c)
           + mismatches("portfolio", p, port))
    assert not bad, "\n".join(bad)
    steps = {s["step"]: s["eur"] for s in p["waterfall"]}
    assert [s["step"] for s in p["waterfall"]] == [k for k, _, _ in WATERFALL_STEPS]
    assert steps == pytest.approx({"market_value": 167.5, "balanced_at_index": 27.5, "trading_uplift": 15.5,
                                   "imbalance_volume_at_index": -7.5, "imbalance_cost": 9.0, "realised_revenue": 212.0,
                                   "redispatch_compensation": 20.0,
                                   "owner_payouts": -182.5, "owner_fees": port["fees_eur"],
                                   "margin": port["margin_eur"]})
    assert r["assets_total"]["margin_eur"] == pytest.approx(port["margin_eur"])  # A + B + C, nothing unallocated
    assert [c["status"] for c in r["contracts"]] == ["ok", "ok", "ok", "error"]
    assert any("C-E" in w and "price" in w for w in r["warnings"])


def test_a_selection_of_assets_keeps_the_whole_portfolio(hand):
    with psycopg.connect(hand) as conn:
        full = performance_report(conn, QH1, END)
        only_b = performance_report(conn, QH1, END, assets=["B", "nope"])
    assert [a["asset_id"] for a in only_b["assets"]] == ["B"]
    assert only_b["portfolio"] == {**full["portfolio"]}
    assert only_b["assets_total"]["margin_eur"] == pytest.approx(next(a for a in full["assets"]
                                                                      if a["asset_id"] == "B")["margin_eur"])
    assert {c["contract_id"] for c in only_b["contracts"]} == {"C-B", "C-E"}
    assert any("nope" in w for w in only_b["warnings"])


def test_an_empty_period_is_all_zero_or_empty_not_an_error(hand):
    with psycopg.connect(hand) as conn:
        r = performance_report(conn, dt.datetime(2025, 6, 11, tzinfo=UTC), dt.datetime(2025, 6, 11, 1, tzinfo=UTC))
    assert r["portfolio"]["qh"] == 0 and r["portfolio"]["produced_mwh"] is None
    assert r["portfolio"]["capture_rate"] is None and r["series"] == []
    # the capacity fee still runs (4 QHs of June's 2880)
    assert r["portfolio"]["fees_eur"] == pytest.approx(600 * 4 / 2880)
    render_html(r)  # renders without data


# =============================================================================================
# 3. files, period, dashboard figures


def test_files_json_csv_html(hand, tmp_path):
    with psycopg.connect(hand) as conn:
        r = performance_report(conn, QH1, END)
    paths = write_report(r, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted([
        "performance_report.json", "performance_report.csv", "performance_report_waterfall.csv",
        "performance_report_qh.csv", "performance_report_contracts.csv", "performance_report.html"])
    assert json.loads((tmp_path / "out" / "performance_report.json").read_text()) == r
    rows = list(csv.DictReader(io.StringIO(report_csv(r))))
    assert [x["scope"] for x in rows] == ["portfolio", "A", "B", "C", "assets_total"]
    assert float(rows[0]["margin_eur"]) == pytest.approx(r["portfolio"]["margin_eur"])
    assert rows[3]["produced_mwh"] == ""  # no value is an empty cell
    wf = list(csv.DictReader((tmp_path / "out" / "performance_report_waterfall.csv").open()))
    assert len(wf) == 5 * len(WATERFALL_STEPS)
    page = (tmp_path / "out" / "performance_report.html").read_text()
    assert page.count("<svg") >= 5 and "<script" not in page and "Windpark Alpha" in page
    assert "C-E" in page and "Our margin" in page


def test_period_parsing_berlin_days_and_instants():
    s, e = parse_period("2025-10-26", "2025-10-26")  # the 25-hour day
    assert (s.isoformat(), e.isoformat()) == ("2025-10-25T22:00:00+00:00", "2025-10-26T23:00:00+00:00")
    s, e = parse_period("2025-06-01", "2025-06-30")
    assert (e - s) == dt.timedelta(days=30)
    with pytest.raises(ValueError):  # 12:00 CEST is 10:00Z: an empty period
        parse_period("2025-06-08T10:00Z", "2025-06-08T12:00:00+02:00")
    s, e = parse_period("2025-06-08T10:00Z", "2025-06-08T11:00")
    assert (s.hour, e.hour) == (10, 11)
    with pytest.raises(ValueError):
        parse_period("2025-06-09", "2025-06-08")


def test_dashboard_page_figures_and_layout(hand):
    from intraday.dashboard import report_page as RP

    with psycopg.connect(hand) as conn:
        r = performance_report(conn, QH1, END)
    wf = RP.waterfall_figure(r)
    assert wf["data"][0]["type"] == "waterfall"
    assert wf["data"][0]["measure"][0] == "absolute" and wf["data"][0]["measure"][5] == "total"
    assert wf["data"][0]["y"][5] == pytest.approx(212.0)
    assert RP.waterfall_figure(r, "A")["data"][0]["y"][-1] == pytest.approx(r["assets"][0]["margin_eur"])
    bars = RP.assets_figure(r)
    assert list(bars["data"][0]["x"]) == ["A", "B", "C"]
    fe = RP.forecast_error_figure(r)
    assert [t["name"] for t in fe["data"]] == ["MAE at gate closure", "MAE at delivery"]
    qh = RP.qh_figure(r)
    assert len(qh["data"][0]["x"]) == 2
    rows = RP.kpi_rows(r)
    assert rows[0]["metric"] and set(rows[0]) >= {"metric", "portfolio", "A", "B", "C"}
    empty = RP.waterfall_figure(None)
    assert empty["data"] == []
    layout = RP.layout(day=dt.date(2025, 6, 10), asset_options=[{"label": "A", "value": "A"}], hidden=True)
    assert "report-run" in str(layout) and layout.style == {"display": "none"}
    assert RP.allowed(type("U", (), {"role": "desk"})()) and not RP.allowed(type("U", (), {"role": "asset_owner"})())


def test_the_page_callbacks_compute_draw_download_and_refuse_owners(hand, tmp_path):
    """The page in a Dash app behind the real auth guard, callbacks POSTed like the browser does."""
    import dash
    from psycopg_pool import ConnectionPool

    from intraday.backoffice.users import UserStore, add_user
    from intraday.dashboard import report_page as RP
    from intraday.dashboard.auth import CSRF_COOKIE, CSRF_HEADER, install_auth
    from intraday.platform.config import Settings

    settings = Settings.from_env({"INTRADAY_STATE_DIR": str(tmp_path / "state")})
    add_user(settings.users_file, "anna", "desk-password", "desk")
    add_user(settings.users_file, "olaf", "owner-password", "asset_owner", ["A"])
    app = dash.Dash(__name__, csrf_token_name=CSRF_COOKIE, csrf_header_name=CSRF_HEADER)
    install_auth(app.server, settings, UserStore(settings.users_file), env={})
    app.layout = RP.layout(day=dt.date(2025, 6, 10))
    pool = ConnectionPool(hand, min_size=1, max_size=2, open=True, kwargs={"autocommit": True})
    try:
        RP.register_callbacks(app, pool)

        def post(client, csrf, marker, values, changed):
            key = next(k for k in app.callback_map if marker in k)
            spec = app.callback_map[key]
            outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in key.strip(".").split("...")]
            body = {"output": key, "outputs": outs if key.startswith("..") else outs[0],
                    "inputs": [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in spec["inputs"]],
                    "state": [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in spec["state"]],
                    "changedPropIds": changed}
            return client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: csrf})

        def login(client, user, password):
            assert client.post("/login", data={"username": user, "password": password}).status_code == 303
            return client.get_cookie(CSRF_COOKIE).value

        period = {"report-range.start_date": "2025-06-10", "report-range.end_date": "2025-06-10",
                  "report-assets.value": [], "report-run.n_clicks": 1}
        c = app.server.test_client()
        assert post(c, "", "report-data.data", period, ["report-run.n_clicks"]).status_code == 401  # no session
        csrf = login(c, "anna", "desk-password")
        r = post(c, csrf, "report-data.data", period, ["report-run.n_clicks"])
        assert r.status_code == 200, r.data[:300]
        resp = r.get_json()["response"]
        report = resp["report-data"]["data"]
        # the whole Berlin day: the capacity fee for 1 of June's 30 days
        assert report["portfolio"]["margin_eur"] == pytest.approx(212 + 20 - 182.5 + 11.25 + 600 / 30)
        assert "96 quarter-hours" in resp["report-msg"]["children"]  # the Berlin day of 2025-06-10
        drawn = post(c, csrf, "report-waterfall.figure", {"report-data.data": report, "report-scope.value": "B"},
                     ["report-data.data"]).get_json()["response"]
        assert drawn["report-waterfall"]["figure"]["data"][0]["y"][-1] == pytest.approx(
            next(a for a in report["assets"] if a["asset_id"] == "B")["margin_eur"])
        assert [o["value"] for o in drawn["report-scope"]["options"]] == ["portfolio", "A", "B", "C", "assets_total"]
        # a forged report in the browser's store only breaks the forger's own view, quietly
        forged = post(c, csrf, "report-waterfall.figure", {"report-data.data": {"portfolio": 1},
                                                           "report-scope.value": "x"}, ["report-data.data"])
        assert forged.status_code == 200
        dl = post(c, csrf, "report-download.data", {**period, "report-dl-csv.n_clicks": 1},
                  ["report-dl-csv.n_clicks"]).get_json()["response"]["report-download"]["data"]
        assert dl["filename"] == "performance_report_2025-06-10_2025-06-10.csv" and dl["content"].startswith("scope,")
        # a period too long is refused with a message, not computed
        r = post(c, csrf, "report-data.data", {**period, "report-range.start_date": "2025-01-01"},
                 ["report-run.n_clicks"]).get_json()["response"]
        assert "at most" in r["report-msg"]["children"]

        o = app.server.test_client()
        csrf = login(o, "olaf", "owner-password")
        r = post(o, csrf, "report-data.data", period, ["report-run.n_clicks"]).get_json()["response"]
        assert r["report-data"]["data"] is None and "desk" in r["report-msg"]["children"]
        r = post(o, csrf, "report-download.data", {**period, "report-dl-json.n_clicks": 1}, ["report-dl-json.n_clicks"])
        assert r.status_code == 204, r.data[:200]  # nothing is sent
        r = post(o, csrf, "report-assets.options", period, ["report-range.start_date"]).get_json()["response"]
        assert r["report-assets"]["options"] == []
    finally:
        pool.close()


def test_run_report_is_the_command_body(hand, settings_for, tmp_path, capsys):
    from intraday.backoffice.report.files import run_report

    start, end = parse_period("2025-06-10", "2025-06-10")
    assert run_report(hand, start, end, tmp_path / "rep", ["A", "B"]) == 0
    out = capsys.readouterr().out
    assert "2025-06-10 .. 2025-06-10: produced 2.500 MWh" in out and "performance_report.html" in out
    data = json.loads((tmp_path / "rep" / "performance_report.json").read_text())
    assert [a["asset_id"] for a in data["assets"]] == ["A", "B"]


def test_the_report_says_what_it_counts():
    from intraday.dashboard import report_page as RP

    labels = {key: label for key, label, _ in RP.KPI_METRICS}
    # the portfolio's imbalance is its position against net sold; an asset's is its deviation from
    # its own gate-closure forecast: one row, and its label names both
    assert "portfolio" in labels["imbalance_mwh"] and "asset" in labels["imbalance_mwh"]
    assert "we pay" in labels["imbalance_cost_eur"]  # the sign, against the waterfall's minus
    assert not any("(sum)" in label for label in labels.values())
    assert "ratios" in RP.kpi_columns({"assets": []})[-1]["name"]


def test_a_period_in_progress_counts_the_delivered_qhs_only(hand):
    """While a replay runs, the report of its day counts only the QHs delivered by its clock, and
    says so; once the replay has finished (or without a replay: the wall clock) the whole period."""
    with psycopg.connect(hand, autocommit=True) as conn:
        whole = performance_report(conn, QH1, END)
        first = performance_report(conn, QH1, QH2)
        running = performance_report(conn, QH1, END, clock=QH2 + dt.timedelta(minutes=5))  # QH2 not yet over
        assert running["period"] | {} == {**running["period"], "qh_count": 2, "delivered_qh": 1,
                                          "in_progress": True, "delivered_until": "2025-06-10T10:15:00Z",
                                          "end": "2025-06-10T10:30:00Z"}
        assert running["warnings"][0] == ("period in progress: 1 of 2 QHs delivered (until 2025-06-10 12:15 CEST); "
                                          "every figure counts the delivered QHs only")
        for key in ("produced_mwh", "revenue_eur", "imbalance_cost_eur", "infeed_payout_eur", "margin_eur"):
            assert running["portfolio"][key] == pytest.approx(first["portfolio"][key]), key
        assert running["portfolio"]["produced_mwh"] == pytest.approx(1.5) != whole["portfolio"]["produced_mwh"]
        assert "1 of 2 quarter-hours delivered (until 2025-06-10 12:15 CEST)" in render_html(running)
        assert not whole["period"]["in_progress"] and whole["period"]["delivered_qh"] == 2  # wall clock: 2026

        # the clock of a running replay is the default "now"; a finished replay has delivered its day
        conn.execute("INSERT INTO replay_clock (clock, now, replay_id, speed, done) VALUES "
                     "('clock', %s, 'r1', '60', false)", (QH2 + dt.timedelta(minutes=5),))
        assert performance_report(conn, QH1, END)["portfolio"]["produced_mwh"] == pytest.approx(1.5)
        before = performance_report(conn, QH1, QH1 + dt.timedelta(minutes=15), clock=QH1)  # nothing delivered yet
        assert before["period"]["delivered_qh"] == 0 and before["portfolio"]["qh"] == 0
        conn.execute("UPDATE replay_clock SET done = true")
        assert performance_report(conn, QH1, END)["portfolio"] == whole["portfolio"]
