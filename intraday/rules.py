"""The rules of domain.md as pure functions over small dict states (the functional core).

Every state here is a plain ``dict`` of JSON-able values, so that a Faust table can keep it and
a changelog can restore it. Every update is *idempotent*: applying the same event twice leaves
the same state (forecast versions and DSO files resolve by "newest wins", live samples are keyed
by timestamp), except the trading sums, which :mod:`stream_processors` guards by trade id and
source offset. Choices where domain.md is silent: ``docs/interpretations.md``.
"""

from __future__ import annotations

import math
from typing import Any

from intraday.qh import GATE_CLOSURE_S, HOUR_S, QH_S

# ---------------------------------------------------------------------------------------------
# Section 1 and 2: per (asset, QH)
# Asset-QH state keys: lv/lk latest version/kW, tv/tk tradeable version/kW, fx any forecast row,
# ls {timestamp: kW} live samples, fn [published, line, kW] DSO final, rd [published, line, 0/1].


def apply_forecast_row(state: dict[str, Any], version_s: float, qh_s: int, power_kw: float) -> bool:
    """Fold one forecast row into an asset-QH state; True if the state changed.

    latest: newest version with ``version <= t``; tradeable: newest with ``version <= t - 15 min``
    (domain.md 1). A late or out-of-order older version never replaces a newer one; the same
    version again (a re-sent file) takes the later delivery's value.

    >>> s = {}; _ = apply_forecast_row(s, 43200, 43200, 5.0); _ = apply_forecast_row(s, 42300, 43200, 4.0)
    >>> (s["lv"], s["lk"], s["tv"], s["tk"])
    (43200, 5.0, 42300, 4.0)
    """
    changed = False
    if not state.get("fx"):
        state["fx"] = 1
        changed = True
    if version_s <= qh_s:
        lv = state.get("lv")
        if lv is None or version_s >= lv:
            if lv != version_s or state.get("lk") != power_kw:
                state["lv"] = version_s
                state["lk"] = power_kw
                changed = True
        if version_s <= qh_s - GATE_CLOSURE_S:
            tv = state.get("tv")
            if tv is None or version_s >= tv:
                if tv != version_s or state.get("tk") != power_kw:
                    state["tv"] = version_s
                    state["tk"] = power_kw
                    changed = True
    return changed


def apply_live_sample(state: dict[str, Any], timestamp_key: str, value_kw: float) -> bool:
    """Record a live sample of the QH (keyed by its timestamp, so a re-sent sample replaces)."""
    ls = state.setdefault("ls", {})
    if ls.get(timestamp_key) == value_kw:
        return False
    ls[timestamp_key] = value_kw
    return True


def _newer(old: list | None, published_s: float, line: int) -> bool:
    return old is None or (published_s, line) >= (old[0], old[1])


def apply_final(state: dict[str, Any], published_s: float, line: int, value_kw: float) -> bool:
    """DSO final measurement of the QH; the newest file wins."""
    old = state.get("fn")
    if not _newer(old, published_s, line):
        return False
    new = [published_s, line, value_kw]
    if old == new:
        return False
    state["fn"] = new
    return True


def apply_redispatch(state: dict[str, Any], published_s: float, line: int, flag: bool) -> bool:
    """Redispatch flag of the QH; the row of the newest flag file decides."""
    old = state.get("rd")
    if not _newer(old, published_s, line):
        return False
    new = [published_s, line, 1 if flag else 0]
    if flag and not state.get("rx"):
        state["rx"] = 1  # a QH once flagged stays reported, even if a newer file withdraws it
    if old == new:
        return False
    state["rd"] = new
    return True


def asset_qh_exists(state: dict[str, Any]) -> bool:
    """An (asset, QH) is reported when it has a forecast row, a measurement or has ever been
    flagged as redispatched."""
    return bool(state.get("fx") or state.get("ls") or state.get("fn") or state.get("rx"))


def live_mean(state: dict[str, Any]) -> float | None:
    ls = state.get("ls")
    if not ls:
        return None
    return math.fsum(ls.values()) / len(ls)  # exactly rounded: independent of arrival order


