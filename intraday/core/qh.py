"""Quarter-hour and delivery-day arithmetic, pure and timezone-exact.

All instants inside the system are UTC epoch seconds (``int``) or aware UTC datetimes. A
quarter-hour (QH) is the delivery interval ``[start, start + 15 min)`` keyed by its UTC start.
The German delivery day runs 00:00-24:00 Europe/Berlin, which is 92, 96 or 100 QHs::

    2025-03-30 (spring forward)  92 QHs  2025-03-29T23:00Z .. 2025-03-30T22:00Z
    2025-06-08 (summer)          96 QHs  2025-06-07T22:00Z .. 2025-06-08T22:00Z
    2025-10-26 (fall back)      100 QHs  2025-10-25T22:00Z .. 2025-10-26T23:00Z

Trading gate closure of a QH starting at ``t`` is ``t - 15 min`` (domain.md section 1).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

QH_S = 900
HOUR_S = 3600
GATE_CLOSURE_S = 900
BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
MS_THRESHOLD = 1e11  # an epoch value below this is seconds, above it milliseconds


def floor_qh(epoch_s: float) -> int:
    """The start of the QH containing ``epoch_s`` (UTC epoch seconds)."""
    return int(epoch_s // QH_S) * QH_S


def epoch_from_number(value: float) -> float:
    """Epoch seconds from a JSON timestamp that claims to be ms but may be seconds.

    data-formats.md: sources label timestamps ``ms`` yet emit seconds; decide by magnitude.

    >>> epoch_from_number(1749340800.0), epoch_from_number(1749340800000)
    (1749340800.0, 1749340800.0)
    """
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"timestamp is not a finite number: {value!r}")
    return v / 1000.0 if abs(v) >= MS_THRESHOLD else v


MAX_DELIVERY_S = 48 * HOUR_S  # a longer delivery range is refused: one row must not become millions of QHs


def delivery_range_problem(start_s: float, end_s: float) -> str | None:
    """Why ``[start, end)`` is no delivery range (empty, not on quarter-hours, over 48 h), or None."""
    if end_s <= start_s:
        return "delivery end is not after delivery start"
    if start_s % QH_S or end_s % QH_S:
        return "delivery range is not aligned to quarter-hours"
    if end_s - start_s > MAX_DELIVERY_S:
        return f"delivery range longer than {MAX_DELIVERY_S // HOUR_S} h"
    return None


def qh_slices(start_s: int, end_s: int) -> list[int]:
    """The QH starts of a delivery range ``[start, end)``: an hourly product gives four.

    Raises ``ValueError`` for a range :func:`delivery_range_problem` refuses (a 2099 end would
    otherwise become millions of slices).
    """
    problem = delivery_range_problem(start_s, end_s)
    if problem:
        raise ValueError(problem)
    return list(range(start_s, end_s, QH_S))


def gate_closure(qh_start_s: int) -> int:
    """Gate closure of a QH: 15 minutes before its delivery start."""
    return qh_start_s - GATE_CLOSURE_S


def to_dt(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, tz=UTC)


@lru_cache(maxsize=65536)
def iso(epoch_s: int) -> str:
    """ISO 8601 UTC text of an instant, second precision: ``2025-06-08T10:15:00Z``."""
    return dt.datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(epoch_s: float) -> str:
    """ISO 8601 UTC with microseconds when the instant has a fraction."""
    d = dt.datetime.fromtimestamp(epoch_s, tz=UTC)
    if d.microsecond:
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=65536)
def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO 8601 instant with an offset or ``Z`` (naive text is refused)."""
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {text!r}")
    return d.timestamp()


def berlin_day_start(day: dt.date) -> int:
    """UTC epoch seconds of a Berlin calendar day's 00:00."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=BERLIN).timestamp())


def delivery_day_qhs(day: dt.date) -> list[int]:
    """UTC starts of the QHs of a Berlin delivery day (92, 96 or 100 of them)."""
    return list(range(berlin_day_start(day), berlin_day_start(day + dt.timedelta(days=1)), QH_S))


def delivery_day_of(epoch_s: float) -> dt.date:
    """The Berlin delivery day a UTC instant belongs to."""
    return dt.datetime.fromtimestamp(epoch_s, tz=UTC).astimezone(BERLIN).date()


def berlin_month_bounds(year: int, month: int) -> tuple[int, int]:
    """UTC epoch seconds of ``[first 00:00, next month's first 00:00)`` Europe/Berlin."""
    start = dt.datetime(year, month, 1, tzinfo=BERLIN)
    nxt = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=BERLIN)
    return int(start.timestamp()), int(nxt.timestamp())


def kw_to_mwh(kw: float) -> float:
    """Energy of a QH at an average power: kW x 0.25 h / 1000."""
    return kw * 0.25 / 1000.0


def open_position_mwh(tradeable_kw: float | None, net_sold_mwh: float | None) -> float | None:
    """What is still to sell (+) or buy back (-) of a QH: the tradeable forecast's MWh minus the
    net sold MWh (none without a tradeable forecast). The desk and the alerts use this one rule.

    >>> open_position_mwh(8000.0, 0.5)
    1.5
    """
    if tradeable_kw is None or tradeable_kw != tradeable_kw:
        return None
    sold = 0.0 if net_sold_mwh is None or net_sold_mwh != net_sold_mwh else net_sold_mwh
    return kw_to_mwh(tradeable_kw) - sold


def mw_to_mwh(mw: float) -> float:
    """Energy of one QH slice of a trade of ``mw`` MW."""
    return mw * 0.25
