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

import contextlib
import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dash
import pandas as pd
import psycopg
from dash import Input, Output, State, dash_table, dcc, html
from psycopg_pool import PoolTimeout

from intraday.backoffice.permissions import (
    PermissionSetupError,
    can_manage_roles,
    sync_dashboard_users,
    user_session,
)
from intraday.backoffice.users import UserStore, ensure_demo_user, users_file
from intraday.core.qh import BERLIN, UTC, to_dt
from intraday.dashboard import figures as F
from intraday.dashboard import report_page as RP
from intraday.dashboard.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SessionRegistry,
    check_auth_host,
    current_user,
    install_auth,
    is_loopback_host,
    require_user,
)
from intraday.platform.config import ConfigError, Settings
from intraday.platform.errors import first_line
from intraday.readmodels import queries as Q
from intraday.readmodels.health import broker_health, recent_latency_ms
from intraday.sink.db import connection_kwargs

log = logging.getLogger("intraday.dashboard")

TICK_MS = 2000
POOL_KEY = "intraday_pool"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
EMPTY_FP: dict[str, Any] = {}
DB_ERRORS = (psycopg.Error, PoolTimeout)


class AccessNotSetUp(psycopg.Error):
    """An asset owner's database role is missing, or the dashboard's login may not use it."""


@contextlib.contextmanager
def user_connection(pool, user) -> Iterator[psycopg.Connection]:
    """A pooled connection for ``user``'s queries: an asset owner's in their database role, with
    the owner views first on the search_path (docs/permissions.md); staff on the dashboard's login."""
    with pool.connection() as conn:
        if user.sees_portfolio:
            yield conn
            return
        scoped = user_session(conn, user)
        try:
            scoped.__enter__()
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege,
                PermissionSetupError) as exc:
            first = first_line(exc)
            raise AccessNotSetUp(f"the database access of {user.username!r} is not set up ({first}): an "
                                 "administrator runs `intraday migrate` with the users file "
                                 "(docs/permissions.md)") from None
        with contextlib.ExitStack() as stack:
            stack.push(scoped)
            yield conn


def sync_owner_roles(pool, users: Iterable[Any]) -> dict[str, list[str]] | None:
    """Give the asset owners of the users file their database roles, where the dashboard's login
    may create roles (the embedded demo). In production ``intraday migrate`` does it; then this
    says so once and returns None."""
    try:
        with pool.connection() as conn:
            if not can_manage_roles(conn):
                log.info("asset owners' database roles: kept by `intraday migrate` (this login may not create roles)")
                return None
            synced = sync_dashboard_users(conn, users)
    except (PermissionSetupError, *DB_ERRORS) as exc:
        log.warning("asset owners' database roles not synced: %s",
                    first_line(exc))
        return None
    if synced:
        log.info("asset owners' database roles: %s", ", ".join(f"{r} ({len(a)} assets)" for r, a in synced.items()))
    return synced


def _db_message(exc: BaseException) -> str:
    msg = first_line(exc)
    return msg if isinstance(exc, AccessNotSetUp) else f"database unavailable: {msg}"


# ---------------------------------------------------------------------------------------------
# small pure helpers (tested without a server)


def iso_or_none(v: Any) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return pd.Timestamp(v).isoformat()


def fingerprint_dict(row: pd.Series, ctx: list[Any]) -> dict[str, Any]:
    """The JSON-able fingerprint kept in the page's store."""
    return {"ctx": ctx, "clock": iso_or_none(row["replay_clock"]), "portfolio": iso_or_none(row["portfolio_known_at"]),
            "history": iso_or_none(row["history_known_at"]), "trading": iso_or_none(row["trading_known_at"]),
            "asset": iso_or_none(row["asset_known_at"]), "asset_imb": iso_or_none(row["asset_imbalance_known_at"]),
            "alerts": [int(row["alerts_n"] or 0), int(row["alerts_acknowledged_n"] or 0)]}


