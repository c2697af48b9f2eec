"""Monthly invoices per contract (domain.md section 5; the choices: docs/invoices.md).

Functional core, imperative shell: ``load_month`` reads what a month needs from the database,
``invoice_contract`` (pure) turns one contract and that data into an ``Invoice`` (the contract.md
payload plus its per-QH traceability lines), ``store_invoices`` versions them in ``invoices`` /
``invoice_lines`` (sql/003_invoices.sql), and ``run_invoices`` / ``export_invoices`` write files.

The rules in one place::

    contracts      the newest CRM file (max contracts.file_time); a contract is listed for a Berlin
                   month when [contract_begin, contract_end) (half-open Berlin days: it covers its
                   begin day, not its end day; empty end = open) covers a day of it
    invoiced QHs   QHs of the month, inside the contract's period, in which at least one asset of
                   the portfolio (the assets of the newest CRM file) has a live or final value;
                   forecast-only QHs are never invoiced
    energy         the contract asset's best_kw x 0.25 / 1000 per invoiced QH (no row or no
                   best_kw: 0 MWh, and the invoice is provisional)
    provisional    some invoiced QH of the asset is not best_source 'final' (or none is invoiced)
    infeed         fixed: MWh x price | market: sum MWh x public VWAP (no VWAP: unpriced_qh)
    fees           fixed_as_produced: MWh x fee | fixed_for_capacity: capacity MW x fee x days
                   covered / days of the month (pro rata temporis) | percent_of_market: sum MWh x public VWAP x fee_percent / 100
    redispatch     sum over redispatched invoiced QHs of latest_kw x 0.25 / 1000 x DSO price
    money          exact decimals; net rounded to cents half-up, VAT = round(net x 0.19),
                   gross = net + VAT; total_gross_eur = infeed + redispatch - fees (gross)

Example: 1.5 MWh at a fixed 90 EUR/MWh -> net 135.00, VAT 25.65, gross 160.65.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import psycopg

from intraday.core.qh import BERLIN, QH_S, UTC, berlin_month_bounds, iso
from intraday.core.settlement import (
    KW_QH_TO_MWH,
    capacity_fee,
    contract_problems,
    contract_span,
    dates_unusable,
    month_days,
    redispatch_compensation,
    span_days,
)
from intraday.sink.db import NEWEST_CONTRACTS_SQL, PORTFOLIO_ASSETS_SQL, connect

__all__ = [
    "EXIT_INVOICE_ERROR", "Contract", "Invoice", "Line", "MonthData", "compute_invoices",
    "contract_errors", "exact_decimal", "export_invoices", "invoice_contract", "issue_invoices", "load_month",
    "money_entry", "months_with_data", "run_invoices", "store_invoices",
]

EXIT_INVOICE_ERROR = 4
VAT_RATE = Decimal("0.19")
CENT = Decimal("0.01")
MWH_PLACES = Decimal("0.000001")       # quantities are shown to the Wh
UNIT_PRICE_PLACES = Decimal("0.0001")  # a computed unit price (net / quantity)
INVOICE_LOCK = 740_512_003  # advisory lock: one writer of invoice versions at a time
ISSUER = "Intraday desk (direct marketer of the portfolio)"


# ----------------------------------------------------------------------------------------------
# Inputs


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
    payload: dict
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
    return Decimal(value)  # int


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


def money_entry(quantity: Decimal | None, unit_price: Decimal | None, net_exact: Decimal | None) -> dict:
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


def _gross(entry: dict) -> Decimal:
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
        energy.append((t, Decimal(0) if kw is None else kw * KW_QH_TO_MWH, source))
    volume = sum((mwh for _, mwh, _ in energy), Decimal(0))
    final_qh = sum(1 for *_, s in energy if s == "final")
    provisional = not qhs or final_qh < len(qhs)
    uses_market = c.price_model == "market" or c.fee_model == "percent_of_market"
    unpriced_qh = sum(1 for t in qhs if t not in data.public_vwap) if uses_market else 0
    market_value = sum((mwh * data.public_vwap[t] for t, mwh, _ in energy if t in data.public_vwap), Decimal(0))

    redispatch: list[tuple[int, Decimal, Decimal | None]] = []  # (qh, forecast MWh, DSO price)
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


# ----------------------------------------------------------------------------------------------
# Database: read


NEWEST_CONTRACTS = f"""
SELECT contract_id, asset_id, contract_begin, contract_end, price_model, price_eur_mwh, fee_model, fee,
       fee_percent, capacity_mw, email, metering_point_id, errors
