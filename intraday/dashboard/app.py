"""The desk's live dashboard: ``create_app(settings) -> dash.Dash`` and ``serve(settings, host, port)``.

``create_app`` is the composition root: it opens a ``psycopg_pool.ConnectionPool`` on
``settings.database_url`` (nothing connects at import), installs the auth guard
(:mod:`intraday.dashboard.auth`), the layout and the callbacks. Callbacks are thin glue:
``require_user()`` -> ``user_connection(pool, user)`` -> ``query_*(conn, ..., assets=user.asset_filter)``
-> ``*_figure(df)`` dicts. An asset owner's queries run in the owner's database role
(``intraday.backoffice.permissions.user_session``): the database itself returns nothing of other owners, also
where a filter of ours is wrong; ``assets`` only shapes the answer (sums over their assets).

Updates: a ``dcc.Interval`` ticks every 2 s; the main callback first reads one cheap fingerprint
row (replay clock and the newest ``known_at`` per table of the viewed day, alert counts). If
nothing moved it sends no update at all (HTTP 204); otherwise it rebuilds only the panels whose
inputs moved and returns ``dash.no_update`` for the rest.

Page (top to bottom): header with the replay clock (event time, Europe/Berlin), the next gate
closure countdown, user, /health and logout links; day picker and the "as known at" slider (with
a live switch); tabs. Portfolio tab: KPI tiles (revenue, traded volume, trades, imbalance cost,
capture price vs idx_full), cockpit graph, best-of-infeed source ribbon, price graph, imbalance
cost graph, alerts table (one row per QH and kind, newest state, by gate closure; acknowledge button), feed freshness, CSV download of the
cockpit. Asset tab: asset picker and drill-down graph.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import dash
import pandas as pd
from dash import Input, Output, State

from intraday.backoffice.users import UserStore, users_file
from intraday.dashboard import clock as CL
from intraday.dashboard import figures as F
from intraday.dashboard import frames as FR
from intraday.dashboard import report_page as RP
from intraday.dashboard.access import DB_ERRORS, db_message, sync_owner_roles, user_connection
from intraday.dashboard.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SessionRegistry,
    install_auth,
    require_user,
)
from intraday.dashboard.layout import build_layout, load_asset_options, load_day_options
from intraday.dashboard.view import (
    alerts_records,
    alerts_title,
    changed_parts,
    fingerprint_dict,
    freshness_records,
    iso_or_none,
    kpi_children,
    parse_as_of,
    parse_day,
    slider_marks,
)
from intraday.platform.config import ConfigError, Settings
from intraday.platform.errors import first_line
from intraday.readmodels import queries as Q
from intraday.readmodels.health import broker_health, recent_latency_ms
from intraday.sink.db import connection_kwargs

log = logging.getLogger("intraday.dashboard")

POOL_KEY = "intraday_pool"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"



def get_pool(app: dash.Dash):
    return app.server.extensions[POOL_KEY]


def close_app(app: dash.Dash) -> None:
    """Close the app's connection pool (tests, shutdown)."""
    pool = app.server.extensions.pop(POOL_KEY, None)
    if pool is not None:
        pool.close()


def open_pool(database_url: str):
    from psycopg_pool import ConnectionPool

    return ConnectionPool(
        database_url, min_size=1, max_size=4, open=True, name="dashboard", timeout=10,
        kwargs={**connection_kwargs(statement_timeout_ms=10_000), "autocommit": True,
                "application_name": "intraday-dashboard"})


def _serialise_dash_setup(app: dash.Dash) -> None:
    """Finish Dash's one-time setup before any request of this process goes on. Dash sets its
    "done" flag before it registers the component bundles (plotly/dash#3971), so under threads
    (gunicorn's gthread workers) the requests of the first page that arrive meanwhile are
    refused with "dash is not a registered library". Run right after the login guard (only an
    admitted request gets here), under a lock: every other request waits for the setup."""
    lock = threading.Lock()
    done = threading.Event()

    def setup() -> None:
        if done.is_set():
            return
        with lock:
            if not done.is_set():
                app._setup_server()  # noqa: SLF001 - idempotent; Dash's own hook then returns at once
                done.set()

    app.server.before_request_funcs.setdefault(None, []).insert(1, setup)


