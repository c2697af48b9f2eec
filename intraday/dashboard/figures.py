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
from functools import lru_cache
from typing import Any

import pandas as pd

from intraday.core.qh import BERLIN, QH_S, as_utc, day_span, next_gate_closure_s, to_dt
from intraday.core.units import open_position_mwh

QH = dt.timedelta(seconds=QH_S)
GATE = dt.timedelta(seconds=QH_S)
BAR_WIDTH_MS = QH_S * 1000 * 0.8

COLORS = {
    "tradeable": "#1f77b4", "latest": "#9ecae1", "best": "#111111", "net_sold": "#2ca02c",
    "open_pos": "#ff7f0e", "vwap": "#111111", "idx_full": "#1f77b4", "idx_3h": "#9467bd",
    "idx_1h": "#17becf", "good": "#2ca02c", "bad": "#d62728", "now": "#d62728", "gate": "#ff7f0e",
    "final": "#1b7837", "live": "#2166ac", "redispatch": "#e08214", "forecast": "#bababa", "none": "#f0f0f0",
    # an estimate's cost has its own hues (and a hatch): never mistaken for a settled one
    "good_estimate": "#a6dba0", "bad_estimate": "#f4a582",
}
STATUS_ORDER = ("open", "closed", "delivering", "measured", "settled")


# ---------------------------------------------------------------------------------------------
# time


@lru_cache(maxsize=64)
def is_dst_day(day: dt.date) -> bool:
    start, end = day_span(day)
    return start.astimezone(BERLIN).utcoffset() != end.astimezone(BERLIN).utcoffset()


@lru_cache(maxsize=64)
def _axis_offset(day: dt.date) -> dt.timedelta:
    return day_span(day)[0].astimezone(BERLIN).utcoffset()


def axis_x(instant: Any, day: dt.date) -> str:
    """Position of a UTC instant on the day's time axis (see the module docstring)."""
    t = as_utc(instant)
    return (t + _axis_offset(day)).replace(tzinfo=None).isoformat(" ")


def berlin_label(instant: Any, *, with_zone: bool = False) -> str:
    """``HH:MM`` in Europe/Berlin (with the zone name, e.g. ``02:00 CET``, if asked)."""
    t = as_utc(instant).astimezone(BERLIN)
    return t.strftime("%H:%M %Z") if with_zone else t.strftime("%H:%M")


def berlin_time(instant: Any) -> str:
    """``2025-06-08 14:03:12 CEST``: an instant as the desk reads it."""
    t = as_utc(instant)
    return "" if t is None else t.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S %Z")


def waiting_text(clock: Any) -> str:
    """What the page says before any result of a delivery day has arrived, instead of empty axes.

    >>> waiting_text(None)
    'waiting for data: no replay has started yet (intraday demo, or intraday replay DAY_DIR --speed 60)'
    >>> waiting_text(pd.Timestamp("2025-05-25T04:45:00Z"))
    "waiting for data: replay clock 2025-05-25 06:45:00 CEST; results appear as the delivery day's forecasts and trades arrive"
    """
    if as_utc(clock) is None:
        return "waiting for data: no replay has started yet (intraday demo, or intraday replay DAY_DIR --speed 60)"
    return (f"waiting for data: replay clock {berlin_time(clock)}; results appear as the delivery day's "
            "forecasts and trades arrive")


def clock_text(clock: Any, liveness: str = "live") -> str:
    """The header's clock: ``replay clock 2025-06-08 14:03:12 CEST``, saying when the data is not
    live (``liveness`` from ``queries.replay_liveness``).

    >>> clock_text(pd.Timestamp("2025-06-08T12:03:12Z"), "stale")
    'replay clock 2025-06-08 14:03:12 CEST (not live: the clock stopped, data of an earlier run)'
    """
    if as_utc(clock) is None:
        return waiting_text(None)
    suffix = {"finished": " (replay finished: not live)",
              "stale": " (not live: the clock stopped, data of an earlier run)"}.get(liveness, "")
    return "replay clock " + berlin_time(clock) + suffix


def berlin_short(instant: Any) -> str:
    """``08.06. 14:15``: a QH start in Europe/Berlin, short."""
    t = as_utc(instant)
    return "" if t is None else t.astimezone(BERLIN).strftime("%d.%m. %H:%M")


def xaxis_layout(day: dt.date, **extra: Any) -> dict[str, Any]:
    """The time axis of a day: Berlin wall time; explicit true labels on DST days."""
    start, end = day_span(day)
    axis: dict[str, Any] = {"type": "date", "range": [axis_x(start, day), axis_x(end, day)],
                            "title": {"text": f"delivery {day.isoformat()} (Europe/Berlin)"},
                            "showgrid": True, "gridcolor": "#eeeeee", **extra}
    if is_dst_day(day):
        hours = [start + dt.timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600) + 1)]
        axis["tickmode"] = "array"
        axis["tickvals"] = [axis_x(h, day) for h in hours]
        # the zone only where it disambiguates: around the 02:00-03:00 switch
        axis["ticktext"] = [berlin_label(h, with_zone=h.astimezone(BERLIN).hour in (1, 2, 3)) for h in hours]
    return axis


