"""Frames derived for display and download: the next-QH table, feed freshness, KPI tiles, CSV."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from intraday.core.qh import BERLIN, as_utc
from intraday.core.units import open_position_mwh
from intraday.dashboard.clock import GATE, berlin_label, qh_status

# How often each feed is expected to deliver (minutes of event time), data-formats.md and the
# vendors' practice: live infeed about every minute, forecast versions every 15 min, estimates every
# few hours, DSO finals and final prices once a day (the next day); trades come with activity, so
# silence is no lateness (None).
FEED_CADENCE_MIN: dict[str, float | None] = {
    "live infeed": 15.0,
    "forecast versions": 30.0,
    "public trades": 60.0,
    "private trades": None,
    "imbalance price estimate": 4 * 60.0,
    "imbalance price final": 36 * 60.0,
    "DSO final production": 36 * 60.0,
    "portfolio results": 15.0,
}


def feed_status(source: str, age_min: float | None) -> tuple[str, str]:
    """(expected cadence as text, ``"late"`` / ``"ok"`` / ``""``) of a feed whose newest event is
    ``age_min`` behind the clock: late means late for that feed, not older than a fixed time.

    >>> feed_status("live infeed", 20.0), feed_status("imbalance price final", 20.0)
    (('every ~15 min', 'late'), ('daily (next day)', 'ok'))
    """
    cadence = FEED_CADENCE_MIN.get(source)
    if cadence is None:
        return "on activity", ""
    text = "daily (next day)" if cadence >= 24 * 60 else (
        f"every ~{cadence / 60:g} h" if cadence >= 60 else f"every ~{cadence:g} min")
    if age_min is None or age_min != age_min:
        return text, ""
    return text, "late" if age_min > cadence else "ok"


NEXT_QH_COLUMNS = (  # (key, header) of the next-QH table, in order
    ("qh", "QH (Berlin)"), ("to_gate_min", "min to gate closure"), ("tradeable_mw", "tradeable forecast MW"),
    ("net_sold_mw", "net sold MW"), ("open_mw", "open MW"), ("open_mwh", "open MWh"),
    ("vwap", "our VWAP"), ("idx_1h", "ID1"), ("idx_3h", "ID3"), ("idx_full", "IDFull"),
    ("price", "imbalance price EUR/MWh"), ("eur_at_risk", "EUR at risk"), ("act", "act"),
)


def next_qh_records(portfolio: pd.DataFrame, trading: pd.DataFrame, now: Any, n: int = 12,
                    act_mwh: float = 1.0) -> list[dict[str, Any]]:
    """The next ``n`` QHs still tradeable at ``now`` (gate closure ``t - 15 min`` after it), in
    delivery order: minutes to gate closure, tradeable forecast and net sold (MW), the open
    position (MW and MWh, ``intraday.core.qh.open_position_mwh``), our VWAP against ID1 / ID3 / IDFull,
    the current imbalance price (final or estimate) and the euros at risk (|open MWh| x price).
    ``act`` is ``"yes"`` where the open position is at least ``act_mwh``: the trader must act."""
    t_now = as_utc(now)
    if t_now is None or portfolio.empty:
        return []
    def rnd(v: float | None, k: int = 2) -> float | None:
        return None if v is None else round(v, k)

    tr = {as_utc(r.delivery_start): r for r in trading.itertuples(index=False)}
    out = []
    for r in portfolio.itertuples(index=False):
        t = as_utc(r.delivery_start)
        gate = t - GATE
        if gate <= t_now:
            continue
        tradeable_kw = num(r.tradeable_forecast_kw)
        open_mwh = open_position_mwh(tradeable_kw, num(r.net_sold_mwh))
        price = num(r.imbalance_price_eur_mwh)
        x = tr.get(t)
        out.append({
            "qh": berlin_label(t, with_zone=True), "delivery_start": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to_gate_min": round((gate - t_now).total_seconds() / 60, 1),
            "tradeable_mw": rnd(None if tradeable_kw is None else tradeable_kw / 1000, 3),
            "net_sold_mw": rnd((num(r.net_sold_mwh) or 0.0) * 4, 3),
            "open_mw": rnd(None if open_mwh is None else open_mwh * 4, 3), "open_mwh": rnd(open_mwh, 3),
            "vwap": rnd(num(getattr(x, "private_vwap_eur_mwh", None))),
            "idx_1h": rnd(num(getattr(x, "idx_1h_eur_mwh", None))),
            "idx_3h": rnd(num(getattr(x, "idx_3h_eur_mwh", None))),
            "idx_full": rnd(num(getattr(x, "idx_full_eur_mwh", None))),
            "price": rnd(price),
            "eur_at_risk": rnd(None if open_mwh is None or price is None else abs(open_mwh) * price),
            "act": "yes" if open_mwh is not None and abs(open_mwh) >= act_mwh else "",
        })
        if len(out) == n:
            break
    return out


def cockpit_frame(portfolio: pd.DataFrame, now: Any) -> pd.DataFrame:
    """The cockpit's numbers per QH in MW, with the QH status (also the CSV download).

    MW from kW: / 1000; MW from MWh of a QH: x 4. ``open_position_mw`` = tradeable forecast MW
    minus net sold MW (positive: still to sell); empty when the tradeable forecast is.
    """
    starts = qh_starts(portfolio)
    tradeable = pd.Series(nums(portfolio["tradeable_forecast_kw"], 1 / 1000), dtype="float64")
    net_sold = pd.Series(nums(portfolio["net_sold_mwh"], 4), dtype="float64")
    out = pd.DataFrame({
        "delivery_start": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in starts],
        "delivery_start_berlin": [t.astimezone(BERLIN).isoformat() for t in starts],
        "status": [qh_status(t, now, s if isinstance(s, str) else None)
                   for t, s in zip(starts, portfolio["imbalance_price_source"], strict=True)],
        "tradeable_forecast_mw": tradeable,
        "latest_forecast_mw": pd.Series(nums(portfolio["latest_forecast_kw"], 1 / 1000), dtype="float64"),
        "best_of_infeed_mw": pd.Series(nums(portfolio["best_of_infeed_kw"], 1 / 1000), dtype="float64"),
        "net_sold_mw": net_sold,
        "open_position_mw": tradeable - net_sold.fillna(0.0),
        "net_sold_mwh": pd.Series(nums(portfolio["net_sold_mwh"]), dtype="float64"),
        "imbalance_mwh": pd.Series(nums(portfolio["imbalance_mwh"]), dtype="float64"),
        "imbalance_price_eur_mwh": pd.Series(nums(portfolio["imbalance_price_eur_mwh"]), dtype="float64"),
        "imbalance_price_source": portfolio["imbalance_price_source"].tolist(),
        "imbalance_cost_eur": pd.Series(nums(portfolio["imbalance_cost_eur"]), dtype="float64"),
    })
    return out


def kpi_tiles(totals: pd.DataFrame) -> list[dict[str, Any]]:
    """The running totals as tiles: ``{"key", "label", "value", "unit", "tone"}`` with the value
    formatted (``"–"`` when unknown) and a tone ``good``/``bad``/``neutral``."""
    row = totals.iloc[0] if len(totals) else pd.Series(dtype="float64")

    def get(name: str) -> float | None:
        return num(row.get(name)) if name in row else None

    def fmt(v: float | None, digits: int = 0, sign: bool = False) -> str:
        if v is None:
            return "–"
        return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"

    def tone(v: float | None, good_if_positive: bool = True) -> str:
        if v is None or v == 0:
            return "neutral"
        return "good" if (v > 0) == good_if_positive else "bad"

    revenue, cost = get("revenue_eur"), get("imbalance_cost_eur")
    delta, ratio = get("capture_delta_eur_mwh"), get("capture_ratio")
    trades = get("trades")
    return [
        {"key": "revenue", "label": "Revenue", "value": fmt(revenue), "unit": "EUR", "tone": tone(revenue)},
        {"key": "traded", "label": "Traded volume", "value": fmt(get("traded_mwh"), 1), "unit": "MWh",
         "sub": f"sold {fmt(get('sold_mwh'), 1)} / bought {fmt(get('bought_mwh'), 1)}", "tone": "neutral"},
        {"key": "trades", "label": "Trades (QH slices)", "value": fmt(trades), "unit": "", "tone": "neutral"},
        {"key": "imbalance_cost", "label": "Imbalance cost", "value": fmt(cost), "unit": "EUR",
         "sub": f"imbalance {fmt(get('imbalance_mwh'), 2, sign=True)} MWh",
         "tone": tone(cost, good_if_positive=False)},
        {"key": "capture", "label": "Capture price", "value": fmt(get("private_vwap_eur_mwh"), 2), "unit": "EUR/MWh",
         "sub": ("vs idx_full " + fmt(delta, 2, sign=True) + " EUR/MWh"
                 + ("" if ratio is None else f" ({ratio * 100:.1f} %)")),
         "tone": tone(delta)},
    ]


def num(v: Any) -> float | None:
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def nums(series: Sequence[Any], scale: float = 1.0) -> list[float | None]:
    out = []
    for v in series:
        f = num(v)
        out.append(None if f is None else f * scale)
    return out


def qh_starts(df: pd.DataFrame) -> list[dt.datetime]:
    return [as_utc(t) for t in df["delivery_start"]]
