"""Sections 1 and 2 of domain.md per asset: forecast versions folded into latest and tradeable, live samples, DSO finals and redispatch flags into best-of-infeed."""

from __future__ import annotations

import math

import msgspec

from intraday.contract.events import occurrence_order
from intraday.core.qh import QH_S, gate_closure, parse_iso
from intraday.processing.state.wire import AssetSnap, Forecast

# ---------------------------------------------------------------------------------------------
# Section 1: forecasts. A version is one fact (asset, version); per (asset, QH) the derived
# latest / tradeable entry is a max over the versions that cover the QH.


class ForecastVersion(msgspec.Struct, array_like=True, frozen=True):
    version_s: float
    starts: list[int]
    powers: list[float]


class QhForecast(msgspec.Struct, array_like=True, frozen=True):
    """latest = newest version <= t, tradeable = newest <= t - 15 min; n = versions seen."""
    lv: float | None = None
    lk: float | None = None
    tv: float | None = None
    tk: float | None = None
    n: int = 0


def forecast_version(e: Forecast) -> ForecastVersion:
    starts = [int(parse_iso(x)) for x in e.delivery_start]
    if len(starts) != len(e.power_kw):
        raise ValueError("delivery_start and power_kw differ in length")
    if any(s % QH_S for s in starts):
        raise ValueError("a forecast start is not aligned to quarter-hours")
    return ForecastVersion(parse_iso(e.version), starts, [float(p) for p in e.power_kw])


def fold_forecast(entry: QhForecast | None, version_s: float, qh_s: int, kw: float) -> QhForecast:
    """One version's row for QH ``qh_s`` folded in (domain.md 1). A late or older version never
    replaces a newer one; the same version again keeps its value (files are re-sent unchanged).

    >>> e = fold_forecast(None, 43200, 43200, 5.0); e = fold_forecast(e, 42300, 43200, 4.0)
    >>> (e.lv, e.lk, e.tv, e.tk, e.n)
    (43200, 5.0, 42300, 4.0, 2)
    """
    e = entry or QhForecast()
    lv, lk, tv, tk = e.lv, e.lk, e.tv, e.tk
    if version_s <= qh_s and (lv is None or version_s > lv):
        lv, lk = version_s, kw
    if version_s <= gate_closure(qh_s) and (tv is None or version_s > tv):
        tv, tk = version_s, kw
    return QhForecast(lv, lk, tv, tk, e.n + 1)


# ---------------------------------------------------------------------------------------------
# Section 2: observations per (asset, QH): live samples, DSO final, redispatch flag.


class AssetObs(msgspec.Struct, array_like=True, frozen=True):
    """Facts of an (asset, QH). ``live``: timestamp -> [kW, rank] where rank orders re-sent samples
    (the later file and row wins); ``final`` / ``flag``: [published_s, line, value] of the newest
    file; ``flagged``: ever flagged (the QH is reported); ``n``: distinct facts seen."""
    live: dict[float, tuple[float, str]] = {}
    final: tuple[float, int, float] | None = None
    flag: tuple[float, int, bool] | None = None
    flagged: bool = False
    n: int = 0


def rank(source_file: str, line: int) -> str:
    return occurrence_order(source_file, line)


def apply_live(obs: AssetObs | None, ts: float, kw: float, rank: str) -> AssetObs | None:
    """A live sample; None when it changes nothing (a redelivery, or an older copy)."""
    o = obs or AssetObs()
    old = o.live.get(ts)
    if old is not None and old[1] >= rank:
        return None
    live = dict(o.live)
    live[ts] = (kw, rank)
    return msgspec.structs.replace(o, live=live, n=o.n + 1)


def apply_final(obs: AssetObs | None, published_s: float, line: int, kw: float) -> AssetObs | None:
    o = obs or AssetObs()
    if o.final is not None and (published_s, line) <= o.final[:2]:
        return None
    return msgspec.structs.replace(o, final=(published_s, line, kw), n=o.n + 1)


def apply_flag(obs: AssetObs | None, published_s: float, line: int, flag: bool) -> AssetObs | None:
    o = obs or AssetObs()
    if o.flag is not None and (published_s, line) <= o.flag[:2]:
        return None
    return msgspec.structs.replace(o, flag=(published_s, line, flag), flagged=o.flagged or flag, n=o.n + 1)


def live_mean(obs: AssetObs | None) -> float | None:
    if obs is None or not obs.live:
        return None
    return math.fsum(v[0] for v in obs.live.values()) / len(obs.live)  # exactly rounded: order-free


def asset_snap(asset_id: str, qh_s: int, fc: QhForecast | None, obs: AssetObs | None) -> AssetSnap:
    """The published result of an (asset, QH): forecast columns and best-of-infeed (domain.md 2:
    final > live mean > redispatch 0 > latest forecast), with its source."""
    fc = fc or QhForecast()
    mean = live_mean(obs)
    final = obs.final if obs else None
    redispatched = bool(obs and obs.flag and obs.flag[2])
    if final is not None:
        best, source = final[2], "final"
    elif mean is not None:
        best, source = mean, "live"
    elif redispatched:
        best, source = 0.0, "redispatch"
    elif fc.lk is not None:
        best, source = fc.lk, "forecast"
    else:
        best, source = None, None
    exists = bool(fc.n or (obs and (obs.live or obs.final or obs.flagged)))
    return AssetSnap(asset_id=asset_id, qh=qh_s, latest_version=fc.lv, latest_kw=fc.lk,
                     tradeable_version=fc.tv, tradeable_kw=fc.tk, best_kw=best, best_source=source,
                     live_kw=mean, live_samples=len(obs.live) if obs else 0,
                     final_kw=final[2] if final else None, redispatched=redispatched, exists=exists,
                     rev=fc.n + (obs.n if obs else 0))