def qh_status(delivery_start: Any, now: Any, price_source: str | None = None) -> str:
    """Status of the QH starting at ``delivery_start`` at event time ``now`` (module docstring).

    >>> t = dt.datetime(2025, 6, 8, 12, 0, tzinfo=UTC)
    >>> [qh_status(t, t + dt.timedelta(minutes=m)) for m in (-16, -15, 0, 15)]
    ['open', 'closed', 'delivering', 'measured']
    """
    t = as_utc(delivery_start)
    n = as_utc(now)
    if n is None or n < t - GATE:
        return "open"
    if n < t:
        return "closed"
    if n < t + QH:
        return "delivering"
    return "settled" if price_source == "final" else "measured"


def next_gate_closure(now: Any) -> tuple[dt.datetime, dt.datetime] | None:
    """The next gate closure strictly after ``now`` and the start of the QH it closes."""
    n = as_utc(now)
    if n is None:
        return None
    gate_s, qh_s = next_gate_closure_s(n.timestamp())
    return to_dt(gate_s), to_dt(qh_s)


def countdown_text(now: Any) -> str:
    """``next gate closure 14:15 CEST (QH 14:30) in 11 min 48 s`` in event time (Europe/Berlin,
    the zone named), or ``""`` without a clock."""
    nxt = next_gate_closure(now)
    if nxt is None:
        return ""
    gate, qh = nxt
    left = int((gate - as_utc(now)).total_seconds())
    zone = gate.astimezone(BERLIN).strftime("%Z")
    return (f"next gate closure {berlin_label(gate)} {zone} (QH {berlin_label(qh)}) "
            f"in {left // 60} min {left % 60} s")


# ---------------------------------------------------------------------------------------------
# helpers


def _num(v: Any) -> float | None:
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _nums(series: Sequence[Any], scale: float = 1.0) -> list[float | None]:
    out = []
    for v in series:
        f = _num(v)
        out.append(None if f is None else f * scale)
    return out


