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
from pathlib import Path

import numpy as np
from tqdm import tqdm

from intraday.core.qh import QH_S
from intraday.ingest.generate.files import (
    crm_tasks,
    dso_tasks,
    forecast_tasks,
    imbalance_tasks,
    live_tasks,
    private_tasks,
    public_tasks,
    technical_data,
)
from intraday.ingest.generate.world import (
    CURTAILED_SHARE,
    FORECAST_ROWS,
    REDISPATCH_QHS,
    STREAMS,
    Day,
    Task,
    assign_roles,
    forecasts,
    make_assets,
    price_curve,
    truth,
)


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
    streams = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(STREAMS))),
                       strict=True))
    grid = Day(day)
    asset_list = make_assets(streams["assets"], assets, day)
    roles = assign_roles(asset_list)

    production, scale = truth(streams["weather"], grid, asset_list)
    n_a = len(asset_list)
    truth_qh = production.reshape(grid.k_len, 15, n_a).mean(axis=1)
    scale_qh = scale.reshape(grid.k_len, 15, n_a).mean(axis=1)
    forecast = forecasts(streams["forecast"], grid, asset_list, truth_qh, scale_qh)

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

    curve = price_curve(streams["prices"], grid)
    tasks: list[Task] = [technical_data(grid, asset_list)]
    tasks += forecast_tasks(grid, asset_list, forecast)
    live, live_samples = live_tasks(live_rng, grid, asset_list, actual, roles)
    tasks += live
    crm, crm_info = crm_tasks(streams["crm"], grid, asset_list)
    tasks += crm
    private, private_info = private_tasks(streams["private"], grid, forecast, curve, n_a)
    tasks += private
    public, public_count = public_tasks(streams["public"], grid, curve, public_trades)
    tasks += public
    imbalance, imbalance_info = imbalance_tasks(streams["files"], grid, curve)
    tasks += imbalance
    dso, dso_info = dso_tasks(streams["files"], grid, asset_list, actual_qh, roles, redispatch_k, curve)
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
