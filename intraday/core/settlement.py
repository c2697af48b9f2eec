"""Contract and settlement rules, pure (domain.md section 5): one function per rule, used by the
invoices, the performance report, the parser and the dashboard alike.

    contract period   half-open Berlin calendar days [contract_begin, contract_end); an empty end
                      is open. It covers its begin day, not its end day.
    capacity fee      capacity MW x fee x (days of the month the contract covers / days of the
                      month): a monthly fee pro rata temporis, by Berlin days (a DST day counts
                      one day, whatever its 92 or 100 QHs)
    redispatch        per redispatched QH: latest forecast MWh x the DSO compensation price
    VWAP              sum(price x MW) / sum(MW); our VWAP minus an index only where both exist

Money is exact ``Decimal``; amounts are rounded only where an invoice entry shows them.

>>> capacity_fee(Decimal("2"), Decimal("300"), 10, 30)
Decimal('200')
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from intraday.core.qh import BERLIN, berlin_day_start, to_dt
from intraday.core.units import kw_to_mwh_exact

__all__ = [
    "FEE_MODELS", "PRICE_MODELS", "capacity_fee", "contract_problems", "contract_span",
    "dates_unusable", "span_days", "month_days", "redispatch_compensation", "vwap", "vwap_minus_index",
]

PRICE_MODELS = ("fixed", "market")
FEE_MODELS = ("fixed_as_produced", "fixed_for_capacity", "percent_of_market")


def dates_unusable(begin: dt.date | None, end: dt.date | None) -> bool:
    """No begin, or an end before the begin: the contract cannot be placed in time."""
    return begin is None or (end is not None and end < begin)


def contract_span(begin: dt.date | None, end: dt.date | None, lo_s: int, hi_s: int) -> tuple[int, int]:
    """``[start, end)`` in UTC epoch seconds: ``[lo_s, hi_s)`` clipped to the contract's Berlin
    days ``[begin, end)`` (an empty end is open; unusable dates clip nothing). Empty: start == end.

    >>> from intraday.core.qh import berlin_month_bounds
    >>> m0, m1 = berlin_month_bounds(2025, 6)
    >>> s, e = contract_span(dt.date(2025, 6, 8), dt.date(2025, 6, 9), m0, m1)
    >>> (e - s) // 3600
    24
    """
    if dates_unusable(begin, end):
        return lo_s, hi_s
    assert begin is not None
    start = max(lo_s, berlin_day_start(begin))
    stop = hi_s if end is None else min(hi_s, berlin_day_start(end))
    return start, max(start, stop)


def month_days(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def span_days(start_s: int, end_s: int) -> Decimal:
    """Berlin calendar days in ``[start_s, end_s)``: whole days count 1 whatever their length (a
    DST day has 23 or 25 hours), a part of a day its share of that day.

    >>> from intraday.core.qh import berlin_month_bounds
    >>> span_days(*berlin_month_bounds(2025, 10))
    Decimal('31')
    """
    total = Decimal(0)
    if end_s <= start_s:
        return total
    day = to_dt(start_s).astimezone(BERLIN).date()
    while True:
        d0, d1 = berlin_day_start(day), berlin_day_start(day + dt.timedelta(days=1))
        if d0 >= end_s:
            return total
        overlap = min(d1, end_s) - max(d0, start_s)
        if overlap > 0:
            total += Decimal(1) if overlap == d1 - d0 else Decimal(overlap) / Decimal(d1 - d0)
        day += dt.timedelta(days=1)


def capacity_fee(capacity_mw: Decimal, fee: Decimal, days: Decimal | int, days_in_month: int) -> Decimal:
    """``fixed_for_capacity``: capacity MW x fee (EUR per MW and month) x days / days of the month."""
    return capacity_mw * fee * Decimal(days) / Decimal(days_in_month)


def redispatch_compensation(latest_kw: Decimal | None, price_eur_mwh: Decimal | None
                            ) -> tuple[Decimal, Decimal | None]:
    """(MWh, EUR) of one redispatched QH: its latest forecast MWh (none: 0) x the DSO
    compensation price (none: no amount, the QH is unpriced)."""
    mwh = Decimal(0) if latest_kw is None else kw_to_mwh_exact(latest_kw)
    return mwh, (None if price_eur_mwh is None else mwh * price_eur_mwh)


def vwap(pairs: Iterable[tuple[float | None, float | None]]) -> float | None:
    """sum(price x volume) / sum(volume) over the (price, volume) pairs that have both; None when
    no volume. Volume is MW or MWh alike (the factor cancels)."""
    num = den = 0.0
    for price, volume in pairs:
        if price is None or volume is None or price != price or volume != volume:
            continue
        num += price * volume
        den += volume
    return None if den == 0 else num / den


def vwap_minus_index(pairs: Iterable[tuple[float | None, float | None, float | None]]
                     ) -> tuple[float | None, float | None, float | None]:
    """(our VWAP, the index volume-weighted on our traded volume, their difference) over
    (our VWAP, index, our traded volume) per QH, counting only the QHs that have both prices:
    a traded QH without an index says nothing about how we traded against it."""
    both = [(v, x, w) for v, x, w in pairs
            if v is not None and x is not None and w is not None and v == v and x == x and w > 0]
    ours = vwap((v, w) for v, _, w in both)
    index = vwap((x, w) for _, x, w in both)
    return ours, index, (None if ours is None or index is None else ours - index)


def _text(n: object) -> str:
    if isinstance(n, float) and n.is_integer():
        return str(int(n))
    return str(n)


def contract_problems(begin: dt.date | None, end: dt.date | None, price_model: str | None,
                      price: object, fee_model: str | None, fee: object, fee_percent: object,
                      capacity: object, begin_given: bool | None = None) -> list[str]:
    """What contradicts a contract's models, in the words of every place that checks it (the CRM
    parser stores them, the invoicer and the report read them). ``price`` ... ``capacity`` are
    numbers or None; the models are text as written (compared in lower case, quoted as written).
    ``begin_given``: a begin was written but did not parse (its own error names it).

    >>> contract_problems(dt.date(2025, 1, 1), None, "fixed", None, "fixed_as_produced", 1, None, None)
    ['price_model fixed requires price']
    """
    found: list[str] = []
    pm, fm = (price_model or "").strip().lower(), (fee_model or "").strip().lower()
    if begin is None:
        if not begin_given:
            found.append("missing contract_begin")
    elif end is not None and end < begin:
        found.append("contract_end before contract_begin")
    if not pm:
        found.append("missing price_model")
    elif pm not in PRICE_MODELS:
        found.append(f"unknown price_model {price_model!r}")
    elif pm == "fixed" and price is None:
        found.append("price_model fixed requires price")
    if not fm:
        found.append("missing fee_model")
    elif fm not in FEE_MODELS:
        found.append(f"unknown fee_model {fee_model!r}")
    elif fm in ("fixed_as_produced", "fixed_for_capacity") and fee is None:
        found.append(f"fee_model {fm} requires fee")
    elif fm == "percent_of_market" and fee_percent is None:
        found.append("fee_model percent_of_market requires fee_percent")
    if capacity is not None and capacity <= 0:  # type: ignore[operator]
        found.append(f"capacity must be positive: {_text(capacity)}")
    elif fm == "fixed_for_capacity" and capacity is None:
        found.append("fee_model fixed_for_capacity requires capacity")
    return found