def create_app(settings: Settings, *, pool=None, env: dict[str, str] | None = None) -> dash.Dash:
    """The Dash app on a new Flask server with its own connection pool (or the given one)."""
    if not settings.database_url and pool is None:
        raise ConfigError("the dashboard needs DATABASE_URL")
    store = None
    if settings.auth:
        path = users_file(settings)
        if not path.exists():
            raise ConfigError(f"no dashboard users file at {path}: create it "
                              f"(intraday users add USER desk --file {path}) or start `intraday demo`")
        store = UserStore(path)
    app = dash.Dash(__name__, title="Intraday desk", update_title=None, assets_folder=str(ASSETS_DIR),
                    serve_locally=True, compress=False, suppress_callback_exceptions=False,
                    enable_mcp=False, health_endpoint=None, csrf_token_name=CSRF_COOKIE,
                    csrf_header_name=CSRF_HEADER)
    server = app.server
    server.debug = False
    pool = pool if pool is not None else open_pool(settings.database_url)
    server.extensions[POOL_KEY] = pool
    if store is not None:  # owners' roles follow the users file (re-read when it changes)
        store.on_reload = lambda users: sync_owner_roles(pool, users.values())
        store.on_reload(store.users())
    install_auth(server, settings, store, env=env, sessions=SessionRegistry(pool))
    _serialise_dash_setup(app)

    app.layout = lambda: build_layout(pool, settings)
    _register_health(server, pool, settings.kafka_bootstrap)
    _register_callbacks(app, pool, settings)
    RP.register_callbacks(app, pool)
    return app


def _register_health(server, pool, bootstrap: str | None) -> None:
    import flask

    broker_cache: dict = {}

    def broker_part() -> dict | None:
        """Consumer lag and changelog sizes, read from the broker at most every 10 s (reading
        the partitions' ends takes a moment; the page is polled)."""
        if not bootstrap:
            return None
        now = time.monotonic()
        if now - broker_cache.get("at", -1e9) > 10:
            try:
                broker_cache["value"] = {"reachable": True, **broker_health(bootstrap)}
            except Exception as exc:  # noqa: BLE001 - the page reports, it does not crash
                broker_cache["value"] = {"reachable": False, "error": first_line(exc)[:300]}
            broker_cache["at"] = now
        return broker_cache["value"]

    @server.route("/_alive")
    def alive():
        """Liveness for the container's healthcheck: the server answers. No session needed, so
        it says nothing else (the state of the database and the broker is /health's)."""
        return flask.jsonify({"status": "ok"})

    @server.route("/health")
    def health():
        user = require_user()
        if not user.sees_portfolio:
            return flask.jsonify({"error": "not available for asset owners"}), 403
        try:
            with pool.connection() as conn:
                clock = Q.replay_clock(conn)
                progress = Q.query_sink_progress(conn)
                quarantine = Q.query_quarantine_counts(conn)
                fresh = Q.query_freshness(conn)
                latency = recent_latency_ms(conn)
        except DB_ERRORS as exc:  # report, do not crash
            msg = first_line(exc)
            return flask.jsonify({"status": "database unavailable", "error": msg}), 503
        return flask.jsonify({
            "status": "ok",
            "replay_clock": iso_or_none(clock),
            "sink_progress": [{"topic": r.topic, "partition": int(r.partition), "next_offset": int(r.next_offset),
                               "updated_at": iso_or_none(r.updated_at)} for r in progress.itertuples(index=False)],
            "quarantine": {r.topic: int(r.records) for r in quarantine.itertuples(index=False)},
            "quarantine_total": int(quarantine["records"].sum()) if len(quarantine) else 0,
            "latency_ms": latency,
            "last_known_at": {r.source: iso_or_none(r.latest_at) for r in fresh.itertuples(index=False)},
            "broker": broker_part(),
        })


