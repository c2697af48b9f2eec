"""The page's layout: header, day picker and as-known-at slider, the portfolio, asset and report tabs."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pandas as pd
from dash import dash_table, dcc, html

from intraday.core.qh import BERLIN
from intraday.dashboard import frames as FR
from intraday.dashboard import report_page as RP
from intraday.dashboard.access import DB_ERRORS, user_connection
from intraday.dashboard.auth import (
    current_user,
)
from intraday.platform.config import Settings
from intraday.platform.errors import first_line
from intraday.readmodels import queries as Q

log = logging.getLogger("intraday.dashboard")
TICK_MS = 2000  # the page's update interval
EMPTY_FP: dict[str, Any] = {}  # the change fingerprint before the first update


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
                day_options, day_value = load_day_options(conn, user.asset_filter)
                asset_options = load_asset_options(conn, user.asset_filter)
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
            _table("next-qh", list(FR.NEXT_QH_COLUMNS), sort_action="none",
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


def load_day_options(conn, assets) -> tuple[list[dict[str, str]], str | None]:
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


def load_asset_options(conn, assets) -> list[dict[str, str]]:
    out = []
    for r in Q.query_assets(conn, assets).itertuples(index=False):
        extra = ", ".join(str(x) for x in (r.asset_type, None if pd.isna(r.capacity_kw) else f"{r.capacity_kw:,.0f} kW")
                          if isinstance(x, str) and x)
        label = r.asset_id + (f" · {r.name}" if isinstance(r.name, str) and r.name else "") + (f" ({extra})" if extra else "")
        out.append({"label": label, "value": r.asset_id})
    return out