def _starts(df: pd.DataFrame) -> list[dt.datetime]:
    return [as_utc(t) for t in df["delivery_start"]]


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
# frames derived for display and download


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
        tradeable_kw = _num(r.tradeable_forecast_kw)
        open_mwh = open_position_mwh(tradeable_kw, _num(r.net_sold_mwh))
        price = _num(r.imbalance_price_eur_mwh)
        x = tr.get(t)
        out.append({
            "qh": berlin_label(t, with_zone=True), "delivery_start": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to_gate_min": round((gate - t_now).total_seconds() / 60, 1),
            "tradeable_mw": rnd(None if tradeable_kw is None else tradeable_kw / 1000, 3),
            "net_sold_mw": rnd((_num(r.net_sold_mwh) or 0.0) * 4, 3),
            "open_mw": rnd(None if open_mwh is None else open_mwh * 4, 3), "open_mwh": rnd(open_mwh, 3),
            "vwap": rnd(_num(getattr(x, "private_vwap_eur_mwh", None))),
            "idx_1h": rnd(_num(getattr(x, "idx_1h_eur_mwh", None))),
            "idx_3h": rnd(_num(getattr(x, "idx_3h_eur_mwh", None))),
            "idx_full": rnd(_num(getattr(x, "idx_full_eur_mwh", None))),
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
    starts = _starts(portfolio)
    tradeable = pd.Series(_nums(portfolio["tradeable_forecast_kw"], 1 / 1000), dtype="float64")
    net_sold = pd.Series(_nums(portfolio["net_sold_mwh"], 4), dtype="float64")
    out = pd.DataFrame({
        "delivery_start": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in starts],
        "delivery_start_berlin": [t.astimezone(BERLIN).isoformat() for t in starts],
        "status": [qh_status(t, now, s if isinstance(s, str) else None)
                   for t, s in zip(starts, portfolio["imbalance_price_source"], strict=True)],
        "tradeable_forecast_mw": tradeable,
        "latest_forecast_mw": pd.Series(_nums(portfolio["latest_forecast_kw"], 1 / 1000), dtype="float64"),
        "best_of_infeed_mw": pd.Series(_nums(portfolio["best_of_infeed_kw"], 1 / 1000), dtype="float64"),
        "net_sold_mw": net_sold,
        "open_position_mw": tradeable - net_sold.fillna(0.0),
        "net_sold_mwh": pd.Series(_nums(portfolio["net_sold_mwh"]), dtype="float64"),
        "imbalance_mwh": pd.Series(_nums(portfolio["imbalance_mwh"]), dtype="float64"),
        "imbalance_price_eur_mwh": pd.Series(_nums(portfolio["imbalance_price_eur_mwh"]), dtype="float64"),
        "imbalance_price_source": portfolio["imbalance_price_source"].tolist(),
        "imbalance_cost_eur": pd.Series(_nums(portfolio["imbalance_cost_eur"]), dtype="float64"),
    })
    return out


def kpi_tiles(totals: pd.DataFrame) -> list[dict[str, Any]]:
    """The running totals as tiles: ``{"key", "label", "value", "unit", "tone"}`` with the value
    formatted (``"–"`` when unknown) and a tone ``good``/``bad``/``neutral``."""
    row = totals.iloc[0] if len(totals) else pd.Series(dtype="float64")

    def get(name: str) -> float | None:
        return _num(row.get(name)) if name in row else None

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
    starts = _starts(portfolio)
    xs, xe, xm = _qh_x(starts, day)
    labels = [berlin_label(t) + " · " + s for t, s in zip(starts, frame["status"], strict=True)]
    data = []
    series = [("tradeable_forecast_mw", "tradeable forecast", {"color": COLORS["tradeable"], "width": 2}),
              ("latest_forecast_mw", "latest forecast", {"color": COLORS["latest"], "width": 2, "dash": "dot"}),
              ("best_of_infeed_mw", "best-of-infeed", {"color": COLORS["best"], "width": 3}),
              ("net_sold_mw", "net sold", {"color": COLORS["net_sold"], "width": 2})]
    for col, name, line in series:
        ys = _nums(frame[col])
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.2f} MW", connectgaps=False))
    open_pos = _nums(frame["open_position_mw"])
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
    starts = _starts(trading)
    xs, xe, xm = _qh_x(starts, day)
    labels = [berlin_label(t) for t in starts]
    data = []
    for col, name, line in (("idx_full_eur_mwh", "idx_full", {"color": COLORS["idx_full"], "width": 2}),
                            ("idx_3h_eur_mwh", "idx_3h", {"color": COLORS["idx_3h"], "width": 1, "dash": "dash"}),
                            ("idx_1h_eur_mwh", "idx_1h", {"color": COLORS["idx_1h"], "width": 1, "dash": "dot"})):
        ys = _nums(trading[col])
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.2f} EUR/MWh", yaxis="y"))
    vwap = _nums(trading["private_vwap_eur_mwh"])
    if any(v is not None for v in vwap):
        data.append({"type": "scatter", "mode": "markers", "name": "our VWAP", "x": xm, "y": vwap,
                     "customdata": labels, "marker": {"color": COLORS["vwap"], "size": 7, "symbol": "diamond"},
                     "yaxis": "y", "hovertemplate": "%{customdata}<br>our VWAP: %{y:.2f} EUR/MWh<extra></extra>"})
        idx = _nums(trading["idx_full_eur_mwh"])
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
    starts = _starts(portfolio)
    xm = [axis_x(t + QH / 2, day) for t in starts]
    cost = _nums(portfolio["imbalance_cost_eur"])
    imb = _nums(portfolio["imbalance_mwh"])
    price = _nums(portfolio["imbalance_price_eur_mwh"])
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
    starts = _starts(counts)
    xm = [axis_x(t + QH / 2, day) for t in starts]
    labels = [berlin_label(t) for t in starts]
    data = []
    for source in ("final", "live", "redispatch", "forecast", "none"):
        if source not in counts:
            continue
        ys = [int(v) if _num(v) is not None else 0 for v in counts[source]]
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
    starts = _starts(asset)
    xs, xe, xm = _qh_x(starts, day)
    src = [s if isinstance(s, str) else "none" for s in asset["best_source"]]
    labels = [f"{berlin_label(t)} · {qh_status(t, now, ps if isinstance(ps, str) else None)}"
              for t, ps in zip(starts, asset["price_source"], strict=True)]
    data = []
    for col, name, line in (("tradeable_kw", "tradeable forecast", {"color": COLORS["tradeable"], "width": 2}),
                            ("latest_kw", "latest forecast", {"color": COLORS["latest"], "width": 2, "dash": "dot"})):
        ys = _nums(asset[col], 1 / 1000)
        if any(v is not None for v in ys):
            data.append(_step_trace(name, xs, xe, ys, labels, line, "%{y:.3f} MW", yaxis="y"))
    if versions is not None and not versions.empty:
        groups = list(versions.groupby("version", sort=True))
        for i, (version, g) in enumerate(groups):
            vs = _starts(g)
            gray = int(200 - 120 * (i + 1) / len(groups))
            vx, vxe, _ = _qh_x(vs, day)
            ys = _nums(g["power_kw"], 1 / 1000)
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
    best = _nums(asset["best_kw"], 1 / 1000)
    if any(v is not None for v in best):
        data.append(_step_trace("best-of-infeed", xs, xe, best,
                                [f"{lab} · source {s}" for lab, s in zip(labels, src, strict=True)],
                                {"color": COLORS["best"], "width": 3}, "%{y:.3f} MW", yaxis="y"))
    for col, name, marker in (("live_kw", "live (mean)", {"color": COLORS["live"], "size": 6}),
                              ("final_kw", "DSO final", {"color": COLORS["final"], "size": 8, "symbol": "diamond"})):
        ys = _nums(asset[col], 1 / 1000)
        if all(v is None for v in ys):
            continue
        data.append({"type": "scatter", "mode": "markers", "name": name, "x": xm, "y": ys, "customdata": labels,
                     "marker": marker, "yaxis": "y",
                     "hovertemplate": f"%{{customdata}}<br>{name}: %{{y:.3f}} MW<extra></extra>"})
    cost = _nums(asset["cost_eur"])
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