def _register_callbacks(app: dash.Dash, pool, settings: Settings) -> None:
    no = dash.no_update

    @app.callback(Output("portfolio-pane", "style"), Output("asset-pane", "style"), Output("report-pane", "style"),
                  Input("tab", "value"))
    def switch_tab(tab):
        require_user()
        show, hide = {"display": "block"}, {"display": "none"}
        return tuple(show if tab == name else hide for name in ("portfolio", "asset", "report"))

    @app.callback(Output("live", "value"), Input("as-of", "value"), State("as-of", "max"), State("live", "value"),
                  prevent_initial_call=True)
    def leave_live(value, slider_max, live):
        """A move of the slider leaves live, unless it is at the live end (where the refresh puts
        it while live is on, and where a user who drags it right means "now")."""
        require_user()
        if live and isinstance(value, (int, float)) and isinstance(slider_max, (int, float)) and value >= slider_max:
            return no
        return []

    @app.callback(Output("report-range", "start_date"), Output("report-range", "end_date"), Input("day", "value"),
                  prevent_initial_call=True)
    def report_follows_day(day_value):
        """The report's period follows the desk's delivery day (chosen, or filled in once the first
        day has data): a report opened after the desk shows that day, not the wall clock's."""
        require_user()
        day = parse_day(day_value)
        return (day.isoformat(), day.isoformat()) if day else (no, no)

    outputs = [
        Output("clock", "children"), Output("countdown", "children"),
        Output("day", "options"), Output("day", "value"),
        Output("as-of", "min"), Output("as-of", "max"), Output("as-of", "marks"), Output("as-of", "disabled"),
        Output("as-of", "value"),
        Output("as-of-label", "children"),
        Output("kpis", "children"), Output("cockpit", "figure"), Output("ribbon", "figure"),
        Output("prices", "figure"), Output("imbalance", "figure"),
        Output("next-qh", "data"),
        Output("alerts", "data"), Output("alerts", "selected_rows"), Output("alerts-title", "children"),
        Output("freshness", "data"),
        Output("asset", "options"), Output("asset", "value"), Output("asset-graph", "figure"),
        Output("fp", "data"),
    ]
    inputs = [Input("tick", "n_intervals"), Input("day", "value"), Input("live", "value"), Input("as-of", "value"),
              Input("tab", "value"), Input("asset", "value"), Input("ack-version", "data")]

    @app.callback(*outputs, *inputs, State("fp", "data"), State("alerts", "selected_row_ids"))
    def refresh(_n, day_value, live, as_of_value, tab, asset_value, _ack, prev_fp, selected_ids):
        user = require_user()
        if tab == "report":  # the report tab has its own callbacks; nothing here changes
            return (no,) * len(outputs)
        triggered = set(dash.callback_context.triggered_prop_ids or {})
        forced = "ack-version.data" in triggered  # our own write: show it now
        try:
            with user_connection(pool, user) as conn:
                return update(conn, user, day_value, live, as_of_value, tab, asset_value, prev_fp, forced,
                              only_tick=triggered <= {"tick.n_intervals"} and bool(prev_fp),
                              selected_ids=selected_ids)
        except DB_ERRORS as exc:  # a database hiccup must not kill the page; bugs still surface as 500
            msg = db_message(exc)
            log.warning("refresh failed: %s", msg)
            return (msg,) + (no,) * (len(outputs) - 1)

    def update(conn, user, day_value, live, as_of_value, tab, asset_value, prev_fp, forced, only_tick,
               selected_ids=None):
        """The main update (see the module docstring)."""
        assets = user.asset_filter
        out: dict[str, Any] = {}
        day = parse_day(day_value)
        if day is None:
            options, value = load_day_options(conn, assets)
            out["day.options"] = options
            if value is None:
                out["clock.children"] = CL.waiting_text(Q.replay_clock(conn, assets))
                return _pack(out, outputs)
            out["day.value"] = value
            day = parse_day(value)
        as_of = parse_as_of(live, as_of_value)
        if asset_value is not None and not user.may_read_asset(str(asset_value)):
            asset_value = None  # a forged input: never query another owner's asset
        ctx = [user.username, day.isoformat(), iso_or_none(as_of), tab, asset_value]
        fp_row = Q.query_fingerprint(conn, day, as_of, assets).iloc[0]
        fp = fingerprint_dict(fp_row, ctx)
        moved = changed_parts(prev_fp, fp, forced)
        if only_tick and not moved:
            raise dash.exceptions.PreventUpdate  # nothing moved: HTTP 204, the browser keeps everything
        clock = fp_row["replay_clock"]
        clock = None if pd.isna(clock) else clock
        now = as_of or clock
        ctx_moved = "ctx" in moved
        clock_moved = "clock" in moved

        if clock_moved or ctx_moved:
            out["clock.children"] = CL.clock_text(clock, Q.replay_liveness(conn))
            out["countdown.children"] = CL.countdown_text(clock)
            out["day.options"] = load_day_options(conn, assets)[0]
            rng = Q.query_history_range(conn, day, assets).iloc[0]
            first, last = rng["first_known_at"], rng["last_known_at"]
            if pd.isna(first) or clock is None:
                out["as-of.disabled"] = True
                out["as-of.marks"] = {}
                out["as-of-label.children"] = ("live (history is kept for the portfolio only)"
                                               if assets is not None else "live (no history yet)")
            else:
                lo, hi = first.to_pydatetime(), max(last, clock).to_pydatetime()
                out["as-of.min"], out["as-of.max"] = int(lo.timestamp()), int(hi.timestamp())
                out["as-of.marks"] = slider_marks(lo, hi)
                out["as-of.disabled"] = False
                if as_of is None:  # live: the handle at the live end, not at the day's first version
                    out["as-of.value"] = out["as-of.max"]
                out["as-of-label.children"] = (f"viewing as known at {CL.berlin_time(as_of)} (trading panels: latest)"
                                               if as_of is not None else "live")

        if tab != "asset":
            portfolio_moved = ctx_moved or clock_moved or moved & {"portfolio", "history", "asset_imb", "asset"}
            portfolio = None
            if portfolio_moved:
                portfolio = Q.query_portfolio(conn, day, as_of, assets)
                out["cockpit.figure"] = F.cockpit_figure(portfolio, day, now)
                out["imbalance.figure"] = F.imbalance_figure(portfolio, day, now)
            if portfolio_moved or "trading" in moved:  # the clock moves the portfolio part too
                if portfolio is None:
                    portfolio = Q.query_portfolio(conn, day, as_of, assets)
                out["next-qh.data"] = FR.next_qh_records(portfolio, Q.query_trading(conn, day, assets), now,
                                                        act_mwh=settings.alert_imbalance_mwh)
            if ctx_moved or "asset" in moved:
                out["ribbon.figure"] = F.source_ribbon_figure(Q.query_source_counts(conn, day, assets), day)
            if ctx_moved or clock_moved or "trading" in moved:
                out["prices.figure"] = F.price_figure(Q.query_trading(conn, day, assets), day, now)
            if ctx_moved or moved & {"trading", "portfolio", "history", "asset_imb"}:
                out["kpis.children"] = kpi_children(FR.kpi_tiles(Q.query_running_totals(conn, day, as_of, assets)))
            if ctx_moved or "alerts" in moved:
                records = alerts_records(Q.query_alerts(conn, day, as_of, assets))
                out["alerts.data"] = records
                out["alerts-title.children"] = alerts_title(records)
                # new alerts shift the rows: keep the same alerts selected, not the same positions
                keep = set(selected_ids or [])
                out["alerts.selected_rows"] = [i for i, r in enumerate(records) if r["id"] in keep]
            if ctx_moved or clock_moved:
                out["freshness.data"] = freshness_records(Q.query_freshness(conn, assets))
        else:
            if ctx_moved or clock_moved:
                options = load_asset_options(conn, assets)
                out["asset.options"] = options
                if asset_value is None and options:
                    asset_value = options[0]["value"]
                    out["asset.value"] = asset_value
            if asset_value is not None and (ctx_moved or clock_moved or moved & {"asset", "asset_imb"}):
                out["asset-graph.figure"] = F.asset_figure(
                    Q.query_asset(conn, day, asset_value, assets), day, asset_value, now,
                    versions=Q.query_forecast_versions(conn, day, asset_value, assets))
        out["fp.data"] = fp
        return _pack(out, outputs)

    @app.callback(Output("ack-version", "data"), Output("ack-msg", "children"),
                  Output("alerts", "selected_rows", allow_duplicate=True),
                  Input("ack-btn", "n_clicks"), State("alerts", "selected_row_ids"), State("ack-version", "data"),
                  prevent_initial_call=True)
    def acknowledge(_clicks, selected_ids, version):
        user = require_user()
        if not user.can_acknowledge:
            return no, f"role {user.role} cannot acknowledge alerts", no
        ids = [i for i in (selected_ids or []) if isinstance(i, str)][:500]
        if not ids:
            return no, "select alerts first", no
        n = 0
        with pool.connection() as conn:
            for row_id in ids:
                try:
                    alert_id, _status, start = row_id.split("|", 2)
                    n += Q.acknowledge_alert(conn, alert_id, start, user.username, user.asset_filter)
                except (KeyError, ValueError):
                    continue
        return (version or 0) + 1, f"acknowledged {n} alert row(s) as {user.username}", []

    @app.callback(Output("download", "data"), Input("download-btn", "n_clicks"), State("day", "value"),
                  State("live", "value"), State("as-of", "value"), prevent_initial_call=True)
    def download(_clicks, day_value, live, as_of_value):
        user = require_user()
        day = parse_day(day_value)
        if day is None:
            return no
        as_of = parse_as_of(live, as_of_value)
        with user_connection(pool, user) as conn:
            portfolio = Q.query_portfolio(conn, day, as_of, user.asset_filter)
            now = as_of or Q.replay_clock(conn, user.asset_filter)
        frame = FR.cockpit_frame(portfolio, now)
        suffix = "" if as_of is None else "_as_of_" + as_of.strftime("%Y%m%dT%H%M%SZ")
        # to 4 decimals (0.1 kW, a hundredth of a cent), not float noise such as 3.5999999999999996
        return {"content": frame.round(4).to_csv(index=False),
                "filename": f"cockpit_{day.isoformat()}{suffix}.csv",
                "type": "text/csv", "base64": False}


def _pack(out: dict[str, Any], outputs: list[Output]) -> tuple:
    """The outputs in callback order from a dict keyed ``"component.property"``; the rest unchanged."""
    return tuple(out.get(f"{o.component_id}.{o.component_property}", dash.no_update) for o in outputs)
