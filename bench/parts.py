"""The parts alone: the sink's batch write against row-by-row inserts, the dashboard's queries and main callback."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import psycopg

from bench.common import DAY, Timer, log, rnd
from bench.harness import Bench
from intraday.platform.config import Settings

SINK_TABLES = ("asset_qh", "asset_imbalance_qh", "portfolio_qh")


def fetch_result_rows(url: str) -> dict[str, dict[tuple, tuple]]:
    from psycopg import sql

    from intraday.sink.writer import TABLES

    rows: dict[str, dict[tuple, tuple]] = {}
    with psycopg.connect(url) as conn:
        for name in SINK_TABLES:
            spec = TABLES[name]
            q = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
                                                    sql.Identifier(name))
            by_key = {}
            for row in conn.execute(q).fetchall():
                key = tuple(row[spec.columns.index(k)] for k in spec.key)
                by_key[key] = tuple(row)
            rows[name] = by_key
    return rows


def run_sink_bench(b: Bench, rows: dict[str, dict[tuple, tuple]], source: str) -> dict[str, Any]:
    from psycopg import sql

    from intraday.sink.writer import TABLES, write_batch

    n = sum(len(v) for v in rows.values())
    res: dict[str, Any] = {"source": source, "rows": n, "rows_per_table": {k: len(v) for k, v in rows.items()}}
    url = b.dbs.create("sink")
    log.info("[sink] %d rows (%s) from %s", n, res["rows_per_table"], source)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")  # as the sink does

            def truncate():
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, SINK_TABLES))))

            inserts, upserts = [], []
            for _ in range(b.args.sink_reps):
                truncate()
                with Timer() as t:
                    write_batch(conn, rows, {})
                inserts.append(t.s)
                with Timer() as t:
                    write_batch(conn, rows, {})
                upserts.append(t.s)
            check = sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                        for t in SINK_TABLES)
            if check != n:
                raise RuntimeError(f"write_batch left {check} rows, expected {n}")
            res["write_batch_insert_s"] = rnd(statistics.median(inserts), 3)
            res["write_batch_upsert_s"] = rnd(statistics.median(upserts), 3)
            res["write_batch_insert_rows_per_s"] = round(n / statistics.median(inserts))
            res["write_batch_upsert_rows_per_s"] = round(n / statistics.median(upserts))
            log.info("[sink] write_batch: %.0f rows/s into empty tables, %.0f rows/s updating (median of %d)",
                     res["write_batch_insert_rows_per_s"], res["write_batch_upsert_rows_per_s"], b.args.sink_reps)

            # baseline: one INSERT ... ON CONFLICT DO UPDATE per row, autocommit (a commit per row)
            truncate()
            done = 0
            cap = b.args.baseline_cap_s
            t0 = time.perf_counter()
            capped = False
            for name, by_key in rows.items():
                spec = TABLES[name]
                cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
                updates = [c for c in spec.columns if c not in spec.key]
                stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
                    sql.Identifier(name), cols, sql.SQL(", ").join(sql.Placeholder() * len(spec.columns)),
                    sql.SQL(", ").join(map(sql.Identifier, spec.key)),
                    sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
                stmt = stmt.as_string(conn)
                for row in by_key.values():
                    conn.execute(stmt, row)
                    done += 1
                    if done % 2000 == 0 and time.perf_counter() - t0 > cap:
                        capped = True
                        break
                if capped:
                    break
            base_s = time.perf_counter() - t0
            res["row_by_row_rows"] = done
            res["row_by_row_s"] = rnd(base_s, 2)
            res["row_by_row_rows_per_s"] = round(done / base_s)
            res["row_by_row_capped"] = capped
            res["ratio_write_batch_to_row_by_row"] = rnd(res["write_batch_insert_rows_per_s"] / (done / base_s), 1)
            log.info("[sink] row by row (autocommit): %.0f rows/s over %d rows%s; write_batch is %.1fx faster",
                     done / base_s, done, " (time cap reached)" if capped else "",
                     res["ratio_write_batch_to_row_by_row"])
    finally:
        b.dbs.drop(url)
    return res



def _dash_query_set(conn, day, as_of=None, assets=None):
    """The queries of intraday.dashboard.app's main update on a full rebuild of the portfolio tab."""
    from intraday.readmodels import queries as Q

    fp = Q.query_fingerprint(conn, day, as_of, assets)
    return {
        "fingerprint": fp,
        "days": Q.query_days(conn, assets),
        "history_range": Q.query_history_range(conn, day, assets),
        "portfolio": Q.query_portfolio(conn, day, as_of, assets),
        "source_counts": Q.query_source_counts(conn, day, assets),
        "trading": Q.query_trading(conn, day, assets),
        "totals": Q.query_running_totals(conn, day, as_of, assets),
        "alerts": Q.query_alerts(conn, day, as_of, assets),
        "freshness": Q.query_freshness(conn, assets),
    }


