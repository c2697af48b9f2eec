"""A synthetic delivery-day directory, in exactly the formats of ``data-formats.md``.

``generate_day(out_dir, day)`` writes all eleven kinds of source file for one Berlin delivery day
(92, 96 or 100 QHs, from :func:`intraday.core.qh.delivery_day_qhs`). The content is realistic enough to
exercise every rule of ``domain.md``, and the output is a pure function of the arguments: the same
seed gives byte-identical files (no wall clock, fixed float formatting, fixed iteration order).

What the day contains (``A`` assets, ``n`` QHs, ``T0`` = first QH start - 3 h)::

    vpp/technical_data      1 file at D-1 12:45:00Z, every asset
    vpp/forecasts           A x (12 + n) versions, every 15 min from T0 to the last QH start,
                            193 rows each (48 h), epoch *seconds* despite units "ms"
    vpp/live_measured_infeed  A - 1 files (the last asset has none), ~1 sample/min with gaps,
                            solar slightly negative at night, every other file keyed entity_id
    crm                     2 files (the Sunday before the day 04:45 and one week earlier),
                            the older lacks the last asset and has another price;
                            exactly one contract is inconsistent (fixed price model, no price)
    exchange                2 private files (the second re-sends 5 trades of the first),
                            up to 4 public files split by execution time
    imbalance               an estimate file every 3 h of the day (each to the end of D+1),
                            one final file on D+1 with ~5 % of QHs empty
    distribution_system_operator
                            final production for A - 1 assets (the second-to-last has none,
                            one covers only the first half of the day), one redispatch flag file
                            (4 QHs curtailed from Berlin noon, then one row with 0), one
                            compensation file for all QHs

The physical truth is generated per minute (sun elevation x cloud process for solar, an
autocorrelated wind speed through a power curve for wind); the DSO final value of a QH is the mean
of that truth, live samples are the truth plus measurement noise, and forecasts are the truth plus
an error that shrinks as the version approaches delivery. Redispatch curtails the truth (live and
final) but not the forecasts. Prices follow one daily curve (morning and evening peaks, a solar
dip at noon that goes negative on sunny weekends); the private book sells the early forecast
hour by hour and then trades quarter-hours toward later forecasts.

Random streams are spawned per component from ``numpy.random.SeedSequence(seed)``, so changing
the number of public trades does not change the forecasts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from intraday.core.qh import BERLIN, HOUR_S, QH_S, UTC, delivery_day_qhs, to_dt

__all__ = ["generate_day"]

FORECAST_ROWS = 193  # 48 h of QHs starting at the version time (data-formats.md)
LEAD_VERSIONS = 12  # versions start 3 h before the first QH of the day
CURTAILED_SHARE = 0.3  # a redispatched asset produces this share of its uncurtailed output
PUBLIC_GATE_S = 300  # the last public trade of a product is 5 min before delivery
REDISPATCH_QHS = 4

_STREAMS = ("assets", "weather", "forecast", "live", "prices", "private", "public", "crm", "files")
_PLACES = ("Brandenburg", "Lausitz", "Uckermark", "Altmark", "Emsland", "Dithmarschen", "Eifel",
           "Hunsrueck", "Allgaeu", "Oberpfalz", "Vogtland", "Prignitz", "Wetterau", "Harz")
_OWNERS = ("Nordwind Energie GmbH", "Sonnenfeld Invest GmbH", "Buergerenergie Eifel eG",
           "Green Yield Partners GmbH", "Stadtwerke Musterstadt")
_PRICE_MODELS = ("fixed", "market")
_FEE_MODELS = ("fixed_as_produced", "fixed_for_capacity", "percent_of_market")


@dataclass(frozen=True)
class _Asset:
    number: int  # 1-based, part of the id and the short code
    asset_id: str
    short: str
    kind: str  # "solar" | "wind"
    capacity_kw: float
    latitude: float
    longitude: float
    metering_point: str
    owner: str
    name: str
    attributes: dict[str, Any]


# ----------------------------------------------------------------------------- formatting helpers

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


def _clean(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round, and turn -0.0 into 0.0 so that no ``-0.00`` is ever written."""
    return np.round(values, decimals) + 0.0


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