def changed_parts(prev: dict[str, Any] | None, new: dict[str, Any], forced: bool) -> set[str]:
    """Which fingerprint parts moved; every part when forced, on the first call or when the
    context (user, day, as_of, tab, asset) changed."""
    parts = {"clock", "portfolio", "history", "trading", "asset", "asset_imb", "alerts"}
    if forced or not prev or prev.get("ctx") != new.get("ctx"):
        return parts | {"ctx"}
    return {p for p in parts if prev.get(p) != new.get(p)}


def slider_marks(first: dt.datetime, last: dt.datetime, every_h: int = 3) -> dict[int, str]:
    """Slider marks at whole Berlin hours every ``every_h`` hours between two instants."""
    marks: dict[int, str] = {}
    t = first.astimezone(BERLIN).replace(minute=0, second=0, microsecond=0)
    while t.astimezone(UTC) <= last:
        u = t.astimezone(UTC)
        if u >= first and t.hour % every_h == 0:
            marks[int(u.timestamp())] = t.strftime("%H:%M") if t.hour else t.strftime("%d.%m.")
        t = (t.astimezone(UTC) + dt.timedelta(hours=1)).astimezone(BERLIN)
    return marks


def alerts_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in df.itertuples(index=False):
        out.append({
            "id": f"{r.alert_id}|{r.status}|{pd.Timestamp(r.delivery_start).isoformat()}",
            "detected": F.berlin_time(r.detected_at), "qh": F.berlin_short(r.delivery_start),
            "status": r.status, "severity": r.severity, "kind": r.kind, "subject": r.subject,
            "value": None if pd.isna(r.value) else round(float(r.value), 3),
            "threshold": None if pd.isna(r.threshold) else float(r.threshold), "unit": r.unit or "",
            "eur_at_risk": None if pd.isna(r.eur_at_risk) else round(float(r.eur_at_risk), 2),
            "action": r.suggested_action or "",
            "acknowledged": "" if not isinstance(r.acknowledged_by, str) else
            f"{r.acknowledged_by} {F.berlin_time(r.acknowledged_at)}",
        })
    return out


def alerts_title(records: list[dict[str, Any]]) -> str:
    """``Alerts: 3 open`` over the newest states (one row per QH and kind, by gate closure)."""
    n_open = sum(1 for r in records if r["status"] == "raised")
    return f"Alerts: {n_open} open (one row per QH and kind, newest state, by gate closure)"


def freshness_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in df.itertuples(index=False):
        age = None if pd.isna(r.age_min) else round(float(r.age_min), 1)
        expected, status = F.feed_status(r.source, age)
        out.append({"source": r.source, "latest": F.berlin_time(r.latest_at) if not pd.isna(r.latest_at) else "–",
                    "age_min": age, "expected": expected, "status": status})
    return out


def kpi_children(tiles: list[dict[str, Any]]) -> list[Any]:
    return [html.Div([html.Div(t["label"], className="kpi-label"),
                      html.Div([html.Span(t["value"], className="kpi-value"), html.Span(" " + t["unit"], className="kpi-unit")]),
                      html.Div(t.get("sub", ""), className="kpi-sub")],
                     className=f"kpi kpi-{t['tone']}", id=f"kpi-{t['key']}") for t in tiles]


def _parse_as_of(live: Any, value: Any) -> dt.datetime | None:
    """The slider's instant (epoch seconds) unless live; malformed (forged) input means live."""
    if isinstance(live, list) and "live" in live:
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return to_dt(t) if 0 < t < 4e9 else None


def _parse_day(value: Any) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# layout


def _header() -> html.Header:
    user = current_user()
    who = f"{user.username} ({user.role})" if user else ""
    return html.Header([
        html.H1("Intraday desk"),
        html.Div([html.Div(id="clock", className="clock"), html.Div(id="countdown", className="countdown")],
                 className="clocks"),
        html.Div([html.Span(who, className="who"), html.A("health", href="/health", target="_blank"),
                  html.A("log out", href="/logout")], className="links"),
    ], className="header")


def _table(id_: str, columns: list[tuple[str, str]], **kw: Any) -> dash_table.DataTable:
    return dash_table.DataTable(id=id_, columns=[{"name": n, "id": c} for c, n in columns], data=[],
                                style_cell={"fontFamily": "system-ui, sans-serif", "fontSize": 13, "padding": "3px 6px",
                                            "textAlign": "left"},
                                style_header={"fontWeight": "600", "backgroundColor": "#f0f2f5"}, **kw)