FROM ({NEWEST_CONTRACTS_SQL}) c
ORDER BY contract_id
"""


def _contracts(conn: psycopg.Connection) -> list[Contract]:
    out = []
    for (cid, asset, begin, end, pm, price, fm, fee, pct, cap, email, mp, errors) in conn.execute(NEWEST_CONTRACTS):
        stored = tuple(str(e) for e in errors) if isinstance(errors, list) else ()
        out.append(Contract(cid, asset, begin, end, (pm or "").strip().lower() or None, exact_decimal(price),
                            (fm or "").strip().lower() or None, exact_decimal(fee), exact_decimal(pct), exact_decimal(cap), email, mp, stored))
    return out


def load_month(conn: psycopg.Connection, year: int, month: int) -> MonthData:
    """Read the newest CRM file's contracts listed in the month and the data they are invoiced on."""
    start_s, end_s = berlin_month_bounds(year, month)
    all_contracts = _contracts(conn)
    portfolio = sorted({c.asset_id for c in all_contracts})
    contracts = tuple(c for c in all_contracts if listed_in_month(c, start_s, end_s))
    lo, hi = dt.datetime.fromtimestamp(start_s, tz=UTC), dt.datetime.fromtimestamp(end_s, tz=UTC)
    qhs = tuple(r[0] for r in conn.execute(
        "SELECT DISTINCT extract(epoch FROM delivery_start)::bigint FROM asset_qh"
        " WHERE delivery_start >= %s AND delivery_start < %s AND in_scope"
        "   AND (live_kw IS NOT NULL OR final_kw IS NOT NULL) AND asset_id = ANY(%s) ORDER BY 1",
        (lo, hi, portfolio)))
    assets = sorted({c.asset_id for c in contracts})
    rows = {(a, int(t)): AssetQh(exact_decimal(best), src, exact_decimal(latest), bool(rd)) for a, t, best, src, latest, rd in conn.execute(
        "SELECT asset_id, extract(epoch FROM delivery_start)::bigint, best_kw, best_source, latest_kw, redispatched"
        " FROM asset_qh WHERE delivery_start >= %s AND delivery_start < %s AND in_scope AND asset_id = ANY(%s)",
        (lo, hi, assets))}
    vwap = {int(t): exact_decimal(p) for t, p in conn.execute(
        "SELECT extract(epoch FROM delivery_start)::bigint, vwap_eur_mwh FROM trading_qh"
        " WHERE book = 'public' AND vwap_eur_mwh IS NOT NULL AND delivery_start >= %s AND delivery_start < %s",
        (lo, hi))}
    comp = {int(t): exact_decimal(p) for t, p in conn.execute(
        "SELECT extract(epoch FROM delivery_start)::bigint, price_eur_mwh FROM redispatch_compensation"
        " WHERE delivery_start >= %s AND delivery_start < %s", (lo, hi))}
    return MonthData(year, month, contracts, tuple(int(t) for t in qhs), rows, vwap, comp)  # type: ignore[arg-type]


def _computed(conn: psycopg.Connection, year: int, month: int) -> list[Invoice]:
    data = load_month(conn, year, month)
    return [invoice_contract(c, data) for c in data.contracts]


def compute_invoices(conn: psycopg.Connection, year: int, month: int) -> list[dict]:
    """The invoices of a Berlin month, one per listed contract of the newest CRM file (reads only)."""
    return [inv.payload for inv in _computed(conn, year, month)]


