"""The CSV result files of contract.md, read from the database (``intraday export`` adds invoices.json).

One row per key, exactly the contract's columns in its order, times as ISO 8601 UTC, empty cells
for values that do not exist. Rows cover the assets of the newest CRM file (all assets when no
CRM file was loaded), see docs/interpretations.md.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import psycopg

from intraday.sink.db import PORTFOLIO_ASSETS_SQL

PORTFOLIO_CTE = f"""
WITH members AS ({PORTFOLIO_ASSETS_SQL}),
portfolio AS (
    SELECT DISTINCT a.asset_id FROM asset_qh a
    WHERE NOT EXISTS (SELECT 1 FROM members) OR a.asset_id IN (SELECT asset_id FROM members)
)
"""

QUERIES = {
    "forecast_qh.csv": (
        ["asset_id", "delivery_start", "latest_version", "latest_kw", "tradeable_version", "tradeable_kw"],
        PORTFOLIO_CTE + """
        SELECT asset_id, delivery_start, latest_version, latest_kw, tradeable_version, tradeable_kw
        FROM asset_qh WHERE in_scope AND asset_id IN (SELECT asset_id FROM portfolio)
        ORDER BY asset_id, delivery_start"""),
    "infeed_qh.csv": (
        ["asset_id", "delivery_start", "best_kw", "best_source", "live_kw", "final_kw", "redispatched"],
        PORTFOLIO_CTE + """
        SELECT asset_id, delivery_start, best_kw, best_source, live_kw, final_kw, redispatched
        FROM asset_qh WHERE in_scope AND asset_id IN (SELECT asset_id FROM portfolio)
        ORDER BY asset_id, delivery_start"""),
    "trading_qh.csv": (
        ["delivery_start", "book", "trades", "sold_mwh", "bought_mwh", "net_mwh", "revenue_eur", "vwap_eur_mwh",
         "idx_full_eur_mwh", "idx_3h_eur_mwh", "idx_1h_eur_mwh"],
        """
        WITH qhs AS (SELECT delivery_start FROM portfolio_qh WHERE in_scope),
        books AS (SELECT unnest(ARRAY['private', 'public']) AS book)
        SELECT q.delivery_start, b.book, coalesce(t.trades, 0), coalesce(t.sold_mwh, 0),
               coalesce(t.bought_mwh, 0), coalesce(t.net_mwh, 0),
               CASE WHEN b.book = 'private' THEN coalesce(t.revenue_eur, 0) END,
               t.vwap_eur_mwh,
               CASE WHEN b.book = 'public' THEN t.idx_full_eur_mwh END,
               CASE WHEN b.book = 'public' THEN t.idx_3h_eur_mwh END,
               CASE WHEN b.book = 'public' THEN t.idx_1h_eur_mwh END
        FROM qhs q CROSS JOIN books b
        LEFT JOIN trading_qh t ON t.delivery_start = q.delivery_start AND t.book = b.book
        ORDER BY q.delivery_start, b.book"""),
    "asset_imbalance_qh.csv": (
        ["asset_id", "delivery_start", "position_mwh", "actual_mwh", "imbalance_mwh", "price_eur_mwh",
         "price_source", "cost_eur"],
        PORTFOLIO_CTE + """
        SELECT i.asset_id, i.delivery_start, i.position_mwh, i.actual_mwh, i.imbalance_mwh, i.price_eur_mwh,
               i.price_source, i.cost_eur
        FROM asset_imbalance_qh i
        JOIN asset_qh a ON a.asset_id = i.asset_id AND a.delivery_start = i.delivery_start AND a.in_scope
        WHERE i.asset_id IN (SELECT asset_id FROM portfolio)
        ORDER BY i.asset_id, i.delivery_start"""),
    "portfolio_qh.csv": (
        ["delivery_start", "best_of_infeed_kw", "latest_forecast_kw", "tradeable_forecast_kw", "net_sold_mwh",
         "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_price_source", "imbalance_cost_eur",
         "balanced_mwh"],  # extra column (after the contract's): the redispatched assets' positions
        """
        SELECT delivery_start, best_of_infeed_kw, latest_forecast_kw, tradeable_forecast_kw, net_sold_mwh,
               imbalance_mwh, imbalance_price_eur_mwh, imbalance_price_source, imbalance_cost_eur, balanced_mwh
        FROM portfolio_qh WHERE in_scope ORDER BY delivery_start"""),
    "alerts.csv": (
        ["alert_id", "kind", "subject", "delivery_start", "status", "severity", "detected_at", "eur_at_risk"],
        """
        SELECT DISTINCT ON (alert_id) alert_id, kind, subject, delivery_start, status, severity, detected_at,
               CASE WHEN jsonb_typeof(payload -> 'eur_at_risk') = 'number'
                    THEN (payload ->> 'eur_at_risk')::double precision END
        FROM alerts
        ORDER BY alert_id, (status <> 'raised') DESC, detected_at DESC"""),
}


def fmt(value: object) -> str:
    """A CSV cell: ISO UTC for instants, repr-exact floats, true/false, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_results(conn: psycopg.Connection, out_dir: Path) -> dict[str, int]:
    """Write the CSV result files to ``out_dir``; returns the row count per file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return {name: _write(conn, out_dir / name, columns, query) for name, (columns, query) in QUERIES.items()}


def _write(conn: psycopg.Connection, path: Path, columns: list[str], query: str) -> int:
    n = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in conn.execute(query):
            w.writerow([fmt(v) for v in row])
            n += 1
    tmp.replace(path)
    return n