def build_layout(pool, settings: Settings) -> html.Div:
    """The page. Called per page load (``/_dash-layout``) to pre-fill days and assets."""
    user = current_user()
    day_options: list[dict[str, str]] = []
    day_value = None
    asset_options: list[dict[str, str]] = []
    if user is not None and pool is not None:
        try:
            with user_connection(pool, user) as conn:
                day_options, day_value = _day_options(conn, user.asset_filter)
                asset_options = _asset_options(conn, user.asset_filter)
        except DB_ERRORS as exc:  # the page must load even without a database
            log.warning("layout without data: %s", first_line(exc))
    return html.Div([
        _header(),
        html.Div([
            html.Div([html.Label("Delivery day"),
                      dcc.Dropdown(id="day", options=day_options, value=day_value, clearable=False,
                                   style={"width": "13em"})], className="control"),
            html.Div([html.Label("As known at"),
                      dcc.Checklist(id="live", options=[{"label": " live", "value": "live"}], value=["live"],
                                    inline=True),
                      html.Span(id="as-of-label", className="as-of-label")], className="control"),
            html.Div(dcc.Slider(id="as-of", min=0, max=1, step=60, value=None, marks={}, updatemode="mouseup",
                                allow_direct_input=False),
                     className="control slider"),
        ], className="controls"),
        dcc.Tabs(id="tab", value="portfolio", children=[
            dcc.Tab(label="Portfolio", value="portfolio"), dcc.Tab(label="Asset drill-down", value="asset"),
            *([dcc.Tab(label="Performance report", value="report")] if user is not None and RP.allowed(user)
              else [])]),
        html.Div(id="portfolio-pane", children=[
            html.H2("Next quarter-hours: minutes to gate closure, open position, EUR at risk"),
            _table("next-qh", list(F.NEXT_QH_COLUMNS), sort_action="none",
                   style_data_conditional=[
                       {"if": {"filter_query": '{act} = "yes"'}, "backgroundColor": "#fff3cd"},
                       {"if": {"filter_query": '{act} = "yes" && {to_gate_min} < 30'}, "backgroundColor": "#fde0dd",
                        "fontWeight": "600"}]),
            html.Div(id="kpis", className="kpis"),
            dcc.Graph(id="cockpit", config={"displaylogo": False}),
            dcc.Graph(id="ribbon", config={"displaylogo": False, "displayModeBar": False}),
            dcc.Graph(id="prices", config={"displaylogo": False}),
            dcc.Graph(id="imbalance", config={"displaylogo": False}),
            html.Div([html.Button("Download cockpit CSV", id="download-btn"), dcc.Download(id="download")],
                     className="row"),
            html.H2("Alerts", id="alerts-title"),
            html.Div([html.Button("Acknowledge selected", id="ack-btn"), html.Span(id="ack-msg", className="msg")],
                     className="row"),
            _table("alerts", [("qh", "QH (Berlin)"), ("status", "status"), ("severity", "severity"),
                              ("kind", "kind"), ("subject", "subject"), ("value", "value"), ("threshold", "threshold"),
                              ("unit", "unit"), ("eur_at_risk", "EUR at risk"), ("action", "suggested action"),
                              ("detected", "detected (Berlin)"), ("acknowledged", "acknowledged")],
                   row_selectable="multi", selected_rows=[], page_size=12, sort_action="none",
                   style_data_conditional=[
                       {"if": {"filter_query": '{severity} = "critical" && {acknowledged} = ""'},
                        "backgroundColor": "#fde0dd"},
                       {"if": {"filter_query": '{severity} = "warning" && {acknowledged} = ""'},
                        "backgroundColor": "#fff3cd"},
                       {"if": {"filter_query": '{acknowledged} != ""'}, "color": "#888888"}]),
            html.H2("Feed freshness (event time behind the replay clock)"),
            _table("freshness", [("source", "source"), ("latest", "latest event (Berlin)"), ("age_min", "age (min)"),
                                 ("expected", "expected"), ("status", "status")],
                   style_data_conditional=[{"if": {"filter_query": '{status} = "late"'},
                                            "backgroundColor": "#fde0dd"}]),
        ]),
        html.Div(id="asset-pane", style={"display": "none"}, children=[
            html.Div([html.Label("Asset"), dcc.Dropdown(id="asset", options=asset_options,
                                                        value=asset_options[0]["value"] if asset_options else None,
                                                        clearable=False, style={"width": "28em"})],
                     className="control"),
            dcc.Graph(id="asset-graph", config={"displaylogo": False}),
        ]),
        # present for every user (callback validation needs its ids); its callbacks refuse owners
        RP.layout(day=dt.date.fromisoformat(day_value) if day_value else None, asset_options=asset_options,
                  hidden=True),
        dcc.Interval(id="tick", interval=TICK_MS),
        dcc.Store(id="fp", data=EMPTY_FP),
        dcc.Store(id="ack-version", data=0),
    ], className="page")


