"""Units: energy of a quarter-hour from power, in floats, exact decimals and SQL, in one place.

A QH lasts 0.25 h: a power of P kW averaged over it is P x 0.25 / 1000 MWh; a trade of M MW over
one QH is M x 0.25 MWh.
"""

from __future__ import annotations

from decimal import Decimal

KW_QH_TO_MWH = Decimal("0.00025")  # kW averaged over a QH x 0.25 h / 1000, exact (invoices)


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


def kw_to_mwh_exact(kw: Decimal) -> Decimal:
    """:func:`kw_to_mwh` in exact decimals (money is computed in decimals)."""
    return kw * KW_QH_TO_MWH


def kw_to_mwh_sql(expr: str) -> str:
    """:func:`kw_to_mwh` as a SQL expression over a kW column or expression."""
    return f"{expr} * 0.25 / 1000"