def best_of_infeed(state: dict[str, Any]) -> tuple[float | None, str | None]:
    """Best estimate of the asset's production in the QH, with its source (domain.md 2).

    final > live mean > redispatch (0) > latest forecast.
    """
    fn = state.get("fn")
    if fn is not None:
        return fn[2], "final"
    mean = live_mean(state)
    if mean is not None:
        return mean, "live"
    rd = state.get("rd")
    if rd and rd[2]:
        return 0.0, "redispatch"
    if state.get("lk") is not None:
        return state["lk"], "forecast"
    return None, None


def asset_snapshot(asset_id: str, qh_s: int, state: dict[str, Any]) -> dict[str, Any]:
    """The published result of an (asset, QH): forecast and best-of-infeed columns."""
    best_kw, source = best_of_infeed(state)
    ls = state.get("ls") or {}
    fn = state.get("fn")
    rd = state.get("rd")
    return {
        "asset_id": asset_id, "qh": qh_s,
        "latest_version": state.get("lv"), "latest_kw": state.get("lk"),
        "tradeable_version": state.get("tv"), "tradeable_kw": state.get("tk"),
        "best_kw": best_kw, "best_source": source,
        "live_kw": live_mean(state), "live_samples": len(ls),
        "final_kw": fn[2] if fn else None,
        "redispatched": bool(rd and rd[2]),
        "exists": asset_qh_exists(state),
    }


# ---------------------------------------------------------------------------------------------
# Section 3: trading per (book, QH). State: n trades, s/b sold/bought MW, rv revenue EUR (per
# MWh-slice: sign x MW x 0.25 x price), pv sum(price x MW), v sum(MW), and per index window
# f/h3/h1 [sum(price x MW), sum(MW)].

WINDOWS = (("f", None), ("h3", 3 * HOUR_S), ("h1", HOUR_S))


def new_trading_state() -> dict[str, Any]:
    return {"n": 0, "s": 0.0, "b": 0.0, "rv": 0.0, "pv": 0.0, "v": 0.0,
            "f": [0.0, 0.0], "h3": [0.0, 0.0], "h1": [0.0, 0.0]}


def apply_trade_slice(state: dict[str, Any], qh_s: int, side: str | None, volume_mw: float,
                      price_eur_mwh: float, execution_s: float) -> None:
    """Add one QH slice of a trade (the caller guarantees each trade id is added once)."""
    state["n"] += 1
    state["pv"] += price_eur_mwh * volume_mw
    state["v"] += volume_mw
    if side == "SELL":
        state["s"] += volume_mw
        state["rv"] += volume_mw * 0.25 * price_eur_mwh
    elif side == "BUY":
        state["b"] += volume_mw
        state["rv"] -= volume_mw * 0.25 * price_eur_mwh
    if side is None:  # market indices from public slices, by execution time relative to t
        for name, width in WINDOWS:
            if width is None or qh_s - width <= execution_s < qh_s:
                acc = state[name]
                acc[0] += price_eur_mwh * volume_mw
                acc[1] += volume_mw


def _vwap(pv: float, v: float) -> float | None:
    return pv / v if v else None


def trading_snapshot(book: str, qh_s: int, state: dict[str, Any]) -> dict[str, Any]:
    private = book == "private"
    return {
        "book": book, "qh": qh_s, "trades": state["n"],
        "sold_mwh": state["s"] * 0.25, "bought_mwh": state["b"] * 0.25,
        "net_mwh": (state["s"] - state["b"]) * 0.25,
        "revenue_eur": state["rv"] if private else None,
        "vwap_eur_mwh": _vwap(state["pv"], state["v"]),
        "idx_full_eur_mwh": None if private else _vwap(*state["f"]),
        "idx_3h_eur_mwh": None if private else _vwap(*state["h3"]),
        "idx_1h_eur_mwh": None if private else _vwap(*state["h1"]),
    }