def _day_options(conn, assets) -> tuple[list[dict[str, str]], str | None]:
    days = Q.query_days(conn, assets)["day"].tolist()
    clock = Q.replay_clock(conn, assets)
    options = [{"label": d.strftime("%Y-%m-%d (%a)"), "value": d.isoformat()} for d in days]
    value = None
    if days:
        # the clock's day while it is measured (live operation); after a replay whose last
        # files arrive the next day, the latest day that has measurements
        measured = [d for d in Q.query_measured_days(conn, assets)["day"].tolist() if d in days]
        clock_day = clock.tz_convert(BERLIN).date() if clock is not None else None
        if clock_day in measured or (clock_day in days and not measured):
            value = clock_day.isoformat()
        else:
            value = (measured[-1] if measured else days[-1]).isoformat()
    return options, value


def _asset_options(conn, assets) -> list[dict[str, str]]:
    out = []
    for r in Q.query_assets(conn, assets).itertuples(index=False):
        extra = ", ".join(str(x) for x in (r.asset_type, None if pd.isna(r.capacity_kw) else f"{r.capacity_kw:,.0f} kW")
                          if isinstance(x, str) and x)
        label = r.asset_id + (f" · {r.name}" if isinstance(r.name, str) and r.name else "") + (f" ({extra})" if extra else "")
        out.append({"label": label, "value": r.asset_id})
    return out


