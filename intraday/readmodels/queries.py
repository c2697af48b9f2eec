"""What the dashboard reads: ``query_*(conn, ...) -> pandas.DataFrame``, one parametrised statement each.

Every statement runs unchanged on plain PostgreSQL and on TimescaleDB (no ``time_bucket``; where
a grid of quarter-hours is needed it is ``generate_series`` over UTC instants, so the Berlin
delivery day has its 92 / 96 / 100 QHs). Values are always parameters; nothing here opens a
connection: callers pass one (the dashboard a pooled one, tests their own).

Conventions of the frames:

- ``delivery_start`` and every ``*_at`` column are tz-aware UTC ``Timestamp`` s;
- per-QH frames have one row per QH of the Berlin delivery day ``day``, in order, also where the
  database has nothing yet (values are then NaN / None);
- ``assets``: ``None`` for the desk, back office and ops (the whole portfolio); a sequence of
  asset ids for an asset owner, and then *every* query reads only those assets' rows
  (``asset_qh``, ``asset_imbalance_qh``) and nothing portfolio-wide (trading of the private book,
  ``portfolio_qh``, portfolio alerts). An empty sequence means "no assets": empty values.
- ``as_of``: the instant the desk looks back to (the "as known at" slider). Only results with an
  as-known-at history honour it: the portfolio (``portfolio_qh_history``), the imbalance cost
  of the running totals, and alerts (``detected_at <= as_of``). Tables that keep only their
  latest state (``trading_qh``, ``asset_qh``) have no ``as_of`` parameter, so that a caller
  cannot mistake the latest state for a past one.

Units and meanings follow ``docs/domain.md`` and the column names of ``sql/001_schema.sql``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from intraday.core.qh import as_utc, day_span
from intraday.core.settlement import vwap, vwap_minus_index

SOURCES = ("final", "live", "redispatch", "forecast")

# PostgreSQL type OIDs the frames convert: numbers to float, instants to UTC timestamps.
_NUMERIC_OIDS = {20, 21, 23, 700, 701, 1700}
_TS_OIDS = {1184, 1114}

# The QHs of the delivery day [start, end): fixed 15-minute steps in UTC are DST-exact.
_GRID = """grid AS (
    SELECT generate_series(%(start)s::timestamptz, %(end)s::timestamptz - INTERVAL '15 minutes',
                           INTERVAL '15 minutes') AS delivery_start)"""

# ``%(assets)s`` is NULL for "every asset", else a text[] of the owner's assets.
_ASSET_FILTER = "(%(assets)s::text[] IS NULL OR {col} = ANY(%(assets)s::text[]))"


# ---------------------------------------------------------------------------------------------
# parameters and frames


def _assets_param(assets: Sequence[str] | None) -> list[str] | None:
    return None if assets is None else [str(a) for a in assets]


def _params(day: dt.date | None = None, as_of: Any = None, assets: Sequence[str] | None = None,
            **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"as_of": as_utc(as_of), "assets": _assets_param(assets), **extra}
    if day is not None:
        p["start"], p["end"] = day_span(day)
    return p


def _frame(cur) -> pd.DataFrame:
    """The cursor's rows as a DataFrame: numbers as float, instants as UTC timestamps."""
    rows = cur.fetchall()
    desc = cur.description or []
    cols = [d.name for d in desc]
    df = pd.DataFrame.from_records(rows, columns=cols)
    for d in desc:
        if d.type_code in _NUMERIC_OIDS:
            df[d.name] = pd.to_numeric(df[d.name], errors="coerce").astype("float64")
        elif d.type_code in _TS_OIDS:
            df[d.name] = pd.to_datetime(df[d.name], utc=True)
    return df