def _ar1(shocks: np.ndarray, coeff: float) -> np.ndarray:
    """Unit-variance AR(1) along axis 0 of ``shocks`` (i.i.d. standard normal)."""
    out = np.empty_like(shocks)
    out[0] = shocks[0]
    keep = float(np.sqrt(1.0 - coeff * coeff))
    for i in range(1, len(shocks)):
        out[i] = coeff * out[i - 1] + keep * shocks[i]
    return out


# ----------------------------------------------------------------------------- the day's plan

class _Day:
    """Time grid of the day: QHs, forecast versions, minutes of the physical truth."""

    def __init__(self, day: dt.date) -> None:
        self.day = day
        self.qhs = np.array(delivery_day_qhs(day), dtype=np.int64)
        self.n = len(self.qhs)
        self.start = int(self.qhs[0])
        self.end = int(self.qhs[-1]) + QH_S
        self.t0 = self.start - LEAD_VERSIONS * QH_S  # first forecast version
        self.versions = self.t0 + QH_S * np.arange(LEAD_VERSIONS + self.n, dtype=np.int64)
        self.k_day = LEAD_VERSIONS  # grid index of the first QH of the day
        self.k_len = len(self.versions) - 1 + FORECAST_ROWS  # QH grid from t0, covers every row
        self.grid = self.t0 + QH_S * np.arange(self.k_len, dtype=np.int64)
        self.minutes = self.t0 + 60 * np.arange(self.k_len * 15, dtype=np.int64)
        self.next_end = int(dt.datetime.combine(day + dt.timedelta(days=2), dt.time(0),
                                                tzinfo=BERLIN).timestamp())
        self.open = int(dt.datetime.combine(day - dt.timedelta(days=1), dt.time(15),
                                            tzinfo=BERLIN).timestamp())
        self.noon = int(dt.datetime.combine(day, dt.time(12), tzinfo=BERLIN).timestamp())
        self.ymd = day.strftime("%Y%m%d")


