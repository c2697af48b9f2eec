"""Pure functions from the query frames to Plotly figure dicts (no database, no Dash).

Figures are plain dicts (``{"data": [...], "layout": {...}}``): building a ``go.Figure`` costs
~16 ms per callback, a dict under 1 ms (embedded-stack.md).

Time axis: the desk reads Europe/Berlin. A point of QH ``t`` (UTC) is placed at ``t`` plus the
UTC offset Berlin has at the *start* of the delivery day, written as a naive date string. On the
363 ordinary days that is exactly the Berlin wall time, so Plotly's own ticks, zoom and hover read
Berlin time. On the two DST days the positions stay linear in real time (92 or 100 evenly spaced
QHs, no folded 02:00 hour) and the axis gets explicit hourly ticks with the true Berlin labels
("02:00 CEST", "02:00 CET"); every hover names the QH by its true Berlin time.

QH status from the replay clock ``now`` (event time), for the QH ``[t, t + 15 min)``::

    open        now <  t - 15 min           (tradeable: before gate closure)
    closed      t - 15 min <= now < t       (gate closed, not yet delivering)
    delivering  t <= now < t + 15 min
    measured    now >= t + 15 min           (delivered; best-of-infeed may still improve)
    settled     measured and the imbalance price is final (reBAP final published)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from intraday.core.qh import BERLIN, QH_S, as_utc, day_span
from intraday.dashboard.clock import (
    BAR_WIDTH_MS,
    QH,
    axis_x,
    berlin_label,
    is_dst_day,
    next_gate_closure,
    qh_status,
    xaxis_layout,
)
from intraday.dashboard.frames import cockpit_frame, num, nums, qh_starts

COLORS = {
    "tradeable": "#1f77b4", "latest": "#9ecae1", "best": "#111111", "net_sold": "#2ca02c",
    "open_pos": "#ff7f0e", "vwap": "#111111", "idx_full": "#1f77b4", "idx_3h": "#9467bd",
    "idx_1h": "#17becf", "good": "#2ca02c", "bad": "#d62728", "now": "#d62728", "gate": "#ff7f0e",
    "final": "#1b7837", "live": "#2166ac", "redispatch": "#e08214", "forecast": "#bababa", "none": "#f0f0f0",
    # an estimate's cost has its own hues (and a hatch): never mistaken for a settled one
    "good_estimate": "#a6dba0", "bad_estimate": "#f4a582",
}









def _qh_x(starts: Sequence[dt.datetime], day: dt.date) -> tuple[list[str], list[str], list[str]]:
    """Positions of the QHs on the day's time axis: their starts, ends and middles."""
    return ([axis_x(t, day) for t in starts], [axis_x(t + QH, day) for t in starts],
            [axis_x(t + QH / 2, day) for t in starts])


def _step(xs: list[str], xends: list[str], ys: list[float | None], custom: list[Any]):
    """Points of a step line (shape ``hv``) that also draws the last QH before a gap or the end."""
    x, y, cd = [], [], []
    n = len(ys)
    for k in range(n):
        x.append(xs[k])
        y.append(ys[k])
        cd.append(custom[k])
        if ys[k] is not None and (k + 1 == n or ys[k + 1] is None):
            x.append(xends[k])
            y.append(ys[k])
            cd.append(custom[k])
    return x, y, cd


def _step_trace(name: str, xs: list[str], xends: list[str], ys: list[float | None], custom: list[Any],
                line: dict[str, Any], value: str, **extra: Any) -> dict[str, Any]:
    """A step line trace (:func:`_step`): ``line`` its style, ``value`` the hover's value with its
    unit (``%{y:.2f} MW``), ``extra`` further trace keys (``yaxis`` ...)."""
    x, y, cd = _step(xs, xends, ys, custom)
    return {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": y, "customdata": cd,
            "line": {**line, "shape": "hv"}, **extra,
            "hovertemplate": f"%{{customdata}}<br>{name}: {value}<extra></extra>"}


LEGEND_MARGIN_B = 72  # tick labels, the axis title, then one legend row


def _base_layout(day: dt.date, title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "height": height, "margin": {"l": 60, "r": 20, "t": 40, "b": LEGEND_MARGIN_B},
        "paper_bgcolor": "white", "plot_bgcolor": "white",
        # under the time axis' title, at the container's foot: the modebar (top right) never
        # covers it, and it never sits on the plot
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container"},
        "hovermode": "closest" if is_dst_day(day) else "x unified",
        "uirevision": day.isoformat(),  # keep the user's zoom across live updates
        "xaxis": xaxis_layout(day),
        **extra,
    }