def _dash_figures(frames, day):
    import pandas as pd

    from intraday.dashboard import figures as F
    from intraday.dashboard import frames as FR
    from intraday.dashboard.view import alerts_records, freshness_records, kpi_children

    clock = frames["fingerprint"].iloc[0]["replay_clock"]
    now = None if pd.isna(clock) else clock
    return [F.cockpit_figure(frames["portfolio"], day, now), F.imbalance_figure(frames["portfolio"], day, now),
            F.source_ribbon_figure(frames["source_counts"], day), F.price_figure(frames["trading"], day, now),
            kpi_children(FR.kpi_tiles(frames["totals"])), alerts_records(frames["alerts"]),
            freshness_records(frames["freshness"])]


def dashboard_queries_timing(url: str, runs: int) -> dict[str, Any]:
    times = []
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        _dash_query_set(conn, DAY)  # warm-up
        for _ in range(runs):
            with Timer() as t:
                _dash_query_set(conn, DAY)
            times.append(t.s)
    return {"runs": runs, "median": rnd(1000 * statistics.median(times), 1), "min": rnd(1000 * min(times), 1)}


def run_dashboard_bench(b: Bench, url: str, source: str) -> dict[str, Any]:
    from intraday.backoffice.users import ensure_demo_user
    from intraday.dashboard.app import close_app, create_app
    from intraday.dashboard.auth import CSRF_COOKIE, CSRF_HEADER

    runs = b.args.dash_runs
    res: dict[str, Any] = {"source": source, "runs": runs}
    settings = Settings.from_env({"INTRADAY_STATE_DIR": str(b.tmp / "dash-state"), "DATABASE_URL": url})
    creds = ensure_demo_user(settings)
    app = create_app(settings, env={"INTRADAY_SECRET_KEY": uuid.uuid4().hex})
    try:
        client = app.server.test_client()
        r = client.post("/login", data={"username": creds[0], "password": creds[1], "next": "/"})
        if r.status_code != 303:
            raise RuntimeError(f"dashboard login failed: HTTP {r.status_code}")
        headers = {CSRF_HEADER: client.get_cookie(CSRF_COOKIE).value}
        body = _refresh_body(app, {})
        client.post("/_dash-update-component", json=body, headers=headers)  # warm-up
        full, idle = [], []
        fp = None
        size = 0
        for _ in range(runs):
            with Timer() as t:
                r = client.post("/_dash-update-component", json=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"dashboard callback: HTTP {r.status_code}: {r.data[:200]!r}")
            full.append(t.s)
            size = len(r.data)
            fp = r.get_json()["response"]["fp"]["data"]
        resp = r.get_json()["response"]
        best = next(t for t in resp["cockpit"]["figure"]["data"] if t["name"] == "best-of-infeed")
        res["cockpit_points"] = len([y for y in best["y"] if y is not None])
        idle_body = _refresh_body(app, {"fp.data": fp})
        for _ in range(runs):
            with Timer() as t:
                r = client.post("/_dash-update-component", json=idle_body, headers=headers)
            idle.append(t.s)
        res["callback_full_ms"] = {"median": rnd(1000 * statistics.median(full), 1), "min": rnd(1000 * min(full), 1),
                                   "max": rnd(1000 * max(full), 1)}
        res["callback_unchanged_ms"] = {"median": rnd(1000 * statistics.median(idle), 1), "status": r.status_code}
        res["response_kib"] = rnd(size / 1024, 1)
    finally:
        close_app(app)
    # where the callback's time goes: the queries alone, the figures alone (same frames)
    q_times, f_times = [], []
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        for _ in range(runs):
            with Timer() as t:
                frames = _dash_query_set(conn, DAY)
            q_times.append(t.s)
            with Timer() as t:
                _dash_figures(frames, DAY)
            f_times.append(t.s)
    res["queries_ms_median"] = rnd(1000 * statistics.median(q_times), 1)
    res["figures_ms_median"] = rnd(1000 * statistics.median(f_times), 1)
    log.info("[dashboard] full-day callback median %.1f ms (queries %.1f ms, figures %.1f ms); unchanged tick %.1f ms",
             res["callback_full_ms"]["median"], res["queries_ms_median"], res["figures_ms_median"],
             res["callback_unchanged_ms"]["median"])
    return res


def _refresh_body(app, over: dict) -> dict:
    values = {"tick.n_intervals": 1, "day.value": DAY.isoformat(), "live.value": ["live"], "as-of.value": None,
              "tab.value": "portfolio", "asset.value": None, "ack-version.data": 0, "fp.data": {},
              "alerts.selected_row_ids": None}
    values.update(over)
    key = next(k for k in app.callback_map if "fp.data" in k)
    spec = app.callback_map[key]
    outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in key.strip(".").split("...")]
    return {
        "output": key, "outputs": outs,
        "inputs": [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                   for i in spec["inputs"]],
        "state": [{"id": s["id"], "property": s["property"], "value": values.get(f"{s['id']}.{s['property']}")}
                  for s in spec["state"]],
        "changedPropIds": ["tick.n_intervals"],
    }