def _run(conn, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return _frame(cur)


# ---------------------------------------------------------------------------------------------
# the portfolio per QH


_PORTFOLIO_COLUMNS = ("best_of_infeed_kw", "latest_forecast_kw", "tradeable_forecast_kw", "net_sold_mwh",
                      "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_price_source",
                      "imbalance_cost_eur", "known_at")

_PORTFOLIO_LIVE = f"""WITH {_GRID}
SELECT g.delivery_start, p.best_of_infeed_kw, p.latest_forecast_kw, p.tradeable_forecast_kw, p.net_sold_mwh,
       p.imbalance_mwh, p.imbalance_price_eur_mwh, p.imbalance_price_source, p.imbalance_cost_eur, p.known_at
FROM grid g
LEFT JOIN portfolio_qh p ON p.delivery_start = g.delivery_start AND p.in_scope
ORDER BY g.delivery_start"""

_PORTFOLIO_AS_OF = f"""WITH {_GRID},
h AS (
    SELECT DISTINCT ON (delivery_start) delivery_start, known_at, best_of_infeed_kw, latest_forecast_kw,
           tradeable_forecast_kw, net_sold_mwh, imbalance_mwh, imbalance_price_eur_mwh,
           imbalance_price_source, imbalance_cost_eur
    FROM portfolio_qh_history
    WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND known_at <= %(as_of)s
      AND %(assets)s::text[] IS NULL
    ORDER BY delivery_start, known_at DESC)
SELECT g.delivery_start, h.best_of_infeed_kw, h.latest_forecast_kw, h.tradeable_forecast_kw, h.net_sold_mwh,
       h.imbalance_mwh, h.imbalance_price_eur_mwh, h.imbalance_price_source, h.imbalance_cost_eur, h.known_at
FROM grid g LEFT JOIN h ON h.delivery_start = g.delivery_start
ORDER BY g.delivery_start"""

# An asset owner's "portfolio": the sums over their own assets (interpretations.md: sums over the
# assets that have the value). The price differs per asset (short/long column), so it is shown
# only when all their assets agree; the source is the weakest one. No private trades: net sold
# is not attributable to an asset and stays empty.
_PORTFOLIO_ASSETS = f"""WITH {_GRID},
a AS (
    SELECT delivery_start, sum(best_kw) AS best_of_infeed_kw, sum(latest_kw) AS latest_forecast_kw,
           sum(tradeable_kw) AS tradeable_forecast_kw, max(known_at) AS known_at
    FROM asset_qh
    WHERE in_scope AND delivery_start >= %(start)s AND delivery_start < %(end)s
      AND asset_id = ANY(%(assets)s::text[])
    GROUP BY delivery_start),
i AS (
    SELECT delivery_start, sum(imbalance_mwh) AS imbalance_mwh,
           CASE WHEN min(price_eur_mwh) = max(price_eur_mwh) THEN min(price_eur_mwh) END AS price,
           CASE WHEN bool_or(price_source = 'missing') THEN 'missing'
                WHEN bool_or(price_source = 'estimate') THEN 'estimate' ELSE 'final' END AS price_source,
           sum(cost_eur) AS cost, max(known_at) AS known_at
    FROM asset_imbalance_qh
    WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND asset_id = ANY(%(assets)s::text[])
    GROUP BY delivery_start)
SELECT g.delivery_start, a.best_of_infeed_kw, a.latest_forecast_kw, a.tradeable_forecast_kw,
       NULL::double precision AS net_sold_mwh, i.imbalance_mwh, i.price AS imbalance_price_eur_mwh,
       i.price_source AS imbalance_price_source, i.cost AS imbalance_cost_eur,
       greatest(a.known_at, i.known_at) AS known_at
FROM grid g
LEFT JOIN a ON a.delivery_start = g.delivery_start
LEFT JOIN i ON i.delivery_start = g.delivery_start
ORDER BY g.delivery_start"""


def query_portfolio(conn, day: dt.date, as_of: Any = None, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """The portfolio per QH of the Berlin delivery ``day`` (``portfolio_qh`` where ``in_scope``).

    Columns: ``delivery_start`` and the ``portfolio_qh`` columns (kW, MWh, EUR/MWh, EUR) plus
    ``known_at``. With ``as_of``: the rows as known at that instant (:func:`query_as_known_at`).
    For an asset owner: sums over their assets (``net_sold_mwh`` empty).
    """
    if as_of is not None:
        return query_as_known_at(conn, day, as_of, assets=assets)
    if assets is not None:
        return _run(conn, _PORTFOLIO_ASSETS, _params(day, assets=assets))
    return _run(conn, _PORTFOLIO_LIVE, _params(day))


def query_as_known_at(conn, day: dt.date, as_of: Any, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """The portfolio as the desk saw it at instant ``as_of``: for each QH the newest history row
    with ``known_at <= as_of`` (``SELECT DISTINCT ON (delivery_start) ... ORDER BY delivery_start,
    known_at DESC``). QHs not known yet at ``as_of`` have empty values.

    The history is kept for the portfolio only, so an asset owner (``assets`` given) gets the
    grid with empty values rather than portfolio-wide numbers.
    """
    if as_of is None:
        raise ValueError("as_of is required")
    return _run(conn, _PORTFOLIO_AS_OF, _params(day, as_of, assets))


_HISTORY_RANGE = """SELECT min(known_at) AS first_known_at, max(known_at) AS last_known_at
FROM portfolio_qh_history
WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND %(assets)s::text[] IS NULL"""


def query_history_range(conn, day: dt.date, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row: the first and last ``known_at`` of the day's portfolio history (the slider's range)."""
    return _run(conn, _HISTORY_RANGE, _params(day, assets=assets))


# ---------------------------------------------------------------------------------------------
# trading


_TRADING = f"""WITH {_GRID}
SELECT g.delivery_start,
       pr.trades AS private_trades, pr.sold_mwh, pr.bought_mwh, pr.net_mwh, pr.revenue_eur,
       pr.vwap_eur_mwh AS private_vwap_eur_mwh,
       pu.trades AS public_trades, pu.vwap_eur_mwh AS public_vwap_eur_mwh,
       pu.idx_full_eur_mwh, pu.idx_3h_eur_mwh, pu.idx_1h_eur_mwh,
       greatest(pr.known_at, pu.known_at) AS known_at
FROM grid g
LEFT JOIN trading_qh pr ON pr.delivery_start = g.delivery_start AND pr.book = 'private'
                       AND %(assets)s::text[] IS NULL
LEFT JOIN trading_qh pu ON pu.delivery_start = g.delivery_start AND pu.book = 'public'
ORDER BY g.delivery_start"""


def query_trading(conn, day: dt.date, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Trading per QH: the private book (trades, sold/bought/net MWh, revenue, VWAP) beside the
    public market (trades, VWAP and the indices ``idx_full/idx_3h/idx_1h``).

    An asset owner sees the public market only (private columns empty): the private book is the
    portfolio's, not an asset's.
    """
    return _run(conn, _TRADING, _params(day, assets=assets))


# ---------------------------------------------------------------------------------------------
# best-of-infeed sources


_SOURCE_COUNTS = f"""WITH {_GRID}
SELECT g.delivery_start,
       count(a.asset_id) FILTER (WHERE a.best_source = 'final')::int AS final,
       count(a.asset_id) FILTER (WHERE a.best_source = 'live')::int AS live,
       count(a.asset_id) FILTER (WHERE a.best_source = 'redispatch')::int AS redispatch,
       count(a.asset_id) FILTER (WHERE a.best_source = 'forecast')::int AS forecast,
       count(a.asset_id) FILTER (WHERE a.best_source IS NULL)::int AS "none"
FROM grid g
LEFT JOIN asset_qh a ON a.delivery_start = g.delivery_start AND a.in_scope
                    AND {_ASSET_FILTER.format(col="a.asset_id")}
GROUP BY g.delivery_start
ORDER BY g.delivery_start"""


def query_source_counts(conn, day: dt.date, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Per QH, how many assets' best-of-infeed comes from each source (``asset_qh.best_source``):
    columns ``final``, ``live``, ``redispatch``, ``forecast`` and ``none`` (no value yet)."""
    return _run(conn, _SOURCE_COUNTS, _params(day, assets=assets))


# ---------------------------------------------------------------------------------------------
# running totals


# the private book's QHs of the day beside the public idx_full (the running totals and the VWAP
# rules of intraday.core.settlement, shared with the performance report, read the same rows)
_PRIVATE_QHS = """
    SELECT pr.delivery_start, pr.trades, pr.sold_mwh, pr.bought_mwh, pr.net_mwh, pr.revenue_eur,
           pr.vwap_eur_mwh, pr.sold_mwh + pr.bought_mwh AS volume_mwh, pu.idx_full_eur_mwh
    FROM trading_qh pr
    LEFT JOIN trading_qh pu ON pu.delivery_start = pr.delivery_start AND pu.book = 'public'
    WHERE pr.book = 'private' AND pr.delivery_start >= %(start)s AND pr.delivery_start < %(end)s
      AND %(assets)s::text[] IS NULL"""

_TOTALS = f"""WITH
t AS ({_PRIVATE_QHS}),
tt AS (
    SELECT sum(revenue_eur) AS revenue_eur, sum(sold_mwh) AS sold_mwh, sum(bought_mwh) AS bought_mwh,
           sum(volume_mwh) AS traded_mwh, sum(net_mwh) AS net_sold_mwh, sum(trades) AS trades
    FROM t),
imb AS (
    SELECT sum(imbalance_cost_eur) AS imbalance_cost_eur, sum(imbalance_mwh) AS imbalance_mwh
    FROM portfolio_qh
    WHERE in_scope AND delivery_start >= %(start)s AND delivery_start < %(end)s
      AND %(as_of)s::timestamptz IS NULL AND %(assets)s::text[] IS NULL
    UNION ALL
    SELECT sum(h.imbalance_cost_eur), sum(h.imbalance_mwh)
    FROM (SELECT DISTINCT ON (delivery_start) imbalance_cost_eur, imbalance_mwh
          FROM portfolio_qh_history
          WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND known_at <= %(as_of)s
            AND %(assets)s::text[] IS NULL
          ORDER BY delivery_start, known_at DESC) h
    WHERE %(as_of)s::timestamptz IS NOT NULL
    UNION ALL
    SELECT sum(cost_eur), sum(imbalance_mwh)
    FROM asset_imbalance_qh
    WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND asset_id = ANY(%(assets)s::text[])
      AND %(as_of)s::timestamptz IS NULL)
SELECT tt.revenue_eur, tt.sold_mwh, tt.bought_mwh, tt.traded_mwh, tt.net_sold_mwh, tt.trades,
       (SELECT sum(imbalance_cost_eur) FROM imb) AS imbalance_cost_eur,
       (SELECT sum(imbalance_mwh) FROM imb) AS imbalance_mwh
FROM tt"""

_TRADED = f"SELECT vwap_eur_mwh, idx_full_eur_mwh, volume_mwh FROM ({_PRIVATE_QHS}) t"


def query_running_totals(conn, day: dt.date, as_of: Any = None,
                         assets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row of running totals of the delivery day.

    - ``revenue_eur``, ``sold_mwh``, ``bought_mwh``, ``traded_mwh`` (sold + bought),
      ``net_sold_mwh``, ``trades`` (an hourly trade counts in each of its four QHs, domain.md 3):
      sums over the private book's QHs;
    - ``private_vwap_eur_mwh``: our VWAP over all our trades of the day (the per-QH VWAPs weighted
      by the traded MWh, which is sum(price x MW) / sum(MW) over all slices);
    - capture price: ``matched_vwap_eur_mwh`` (our VWAP over the QHs that have a public
      ``idx_full``), ``idx_full_benchmark_eur_mwh`` (``idx_full`` of those QHs weighted by our
      traded MWh, i.e. what the same volume would have fetched at the index),
      ``capture_delta_eur_mwh`` = matched - benchmark (EUR/MWh, > 0: better than the market) and
      ``capture_ratio`` = matched / benchmark;
    - ``imbalance_cost_eur``, ``imbalance_mwh``: sums of the portfolio's QHs (as known at
      ``as_of`` if given; the trading sums have no history and are always the latest state).

    For an asset owner only the imbalance of their assets (trading columns empty; no history).
    """
    params = _params(day, as_of, assets)
    totals = _run(conn, _TOTALS, params)
    with conn.cursor() as cur:
        traded = [(_f(v), _f(x), _f(w)) for v, x, w in cur.execute(_TRADED, params).fetchall()]
    ours = vwap((v, w) for v, _, w in traded)
    matched, index, delta = vwap_minus_index(traded)
    extra = {"private_vwap_eur_mwh": ours, "matched_vwap_eur_mwh": matched, "idx_full_benchmark_eur_mwh": index,
             "capture_delta_eur_mwh": delta,
             "capture_ratio": None if matched is None or not index else matched / index}
    for k, v in extra.items():
        totals[k] = pd.Series([v] * len(totals), index=totals.index, dtype="float64")
    return totals


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


# ---------------------------------------------------------------------------------------------
# alerts


_ALERTS = """WITH s AS (
    SELECT *, row_number() OVER (PARTITION BY subject, delivery_start, kind
                                 ORDER BY detected_at DESC, (status <> 'raised') DESC, alert_id) AS newest
    FROM alerts
    WHERE delivery_start >= %(start)s AND delivery_start < %(end)s
      AND (%(as_of)s::timestamptz IS NULL OR detected_at <= %(as_of)s)
      AND (%(assets)s::text[] IS NULL OR subject = ANY(%(assets)s::text[])))
SELECT alert_id, status, delivery_start, kind, severity, subject, detected_at,
       CASE WHEN jsonb_typeof(payload -> 'value') = 'number' THEN (payload ->> 'value')::double precision END AS value,
       CASE WHEN jsonb_typeof(payload -> 'threshold') = 'number'
            THEN (payload ->> 'threshold')::double precision END AS threshold,
       payload ->> 'unit' AS unit,
       CASE WHEN jsonb_typeof(payload -> 'imbalance_mwh') = 'number'
            THEN (payload ->> 'imbalance_mwh')::double precision END AS imbalance_mwh,
       CASE WHEN jsonb_typeof(payload -> 'eur_at_risk') = 'number'
            THEN (payload ->> 'eur_at_risk')::double precision END AS eur_at_risk,
       payload ->> 'suggested_action' AS suggested_action,
       acknowledged_by, acknowledged_at
FROM s WHERE newest = 1
ORDER BY delivery_start, kind, subject, alert_id
LIMIT %(limit)s"""


def query_alerts(conn, day: dt.date, as_of: Any = None, assets: Sequence[str] | None = None,
                 limit: int = 500) -> pd.DataFrame:
    """The alerts of the QHs of ``day`` a desk acts on: one row per (subject, QH, kind), its newest
    state (``raised``, ``resolved`` or ``expired``), in delivery order (gate closure first), with
    ``eur_at_risk``.

    With ``as_of``: the newest state detected by then. An asset owner sees alerts whose subject is one of
    their assets (portfolio alerts have the subject ``PORTFOLIO``).
    """
    return _run(conn, _ALERTS, _params(day, as_of, assets, limit=int(limit)))


_ACK = """UPDATE alerts SET acknowledged_by = %(user)s, acknowledged_at = now()
WHERE alert_id = %(alert_id)s AND delivery_start = %(delivery_start)s AND acknowledged_by IS NULL
  AND (%(assets)s::text[] IS NULL OR subject = ANY(%(assets)s::text[]))"""


def acknowledge_alert(conn, alert_id: str, delivery_start: Any, user: str,
                      assets: Sequence[str] | None = None) -> int:
    """Mark every state of an alert (raised and resolved rows) acknowledged by ``user`` now
    (wall clock: a human acted). An alert acknowledged before keeps its first acknowledgement.
    Returns the number of rows changed."""
    with conn.cursor() as cur:
        cur.execute(_ACK, {"user": user, "alert_id": str(alert_id), "delivery_start": as_utc(delivery_start),
                           "assets": _assets_param(assets)})
        return cur.rowcount


# ---------------------------------------------------------------------------------------------
# clock, freshness, fingerprints


def _clock_sql(assets_filter: str) -> str:
    return f"""greatest(
    (SELECT max(known_at) FROM asset_qh WHERE {assets_filter.format(col="asset_id")}),
    (SELECT max(known_at) FROM asset_imbalance_qh WHERE {assets_filter.format(col="asset_id")}),
    (SELECT max(known_at) FROM trading_qh WHERE %(assets)s::text[] IS NULL),
    (SELECT max(known_at) FROM portfolio_qh WHERE %(assets)s::text[] IS NULL),
    (SELECT max(now) FROM replay_clock))"""


_CLOCK = f"SELECT {_clock_sql(_ASSET_FILTER)} AS replay_clock"


def query_replay_clock(conn, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row, ``replay_clock``: the replay's clock (table ``replay_clock``, fed by the
    ``replay.clock`` topic) or, if newer, the newest ``known_at`` of any result table: the "now" in
    event time (NaT on an empty database). For an asset owner: of their assets' rows."""
    return _run(conn, _CLOCK, _params(assets=assets))


def replay_liveness(conn) -> str:
    """``"live"`` while a replay feeds the clock (updated within 2 minutes of wall time, not
    done), ``"finished"`` after its last event, ``"stale"`` when the clock stopped without an end
    (data of an earlier run), ``""`` without any replay clock."""
    row = conn.execute("SELECT bool_and(done), extract(epoch FROM now() - max(updated_at)) FROM replay_clock"
                       ).fetchone()
    if row is None or row[1] is None:
        return ""
    done, age_s = row
    if done:
        return "finished"
    return "live" if float(age_s) <= 120 else "stale"


def replay_clock(conn, assets: Sequence[str] | None = None) -> pd.Timestamp | None:
    """:func:`query_replay_clock` as a scalar (None on an empty database)."""
    v = query_replay_clock(conn, assets)["replay_clock"].iloc[0]
    return None if pd.isna(v) else v


_FRESHNESS = f"""WITH f(source, latest_at) AS (
    SELECT 'forecast versions', max(latest_version) FROM asset_qh WHERE {_ASSET_FILTER.format(col="asset_id")}
    UNION ALL
    SELECT 'live infeed', max(known_at) FROM asset_qh
    WHERE live_samples > 0 AND {_ASSET_FILTER.format(col="asset_id")}
    UNION ALL
    SELECT 'DSO final production', max(known_at) FROM asset_qh
    WHERE final_kw IS NOT NULL AND {_ASSET_FILTER.format(col="asset_id")}
    UNION ALL
    SELECT 'private trades', max(known_at) FROM trading_qh
    WHERE book = 'private' AND trades > 0 AND %(assets)s::text[] IS NULL
    UNION ALL
    SELECT 'public trades', max(known_at) FROM trading_qh WHERE book = 'public' AND trades > 0
    UNION ALL
    SELECT 'imbalance price estimate', max(published_at) FROM imbalance_prices WHERE kind = 'estimate'
    UNION ALL
    SELECT 'imbalance price final', max(published_at) FROM imbalance_prices WHERE kind = 'final'
    UNION ALL
    SELECT 'portfolio results', max(known_at) FROM portfolio_qh WHERE %(assets)s::text[] IS NULL),
c AS (SELECT {_clock_sql(_ASSET_FILTER)} AS clock)
SELECT f.source, f.latest_at, extract(epoch FROM c.clock - f.latest_at) / 60.0 AS age_min
FROM f CROSS JOIN c"""


def query_freshness(conn, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Feed freshness: per source the newest event time the database reflects (``latest_at``)
    and its age in minutes behind the replay clock (``age_min``).

    Sources: forecast versions (newest ``latest_version``), live infeed / DSO final (newest
    ``known_at`` of an asset QH that has live samples / a final value), private and public
    trades, imbalance price estimates and finals (``published_at``), portfolio results.
    An asset owner sees their assets' feeds and the public ones.
    """
    return _run(conn, _FRESHNESS, _params(assets=assets))


_FINGERPRINT = f"""SELECT
    {_clock_sql(_ASSET_FILTER)} AS replay_clock,
    (SELECT max(known_at) FROM portfolio_qh
     WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND %(assets)s::text[] IS NULL)
        AS portfolio_known_at,
    (SELECT max(known_at) FROM portfolio_qh_history
     WHERE delivery_start >= %(start)s AND delivery_start < %(end)s AND known_at <= %(as_of)s
       AND %(assets)s::text[] IS NULL) AS history_known_at,
    (SELECT max(known_at) FROM trading_qh WHERE delivery_start >= %(start)s AND delivery_start < %(end)s)
        AS trading_known_at,
    (SELECT max(known_at) FROM asset_qh WHERE delivery_start >= %(start)s AND delivery_start < %(end)s
       AND {_ASSET_FILTER.format(col="asset_id")}) AS asset_known_at,
    (SELECT max(known_at) FROM asset_imbalance_qh WHERE delivery_start >= %(start)s
       AND delivery_start < %(end)s AND {_ASSET_FILTER.format(col="asset_id")}) AS asset_imbalance_known_at,
    a.alerts_n, a.alerts_acknowledged_n
FROM (SELECT count(*)::int AS alerts_n, count(acknowledged_by)::int AS alerts_acknowledged_n
      FROM alerts WHERE delivery_start >= %(start)s AND delivery_start < %(end)s
        AND (%(as_of)s::timestamptz IS NULL OR detected_at <= %(as_of)s)
        AND (%(assets)s::text[] IS NULL OR subject = ANY(%(assets)s::text[]))) a"""


def query_fingerprint(conn, day: dt.date, as_of: Any = None, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """One cheap row that moves whenever something the page shows for ``day`` moved: the replay
    clock and the newest ``known_at`` of each table's rows of the day, alert counts. The
    dashboard compares it with the previous one and skips every unchanged panel."""
    return _run(conn, _FINGERPRINT, _params(day, as_of, assets))


# ---------------------------------------------------------------------------------------------
# days, assets, drill-down


_DAYS_PORTFOLIO = """SELECT DISTINCT (delivery_start AT TIME ZONE 'Europe/Berlin')::date AS day
FROM portfolio_qh WHERE in_scope ORDER BY 1"""
_DAYS_ASSETS = """SELECT DISTINCT (delivery_start AT TIME ZONE 'Europe/Berlin')::date AS day
FROM asset_qh WHERE in_scope AND asset_id = ANY(%(assets)s::text[]) ORDER BY 1"""


_MEASURED_DAYS = f"""SELECT DISTINCT (delivery_start AT TIME ZONE 'Europe/Berlin')::date AS day
FROM asset_qh WHERE (live_kw IS NOT NULL OR final_kw IS NOT NULL) AND {_ASSET_FILTER.format(col="asset_id")}
ORDER BY 1"""


_VERSIONS = f"""WITH v AS (
    SELECT version, delivery_start, power_kw,
           ntile(%(n)s) OVER (ORDER BY version) AS bucket,
           row_number() OVER (ORDER BY version DESC) AS newest
    FROM forecast_versions
    WHERE asset_id = %(asset)s AND {_ASSET_FILTER.format(col="asset_id")}
      AND version < %(end)s AND version >= %(start)s - interval '2 days'
      AND (%(as_of)s::timestamptz IS NULL OR version <= %(as_of)s)),
picked AS (  -- the first version of each of n spans of time, and the newest
    (SELECT DISTINCT ON (bucket) version, delivery_start, power_kw FROM v ORDER BY bucket, version)
    UNION SELECT version, delivery_start, power_kw FROM v WHERE newest = 1)
SELECT p.version, u.delivery_start, u.power_kw
FROM picked p, unnest(p.delivery_start, p.power_kw) AS u(delivery_start, power_kw)
WHERE u.delivery_start >= %(start)s AND u.delivery_start < %(end)s
ORDER BY p.version, u.delivery_start"""


def query_forecast_versions(conn, day: dt.date, asset_id: str, assets: Sequence[str] | None = None,
                            n: int = 4, as_of: Any = None) -> pd.DataFrame:
    """A few forecast versions of one asset over the day (columns version, delivery_start,
    power_kw): the first of ``n`` equal spans of the versions issued for it, plus the newest."""
    return _run(conn, _VERSIONS, _params(day=day, as_of=as_of, assets=assets, asset=asset_id, n=n))


def query_measured_days(conn, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Berlin days with a live or final measurement (column ``day``): days that have begun."""
    return _run(conn, _MEASURED_DAYS, _params(assets=assets))


def query_days(conn, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """The Berlin delivery days present (column ``day``, ``datetime.date``), oldest first."""
    if assets is None:
        return _run(conn, _DAYS_PORTFOLIO, {})
    return _run(conn, _DAYS_ASSETS, _params(assets=assets))


_ASSETS = f"""SELECT a.asset_id, t.name, t.asset_type, t.capacity_kw, t.owner
FROM (SELECT DISTINCT asset_id FROM asset_qh
      UNION SELECT asset_id FROM technical_data) a
LEFT JOIN technical_data t ON t.asset_id = a.asset_id
WHERE {_ASSET_FILTER.format(col="a.asset_id")}
ORDER BY a.asset_id"""


def query_assets(conn, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """The assets (from results and technical data) with name, type, capacity (kW) and owner."""
    return _run(conn, _ASSETS, _params(assets=assets))


_ASSET = f"""WITH {_GRID}
SELECT g.delivery_start, a.latest_kw, a.tradeable_kw, a.best_kw, a.best_source, a.live_kw, a.live_samples,
       a.final_kw, coalesce(a.redispatched, false) AS redispatched,
       i.position_mwh, i.actual_mwh, i.imbalance_mwh, i.price_eur_mwh, i.price_source, i.cost_eur,
       greatest(a.known_at, i.known_at) AS known_at
FROM grid g
LEFT JOIN asset_qh a ON a.delivery_start = g.delivery_start AND a.asset_id = %(asset_id)s
LEFT JOIN asset_imbalance_qh i ON i.delivery_start = g.delivery_start AND i.asset_id = %(asset_id)s
WHERE {_ASSET_FILTER.format(col="%(asset_id)s")}
ORDER BY g.delivery_start"""


def query_asset(conn, day: dt.date, asset_id: str, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Drill-down of one asset per QH of ``day``: forecasts, best-of-infeed with its source, live
    and final values (kW), redispatch flag, and its imbalance (MWh, EUR/MWh, EUR).

    An asset outside ``assets`` gives an empty frame (no rows), never its data.
    """
    return _run(conn, _ASSET, _params(day, assets=assets, asset_id=str(asset_id)))


# ---------------------------------------------------------------------------------------------
# operations (/health)


def query_sink_progress(conn) -> pd.DataFrame:
    """The sink's committed progress per topic partition (``sink_progress``)."""
    return _run(conn, "SELECT topic, partition, next_offset, updated_at FROM sink_progress "
                      "ORDER BY topic, partition", {})


def query_quarantine_counts(conn) -> pd.DataFrame:
    """Quarantined records per topic, with the newest arrival."""
    return _run(conn, "SELECT topic, count(*)::int AS records, max(received_at) AS last_received_at "
                      "FROM quarantine GROUP BY topic ORDER BY topic", {})