def _clock_shapes(day: dt.date, now: Any) -> tuple[list[dict], list[dict]]:
    """Shading of the past and of the QHs no longer tradeable, the now-line and the next gate
    closure line (with annotations), clipped to the day."""
    n = as_utc(now)
    if n is None:
        return [], []
    start, end = day_span(day)
    shapes, notes = [], []
    if n <= start:
        return shapes, notes
    past_end = min(n, end)
    shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": axis_x(start, day),
                   "x1": axis_x(past_end, day), "y0": 0, "y1": 1, "fillcolor": "#888888", "opacity": 0.08,
                   "line": {"width": 0}, "layer": "below"})
    if n >= end:
        return shapes, notes
    gate, qh = next_gate_closure(n)
    first_open = qh  # the QH closed by the next gate closure is the first still tradeable
    shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": axis_x(n, day),
                   "x1": axis_x(min(first_open, end), day), "y0": 0, "y1": 1, "fillcolor": COLORS["gate"],
                   "opacity": 0.10, "line": {"width": 0}, "layer": "below"})
    shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": axis_x(n, day), "x1": axis_x(n, day),
                   "y0": 0, "y1": 1, "line": {"color": COLORS["now"], "width": 2}})
    notes.append({"x": axis_x(n, day), "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                  "text": f"now {berlin_label(n)}", "showarrow": False, "font": {"color": COLORS["now"], "size": 11}})
    if gate < end:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": axis_x(gate, day),
                       "x1": axis_x(gate, day), "y0": 0, "y1": 1,
                       "line": {"color": COLORS["gate"], "width": 2, "dash": "dash"}})
        notes.append({"x": axis_x(gate, day), "y": 0.93, "xref": "x", "yref": "paper", "xanchor": "left",
                      "text": f" gate closure {berlin_label(gate)} → QH {berlin_label(qh)}", "showarrow": False,
                      "font": {"color": COLORS["gate"], "size": 11}})
    return shapes, notes


def _empty(day: dt.date, title: str, height: int, message: str) -> dict[str, Any]:
    layout = _base_layout(day, title, height)
    layout["annotations"] = [{"text": message, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                              "showarrow": False, "font": {"size": 13, "color": "#888888"}}]
    return {"data": [], "layout": layout}


# ---------------------------------------------------------------------------------------------
# figures


def cockpit_figure(portfolio: pd.DataFrame, day: dt.date, now: Any = None,
                   title: str = "Cockpit: forecast, best-of-infeed and position (MW)") -> dict[str, Any]:
    """Per QH in MW: tradeable forecast, latest forecast, best-of-infeed and net sold position as
    step lines, the open position (tradeable forecast - net sold) as bars; shaded past and
    no-longer-tradeable QHs, the now-line and the next gate closure."""
    if portfolio.empty:
        return _empty(day, title, 420, "no data for this day")
    frame = cockpit_frame(portfolio, now)
    starts = qh_starts(portfolio)
    xs, xe, xm = _qh_x(starts, day)
    labels = [berlin_label(t) + " · " + s for t, s in zip(starts, frame["status"], strict=True)]
    data = []
    series = [("tradeable_forecast_mw", "tradeable forecast", {"color": COLORS["tradeable"], "width": 2}),
              ("latest_forecast_mw", "latest forecast", {"color": COLORS["latest"], "width": 2, "dash": "dot"}),
              ("best_of_infeed_mw", "best-of-infeed", {"color": COLORS["best"], "width": 3}),
              ("net_sold_mw", "net sold", {"color": COLORS["net_sold"], "width": 2})]
    for col, name, line in series:
        ys = nums(frame[col])
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.2f} MW", connectgaps=False))
    open_pos = nums(frame["open_position_mw"])
    if any(v is not None for v in open_pos):
        data.append({"type": "bar", "name": "open position", "x": xm, "y": open_pos, "customdata": labels,
                     "width": BAR_WIDTH_MS, "marker": {"color": COLORS["open_pos"], "opacity": 0.45},
                     "hovertemplate": "%{customdata}<br>open position: %{y:.2f} MW<extra></extra>"})
    shapes, notes = _clock_shapes(day, now)
    layout = _base_layout(day, title, 420, shapes=shapes, annotations=notes,
                          yaxis={"title": {"text": "MW"}, "zeroline": True, "gridcolor": "#eeeeee"},
                          barmode="overlay")
    return {"data": data, "layout": layout}


