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
GATE_CLOSURE = dt.timedelta(seconds=GATE_CLOSURE_S)  # the same rule for datetimes
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


def qh_closing_at(gate_s: float) -> float:
    """The delivery start of the QH whose gate closes at ``gate_s`` (the inverse of
    :func:`gate_closure`): the QHs tradeable at ``now`` start after ``qh_closing_at(now)``."""
    return gate_s + GATE_CLOSURE_S


def first_tradeable_qh(now_s: float) -> int:
    """The first QH still tradeable at ``now_s`` (its gate closure strictly after now).

    >>> first_tradeable_qh(1749370500) - 1749370500   # at 08:15Z the 08:45Z QH is next
    1800
    """
    return floor_qh(qh_closing_at(now_s)) + QH_S


def next_gate_closure_s(now_s: float) -> tuple[int, int]:
    """The next gate closure strictly after ``now_s`` and the start of the QH it closes."""
    qh = first_tradeable_qh(now_s)
    return gate_closure(qh), qh


def to_dt(epoch_s: float) -> dt.datetime:
    """An instant in epoch seconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(epoch_s, tz=UTC)


def as_utc(value: object) -> dt.datetime | None:
    """Any instant as an aware UTC datetime: an aware datetime (pandas' Timestamp too), epoch
    seconds, or ISO 8601 text with an offset; None for None, NaN and NaT. A naive datetime is
    refused: nothing here guesses a time zone."""
    if value is None or value != value:  # NaN, NaT
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give an aware instant")
        to_py = getattr(value, "to_pydatetime", None)  # a pandas Timestamp
        return (to_py() if to_py else value).astimezone(UTC)
    if isinstance(value, int | float):
        return to_dt(float(value))
    if isinstance(value, str):
        return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise TypeError(f"not an instant: {value!r}")


@lru_cache(maxsize=65536)
def iso(epoch_s: int) -> str:
    """ISO 8601 UTC text of an instant, second precision: ``2025-06-08T10:15:00Z``."""
    return to_dt(epoch_s).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(epoch_s: float) -> str:
    """ISO 8601 UTC with microseconds when the instant has a fraction."""
    d = to_dt(epoch_s)
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


@lru_cache(maxsize=64)
def day_span(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC ``[start, end)`` of the Berlin delivery day (23, 24 or 25 hours)."""
    return to_dt(berlin_day_start(day)), to_dt(berlin_day_start(day + dt.timedelta(days=1)))


def delivery_day_of(epoch_s: float) -> dt.date:
    """The Berlin delivery day a UTC instant belongs to."""
    return to_dt(epoch_s).astimezone(BERLIN).date()


def berlin_month_bounds(year: int, month: int) -> tuple[int, int]:
    """UTC epoch seconds of ``[first 00:00, next month's first 00:00)`` Europe/Berlin."""
    start = dt.datetime(year, month, 1, tzinfo=BERLIN)
    nxt = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=BERLIN)
    return int(start.timestamp()), int(nxt.timestamp())