# ---------------------------------------------------------------------------------------------
# the app


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
        day = _parse_day(day_value)
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
            msg = _db_message(exc)
            log.warning("refresh failed: %s", msg)
            return (msg,) + (no,) * (len(outputs) - 1)

    def update(conn, user, day_value, live, as_of_value, tab, asset_value, prev_fp, forced, only_tick,
               selected_ids=None):
        """The main update (see the module docstring)."""
        assets = user.asset_filter
        out: dict[str, Any] = {}
        day = _parse_day(day_value)
        if day is None:
            options, value = _day_options(conn, assets)
            out["day.options"] = options
            if value is None:
                out["clock.children"] = F.waiting_text(Q.replay_clock(conn, assets))
                return _pack(out, outputs)
            out["day.value"] = value
            day = _parse_day(value)
        as_of = _parse_as_of(live, as_of_value)
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
            out["clock.children"] = F.clock_text(clock, Q.replay_liveness(conn))
            out["countdown.children"] = F.countdown_text(clock)
            out["day.options"] = _day_options(conn, assets)[0]
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
                out["as-of-label.children"] = (f"viewing as known at {F.berlin_time(as_of)} (trading panels: latest)"
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
                out["next-qh.data"] = F.next_qh_records(portfolio, Q.query_trading(conn, day, assets), now,
                                                        act_mwh=settings.alert_imbalance_mwh)
            if ctx_moved or "asset" in moved:
                out["ribbon.figure"] = F.source_ribbon_figure(Q.query_source_counts(conn, day, assets), day)
            if ctx_moved or clock_moved or "trading" in moved:
                out["prices.figure"] = F.price_figure(Q.query_trading(conn, day, assets), day, now)
            if ctx_moved or moved & {"trading", "portfolio", "history", "asset_imb"}:
                out["kpis.children"] = kpi_children(F.kpi_tiles(Q.query_running_totals(conn, day, as_of, assets)))
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
                options = _asset_options(conn, assets)
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
        day = _parse_day(day_value)
        if day is None:
            return no
        as_of = _parse_as_of(live, as_of_value)
        with user_connection(pool, user) as conn:
            portfolio = Q.query_portfolio(conn, day, as_of, user.asset_filter)
            now = as_of or Q.replay_clock(conn, user.asset_filter)
        frame = F.cockpit_frame(portfolio, now)
        suffix = "" if as_of is None else "_as_of_" + as_of.strftime("%Y%m%dT%H%M%SZ")
        # to 4 decimals (0.1 kW, a hundredth of a cent), not float noise such as 3.5999999999999996
        return {"content": frame.round(4).to_csv(index=False),
                "filename": f"cockpit_{day.isoformat()}{suffix}.csv",
                "type": "text/csv", "base64": False}


def _pack(out: dict[str, Any], outputs: list[Output]) -> tuple:
    """The outputs in callback order from a dict keyed ``"component.property"``; the rest unchanged."""
    return tuple(out.get(f"{o.component_id}.{o.component_property}", dash.no_update) for o in outputs)


# ---------------------------------------------------------------------------------------------
# serving


GUNICORN_TIMEOUT_S = 30  # a worker stuck longer on one request is killed and replaced


def serve(settings: Settings, host: str = "127.0.0.1", port: int | None = None, *, server: str = "auto",
          workers: int | None = None) -> None:
    """Run the dashboard. ``server``: ``gunicorn`` (production: ``--workers`` processes of 4
    threads, each request bounded by :data:`GUNICORN_TIMEOUT_S`, graceful stop on SIGTERM) or
    ``dev`` (Flask's threaded server with ``debug=False``, never the debugger or the reloader,
    and on a loopback host only); ``auto``: dev on loopback, else gunicorn. ``INTRADAY_AUTH=off``
    is refused off loopback. With auth on and no users file, a ``desk`` user with a random
    password is created and its credentials printed once to stderr."""
    check_auth_host(settings, host)
    if server == "auto":
        server = "dev" if is_loopback_host(host) else "gunicorn"
    if server == "dev" and not is_loopback_host(host):
        raise ConfigError(f"the development web server is for a loopback host only, not {host!r}: "
                          "use --server gunicorn")
    if settings.auth:
        created = ensure_demo_user(settings)
        if created:
            print(f"dashboard: created user {created[0]!r} with password {created[1]!r} in {users_file(settings)}",
                  file=sys.stderr, flush=True)
    port = port or settings.dashboard_port
    if server == "gunicorn":
        _serve_gunicorn(settings, host, port, workers or 2)
        return
    app = create_app(settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per 2-second poll
    log.info("dashboard on http://%s:%s (development server, auth %s)", host, port,
             "on" if settings.auth else "off (loopback)")
    try:
        app.server.run(host=host, port=port, debug=False, use_reloader=False, use_debugger=False, threaded=True)
    finally:
        close_app(app)


def gunicorn_options(host: str, port: int, workers: int, trusted_proxies: str = "127.0.0.1") -> dict[str, Any]:
    """The production server's settings: threads for the 2-second polls of many pages, a worker
    timeout, bounded request lines and headers, the client's address from a trusted proxy only."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {"bind": bind, "workers": workers, "worker_class": "gthread", "threads": 4,
            "timeout": GUNICORN_TIMEOUT_S, "graceful_timeout": 10, "keepalive": 5,
            "limit_request_line": 8190, "limit_request_fields": 100, "limit_request_field_size": 8190,
            "max_requests": 5000, "max_requests_jitter": 500,  # recycle workers: no slow leak lives long
            "forwarded_allow_ips": trusted_proxies,
            "accesslog": None, "errorlog": "-", "loglevel": "info", "proc_name": "intraday-dashboard"}


def _serve_gunicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(host, port, workers, settings.trusted_proxies).items():
                self.cfg.set(key, value)

        def load(self):  # in each worker: its own app and connection pool
            return create_app(settings).server

    log.info("dashboard on http://%s:%s (gunicorn, %d workers, auth %s)", host, port, workers,
             "on" if settings.auth else "off (loopback)")
    _App().run()