def price_figure(trading: pd.DataFrame, day: dt.date, now: Any = None,
                 title: str = "Prices: our VWAP vs the public indices (EUR/MWh)") -> dict[str, Any]:
    """Top: private VWAP (markers) against idx_full, idx_3h and idx_1h per QH. Bottom: the delta
    VWAP - idx_full per QH, green where we did better than the market, red where worse."""
    if trading.empty:
        return _empty(day, title, 380, "no data for this day")
    starts = qh_starts(trading)
    xs, xe, xm = _qh_x(starts, day)
    labels = [berlin_label(t) for t in starts]
    data = []
    for col, name, line in (("idx_full_eur_mwh", "idx_full", {"color": COLORS["idx_full"], "width": 2}),
                            ("idx_3h_eur_mwh", "idx_3h", {"color": COLORS["idx_3h"], "width": 1, "dash": "dash"}),
                            ("idx_1h_eur_mwh", "idx_1h", {"color": COLORS["idx_1h"], "width": 1, "dash": "dot"})):
        ys = nums(trading[col])
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.2f} EUR/MWh", yaxis="y"))
    vwap = nums(trading["private_vwap_eur_mwh"])
    if any(v is not None for v in vwap):
        data.append({"type": "scatter", "mode": "markers", "name": "our VWAP", "x": xm, "y": vwap,
                     "customdata": labels, "marker": {"color": COLORS["vwap"], "size": 7, "symbol": "diamond"},
                     "yaxis": "y", "hovertemplate": "%{customdata}<br>our VWAP: %{y:.2f} EUR/MWh<extra></extra>"})
        idx = nums(trading["idx_full_eur_mwh"])
        delta = [None if a is None or b is None else a - b for a, b in zip(vwap, idx, strict=True)]
        if any(v is not None for v in delta):
            data.append({"type": "bar", "name": "VWAP - idx_full", "x": xm, "y": delta, "customdata": labels,
                         "width": BAR_WIDTH_MS, "yaxis": "y2", "showlegend": False,
                         "marker": {"color": [COLORS["good"] if (d or 0) >= 0 else COLORS["bad"] for d in delta]},
                         "hovertemplate": "%{customdata}<br>VWAP - idx_full: %{y:+.2f} EUR/MWh<extra></extra>"})
    shapes, notes = _clock_shapes(day, now)
    layout = _base_layout(day, title, 380, shapes=shapes, annotations=notes,
                          yaxis={"title": {"text": "EUR/MWh"}, "domain": [0.34, 1], "gridcolor": "#eeeeee"},
                          yaxis2={"title": {"text": "Δ idx_full"}, "domain": [0, 0.26], "zeroline": True,
                                  "zerolinecolor": "#999999", "gridcolor": "#eeeeee"})
    # the time axis belongs under the lower plot: anchored to the upper one, its labels and title
    # were drawn across the delta bars
    layout["xaxis"] = {**layout["xaxis"], "anchor": "y2"}
    return {"data": data, "layout": layout}


