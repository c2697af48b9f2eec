"""Time on the desk's page: Berlin labels with their zone, the delivery day's axis across DST, QH status, the gate closure countdown."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from intraday.core.qh import BERLIN, GATE_CLOSURE, QH_S, as_utc, day_span, next_gate_closure_s, to_dt

QH = dt.timedelta(seconds=QH_S)
GATE = GATE_CLOSURE  # a QH closes for trading this long before it starts
BAR_WIDTH_MS = QH_S * 1000 * 0.8


STATUS_ORDER = ("open", "closed", "delivering", "measured", "settled")



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
