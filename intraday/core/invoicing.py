"""The invoice rules, pure and in exact decimals: a month's inputs per contract, its lines (energy, redispatch, fees), VAT and rounding (domain.md, docs/invoices.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from intraday.core.qh import BERLIN, QH_S, UTC, berlin_month_bounds, iso
from intraday.core.settlement import (
    capacity_fee,
    contract_problems,
    contract_span,
    dates_unusable,
    month_days,
    redispatch_compensation,
    span_days,
)
from intraday.core.units import kw_to_mwh_exact

VAT_RATE = Decimal("0.19")
CENT = Decimal("0.01")
MWH_PLACES = Decimal("0.000001")       # quantities are shown to the Wh
UNIT_PRICE_PLACES = Decimal("0.0001")  # a computed unit price (net / quantity)



@dataclass(frozen=True)
class Contract:
    """One row of the newest CRM file (``contracts`` table)."""

    contract_id: str
    asset_id: str
    begin: dt.date | None
    end: dt.date | None
    price_model: str | None
    price_eur_mwh: Decimal | None
    fee_model: str | None
    fee: Decimal | None
    fee_percent: Decimal | None
    capacity_mw: Decimal | None
    email: str | None = None
    metering_point_id: str | None = None
    stored_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssetQh:
    best_kw: Decimal | None
    best_source: str | None
    latest_kw: Decimal | None
    redispatched: bool


@dataclass(frozen=True)
class MonthData:
    """Everything one Berlin month's invoices depend on; QHs are UTC epoch seconds."""

    year: int
    month: int
    contracts: tuple[Contract, ...]
    invoiced_qhs: tuple[int, ...]                 # sorted
    asset_qh: dict[tuple[str, int], AssetQh]
    public_vwap: dict[int, Decimal]
    compensation: dict[int, Decimal]

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def bounds(self) -> tuple[int, int]:
        return berlin_month_bounds(self.year, self.month)


@dataclass(frozen=True)
class Line:
    """One QH amount behind an invoice (``invoice_lines``); ``amount = mwh x price`` exactly."""

    kind: str               # infeed | fee | redispatch
    delivery_start: int
    mwh: Decimal | None
    price_eur_mwh: Decimal | None
    amount_eur: Decimal | None
    source: str