# ---------------------------------------------------------------------------------------------
# Section 4: imbalance per QH. QH state: a {asset_id: [best_kw, latest_kw, tradeable_kw,
# redispatched, exists]}, t private trading snapshot (or None), est [published, line, price],
# fu / fo [published, line, price] final reBAP unterdeckt / ueberdeckt.


def apply_price(state: dict[str, Any], kind: str, published_s: float, line: int,
                price: float | None, unterdeckt: float | None, ueberdeckt: float | None) -> bool:
    """Fold an imbalance price row into the QH state; each column resolves on its own.

    estimate: the newest estimate row (file time, then line). final: per column (unterdeckt,
    ueberdeckt) the newest final row with a value in that column, so a final file that misses a
    price does not hide an older final value (docs/interpretations.md).
    """
    changed = False
    columns = (("fu", unterdeckt), ("fo", ueberdeckt)) if kind == "final" else (("est", price),)
    for key, value in columns:
        if value is None:
            continue
        old = state.get(key)
        if not _newer(old, published_s, line):
            continue
        new = [published_s, line, value]
        if old != new:
            state[key] = new
            changed = True
    return changed


def imbalance_price(state: dict[str, Any], imbalance_mwh: float | None) -> tuple[float | None, str]:
    """Price for a QH and an imbalance direction: final reBAP, else estimate, else missing.

    short (imbalance < 0) pays ``reBAP unterdeckt``; long or zero ``reBAP ueberdeckt``.
    """
    final = state.get("fu" if (imbalance_mwh is not None and imbalance_mwh < 0) else "fo")
    if final is not None:
        return final[2], "final"
    est = state.get("est")
    if est is not None:
        return est[2], "estimate"
    return None, "missing"


def kwh_qh(kw: float | None) -> float | None:
    return None if kw is None else kw * QH_S / 3600.0 / 1000.0


def asset_imbalance(asset_id: str, qh_s: int, a: list, state: dict[str, Any]) -> dict[str, Any]:
    """asset_imbalance_qh row: position = tradeable forecast, actual = best-of-infeed (domain.md 4)."""
    best_kw, _latest_kw, tradeable_kw, redispatched = a[0], a[1], a[2], a[3]
    position = kwh_qh(tradeable_kw)
    actual = kwh_qh(best_kw)
    if redispatched:
        imbalance = 0.0
    elif position is None or actual is None:
        imbalance = None
    else:
        imbalance = actual - position
    price, source = imbalance_price(state, imbalance)
    if redispatched:
        cost = 0.0
    elif imbalance is None or price is None:
        cost = None
    else:
        cost = -imbalance * price
    return {"asset_id": asset_id, "qh": qh_s, "position_mwh": position, "actual_mwh": actual,
            "imbalance_mwh": imbalance, "price_eur_mwh": price, "price_source": source,
            "cost_eur": cost}


def _sum_present(values) -> float | None:
    """Sum of the values that exist (None when none does); math.fsum is exactly rounded, so
    the result does not depend on the order in which assets arrived (byte-identical exports)."""
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def portfolio_row(qh_s: int, state: dict[str, Any], members: set[str] | None) -> dict[str, Any]:
    """portfolio_qh row over the portfolio's assets (``members``; None = every asset)."""
    assets = [a for aid, a in state.get("a", {}).items()
              if a[4] and (members is None or aid in members)]
    best = _sum_present(a[0] for a in assets)
    latest = _sum_present(a[1] for a in assets)
    tradeable = _sum_present(a[2] for a in assets)
    t = state.get("t")
    net_sold = t["net_mwh"] if t else 0.0
    imbalance = None if best is None else kwh_qh(best) - net_sold
    price, source = imbalance_price(state, imbalance)
    cost = None if imbalance is None or price is None else -imbalance * price
    in_scope = bool(assets) or bool(state.get("has_trades"))
    return {"qh": qh_s, "best_of_infeed_kw": best, "latest_forecast_kw": latest,
            "tradeable_forecast_kw": tradeable, "net_sold_mwh": net_sold, "imbalance_mwh": imbalance,
            "imbalance_price_eur_mwh": price, "imbalance_price_source": source,
            "imbalance_cost_eur": cost, "in_scope": in_scope}