def imbalance_figure(portfolio: pd.DataFrame, day: dt.date, now: Any = None,
                     title: str = "Imbalance cost per QH (EUR, > 0: we pay)") -> dict[str, Any]:
    """Bars of ``imbalance_cost_eur`` per QH: red where we pay, green where we earn; solid for a
    final reBAP, pale for an estimate (QHs without a price have no cost and no bar)."""
    if portfolio.empty:
        return _empty(day, title, 300, "no data for this day")
    starts = qh_starts(portfolio)
    xm = [axis_x(t + QH / 2, day) for t in starts]
    cost = nums(portfolio["imbalance_cost_eur"])
    imb = nums(portfolio["imbalance_mwh"])
    price = nums(portfolio["imbalance_price_eur_mwh"])
    src = [s if isinstance(s, str) else "missing" for s in portfolio["imbalance_price_source"]]
    data = []
    for source, opacity in (("final", 1.0), ("estimate", 0.45)):
        idx = [k for k in range(len(starts)) if src[k] == source and cost[k] is not None]
        if not idx:
            continue
        data.append({
            "type": "bar", "name": f"{source} price", "x": [xm[k] for k in idx], "y": [cost[k] for k in idx],
            "width": BAR_WIDTH_MS,
            "customdata": [[berlin_label(starts[k]), imb[k], price[k]] for k in idx],
            "marker": {"color": [COLORS["bad" if cost[k] > 0 else "good"] if source == "final"
                                 else COLORS["bad_estimate" if cost[k] > 0 else "good_estimate"] for k in idx],
                       "opacity": opacity,
                       # an estimate is hatched, not only paler: told apart in print and by colour-blind eyes
                       **({"pattern": {"shape": "/", "fgcolor": "#555555", "size": 5}} if source == "estimate" else {}),
                       "line": {"color": "#333333" if source == "final" else "#999999", "width": 0.5}},
            "hovertemplate": ("%{customdata[0]}<br>cost: %{y:,.0f} EUR<br>imbalance: %{customdata[1]:+.3f} MWh"
                              f"<br>price ({source}): %{{customdata[2]:.2f}} EUR/MWh<extra></extra>")})
    shapes, notes = _clock_shapes(day, now)
    layout = _base_layout(day, title, 300, shapes=shapes, annotations=notes, barmode="overlay",
                          yaxis={"title": {"text": "EUR"}, "zeroline": True, "zerolinecolor": "#999999",
                                 "gridcolor": "#eeeeee"})
    return {"data": data, "layout": layout}


def source_ribbon_figure(counts: pd.DataFrame, day: dt.date,
                         title: str = "Best-of-infeed source per QH (number of assets)") -> dict[str, Any]:
    """Stacked bars per QH: how many assets' best-of-infeed is final, live, redispatch, forecast
    or not known yet; a thin ribbon under the cockpit."""
    if counts.empty:
        return _empty(day, title, 170, "no data for this day")
    starts = qh_starts(counts)
    xm = [axis_x(t + QH / 2, day) for t in starts]
    labels = [berlin_label(t) for t in starts]
    data = []
    for source in ("final", "live", "redispatch", "forecast", "none"):
        if source not in counts:
            continue
        ys = [int(v) if num(v) is not None else 0 for v in counts[source]]
        if not any(ys):
            continue
        data.append({"type": "bar", "name": source, "x": xm, "y": ys, "customdata": labels,
                     "width": QH_S * 1000, "marker": {"color": COLORS[source], "line": {"width": 0}},
                     "hovertemplate": f"%{{customdata}}<br>{source}: %{{y}} assets<extra></extra>"})
    layout = _base_layout(day, title, 170, barmode="stack", bargap=0,
                          yaxis={"title": {"text": "assets"}, "rangemode": "tozero", "gridcolor": "#eeeeee"})
    layout["margin"] = {"l": 60, "r": 20, "t": 40, "b": 52}  # tick labels, then the legend row
    layout["xaxis"]["title"] = {"text": ""}
    return {"data": data, "layout": layout}


