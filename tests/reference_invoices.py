"""Monthly invoices (domain.md section 5) by batch computation in pandas: an independent reading
of the rules, over a delivery-day directory's newest CRM file and the reference result tables of
tests/reference.py. Knows nothing of the invoicer's code.

``reference_invoices(day_dir, ref)`` -> ``{(contract_id, month): {...}}`` with unrounded amounts;
``assert_invoices_equal(invoices, expected)`` compares an ``invoices.json`` with them: every fact
exactly, quantities to 1e-6, each net amount to the half-cent its rounding may move it.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

BERLIN = ZoneInfo("Europe/Berlin")
KWQH = 0.25 / 1000


def _midnight(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.combine(day, dt.time(0), tzinfo=BERLIN)).tz_convert("UTC")


def _number(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def _problems(c: pd.Series) -> bool:
    """True if the contract's fields contradict its models (it gets status error)."""
    begin, end = _date(c["contract_begin"]), _date(c["contract_end"])
    if begin is None or (c["contract_end"].strip() and end is None) or (end is not None and end < begin):
        return True
    pm, fm = c["price_model"].strip().lower(), c["fee_model"].strip().lower()
    price, fee, pct, cap = (_number(c[k]) for k in ("price", "fee", "fee_percent", "capacity"))
    if pm not in ("fixed", "market") or (pm == "fixed" and price is None):
        return True
    if fm not in ("fixed_as_produced", "fixed_for_capacity", "percent_of_market"):
        return True
    if fm in ("fixed_as_produced", "fixed_for_capacity") and fee is None:
        return True
    if fm == "percent_of_market" and pct is None:
        return True
    if (cap is not None and cap <= 0) or (fm == "fixed_for_capacity" and cap is None):
        return True
    return not c["metering_point_id"].strip()


def _compensation(day_dir: Path) -> pd.Series:
    """DSO compensation price per QH start (ISO text); a newer file (by name) wins."""
    frames = []
    for p in sorted((day_dir / "distribution_system_operator").glob("redispatch_compensation_*.csv")):
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        t = pd.to_datetime(df["delivery_start__utc_"].str.replace(" UTC", ""), utc=True)
        frames.append(pd.DataFrame({"t": t.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "price": pd.to_numeric(df["price__euro_per_mwh_"], errors="coerce")}))
    if not frames:
        return pd.Series(dtype=float)
    df = pd.concat(frames).dropna().drop_duplicates("t", keep="last")
    return df.set_index("t")["price"]


