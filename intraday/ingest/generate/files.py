"""The generated world as the files of a day directory, each source in its own format and quirks (data-formats.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import orjson

from intraday.core.qh import HOUR_S, QH_S, UTC, to_dt
from intraday.ingest.generate.world import (
    FEE_MODELS,
    FORECAST_ROWS,
    PRICE_MODELS,
    PUBLIC_GATE_S,
    REDISPATCH_QHS,
    Asset,
    Day,
    Roles,
    Task,
    clean,
)


def _stamp_z(epoch_s: int) -> str:
    """``2025-06-07T124500Z`` (file names)."""
    return to_dt(epoch_s).strftime("%Y-%m-%dT%H%M%SZ")


def _stamp_ms(epoch_ms: int) -> str:
    """``20250608T120317417Z`` (exchange file names)."""
    return to_dt(epoch_ms // 1000).strftime("%Y%m%dT%H%M%S") + f"{epoch_ms % 1000:03d}Z"


def _dso_time(epoch_s: int) -> str:
    """``2025-06-08 00:15:00.000000 UTC`` (DSO final production and compensation)."""
    return to_dt(epoch_s).strftime("%Y-%m-%d %H:%M:%S.000000 UTC")


def _trade_time(epoch_s: int) -> str:
    """``2025-06-08 00:00:00+00:00`` (exchange delivery start and end)."""
    return to_dt(epoch_s).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _exec_times(epoch_ms: np.ndarray) -> list[str]:
    """``2025-06-07 15:03:44.509000+00:00`` for many instants at once (always with a fraction)."""
    text = np.datetime_as_string(epoch_ms.astype("datetime64[ms]"), unit="us")
    return [f"{s[:10]} {s[11:]}+00:00" for s in text.tolist()]




def _fixed(values: Iterable[float], decimals: int) -> list[str]:
    return [f"{v:.{decimals}f}" for v in values]


def _comma(value: float) -> str:
    """German decimal comma, two decimals: ``-14,35``."""
    return f"{value:.2f}".replace(".", ",")


def _csv(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _months_back(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + (day.month - 1) - months
    return dt.date(index // 12, index % 12 + 1, 1)


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def technical_data(grid: Day, assets: list[Asset]) -> Task:
    at = int(dt.datetime.combine(grid.day - dt.timedelta(days=1), dt.time(12, 45), tzinfo=UTC).timestamp())
    doc = {"assets": [{
        "asset_id": a.asset_id, "name": a.name, "type": a.kind,
        "location": {"latitude": a.latitude, "longitude": a.longitude, "timezone": "Europe/Berlin"},
        "technical_attributes": a.attributes, "status": "active", "owner": {"name": a.owner},
    } for a in assets]}
    return f"vpp/technical_data/technical_data_{_stamp_z(at)}.json", _const(orjson.dumps(doc))


def forecast_tasks(grid: Day, assets: list[Asset], forecast: np.ndarray) -> list[Task]:
    starts = [(grid.versions[v] + QH_S * np.arange(FORECAST_ROWS)).astype(float).tolist()
              for v in range(len(grid.versions))]
    ends = [[s + QH_S for s in col] for col in starts]
    tasks: list[Task] = []
    for a_i, asset in enumerate(assets):
        key = {"asset_id": asset.asset_id,
               "type_id": "pv-forecast-real" if asset.kind == "solar" else "wind-forecast-real"}
        for v, version in enumerate(grid.versions.tolist()):
            def build(a_i: int = a_i, v: int = v, version: int = version, key: dict = key) -> bytes:
                return orjson.dumps({
                    "key": key, "column_ids": ["start", "end", "version", "power"],
                    "units": ["ms", "ms", "ms", "kW"],
                    "values": [starts[v], ends[v], [float(version)] * FORECAST_ROWS,
                               forecast[v, :, a_i].tolist()]})
            tasks.append((f"vpp/forecasts/forecast_{asset.asset_id}_{_stamp_z(version)}.json", build))
    return tasks


def live_tasks(rng: np.random.Generator, grid: Day, assets: list[Asset], actual: np.ndarray,
                roles: Roles) -> tuple[list[Task], int]:
    """One file per asset except ``roles.without_live``; the day's minutes with gaps."""
    first = (grid.start - grid.t0) // 60
    count = grid.n * 15
    times = grid.minutes[first:first + count]
    tasks: list[Task] = []
    samples = 0
    for position, (a_i, asset) in enumerate((i, a) for i, a in enumerate(assets) if i != roles.without_live):
        keep = rng.random(count) >= 0.02  # single lost samples
        for _ in range(int(rng.integers(5, 12))):  # gaps of several minutes
            at = int(rng.integers(0, count))
            keep[at:at + int(rng.integers(3, 13))] = False
        at = int(rng.integers(0, count - 45))  # one long gap: at least one QH without live data
        keep[at:at + int(rng.integers(30, 46))] = False
        jitter = rng.uniform(0.0, 1.5, count)
        noise = rng.normal(0.0, 0.01, count)  # relative measurement noise
        quality = np.where(rng.random(count) < 0.05, 0.9, 1.0)
        quality[rng.random(count) < 0.01] = 0.5
        value = actual[first:first + count, a_i]
        producing = value > 0
        value = np.where(producing, np.clip(value * (1.0 + noise), 0.0, asset.capacity_kw), value)
        idx = np.flatnonzero(keep)
        samples += len(idx)
        key_name = "entity_id" if position % 2 else "asset_id"
        doc = {"key": {key_name: asset.asset_id, "type_id": "live-measured-infeed"},
               "column_ids": ["timestamp", "value", "quality"], "units": ["ms", "kW", "factor"],
               "values": [clean(times[idx] + jitter[idx], 3).tolist(), clean(value[idx], 3).tolist(),
                          quality[idx].tolist()]}
        tasks.append((f"vpp/live_measured_infeed/{asset.short}_{grid.ymd}.json", _const(orjson.dumps(doc))))
    return tasks, samples