@dataclass(frozen=True)
class Invoice:
    payload: dict[str, Any]
    lines: tuple[Line, ...]

    @property
    def content_hash(self) -> str:
        """sha256 over the payload (without version/state) and the lines: equal data, equal hash."""
        body = {k: v for k, v in self.payload.items() if k not in ("version", "state", "content_hash")}
        lines = [[ln.kind, ln.delivery_start, _s(ln.mwh), _s(ln.price_eur_mwh), _s(ln.amount_eur), ln.source]
                 for ln in self.lines]
        text = json.dumps([body, lines], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _s(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def exact_decimal(value: object) -> Decimal | None:
    """A database number as an exact decimal of its shortest text (0.1 -> Decimal('0.1'))."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int | str):
        return Decimal(value)
    raise TypeError(f"not a number: {value!r}")


# ----------------------------------------------------------------------------------------------
# The rules (pure)


def contract_errors(c: Contract) -> list[str]:
    """Every missing or invalid field of a contract, the parser's stored ones first.

    The messages are those of ``intraday.ingest.formats.crm.parse_contract_file``, so a problem found both
    at parse time and here is named once.

    >>> contract_errors(Contract("C1", "A1", dt.date(2025, 1, 1), None, "fixed", None,
    ...                          "fixed_as_produced", Decimal(1), None, None))
    ['price_model fixed requires price']
    """
    found = contract_problems(c.begin, c.end, c.price_model, c.price_eur_mwh, c.fee_model, c.fee,
                              c.fee_percent, c.capacity_mw)
    out = list(dict.fromkeys(c.stored_errors))
    # the parser quotes the raw text (``unknown price_model ''``); keep one message per problem
    have = " | ".join(out)
    for msg in found:
        family = next((f for f in _FAMILIES if msg.startswith(f)), None)
        if msg in out or (family is not None and any(x in have for x in _FAMILIES[family])):
            continue
        out.append(msg)
    return out


_FAMILIES = {
    "missing price_model": ("unknown price_model", "missing price_model"),
    "unknown price_model": ("unknown price_model", "missing price_model"),
    "missing fee_model": ("unknown fee_model", "missing fee_model"),
    "unknown fee_model": ("unknown fee_model", "missing fee_model"),
    "capacity must be positive": ("capacity must be positive",),
}


def contract_period(c: Contract, lo_s: int, hi_s: int) -> tuple[int, int]:
    """``[start, end)`` in UTC epoch seconds: ``[lo_s, hi_s)`` clipped to the contract's half-open
    Berlin days ``[contract_begin, contract_end)``."""
    return contract_span(c.begin, c.end, lo_s, hi_s)


def listed_in_month(c: Contract, month_start_s: int, month_end_s: int) -> bool:
    """A contract appears in a month when it covers a day of it (or its dates are unusable)."""
    if dates_unusable(c.begin, c.end):
        return True  # its error must be seen somewhere
    start, end = contract_period(c, month_start_s, month_end_s)
    return start < end


def _round(d: Decimal, places: Decimal) -> Decimal:
    return d.quantize(places, rounding=ROUND_HALF_UP)


def _f(d: Decimal | None) -> float | None:
    if d is None:
        return None
    return 0.0 if d == 0 else float(d)


def money_entry(quantity: Decimal | None, unit_price: Decimal | None, net_exact: Decimal | None) -> dict[str, Any]:
    """One invoice entry: net rounded to cents half-up, VAT = round(net x 0.19), gross = net + VAT.

    >>> money_entry(Decimal("0.25"), Decimal("9.98"), Decimal("2.495"))
    {'quantity': 0.25, 'unit_price_eur': 9.98, 'net_eur': 2.5, 'vat_eur': 0.48, 'gross_eur': 2.98}
    """
    if net_exact is None:
        return {"quantity": None, "unit_price_eur": None, "net_eur": None, "vat_eur": None, "gross_eur": None}
    net = _round(net_exact, CENT)
    vat = _round(net * VAT_RATE, CENT)
    return {"quantity": _f(None if quantity is None else _round(quantity, MWH_PLACES)),
            "unit_price_eur": _f(unit_price), "net_eur": _f(net), "vat_eur": _f(vat), "gross_eur": _f(net + vat)}


def _per_unit(net: Decimal, quantity: Decimal) -> Decimal | None:
    return None if quantity == 0 else _round(net / quantity, UNIT_PRICE_PLACES)


def _gross(entry: dict[str, Any]) -> Decimal:
    return Decimal(repr(entry["gross_eur"]))


def invoice_contract(c: Contract, data: MonthData) -> Invoice:
    """The invoice of one contract for ``data``'s month (domain.md section 5); pure."""
    with localcontext() as ctx:
        ctx.prec = 60  # products of two 17-digit decimals stay exact
        return _invoice(c, data)


def _invoice(c: Contract, data: MonthData) -> Invoice:
    month_start, month_end = data.bounds
    start, end = contract_period(c, month_start, month_end)
    errors = contract_errors(c)
    ok = not errors
    qhs = [t for t in data.invoiced_qhs if start <= t < end]
    days = span_days(start, end)  # Berlin days of the month the contract covers (in data.bounds)

    energy: list[tuple[int, Decimal, str]] = []  # (qh, MWh, source)
    for t in qhs:
        row = data.asset_qh.get((c.asset_id, t))
        kw = row.best_kw if row is not None else None
        source = row.best_source if row is not None and row.best_source else "missing"
        energy.append((t, Decimal(0) if kw is None else kw_to_mwh_exact(kw), source))
    volume = sum((mwh for _, mwh, _ in energy), Decimal(0))
    final_qh = sum(1 for *_, s in energy if s == "final")
    provisional = not qhs or final_qh < len(qhs)
    uses_market = c.price_model == "market" or c.fee_model == "percent_of_market"
    unpriced_qh = sum(1 for t in qhs if t not in data.public_vwap) if uses_market else 0
    market_value = sum((mwh * data.public_vwap[t] for t, mwh, _ in energy if t in data.public_vwap), Decimal(0))

    redispatch: list[tuple[int, Decimal, Decimal | None, Decimal | None]] = []  # (qh, forecast MWh, DSO price, amount)
    for t in qhs:
        row = data.asset_qh.get((c.asset_id, t))
        if row is not None and row.redispatched:
            mwh, amount = redispatch_compensation(row.latest_kw, data.compensation.get(t))
            redispatch.append((t, mwh, data.compensation.get(t), amount))
    rd_mwh = sum((mwh for _, mwh, _, _ in redispatch), Decimal(0))
    rd_net = sum((a for *_, a in redispatch if a is not None), Decimal(0))

    lines: list[Line] = []
    if ok:
        if c.price_model == "fixed":
            assert c.price_eur_mwh is not None
            infeed = money_entry(volume, c.price_eur_mwh, volume * c.price_eur_mwh)
            lines += [Line("infeed", t, m, c.price_eur_mwh, m * c.price_eur_mwh, s) for t, m, s in energy]
        else:
            infeed = money_entry(volume, _per_unit(market_value, volume), market_value)
            for t, m, s in energy:
                p = data.public_vwap.get(t)
                lines.append(Line("infeed", t, m, p, None if p is None else m * p, s))
        if c.fee_model == "fixed_as_produced":
            assert c.fee is not None
            fees = money_entry(volume, c.fee, volume * c.fee)
            lines += [Line("fee", t, m, c.fee, m * c.fee, s) for t, m, s in energy]
        elif c.fee_model == "fixed_for_capacity":
            assert c.fee is not None and c.capacity_mw is not None
            fee_net = capacity_fee(c.capacity_mw, c.fee, days, month_days(data.year, data.month))
            fees = money_entry(c.capacity_mw, _per_unit(fee_net, c.capacity_mw), fee_net)
            lines.append(Line("fee", start, None, c.fee, fee_net, "capacity"))
        else:
            assert c.fee_percent is not None
            share = c.fee_percent / 100
            fee_net = market_value * share
            fees = money_entry(volume, _per_unit(fee_net, volume), fee_net)
            for t, m, s in energy:
                p = data.public_vwap.get(t)
                lines.append(Line("fee", t, m, None if p is None else p * share,
                                  None if p is None else m * p * share, s))
        rd = money_entry(rd_mwh, _per_unit(rd_net, rd_mwh), rd_net)
        lines += [Line("redispatch", t, m, p, a, "forecast") for t, m, p, a in redispatch]
        total_gross = _gross(infeed) + _gross(rd) - _gross(fees)
        total_net = sum((Decimal(repr(e["net_eur"])) * sign for e, sign in ((infeed, 1), (rd, 1), (fees, -1))),
                        Decimal(0))
        totals = {"total_gross_eur": _f(total_gross), "total_net_eur": _f(total_net),
                  "total_vat_eur": _f(total_gross - total_net)}
    else:  # cannot be invoiced until fixed: the data facts, no amounts
        infeed = fees = rd = money_entry(None, None, None)
        lines += [Line("infeed", t, m, None, None, s) for t, m, s in energy]
        lines += [Line("redispatch", t, m, p, None, "forecast") for t, m, p, _ in redispatch]
        totals = {"total_gross_eur": None, "total_net_eur": None, "total_vat_eur": None}

    period_qh_count = (end - start) // QH_S
    payload = {
        "contract_id": c.contract_id,
        "asset_id": c.asset_id,
        "month": data.label,
        "status": "ok" if ok else "error",
        "provisional": provisional,
        "volume_mwh": _f(_round(volume, MWH_PLACES)),
        "unpriced_qh": unpriced_qh,
        "infeed_payout": infeed,
        "fees": fees,
        "redispatch_payout": rd,
        "total_gross_eur": totals["total_gross_eur"],
        "errors": errors,
        # extras (contract.md allows fields after the required ones)
        "total_net_eur": totals["total_net_eur"],
        "total_vat_eur": totals["total_vat_eur"],
        "currency": "EUR",
        "vat_rate": float(VAT_RATE),
        "period_start": iso(start),
        "period_end": iso(end),
        "period_first_day": dt.datetime.fromtimestamp(start, tz=UTC).astimezone(BERLIN).date().isoformat(),
        "period_last_day": dt.datetime.fromtimestamp(end - 1, tz=UTC).astimezone(BERLIN).date().isoformat(),
        "qh_count": len(qhs),
        "final_qh_count": final_qh,
        "period_qh_count": period_qh_count,
        "complete": len(qhs) == period_qh_count,
        "covered_days": _f(days),
        "month_days": month_days(data.year, data.month),
        "redispatch_qh": len(redispatch),
        "redispatch_unpriced_qh": sum(1 for *_, a in redispatch if a is None),
        "price_model": c.price_model,
        "price_eur_mwh": _f(c.price_eur_mwh),
        "fee_model": c.fee_model,
        "fee": _f(c.fee),
        "fee_percent": _f(c.fee_percent),
        "capacity_mw": _f(c.capacity_mw),
        "email": c.email,
    }
    return Invoice(payload, tuple(lines))