def months_with_data(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """The Berlin months that have invoiced QHs (a live or final value of a portfolio asset)."""
    return [(int(y), int(m)) for y, m in conn.execute(
        f"WITH portfolio AS ({PORTFOLIO_ASSETS_SQL})"
        " SELECT DISTINCT extract(year FROM delivery_start AT TIME ZONE 'Europe/Berlin'),"
        "        extract(month FROM delivery_start AT TIME ZONE 'Europe/Berlin')"
        " FROM asset_qh WHERE in_scope AND (live_kw IS NOT NULL OR final_kw IS NOT NULL)"
        "   AND asset_id IN (SELECT asset_id FROM portfolio) ORDER BY 1, 2")]


# ----------------------------------------------------------------------------------------------
# Database: versions


def next_state(invoice: Invoice, earlier_states: Iterable[str]) -> str:
    """State of a new version: draft (error), corrected (a final existed), final, or provisional.

    ``final`` needs every QH of the contract's period in the month invoiced on final data
    (``complete`` and not ``provisional``); a half-measured month stays provisional.
    """
    p = invoice.payload
    if p["status"] == "error":
        return "draft"
    if "final" in set(earlier_states):
        return "corrected"
    return "final" if (not p["provisional"] and p["complete"]) else "provisional"


def _has_invoice_tables(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('invoices') IS NOT NULL").fetchone()[0]


def store_invoices(conn: psycopg.Connection, invoices: list[Invoice],
                   withdraw_others_in: Iterable[str] = ()) -> list[dict]:
    """Record the invoices, one transaction; returns the payloads with version, state and hash.

    The same content as the newest version of an invoice adds nothing (and returns that version);
    other content adds the next version with its lines. ``withdraw_others_in``: months for which
    ``invoices`` is complete; a current invoice of such a month for a contract not among them is
    withdrawn.
    """
    out = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INVOICE_LOCK,))
        for inv in invoices:
            cid, month = inv.payload["contract_id"], inv.payload["month"]
            h = inv.content_hash
            versions = conn.execute(
                "SELECT version, state, content_hash FROM invoices WHERE contract_id = %s AND month = %s"
                " ORDER BY version", (cid, month)).fetchall()
            if versions and versions[-1][2] == h:
                version, state = versions[-1][0], versions[-1][1]
            else:
                version = versions[-1][0] + 1 if versions else 1
                state = next_state(inv, (v[1] for v in versions))
                stored = {**inv.payload, "version": version, "state": state}
                conn.execute(
                    "INSERT INTO invoices (contract_id, month, version, state, status, content_hash, payload)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (cid, month, version, state, inv.payload["status"], h, json.dumps(stored)))
                with conn.cursor() as cur, cur.copy(
                        "COPY invoice_lines (contract_id, month, version, kind, delivery_start, mwh,"
                        " price_eur_mwh, amount_eur, source) FROM STDIN") as cp:
                    for ln in inv.lines:
                        cp.write_row((cid, month, version, ln.kind,
                                      dt.datetime.fromtimestamp(ln.delivery_start, tz=UTC),
                                      ln.mwh, ln.price_eur_mwh, ln.amount_eur, ln.source))
            out.append({**inv.payload, "version": version, "state": state, "content_hash": h})
        for month in sorted(set(withdraw_others_in or ())):
            _withdraw(conn, month, {i.payload["contract_id"] for i in invoices if i.payload["month"] == month})
    return out


def _withdraw(conn: psycopg.Connection, month: str, listed: set[str]) -> None:
    """A new ``withdrawn`` version of every current invoice of ``month`` whose contract is no longer
    listed (dropped from the newest CRM file, or its corrected dates do not cover the month)."""
    current = conn.execute(
        "SELECT contract_id, version, payload FROM invoices_current WHERE month = %s AND state <> 'withdrawn'",
        (month,)).fetchall()
    for cid, version, payload in current:
        if cid in listed:
            continue
        doc = {**payload, "version": version + 1, "state": "withdrawn",
               "withdrawn_reason": "the newest CRM file does not invoice this contract for the month"}
        h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        conn.execute(
            "INSERT INTO invoices (contract_id, month, version, state, status, content_hash, payload)"
            " VALUES (%s, %s, %s, 'withdrawn', %s, %s, %s)",
            (cid, month, version + 1, payload.get("status", "ok"), h, json.dumps(doc)))


def issue_invoices(conn: psycopg.Connection, year: int, month: int) -> list[dict]:
    """Compute and store a month's invoices; the payloads carry version, state and content_hash."""
    return store_invoices(conn, _computed(conn, year, month), withdraw_others_in=[f"{year:04d}-{month:02d}"])


# ----------------------------------------------------------------------------------------------
# Files


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _json(invoices: list[dict]) -> str:
    return json.dumps(invoices, indent=2, ensure_ascii=False) + "\n"


def export_invoices(conn: psycopg.Connection, path: Path) -> int:
    """Write ``invoices.json`` for every Berlin month with invoiced QHs; returns the invoice count.

    The invoices are recorded as versions too (when sql/003 is applied), so the file carries
    ``version`` and ``state``.
    """
    store = _has_invoice_tables(conn)
    invoices: list[dict] = []
    for year, month in months_with_data(conn):
        computed = _computed(conn, year, month)
        invoices += (store_invoices(conn, computed, withdraw_others_in=[f"{year:04d}-{month:02d}"]) if store
                     else [i.payload for i in computed])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(Path(path), _json(invoices))
    return len(invoices)


def document_name(invoice: dict) -> str:
    """``<contract_id>_<YYYY-MM>.html``, the contract id made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", invoice["contract_id"]) or "_"
    return f"{safe}_{invoice['month']}.html"


def _eur(v: float | None, sign: int = 1) -> str:
    return "" if v is None else f"{sign * v:,.2f} EUR"


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return ""
    return f"{v:,.6f}".rstrip("0").rstrip(".") + (f" {unit}" if unit else "")


def render_html(inv: dict, issued_at: dt.datetime | None = None) -> str:
    """A human-readable invoice: parties, period, entries (quantity, unit net price, net, VAT,
    gross), totals, status, the provisional marker and the errors."""
    e = html.escape
    cap_fee = inv.get("fee_model") == "fixed_for_capacity"
    rows = [
        ("Infeed payout", inv["infeed_payout"], "MWh", 1,
         f"price model {inv.get('price_model') or '?'}"),
        ("Redispatch compensation", inv["redispatch_payout"], "MWh", 1,
         f"{inv.get('redispatch_qh', 0)} redispatched QHs, latest forecast x DSO price"),
        ("Marketing fee (deducted)", inv["fees"], "MW" if cap_fee else "MWh", -1,
         f"fee model {inv.get('fee_model') or '?'}"
         + (f", {_num(inv.get('covered_days'))} of {inv.get('month_days')} days of the month"
            if cap_fee and inv.get("covered_days") is not None else "")),
    ]
    body = []
    for label, entry, unit, sign, note in rows:
        unit_price = entry["unit_price_eur"]
        body.append(
            f"<tr><td>{e(label)}<br><small>{e(note)}</small></td><td class=n>{e(_num(entry['quantity'], unit))}</td>"
            f"<td class=n>{e('' if unit_price is None else f'{unit_price:,.4f} EUR/{unit}')}</td>"
            f"<td class=n>{e(_eur(entry['net_eur'], sign))}</td><td class=n>{e(_eur(entry['vat_eur'], sign))}</td>"
            f"<td class=n>{e(_eur(entry['gross_eur'], sign))}</td></tr>")
    status = inv["status"].upper()
    marker = " &middot; PROVISIONAL" if inv["provisional"] else ""
    errors = "".join(f"<li>{e(x)}</li>" for x in inv["errors"])
    notes = []
    if inv["unpriced_qh"]:
        notes.append(f"{inv['unpriced_qh']} quarter-hours without a public VWAP are not priced.")
    if inv.get("redispatch_unpriced_qh"):
        notes.append(f"{inv['redispatch_unpriced_qh']} redispatched quarter-hours without a DSO compensation price.")
    if inv["provisional"]:
        notes.append("Provisional: some quarter-hours are not yet based on the DSO's final measurement.")
    if inv.get("complete") is False:
        notes.append(f"Data reaches {inv.get('qh_count')} of the period's {inv.get('period_qh_count')} quarter-hours.")
    version = f"version {inv['version']} ({inv['state']})" if "version" in inv else "not recorded"
    issued = (issued_at or dt.datetime.now(tz=UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Invoice {e(inv['contract_id'])} {e(inv['month'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ccc;padding:.3em .5em;text-align:left}}.n{{text-align:right}}
.error{{color:#b00}}.prov{{color:#a60}}</style></head><body>
<h1>Invoice {e(inv['contract_id'])} &middot; {e(inv['month'])}
<span class="{'error' if inv['status'] == 'error' else 'prov' if inv['provisional'] else ''}">[{status}{marker}]</span></h1>
<table>
<tr><th>From</th><td>{e(ISSUER)}</td></tr>
<tr><th>To</th><td>Owner of asset {e(inv['asset_id'])}, {e(inv.get('email') or '(no email in the CRM)')}</td></tr>
<tr><th>Contract</th><td>{e(inv['contract_id'])}, asset {e(inv['asset_id'])}</td></tr>
<tr><th>Period</th><td>{e(inv.get('period_first_day', ''))} to {e(inv.get('period_last_day', ''))} (Europe/Berlin),
{e(str(inv.get('qh_count', '')))} quarter-hours invoiced, {e(_num(inv['volume_mwh'], 'MWh'))}</td></tr>
<tr><th>Document</th><td>{e(version)}, issued {e(issued)}</td></tr>
</table>
<h2>Entries</h2>
<table><tr><th>Entry</th><th class=n>Quantity</th><th class=n>Unit net price</th><th class=n>Net</th>
<th class=n>VAT 19 %</th><th class=n>Gross</th></tr>
{''.join(body)}
<tr><th>Total (payouts minus fees)</th><td></td><td></td><th class=n>{e(_eur(inv.get('total_net_eur')))}</th>
<th class=n>{e(_eur(inv.get('total_vat_eur')))}</th><th class=n>{e(_eur(inv['total_gross_eur']))}</th></tr>
</table>
{''.join(f'<p>{e(n)}</p>' for n in notes)}
{f'<h2 class="error">Errors: this contract cannot be invoiced until fixed</h2><ul class="error">{errors}</ul>' if errors else ''}
</body></html>
"""


def write_documents(invoices: list[dict], out_dir: Path) -> list[Path]:
    """``invoices.json`` and one HTML document per invoice in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "invoices.json", _json(invoices))
    now = dt.datetime.now(tz=UTC)
    paths = []
    for inv in invoices:
        p = out_dir / document_name(inv)
        _write_text(p, render_html(inv, now))
        paths.append(p)
    return paths


def run_invoices(database_url: str, year: int, month: int, out_dir: Path) -> int:
    """``intraday invoices --month YYYY-MM``: compute, record, write; 0, or 4 if some invoice is in error."""
    with connect(database_url) as conn:
        invoices = issue_invoices(conn, year, month)
    label = f"{year:04d}-{month:02d}"
    out_dir = Path(out_dir)
    paths = write_documents(invoices, out_dir)
    if not invoices:
        print(f"no invoices for {label}: no contract of the newest CRM file covers the month")
    for inv, path in zip(invoices, paths, strict=True):
        total = "-" if inv["total_gross_eur"] is None else f"{inv['total_gross_eur']:.2f} EUR"
        flag = " provisional" if inv["provisional"] else ""
        print(f"{inv['contract_id']} {inv['month']}: {inv['status']}{flag}, {inv['volume_mwh']} MWh, "
              f"total {total}, version {inv['version']} ({inv['state']}) -> {path}")
    print(f"{out_dir / 'invoices.json'}: {len(invoices)} invoices")
    bad = [inv for inv in invoices if inv["status"] == "error"]
    if bad:
        which = "; ".join(f"{inv['contract_id']} ({', '.join(inv['errors'])})" for inv in bad)
        print(f"intraday: {len(bad)} of {len(invoices)} invoices for {label} are in status error: {which}",
              file=sys.stderr)
        return EXIT_INVOICE_ERROR
    return 0