def _make_assets(rng: np.random.Generator, count: int, day: dt.date) -> list[_Asset]:
    kinds = ["solar", "wind"] + ["solar" if r < 0.5 else "wind" for r in rng.random(max(count - 2, 0))]
    lat = rng.uniform(47.7, 54.6, count)
    lon = rng.uniform(6.3, 14.6, count)
    operator = int(rng.integers(100000, 999999))
    out = []
    for i in range(count):
        number = i + 1
        kind = kinds[i]
        prefix = "SOL" if kind == "solar" else "WND"
        if kind == "solar":
            capacity = round(float(rng.uniform(2000, 50000)) / 10) * 10.0
            attributes = {"capacity_kw": capacity, "module_count": int(capacity // 0.43),
                          "tilt_deg": int(rng.integers(10, 35)), "azimuth_deg": int(rng.integers(150, 211))}
            name = f"Solarpark {_PLACES[i % len(_PLACES)]} {number}"
        else:
            rating = float(rng.choice([2000.0, 3000.0, 3600.0, 4200.0]))
            turbines = int(rng.integers(1, int(50000 // rating) + 1))
            capacity = rating * turbines
            attributes = {"capacity_kw": capacity, "turbine_count": turbines,
                          "turbine_rating_kw": rating, "hub_height_m": int(rng.integers(90, 166)),
                          "rotor_diameter_m": int(rng.integers(80, 161))}
            name = f"Windpark {_PLACES[i % len(_PLACES)]} {number}"
        out.append(_Asset(
            number=number, asset_id=f"{prefix}-DE-{number:03d}", short=f"{prefix}{number:02d}",
            kind=kind, capacity_kw=capacity, latitude=round(float(lat[i]), 4),
            longitude=round(float(lon[i]), 4), metering_point=f"DE{operator:06d}{number:025d}",
            owner=_OWNERS[int(rng.integers(0, len(_OWNERS)))], name=name, attributes=attributes))
    return out


@dataclass(frozen=True)
class _Roles:
    without_live: int
    without_final: int
    half_final: int
    redispatched: int


def _roles(assets: list[_Asset]) -> _Roles:
    n = len(assets)
    without_live, without_final = n - 1, n - 2
    half_final = n - 3 if n >= 4 else without_live
    taken = {without_live, without_final, half_final}
    free = [i for i in range(n) if i not in taken]
    solar_free = [i for i in free if assets[i].kind == "solar"]
    if solar_free:
        redispatched = solar_free[0]
    elif free:
        redispatched = free[0]
    else:  # two assets: the one that has live data
        redispatched = next(i for i in range(n) if i != without_live)
    return _Roles(without_live, without_final, half_final, redispatched)


# ----------------------------------------------------------------------------- physical truth

def _truth(rng: np.random.Generator, grid: _Day, assets: list[_Asset]) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute uncurtailed production (kW, >= 0) and the clear-sky share, shape (minutes, A)."""
    n_min, n_a = len(grid.minutes), len(assets)
    cap = np.array([a.capacity_kw for a in assets])
    lat = np.radians([a.latitude for a in assets])
    lon = np.array([a.longitude for a in assets])
    solar = np.array([a.kind == "solar" for a in assets])

    doy = grid.day.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365)
    utc_hour = (grid.minutes % 86400) / 3600.0 + 0.5 / 60
    hour_angle = np.radians(15.0 * (utc_hour[:, None] + lon[None, :] / 15.0 - 12.0))
    sin_el = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    clear = np.clip(1.05 * np.clip(sin_el, 0.0, None) ** 1.2, 0.0, 1.0)

    shared = _ar1(rng.standard_normal(n_min), float(np.exp(-1 / 120)))
    own = _ar1(rng.standard_normal((n_min, n_a)), float(np.exp(-1 / 90)))
    sunny = rng.uniform(-0.2, 1.6, n_a)
    latent = 0.6 * shared[:, None] + 0.8 * own
    cloud = 0.2 + 0.8 / (1.0 + np.exp(-(1.6 * latent + sunny[None, :])))
    pv = cap * clear * cloud

    wind_shared = _ar1(rng.standard_normal(n_min), float(np.exp(-1 / 400)))
    wind_own = _ar1(rng.standard_normal((n_min, n_a)), float(np.exp(-1 / 240)))
    mean_speed = rng.uniform(5.0, 9.5, n_a)
    speed = mean_speed + 2.6 * (0.7 * wind_shared[:, None] + 0.7 * wind_own)
    speed = np.clip(speed + 0.35 * rng.standard_normal((n_min, n_a)), 0.0, None)
    curve = np.clip((speed**3 - 27.0) / (12.0**3 - 27.0), 0.0, 1.0)
    curve[speed > 25.0] = 0.0
    wind = cap * curve

    production = np.where(solar[None, :], pv, wind)
    return production, np.where(solar[None, :], clear, 1.0)


def _forecasts(rng: np.random.Generator, grid: _Day, assets: list[_Asset], truth_qh: np.ndarray,
               scale_qh: np.ndarray) -> np.ndarray:
    """kW forecasts, shape (versions, 193, A): truth plus an error that shrinks toward delivery."""
    n_v, n_a = len(grid.versions), len(assets)
    cap = np.array([a.capacity_kw for a in assets])
    solar = np.array([a.kind == "solar" for a in assets])
    rows = np.arange(FORECAST_ROWS)
    index = np.arange(n_v)[:, None] + rows[None, :]  # grid QH of (version, row)
    lead_h = rows * QH_S / HOUR_S
    growth = 1.0 - np.exp(-lead_h / 6.0)
    rel = np.where(solar[None, :], 0.02 + 0.16 * growth[:, None], 0.02 + 0.12 * growth[:, None])
    persistent = _ar1(rng.standard_normal((grid.k_len, n_a)), 0.9)  # error shared by versions
    revision = _ar1(rng.standard_normal((FORECAST_ROWS, n_v, n_a)), 0.85).transpose(1, 0, 2)
    z = 0.75 * persistent[index] + 0.66 * revision
    error = cap[None, None, :] * rel[None, :, :] * scale_qh[index] * z
    return _clean(np.clip(truth_qh[index] + error, 0.0, cap[None, None, :]), 3)


# ----------------------------------------------------------------------------- prices

def _price_curve(rng: np.random.Generator, grid: _Day) -> np.ndarray:
    """Day-ahead-like EUR/MWh level per grid QH: peaks, a solar dip at noon, weekend discount."""
    local = [to_dt(int(t)).astimezone(BERLIN) for t in grid.grid]
    hour = np.array([d.hour + d.minute / 60 + 0.125 for d in local])
    weekend = np.array([d.weekday() >= 5 for d in local])
    doy = grid.day.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365)
    noon_sin = np.sin(np.radians(51.0)) * np.sin(decl) + np.cos(np.radians(51.0)) * np.cos(decl)

    def bump(center: float, width: float) -> np.ndarray:
        return np.exp(-(((hour - center) / width) ** 2))

    level = np.where(weekend, 78.0, 98.0) + rng.normal(0, 8)
    curve = (level + 28 * bump(8.0, 1.6) + 38 * bump(19.5, 2.0) - 25 * bump(3.5, 2.5)
             - 115 * noon_sin**2 * bump(13.25, 2.8))
    return curve + 4.0 * _ar1(rng.standard_normal(grid.k_len), 0.8)


# ----------------------------------------------------------------------------- file builders

Task = tuple[str, Callable[[], bytes]]


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _technical_data(grid: _Day, assets: list[_Asset]) -> Task:
    at = int(dt.datetime.combine(grid.day - dt.timedelta(days=1), dt.time(12, 45), tzinfo=UTC).timestamp())
    doc = {"assets": [{
        "asset_id": a.asset_id, "name": a.name, "type": a.kind,
        "location": {"latitude": a.latitude, "longitude": a.longitude, "timezone": "Europe/Berlin"},
        "technical_attributes": a.attributes, "status": "active", "owner": {"name": a.owner},
    } for a in assets]}
    return f"vpp/technical_data/technical_data_{_stamp_z(at)}.json", _const(orjson.dumps(doc))


def _forecast_tasks(grid: _Day, assets: list[_Asset], forecast: np.ndarray) -> list[Task]:
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


def _live_tasks(rng: np.random.Generator, grid: _Day, assets: list[_Asset], actual: np.ndarray,
                roles: _Roles) -> tuple[list[Task], int]:
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
               "values": [_clean(times[idx] + jitter[idx], 3).tolist(), _clean(value[idx], 3).tolist(),
                          quality[idx].tolist()]}
        tasks.append((f"vpp/live_measured_infeed/{asset.short}_{grid.ymd}.json", _const(orjson.dumps(doc))))
    return tasks, samples


def _dso_tasks(rng: np.random.Generator, grid: _Day, assets: list[_Asset], actual_qh: np.ndarray,
               roles: _Roles, redispatch_k: int, curve: np.ndarray) -> tuple[list[Task], dict[str, int]]:
    tasks: list[Task] = []
    day_times = [_dso_time(int(t)) for t in grid.qhs]
    rows = 0
    for a_i, asset in enumerate(assets):
        if a_i == roles.without_final:
            continue
        n = grid.n // 2 if a_i == roles.half_final else grid.n
        values = _fixed(_clean(actual_qh[grid.k_day:grid.k_day + n, a_i], 2), 2)
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

    price = _clean(np.clip(curve[grid.k_day:grid.k_day + grid.n], 0.0, None) + 8.0
                   + rng.normal(0, 3.0, grid.n), 2)
    lines = ["delivery_start__utc_,delivery_end__utc_,price__euro_per_mwh_"]
    lines += [f"{_dso_time(int(t))},{_dso_time(int(t) + QH_S)},{p:.2f}" for t, p in zip(grid.qhs, price, strict=True)]
    tasks.append((f"distribution_system_operator/redispatch_compensation_{grid.day.isoformat()}.csv",
                  _const(_csv(lines))))
    return tasks, {"final_production_rows": rows, "redispatch_rows": REDISPATCH_QHS + 1,
                   "compensation_rows": grid.n}


def _imbalance_tasks(rng: np.random.Generator, grid: _Day, curve: np.ndarray) -> tuple[list[Task], dict[str, int]]:
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
        est = _clean(truth[k_first:k_last] + rng.normal(0, 1, k_last - k_first)
                     * (8.0 + 50.0 * (1 - np.exp(-lead_h / 4.0))), 2)
        lines = ["Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;AEP-Schätzer;Status"]
        for k, value in zip(range(k_first, k_last), est.tolist(), strict=True):
            datum, von, bis = when(int(grid.grid[k]))
            lines.append(f"{datum};UTC;{von};{bis};Ausgleichsenergiepreis;Schätzer;EUR/MWh;"
                         f"{_comma(value)};vorläufig")
        rows += k_last - k_first
        tasks.append((f"imbalance/imbalance_price_estimation_{_stamp_z(published)}.csv", _const(_csv(lines))))
        published += 3 * 3600

    under = _clean(truth[day], 2)
    over = under.copy()
    differ = rng.random(grid.n) < 0.15
    over[differ] = _clean(under[differ] - np.abs(rng.normal(0, 25.0, int(differ.sum()))), 2)
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
    prices = _fixed(_clean(price, 2).tolist(), 2)
    volumes = _fixed(_clean(volume, 1).tolist(), 1)
    starts, ends = start.tolist(), end.tolist()
    if sides is None:
        return [f"{i};{stamp(s)};{stamp(e)};{x};{p};EUR;{v};MWH" for i, s, e, x, p, v
                in zip(ids.tolist(), starts, ends, execs, prices, volumes, strict=True)]
    return [f"{i};{d};{stamp(s)};{stamp(e)};{x};{p};EUR;{v};MWH" for i, d, s, e, x, p, v
            in zip(ids.tolist(), sides, starts, ends, execs, prices, volumes, strict=True)]


def _private_tasks(rng: np.random.Generator, grid: _Day, forecast: np.ndarray, curve: np.ndarray,
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


def _public_tasks(rng: np.random.Generator, grid: _Day, curve: np.ndarray, count: int) -> tuple[list[Task], int]:
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


def _crm_tasks(rng: np.random.Generator, grid: _Day, assets: list[_Asset]) -> tuple[list[Task], dict[str, Any]]:
    day = grid.day
    sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7 or 7)  # the Sunday strictly before
    mid_month = dt.date(day.year, day.month, 15) if day.day > 15 else \
        _months_back(day, 1).replace(day=15)
    header = ("contract_id,asset_id,metering_point_id,capacity,technology,contract_begin,contract_end,"
              "price_model,price,fee_model,fee,fee_percent,email")
    rows: list[dict[str, str]] = []
    for i, asset in enumerate(assets):
        price_model = _PRICE_MODELS[i % 2]
        fee_model = _FEE_MODELS[i % 3]
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

def generate_day(out_dir: Path, day: dt.date, assets: int = 5, public_trades: int = 100_000,
                 seed: int = 1, progress: bool = False) -> dict:
    """Write a synthetic delivery-day directory for ``day`` under ``out_dir``; return a summary.

    Deterministic: the same arguments give byte-identical files. Needs at least two assets (one
    without live data, another without a final production file). The summary holds file counts
    per kind, event counts, and the ids that play special roles.

    >>> generate_day(Path("/tmp/day"), dt.date(2025, 6, 8), assets=3)["qhs"]  # doctest: +SKIP
    96
    """
    if isinstance(day, dt.datetime):
        day = day.date()
    if assets < 2:
        raise ValueError(f"assets must be at least 2, got {assets}")
    if public_trades < 0:
        raise ValueError(f"public_trades must not be negative, got {public_trades}")
    out_dir = Path(out_dir)
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS))),
                       strict=True))
    grid = _Day(day)
    asset_list = _make_assets(streams["assets"], assets, day)
    roles = _roles(asset_list)

    production, scale = _truth(streams["weather"], grid, asset_list)
    n_a = len(asset_list)
    truth_qh = production.reshape(grid.k_len, 15, n_a).mean(axis=1)
    scale_qh = scale.reshape(grid.k_len, 15, n_a).mean(axis=1)
    forecast = _forecasts(streams["forecast"], grid, asset_list, truth_qh, scale_qh)

    actual = production.copy()
    redispatch_k = (grid.noon - grid.t0) // QH_S
    m0 = redispatch_k * 15
    actual[m0:m0 + REDISPATCH_QHS * 15, roles.redispatched] *= CURTAILED_SHARE
    live_rng = streams["live"]
    for a_i, asset in enumerate(asset_list):
        if asset.kind == "solar":  # own consumption at night: slightly negative, real
            night = actual[:, a_i] <= 0.0
            own_use = float(live_rng.uniform(0.8, 2.5))
            actual[night, a_i] = -np.clip(own_use + 0.25 * live_rng.standard_normal(int(night.sum())), 0.5, 3.0)
    actual_qh = actual.reshape(grid.k_len, 15, n_a).mean(axis=1)

    curve = _price_curve(streams["prices"], grid)
    tasks: list[Task] = [_technical_data(grid, asset_list)]
    tasks += _forecast_tasks(grid, asset_list, forecast)
    live, live_samples = _live_tasks(live_rng, grid, asset_list, actual, roles)
    tasks += live
    crm, crm_info = _crm_tasks(streams["crm"], grid, asset_list)
    tasks += crm
    private, private_info = _private_tasks(streams["private"], grid, forecast, curve, n_a)
    tasks += private
    public, public_count = _public_tasks(streams["public"], grid, curve, public_trades)
    tasks += public
    imbalance, imbalance_info = _imbalance_tasks(streams["files"], grid, curve)
    tasks += imbalance
    dso, dso_info = _dso_tasks(streams["files"], grid, asset_list, actual_qh, roles, redispatch_k, curve)
    tasks += dso

    made: set[Path] = set()
    with tqdm(total=len(tasks), disable=not progress, unit="file", desc=f"generate {day.isoformat()}") as bar:
        for rel, build in tasks:
            path = out_dir / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            path.write_bytes(build())
            bar.update()

    def count(prefix: str) -> int:
        return sum(rel.startswith(prefix) for rel, _ in tasks)

    files = {
        "technical_data": count("vpp/technical_data/"),
        "forecasts": count("vpp/forecasts/"),
        "live_measured_infeed": count("vpp/live_measured_infeed/"),
        "crm": count("crm/"),
        "private_trades": count("exchange/Private_Trades-"),
        "public_trades": count("exchange/Public_Trades-"),
        "imbalance_estimates": count("imbalance/imbalance_price_estimation_"),
        "imbalance_final": count("imbalance/imbalance_price_final_"),
        "final_production": count("distribution_system_operator/final_production_"),
        "redispatch_flag": count("distribution_system_operator/redispatch_flag_"),
        "redispatch_compensation": count("distribution_system_operator/redispatch_compensation_"),
    }
    events = {
        "technical_data_assets": n_a,
        "forecast_versions": n_a * len(grid.versions),
        "forecast_rows": n_a * len(grid.versions) * FORECAST_ROWS,
        "live_samples": live_samples,
        "contracts": crm_info["contracts"],
        **private_info,
        "public_trades": public_count,
        **imbalance_info,
        **dso_info,
    }
    return {
        "day": day.isoformat(),
        "qhs": grid.n,
        "seed": seed,
        "assets": {"total": n_a, "solar": sum(a.kind == "solar" for a in asset_list),
                   "wind": sum(a.kind == "wind" for a in asset_list)},
        "files": files,
        "files_total": len(tasks),
        "events": events,
        "roles": {"without_live": asset_list[roles.without_live].asset_id,
                  "without_final": asset_list[roles.without_final].asset_id,
                  "half_day_final": asset_list[roles.half_final].asset_id,
                  "redispatched": asset_list[roles.redispatched].asset_id,
                  "inconsistent_contract": crm_info["inconsistent_contract"]},
    }