def _flag(v: Any) -> bool:
    """A boolean cell: True, numpy True or 1; NULL/NaN/False are False."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def redispatch_spans(starts: Sequence[dt.datetime], flags: Sequence[Any]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Consecutive redispatched QHs merged into ``[start, end)`` spans."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for t, f in zip(starts, flags, strict=True):
        if _flag(f):
            if spans and spans[-1][1] == t:
                spans[-1] = (spans[-1][0], t + QH)
            else:
                spans.append((t, t + QH))
    return spans


def asset_figure(asset: pd.DataFrame, day: dt.date, asset_id: str, now: Any = None,
                 versions: pd.DataFrame | None = None) -> dict[str, Any]:
    """One asset per QH in MW: latest and tradeable forecast, live mean, DSO final and the
    best-of-infeed (its source in the hover); redispatched QHs shaded; a few forecast versions
    overlaid, greyer the older, to show them converging. Below: its imbalance cost."""
    title = f"Asset {asset_id}: forecast vs live vs best-of-infeed (MW)"
    if asset.empty:
        return _empty(day, title, 460, "no data for this asset (or not yours)")
    starts = qh_starts(asset)
    xs, xe, xm = _qh_x(starts, day)
    src = [s if isinstance(s, str) else "none" for s in asset["best_source"]]
    labels = [f"{berlin_label(t)} · {qh_status(t, now, ps if isinstance(ps, str) else None)}"
              for t, ps in zip(starts, asset["price_source"], strict=True)]
    data = []
    for col, name, line in (("tradeable_kw", "tradeable forecast", {"color": COLORS["tradeable"], "width": 2}),
                            ("latest_kw", "latest forecast", {"color": COLORS["latest"], "width": 2, "dash": "dot"})):
        ys = nums(asset[col], 1 / 1000)
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.3f} MW", yaxis="y"))
    if versions is not None and not versions.empty:
        groups = list(versions.groupby("version", sort=True))
        for i, (version, g) in enumerate(groups):
            vs = qh_starts(g)
            gray = int(200 - 120 * (i + 1) / len(groups))
            vx, vxe, _ = _qh_x(vs, day)
            ys = nums(g["power_kw"], 1 / 1000)
            label = f"version {as_utc(version).astimezone(BERLIN).strftime('%d.%m. %H:%M')}"
            grey = {"color": f"rgb({gray},{gray},{gray})", "width": 1}
            trace = _step_trace(label, vx, vxe, ys, [berlin_label(t) for t in vs], grey, "%{y:.3f} MW",
                                yaxis="y", legendgroup="versions", opacity=0.8)
            # one legend entry for all of them (the hover names each version): a legend row per
            # version would wrap onto the time axis; a click on it shows or hides them together
            trace["showlegend"] = i == len(groups) - 1
            if trace["showlegend"]:
                trace["name"] = f"{len(groups)} forecast versions (older greyer)"
            data.append(trace)
    best = nums(asset["best_kw"], 1 / 1000)
    if any(v is not None for v in best):
        data.append(_step_trace("best-of-infeed", xs, xe, best,
                                [f"{lab} · source {s}" for lab, s in zip(labels, src, strict=True)],
                                {"color": COLORS["best"], "width": 3}, "%{y:.3f} MW", yaxis="y"))
    for col, name, marker in (("live_kw", "live (mean)", {"color": COLORS["live"], "size": 6}),
                              ("final_kw", "DSO final", {"color": COLORS["final"], "size": 8, "symbol": "diamond"})):
        ys = nums(asset[col], 1 / 1000)
        if all(v is None for v in ys):
            continue
        data.append({"type": "scatter", "mode": "markers", "name": name, "x": xm, "y": ys, "customdata": labels,
                     "marker": marker, "yaxis": "y",
                     "hovertemplate": f"%{{customdata}}<br>{name}: %{{y:.3f}} MW<extra></extra>"})
    cost = nums(asset["cost_eur"])
    if any(v is not None for v in cost):
        data.append({"type": "bar", "name": "imbalance cost", "x": xm, "y": cost, "customdata": labels,
                     "width": BAR_WIDTH_MS, "yaxis": "y2", "showlegend": False,
                     "marker": {"color": [COLORS["bad"] if (c or 0) > 0 else COLORS["good"] for c in cost]},
                     "hovertemplate": "%{customdata}<br>imbalance cost: %{y:,.2f} EUR<extra></extra>"})
    shapes, notes = _clock_shapes(day, now)
    spans = redispatch_spans(starts, asset["redispatched"].tolist())
    for a, b in spans:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": axis_x(a, day), "x1": axis_x(b, day),
                       "y0": 0.3, "y1": 1, "fillcolor": COLORS["redispatch"], "opacity": 0.25,
                       "line": {"width": 0}, "layer": "below"})
    if spans:
        data.append({"type": "scatter", "mode": "markers", "name": "redispatch (shaded)", "x": [None], "y": [None],
                     "marker": {"color": COLORS["redispatch"], "symbol": "square", "size": 10, "opacity": 0.5},
                     "hoverinfo": "skip"})
    layout = _base_layout(day, title, 460, shapes=shapes, annotations=notes,
                          yaxis={"title": {"text": "MW"}, "domain": [0.3, 1], "gridcolor": "#eeeeee"},
                          yaxis2={"title": {"text": "EUR"}, "domain": [0, 0.22], "zeroline": True,
                                  "zerolinecolor": "#999999", "gridcolor": "#eeeeee"})
    # the time axis under the lower (cost) plot, so that its title is not drawn across the bars
    layout["xaxis"] = {**layout["xaxis"], "anchor": "y2"}
    return {"data": data, "layout": layout}