def dso_tasks(rng: np.random.Generator, grid: Day, assets: list[Asset], actual_qh: np.ndarray,
               roles: Roles, redispatch_k: int, curve: np.ndarray) -> tuple[list[Task], dict[str, int]]:
    tasks: list[Task] = []
    day_times = [_dso_time(int(t)) for t in grid.qhs]
    rows = 0
    for a_i, asset in enumerate(assets):
        if a_i == roles.without_final:
            continue
        n = grid.n // 2 if a_i == roles.half_final else grid.n
        values = _fixed(clean(actual_qh[grid.k_day:grid.k_day + n, a_i], 2), 2)
        lines = [f"delivery_start__utc_,{asset.metering_point}__kw_"]
        lines += [f"{t},{v}" for t, v in zip(day_times[:n], values, strict=True)]
        rows += n
        tasks.append((f"distribution_system_operator/final_production_{asset.metering_point}_{grid.ymd}.csv",
                      _const(_csv(lines))))

    mp = assets[roles.redispatched].metering_point
    start = int(grid.grid[redispatch_k])
    lines = ["delivery_start,delivery_end,is_redispatched"]
    for q in range(REDISPATCH_QHS + 1):
        t = start + q * QH_S
        lines.append(f"{to_dt(t):%Y-%m-%dT%H:%M:%SZ},{to_dt(t + QH_S):%Y-%m-%dT%H:%M:%SZ},"
                     f"{1 if q < REDISPATCH_QHS else 0}")
    announced = start - 3600
    tasks.append((f"distribution_system_operator/redispatch_flag_{mp}_{to_dt(announced):%Y%m%d_%H%M}.csv",
                  _const(_csv(lines))))

    price = clean(np.clip(curve[grid.k_day:grid.k_day + grid.n], 0.0, None) + 8.0
                   + rng.normal(0, 3.0, grid.n), 2)
    lines = ["delivery_start__utc_,delivery_end__utc_,price__euro_per_mwh_"]
    lines += [f"{_dso_time(int(t))},{_dso_time(int(t) + QH_S)},{p:.2f}" for t, p in zip(grid.qhs, price, strict=True)]
    tasks.append((f"distribution_system_operator/redispatch_compensation_{grid.day.isoformat()}.csv",
                  _const(_csv(lines))))
    return tasks, {"final_production_rows": rows, "redispatch_rows": REDISPATCH_QHS + 1,
                   "compensation_rows": grid.n}


