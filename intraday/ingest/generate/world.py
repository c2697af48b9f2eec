"""The generated day's world, seeded: assets and their roles, weather-driven truth, forecast versions, the price curve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from intraday.core.qh import BERLIN, HOUR_S, QH_S, delivery_day_qhs, to_dt

FORECAST_ROWS = 193  # 48 h of QHs starting at the version time (data-formats.md)
LEAD_VERSIONS = 12  # versions start 3 h before the first QH of the day
CURTAILED_SHARE = 0.3  # a redispatched asset produces this share of its uncurtailed output
PUBLIC_GATE_S = 300  # the last public trade of a product is 5 min before delivery
REDISPATCH_QHS = 4

STREAMS = ("assets", "weather", "forecast", "live", "prices", "private", "public", "crm", "files")
_PLACES = ("Brandenburg", "Lausitz", "Uckermark", "Altmark", "Emsland", "Dithmarschen", "Eifel",
           "Hunsrueck", "Allgaeu", "Oberpfalz", "Vogtland", "Prignitz", "Wetterau", "Harz")
_OWNERS = ("Nordwind Energie GmbH", "Sonnenfeld Invest GmbH", "Buergerenergie Eifel eG",
           "Green Yield Partners GmbH", "Stadtwerke Musterstadt")
PRICE_MODELS = ("fixed", "market")
FEE_MODELS = ("fixed_as_produced", "fixed_for_capacity", "percent_of_market")


@dataclass(frozen=True)
class Asset:
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


def _ar1(shocks: np.ndarray, coeff: float) -> np.ndarray:
    """Unit-variance AR(1) along axis 0 of ``shocks`` (i.i.d. standard normal)."""
    out = np.empty_like(shocks)
    out[0] = shocks[0]
    keep = float(np.sqrt(1.0 - coeff * coeff))
    for i in range(1, len(shocks)):
        out[i] = coeff * out[i - 1] + keep * shocks[i]
    return out


# ----------------------------------------------------------------------------- the day's plan

class Day:
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


def make_assets(rng: np.random.Generator, count: int, day: dt.date) -> list[Asset]:
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
        out.append(Asset(
            number=number, asset_id=f"{prefix}-DE-{number:03d}", short=f"{prefix}{number:02d}",
            kind=kind, capacity_kw=capacity, latitude=round(float(lat[i]), 4),
            longitude=round(float(lon[i]), 4), metering_point=f"DE{operator:06d}{number:025d}",
            owner=_OWNERS[int(rng.integers(0, len(_OWNERS)))], name=name, attributes=attributes))
    return out


@dataclass(frozen=True)
class Roles:
    without_live: int
    without_final: int
    half_final: int
    redispatched: int


def assign_roles(assets: list[Asset]) -> Roles:
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
    return Roles(without_live, without_final, half_final, redispatched)


# ----------------------------------------------------------------------------- physical truth

def truth(rng: np.random.Generator, grid: Day, assets: list[Asset]) -> tuple[np.ndarray, np.ndarray]:
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


def forecasts(rng: np.random.Generator, grid: Day, assets: list[Asset], truth_qh: np.ndarray,
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
    return clean(np.clip(truth_qh[index] + error, 0.0, cap[None, None, :]), 3)


# ----------------------------------------------------------------------------- prices

def price_curve(rng: np.random.Generator, grid: Day) -> np.ndarray:
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


def clean(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round, and turn -0.0 into 0.0 so that no ``-0.00`` is ever written."""
    return np.round(values, decimals) + 0.0