def reference_invoices(day_dir: Path, ref: dict[str, pd.DataFrame]) -> dict[tuple[str, str], dict]:
    day_dir = Path(day_dir)
    newest = sorted((day_dir / "crm").glob("asset_contracts_*.csv"))[-1]  # the name's time sorts
    crm = pd.read_csv(newest, dtype=str, keep_default_na=False)
    a = ref["infeed_qh.csv"].merge(ref["forecast_qh.csv"], on=["asset_id", "delivery_start"])
    a = a.set_index(["asset_id", "delivery_start"])
    measured = a[a["live_kw"].notna() | a["final_kw"].notna()]
    invoiced = sorted(set(measured.index.get_level_values("delivery_start")))
    public = ref["trading_qh.csv"]
    vwap = public[public["book"] == "public"].set_index("delivery_start")["vwap_eur_mwh"].dropna()
    comp = _compensation(day_dir)

    def berlin_month(iso: str) -> tuple[int, int]:
        t = pd.Timestamp(iso).tz_convert(BERLIN)
        return t.year, t.month

    out: dict[tuple[str, str], dict] = {}
    for year, month in sorted({berlin_month(t) for t in invoiced}):
        first = dt.date(year, month, 1)
        after = dt.date(year + month // 12, month % 12 + 1, 1)
        month_days = (after - first).days
        for _, c in crm.iterrows():
            error = _problems(c)
            begin, end = _date(c["contract_begin"]), _date(c["contract_end"])
            if begin is None or (end is not None and end < begin):
                lo_day, hi_day = first, after  # unusable dates: listed, so the error is seen
            else:
                lo_day, hi_day = max(first, begin), min(after, end or after)
                if lo_day >= hi_day:
                    continue  # the contract covers no day of the month: no invoice
            lo, hi = _midnight(lo_day), _midnight(hi_day)
            qhs = [t for t in invoiced if lo <= pd.Timestamp(t) < hi]
            rows = [a.loc[(c["asset_id"], t)] if (c["asset_id"], t) in a.index else None for t in qhs]
            mwh = [0.0 if r is None or pd.isna(r["best_kw"]) else r["best_kw"] * KWQH for r in rows]
            final = sum(1 for r in rows if r is not None and r["best_source"] == "final")
            pm, fm = c["price_model"].strip().lower(), c["fee_model"].strip().lower()
            uses_market = pm == "market" or fm == "percent_of_market"
            market = sum(m * vwap[t] for t, m in zip(qhs, mwh, strict=True) if t in vwap.index)
            volume = sum(mwh)
            rec = {"status": "error" if error else "ok", "provisional": not qhs or final < len(qhs),
                   "volume_mwh": volume, "qh_count": len(qhs),
                   "unpriced_qh": sum(1 for t in qhs if t not in vwap.index) if uses_market else 0,
                   "infeed": None, "fees": None, "redispatch": None}
            if not error:
                price, fee, pct, cap = (_number(c[k]) for k in ("price", "fee", "fee_percent", "capacity"))
                rec["infeed"] = volume * price if pm == "fixed" else market
                if fm == "fixed_as_produced":
                    rec["fees"] = volume * fee
                elif fm == "fixed_for_capacity":  # a monthly fee, pro rata of the Berlin days covered
                    rec["fees"] = cap * fee * (hi_day - lo_day).days / month_days
                else:
                    rec["fees"] = market * pct / 100
                rd = 0.0
                for t, r in zip(qhs, rows, strict=True):
                    if r is not None and bool(r["redispatched"]) and t in comp.index:
                        rd += (0.0 if pd.isna(r["latest_kw"]) else r["latest_kw"] * KWQH) * comp[t]
                rec["redispatch"] = rd
            out[(c["contract_id"], f"{year:04d}-{month:02d}")] = rec
    return out


def _gross(net: float) -> float:
    """Gross of a net amount rounded as the invoice does (cents, VAT 19 %), for the total check."""
    n = math.floor(abs(net) * 100 + 0.5 + 1e-9) / 100 * (1 if net >= 0 else -1)
    vat = math.floor(abs(n) * 19 + 0.5 + 1e-9) / 100 * (1 if n >= 0 else -1)
    return n + vat


def assert_invoices_equal(invoices: list[dict], expected: dict[tuple[str, str], dict]) -> None:
    got = {(i["contract_id"], i["month"]): i for i in invoices}
    assert sorted(got) == sorted(expected), f"invoices {sorted(got)} != expected {sorted(expected)}"
    bad = []
    for key, want in expected.items():
        inv = got[key]
        for k in ("status", "provisional", "unpriced_qh", "qh_count"):
            if inv[k] != want[k]:
                bad.append(f"{key} {k}: {inv[k]!r} != {want[k]!r}")
        if abs(inv["volume_mwh"] - want["volume_mwh"]) > 1e-6:
            bad.append(f"{key} volume_mwh: {inv['volume_mwh']} != {want['volume_mwh']}")
        for k, field in (("infeed", "infeed_payout"), ("fees", "fees"), ("redispatch", "redispatch_payout")):
            net = inv[field]["net_eur"]
            if want[k] is None:
                if net is not None:
                    bad.append(f"{key} {field}: {net} for a contract in error")
            elif net is None or abs(net - want[k]) > 0.005 + 1e-9:
                bad.append(f"{key} {field}.net_eur: {net} != {want[k]:.6f}")
        if want["infeed"] is not None:
            total = _gross(want["infeed"]) + _gross(want["redispatch"]) - _gross(want["fees"])
            if inv["total_gross_eur"] is None or abs(inv["total_gross_eur"] - total) > 0.025:
                bad.append(f"{key} total_gross_eur: {inv['total_gross_eur']} != {total:.2f}")
    assert not bad, "\n".join(bad)