def imbalance_tasks(rng: np.random.Generator, grid: Day, curve: np.ndarray) -> tuple[list[Task], dict[str, int]]:
    truth = curve + 35.0 * rng.standard_t(3, grid.k_len)
    day = slice(grid.k_day, grid.k_day + grid.n)
    if not (truth[day] < 0).any():  # negative imbalance prices happen every week: show some
        picks = grid.k_day + rng.choice(grid.n, 3, replace=False)
        truth[picks] = -np.abs(truth[picks]) - 5.0

    def when(t: int) -> tuple[str, str, str]:
        d = to_dt(t)
        return d.strftime("%d.%m.%Y"), d.strftime("%H:%M"), to_dt(t + QH_S).strftime("%H:%M")

    tasks: list[Task] = []
    rows = 0
    published = grid.start + 300
    while published < grid.end:
        k_first = (published // QH_S * QH_S - grid.t0) // QH_S
        k_last = (grid.next_end - grid.t0) // QH_S
        lead_h = (np.arange(k_first, k_last) - k_first) * QH_S / HOUR_S
        est = clean(truth[k_first:k_last] + rng.normal(0, 1, k_last - k_first)
                     * (8.0 + 50.0 * (1 - np.exp(-lead_h / 4.0))), 2)
        lines = ["Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;AEP-Schätzer;Status"]
        for k, value in zip(range(k_first, k_last), est.tolist(), strict=True):
            datum, von, bis = when(int(grid.grid[k]))
            lines.append(f"{datum};UTC;{von};{bis};Ausgleichsenergiepreis;Schätzer;EUR/MWh;"
                         f"{_comma(value)};vorläufig")
        rows += k_last - k_first
        tasks.append((f"imbalance/imbalance_price_estimation_{_stamp_z(published)}.csv", _const(_csv(lines))))
        published += 3 * 3600

    under = clean(truth[day], 2)
    over = under.copy()
    differ = rng.random(grid.n) < 0.15
    over[differ] = clean(under[differ] - np.abs(rng.normal(0, 25.0, int(differ.sum()))), 2)
    missing = rng.random(grid.n) < 0.05
    if not missing.any():
        missing[int(rng.integers(0, grid.n))] = True
    lines = ["Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;reBAP unterdeckt;reBAP ueberdeckt"]
    for q, t in enumerate(grid.qhs.tolist()):
        datum, von, bis = when(t)
        prices = ";" if missing[q] else f"{_comma(under[q])};{_comma(over[q])}"
        lines.append(f"{datum};UTC;{von};{bis};reBAP;qualitätsgesichert;EUR/MWh;{prices}")
    final_at = int(dt.datetime.combine(grid.day + dt.timedelta(days=1), dt.time(10), tzinfo=UTC).timestamp())
    tasks.append((f"imbalance/imbalance_price_final_{to_dt(final_at):%Y%m%d_%H%M%S}.csv", _const(_csv(lines))))
    return tasks, {"imbalance_estimate_rows": rows, "imbalance_final_rows": grid.n,
                   "imbalance_final_missing": int(missing.sum())}


def _trade_lines(ids: np.ndarray, sides: list[str] | None, start: np.ndarray, end: np.ndarray,
                 exec_ms: np.ndarray, price: np.ndarray, volume: np.ndarray) -> list[str]:
    cache: dict[int, str] = {}

    def stamp(t: int) -> str:
        text = cache.get(t)
        if text is None:
            text = cache[t] = _trade_time(t)
        return text

    execs = _exec_times(exec_ms)
    prices = _fixed(clean(price, 2).tolist(), 2)
    volumes = _fixed(clean(volume, 1).tolist(), 1)
    starts, ends = start.tolist(), end.tolist()
    if sides is None:
        return [f"{i};{stamp(s)};{stamp(e)};{x};{p};EUR;{v};MWH" for i, s, e, x, p, v
                in zip(ids.tolist(), starts, ends, execs, prices, volumes, strict=True)]
    return [f"{i};{d};{stamp(s)};{stamp(e)};{x};{p};EUR;{v};MWH" for i, d, s, e, x, p, v
            in zip(ids.tolist(), sides, starts, ends, execs, prices, volumes, strict=True)]


def private_tasks(rng: np.random.Generator, grid: Day, forecast: np.ndarray, curve: np.ndarray,
                   n_assets: int) -> tuple[list[Task], dict[str, int]]:
    """Sell the first forecast hour by hour, then trade QHs toward the forecast of their time."""
    portfolio = forecast.sum(axis=2)  # (version, row) kW
    target = 10 * n_assets + 20
    trades: list[tuple[int, str, int, int, float, float]] = []  # exec_ms, side, start, end, MW, price
    position = np.zeros(grid.n)
    for h in range(grid.n // 4):
        q = 4 * h
        k = grid.k_day + q
        mw = round(float(portfolio[0, k:k + 4].mean()) / 1000 * float(rng.uniform(0.7, 1.1)), 1)
        exec_ms = grid.t0 * 1000 + int(rng.integers(60_000, 7_200_000))
        price = float(curve[k:k + 4].mean() + rng.normal(0, 4.0))
        if mw >= 0.1:
            trades.append((exec_ms, "SELL", int(grid.qhs[q]), int(grid.qhs[q]) + 3600, mw, price))
            position[q:q + 4] += mw

    n_qh = max(target - len(trades), 10)
    picks = rng.integers(0, grid.n, n_qh)
    window_ms = np.minimum(6 * 3_600_000, (grid.qhs[picks] - grid.t0) * 1000 - 60_000) - 300_000
    exec_all = grid.qhs[picks] * 1000 - 300_000 - (rng.random(n_qh) * window_ms).astype(np.int64)
    order = np.argsort(exec_all, kind="stable")
    u = rng.uniform(0.5, 1.0, n_qh)
    coin = rng.random(n_qh)
    small = rng.uniform(0.1, 0.5, n_qh)
    noise = rng.normal(0, 6.0, n_qh)
    for i in order.tolist():
        q = int(picks[i])
        k = grid.k_day + q
        exec_ms = int(exec_all[i])
        v = min((exec_ms // 1000 - grid.t0) // QH_S, k)  # newest version at execution
        diff = float(portfolio[v, k - v]) / 1000 - position[q]
        if abs(diff) >= 0.1:
            side, mw = ("SELL" if diff > 0 else "BUY"), max(0.1, round(abs(diff) * float(u[i]), 1))
        else:
            side, mw = ("SELL" if coin[i] < 0.5 else "BUY"), round(float(small[i]), 1)
        position[q] += mw if side == "SELL" else -mw
        t = int(grid.qhs[q])
        trades.append((exec_ms, side, t, t + QH_S, mw, float(curve[k] + noise[i])))
    for needed in ("BUY", "SELL"):  # both sides always present
        if not any(tr[1] == needed for tr in trades):
            q = int(rng.integers(0, grid.n))
            t = int(grid.qhs[q])
            trades.append((t * 1000 - 1_800_000, needed, t, t + QH_S, 0.1, float(curve[grid.k_day + q])))
    trades.sort(key=lambda tr: (tr[0], tr[2], tr[1]))

    ids = 70_000_000 + int(rng.integers(0, 1_000_000)) * 10 + np.arange(len(trades))
    first_at = grid.start * 1000 + 12 * 3_600_000 + int(rng.integers(0, 600_000))
    second_at = grid.end * 1000 + 20 * 60_000 + int(rng.integers(0, 600_000))
    exec_ms = np.array([tr[0] for tr in trades], dtype=np.int64)
    in_first = np.flatnonzero(exec_ms < first_at)
    in_second = np.flatnonzero(exec_ms >= first_at)
    resent = np.sort(rng.choice(in_first, min(5, len(in_first)), replace=False))
    second = np.concatenate([resent, in_second])

    def build(rows: np.ndarray, at_ms: int) -> Task:
        sel = [trades[i] for i in rows.tolist()]
        lines = [f"# Private Trades - {grid.day.isoformat()} - {_exec_times(np.array([at_ms]))[0]};;;;;;;;",
                 "TradeId;Side;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit"]
        lines += _trade_lines(ids[rows], [s[1] for s in sel], np.array([s[2] for s in sel]),
                              np.array([s[3] for s in sel]), exec_ms[rows],
                              np.array([s[5] for s in sel]), np.array([s[4] for s in sel]))
        return f"exchange/Private_Trades-{grid.ymd}-{_stamp_ms(at_ms)}.csv", _const(_csv(lines))

    tasks = [build(in_first, first_at), build(second, second_at)]
    return tasks, {"private_trades": len(trades), "private_trade_rows": len(trades) + len(resent),
                   "private_trade_duplicates": len(resent),
                   "private_buys": sum(tr[1] == "BUY" for tr in trades),
                   "private_sells": sum(tr[1] == "SELL" for tr in trades)}


def public_tasks(rng: np.random.Generator, grid: Day, curve: np.ndarray, count: int) -> tuple[list[Task], int]:
    """``count`` market trades: 80 % QH, 20 % hourly, denser toward delivery, split by execution time."""
    hourly = rng.random(count) < 0.2
    q_index = np.where(hourly, 4 * rng.integers(0, grid.n // 4, count), rng.integers(0, grid.n, count))
    start = grid.qhs[q_index]
    end = start + np.where(hourly, 3600, QH_S)
    span_s = (start - grid.open - PUBLIC_GATE_S).astype(float)
    lead_s = PUBLIC_GATE_S + span_s * rng.random(count) ** 4
    exec_ms = start * 1000 - np.round(lead_s * 1000).astype(np.int64)
    hour_level = curve[grid.k_day:grid.k_day + grid.n].reshape(-1, 4).mean(axis=1)  # 92/96/100 QHs
    level = curve[grid.k_day + q_index]
    level[hourly] = hour_level[q_index[hourly] // 4]
    sd = 4.0 + 10.0 * np.exp(-lead_s / 5400.0)
    price = level + rng.normal(0, 1, count) * sd
    volume = np.clip(np.exp(rng.normal(0.4, 0.9, count)), 0.1, 100.0)
    order = np.lexsort((q_index, exec_ms))
    start, end, exec_ms, price, volume = start[order], end[order], exec_ms[order], price[order], volume[order]
    ids = 1_000_000_000 + int(rng.integers(0, 1_000_000)) * 100 + np.arange(count, dtype=np.int64)

    bounds = [grid.start, grid.start + 8 * 3600, grid.start + 16 * 3600, grid.end]
    tasks: list[Task] = []
    lo = 0
    for bound in bounds:
        hi = int(np.searchsorted(exec_ms, bound * 1000, side="left"))
        at_ms = bound * 1000 + 60_000 + int(rng.integers(0, 60_000))
        if hi > lo:
            sl = slice(lo, hi)
            lines = [f"# Public Trades - {grid.day.isoformat()} - {_exec_times(np.array([at_ms]))[0]};;;;;;;",
                     "TradeId;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit"]
            lines += _trade_lines(ids[sl], None, start[sl], end[sl], exec_ms[sl], price[sl], volume[sl])
            data = _csv(lines)
            tasks.append((f"exchange/Public_Trades-{grid.ymd}-{_stamp_ms(at_ms)}.csv", _const(data)))
        lo = hi
    return tasks, count


def crm_tasks(rng: np.random.Generator, grid: Day, assets: list[Asset]) -> tuple[list[Task], dict[str, Any]]:
    day = grid.day
    sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7 or 7)  # the Sunday strictly before
    mid_month = dt.date(day.year, day.month, 15) if day.day > 15 else \
        _months_back(day, 1).replace(day=15)
    header = ("contract_id,asset_id,metering_point_id,capacity,technology,contract_begin,contract_end,"
              "price_model,price,fee_model,fee,fee_percent,email")
    rows: list[dict[str, str]] = []
    for i, asset in enumerate(assets):
        price_model = PRICE_MODELS[i % 2]
        fee_model = FEE_MODELS[i % 3]
        begin = mid_month if i == 1 else _months_back(day, int(rng.integers(3, 37)))
        end = "" if i % 2 == 0 else dt.date(day.year + 1 + int(rng.integers(0, 3)), 12, 31).isoformat()
        price = f"{rng.uniform(55, 95):.2f}" if price_model == "fixed" else ""
        fee = {"fixed_as_produced": f"{rng.uniform(1.0, 3.5):.2f}",
               "fixed_for_capacity": f"{rng.uniform(150, 600):.2f}"}.get(fee_model, "")
        fee_percent = f"{rng.uniform(1.5, 5.0):.2f}" if fee_model == "percent_of_market" else ""
        domain = asset.owner.split()[0].lower()
        rows.append({"contract_id": f"CTR-{begin.year}-{asset.number:04d}", "asset_id": asset.asset_id,
                     "mp": asset.metering_point, "capacity": f"{asset.capacity_kw / 1000:.3f}",
                     "technology": asset.kind, "begin": begin.isoformat(), "end": end,
                     "price_model": price_model, "price": price, "fee_model": fee_model, "fee": fee,
                     "fee_percent": fee_percent, "email": f"abrechnung.{asset.short.lower()}@{domain}.example"})
    fixed = [i for i, r in enumerate(rows) if r["price_model"] == "fixed"]
    broken = fixed[-1]  # exactly one inconsistent contract: fixed price model without a price
    older_rows = [dict(r) for r in rows[:-1]]  # the older file lacks the newest asset ...
    rows[broken]["price"] = ""
    changed = next((i for i in fixed if i != broken and i < len(older_rows)), None)
    if changed is not None:  # ... and had another price
        older_rows[changed]["price"] = f"{float(rows[changed]['price']) - 4.5:.2f}"

    def text(rs: list[dict[str, str]]) -> bytes:
        return _csv([header] + [",".join(r.values()) for r in rs])

    newest = dt.datetime.combine(sunday, dt.time(4, 45), tzinfo=UTC)
    older = dt.datetime.combine(sunday - dt.timedelta(days=7), dt.time(4, 40), tzinfo=UTC)
    tasks = [(f"crm/asset_contracts_{older:%Y%m%d_%H%M%S}.csv", _const(text(older_rows))),
             (f"crm/asset_contracts_{newest:%Y%m%d_%H%M%S}.csv", _const(text(rows)))]
    return tasks, {"contracts": len(rows), "inconsistent_contract": rows[broken]["contract_id"]}


# ----------------------------------------------------------------------------- entry point
