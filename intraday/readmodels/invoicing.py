"""What an invoice month is computed from: the newest CRM file's contracts and their assets' QHs, prices and compensation."""

from __future__ import annotations

import datetime as dt

import psycopg

from intraday.core.invoicing import (
    AssetQh,
    Contract,
    Invoice,
    MonthData,
    exact_decimal,
    invoice_contract,
    listed_in_month,
)
from intraday.core.qh import UTC, berlin_month_bounds
from intraday.sink.db import NEWEST_CONTRACTS_SQL, PORTFOLIO_ASSETS_SQL

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


def computed_invoices(conn: psycopg.Connection, year: int, month: int) -> list[Invoice]:
    data = load_month(conn, year, month)
    return [invoice_contract(c, data) for c in data.contracts]


def compute_invoices(conn: psycopg.Connection, year: int, month: int) -> list[dict]:
    """The invoices of a Berlin month, one per listed contract of the newest CRM file (reads only)."""
    return [inv.payload for inv in computed_invoices(conn, year, month)]


def months_with_data(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """The Berlin months that have invoiced QHs (a live or final value of a portfolio asset)."""
    return [(int(y), int(m)) for y, m in conn.execute(
        f"WITH portfolio AS ({PORTFOLIO_ASSETS_SQL})"
        " SELECT DISTINCT extract(year FROM delivery_start AT TIME ZONE 'Europe/Berlin'),"
        "        extract(month FROM delivery_start AT TIME ZONE 'Europe/Berlin')"
        " FROM asset_qh WHERE in_scope AND (live_kw IS NOT NULL OR final_kw IS NOT NULL)"
        "   AND asset_id IN (SELECT asset_id FROM portfolio) ORDER BY 1, 2")]
