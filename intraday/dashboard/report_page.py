"""The performance report as a dashboard page (definitions: docs/report.md, data: intraday/backoffice/report/).

Pieces, to be wired by ``intraday/dashboard/app.py`` (see docs/report.md, "Dashboard"):

- :func:`layout` -> the page's component tree (all ids start with ``report-``);
- pure figure builders from a report dict: :func:`waterfall_figure`, :func:`assets_figure`,
  :func:`forecast_error_figure`, :func:`qh_figure`, and :func:`kpi_rows` / :func:`kpi_columns`
  for the key-figure table (plain dicts, no database, no Dash);
- :func:`register_callbacks(app, pool)`: run the report, draw it, download it as JSON / CSV /
  HTML. Every callback calls ``require_user()`` and refuses asset owners: the report shows the
  portfolio's trading result and our margin. Downloads are recomputed on the server from the
  chosen period, never taken from the browser's copy.

Time axis: Berlin wall time (naive strings); on the autumn DST day the repeated hour overlaps.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from intraday.platform.errors import first_line

log = logging.getLogger("intraday.dashboard")

MAX_DAYS = 93  # one quarter per request: the report reads every QH row of the period
STAFF = ("desk", "ops", "back_office")
COLORS = {"up": "#2ca02c", "down": "#d62728", "total": "#1f4e79", "gate": "#ff7f0e", "delivery": "#9ecae1",
          "produced": "#1f4e79", "capture": "#2ca02c", "factor": "#9467bd", "idx": "#1f77b4", "vwap": "#111111",
          "forecast": "#1f77b4", "net_sold": "#2ca02c", "imbalance": "#ff7f0e"}
KPI_METRICS = [  # (key, label, format: digits or "pct")
    ("produced_mwh", "Produced (MWh)", 3),
    ("fe_gate_mae_mwh", "Forecast MAE at gate closure (MWh/QH)", 4),
    ("fe_gate_bias_mwh", "Forecast bias at gate closure (MWh/QH)", 4),
    ("fe_delivery_mae_mwh", "Forecast MAE at delivery (MWh/QH)", 4),
    ("fe_delivery_bias_mwh", "Forecast bias at delivery (MWh/QH)", 4),
    ("fe_gate_abs_eur", "|Error| x imbalance price at gate closure (EUR)", 2),
    ("fe_delivery_abs_eur", "|Error| x imbalance price at delivery (EUR)", 2),
    ("market_capture_price_eur_mwh", "Market capture price (EUR/MWh)", 2),
    ("base_price_eur_mwh", "Base price, mean idx_full (EUR/MWh)", 2),
    ("capture_price_eur_mwh", "Realised capture price (EUR/MWh)", 2),
    ("capture_rate", "Capture rate", "pct"),
    ("revenue_eur", "Trading revenue (EUR)", 2),
    ("realised_revenue_eur", "Realised revenue (EUR)", 2),
    ("imbalance_mwh", "Imbalance net (MWh): portfolio position vs net sold; asset deviation from its gate forecast", 3),
    ("imbalance_abs_mwh", "Imbalance absolute (MWh), as above", 3),
    ("imbalance_cost_eur", "Imbalance cost (EUR, + = we pay; the waterfall shows it as a minus)", 2),
    ("imbalance_cost_eur_per_mwh", "Imbalance cost per MWh (EUR/MWh)", 2),
    ("redispatch_mwh", "Redispatch volume (MWh)", 3),
    ("redispatch_compensation_eur", "Redispatch compensation (EUR)", 2),
    ("infeed_payout_eur", "Payouts to owners (EUR)", 2),
    ("fees_eur", "Fees from owners (EUR)", 2),
    ("margin_eur", "Our margin (EUR)", 2),
    ("margin_eur_per_mwh", "Our margin per MWh (EUR/MWh)", 2),
]


# ---------------------------------------------------------------------------------------------
# authorisation and inputs


def allowed(user: Any) -> bool:
    """Staff only (desk, ops, back office): the report shows the portfolio and our margin."""
    return getattr(user, "role", None) in STAFF


def period_from_days(start_day: Any, end_day: Any) -> tuple[dt.datetime, dt.datetime]:
    """Berlin days (ISO text from the date picker, both inclusive) -> UTC ``[start, end)``.

    Raises ValueError for malformed, reversed or too long periods (forged inputs included)."""
    from intraday.backoffice.report.compute import parse_period

    s, e = str(start_day or "")[:10], str(end_day or start_day or "")[:10]
    d0, d1 = dt.date.fromisoformat(s), dt.date.fromisoformat(e)
    if (d1 - d0).days + 1 > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days per report")
    return parse_period(d0.isoformat(), d1.isoformat())


def _assets_arg(value: Any) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if isinstance(v, str)][:500] or None


def compute(conn, user: Any, start_day: Any, end_day: Any, assets: Any = None, *, db_scoped: bool = False) -> dict:
    """The report for a dashboard user; PermissionError for asset owners. With ``db_scoped`` the
    queries run as the user's database role (intraday.backoffice.permissions.user_session)."""
    from intraday.backoffice.report.compute import performance_report

    if not allowed(user):
        raise PermissionError("the performance report is for the desk, ops and the back office")
    start, end = period_from_days(start_day, end_day)
    if db_scoped:
        from intraday.backoffice.permissions import user_session

        with user_session(conn, user):
            return performance_report(conn, start, end, _assets_arg(assets))
    return performance_report(conn, start, end, _assets_arg(assets))


# ---------------------------------------------------------------------------------------------
# figures (pure)


def _empty(title: str, note: str = "run the report") -> dict:
    return {"data": [], "layout": {"title": {"text": title}, "xaxis": {"visible": False},
                                   "yaxis": {"visible": False}, "height": 320,
                                   "annotations": [{"text": note, "showarrow": False, "font": {"size": 14}}]}}


def _scope(report: dict, scope: str | None) -> dict | None:
    if not scope or scope == "portfolio":
        return report["portfolio"]
    if scope == "assets_total":
        return report["assets_total"]
    return next((a for a in report["assets"] if a["asset_id"] == scope), None)


def waterfall_figure(report: dict | None, scope: str | None = "portfolio") -> dict:
    """The attribution waterfall (EUR) of the portfolio, an asset id, or ``assets_total``."""
    title = "Attribution: market value to our margin"
    m = _scope(report, scope) if report else None
    if not m:
        return _empty(title)
    steps = m["waterfall"]
    return {"data": [{
        "type": "waterfall", "orientation": "v", "name": "EUR",
        "measure": [s["kind"] for s in steps], "x": [s["label"] for s in steps], "y": [s["eur"] for s in steps],
        "text": [f"{s['eur']:,.0f}" for s in steps], "textposition": "outside",
        "cliponaxis": False,  # the value above the tallest bar is not cut by the plot area
        "increasing": {"marker": {"color": COLORS["up"]}}, "decreasing": {"marker": {"color": COLORS["down"]}},
        "totals": {"marker": {"color": COLORS["total"]}}, "connector": {"line": {"color": "#999"}},
        "hovertemplate": "%{x}: %{y:,.2f} EUR<extra></extra>"}],
        "layout": {"title": {"text": f"{title} ({'portfolio' if not scope else scope})"},
                   "yaxis": {"title": {"text": "EUR"}}, "height": 380, "margin": {"t": 50, "b": 90},
                   "showlegend": False}}


def assets_figure(report: dict | None) -> dict:
    """Produced MWh per asset (bars) with the capture rate and the market value factor (%, right axis)."""
    title = "Per asset: production and capture"
    if not report or not report["assets"]:
        return _empty(title, "no assets" if report else "run the report")
    ids = [a["asset_id"] for a in report["assets"]]

    def pct(key: str) -> list[float | None]:
        return [None if a.get(key) is None else 100 * a[key] for a in report["assets"]]

    return {"data": [
        {"type": "bar", "name": "produced MWh", "x": ids, "y": [a.get("produced_mwh") for a in report["assets"]],
         "marker": {"color": COLORS["produced"]}, "hovertemplate": "%{x}: %{y:,.3f} MWh<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "capture rate %", "x": ids, "y": pct("capture_rate"),
         "yaxis": "y2", "marker": {"size": 11, "color": COLORS["capture"]},
         "hovertemplate": "%{x}: capture rate %{y:.1f} %<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "market value factor %", "x": ids,
         "y": pct("market_value_factor"), "yaxis": "y2", "marker": {"size": 9, "symbol": "diamond",
                                                                      "color": COLORS["factor"]},
         "hovertemplate": "%{x}: market value factor %{y:.1f} %<extra></extra>"}],
        "layout": {"title": {"text": title}, "height": 340, "yaxis": {"title": {"text": "MWh"}},
                   "yaxis2": {"title": {"text": "%"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
                   "legend": {"orientation": "h", "y": -0.2}}}


def forecast_error_figure(report: dict | None) -> dict:
    """MAE per QH at gate closure vs at delivery, per asset and for the portfolio."""
    title = "Forecast error (MAE per QH): gate closure vs delivery"
    if not report:
        return _empty(title)
    scopes = [("portfolio", report["portfolio"])] + [(a["asset_id"], a) for a in report["assets"]]
    names = [s for s, _ in scopes]
    return {"data": [
        {"type": "bar", "name": "MAE at gate closure", "x": names, "y": [m.get("fe_gate_mae_mwh") for _, m in scopes],
         "marker": {"color": COLORS["gate"]}, "customdata": [m.get("fe_gate_bias_mwh") for _, m in scopes],
         "hovertemplate": "%{x}: MAE %{y:.4f} MWh, bias %{customdata:.4f}<extra>gate closure</extra>"},
        {"type": "bar", "name": "MAE at delivery", "x": names, "y": [m.get("fe_delivery_mae_mwh") for _, m in scopes],
         "marker": {"color": COLORS["delivery"]}, "customdata": [m.get("fe_delivery_bias_mwh") for _, m in scopes],
         "hovertemplate": "%{x}: MAE %{y:.4f} MWh, bias %{customdata:.4f}<extra>delivery</extra>"}],
        "layout": {"title": {"text": title}, "barmode": "group", "height": 320,
                   "yaxis": {"title": {"text": "MWh per QH"}}, "legend": {"orientation": "h", "y": -0.2}}}


def _berlin(text: str) -> str:
    from intraday.core.qh import BERLIN

    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(BERLIN)
    return t.strftime("%Y-%m-%d %H:%M")


def qh_figure(report: dict | None) -> dict:
    """Per QH of the portfolio: produced vs tradeable forecast vs net sold (MWh), idx_full and
    our VWAP (EUR/MWh, right axis)."""
    title = "Portfolio per quarter-hour"
    if not report or not report["series"]:
        return _empty(title, "no quarter-hours" if report else "run the report")
    s = report["series"]
    x = [_berlin(r["delivery_start"]) for r in s]

    def line(key: str, name: str, color: str, axis: str = "y", dash: str | None = None) -> dict:
        return {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": [r.get(key) for r in s],
                "yaxis": axis, "line": {"color": color, "width": 1.6, **({"dash": dash} if dash else {})},
                "connectgaps": False}

    return {"data": [line("produced_mwh", "produced MWh", COLORS["produced"]),
                     line("tradeable_forecast_mwh", "tradeable forecast MWh", COLORS["forecast"], dash="dot"),
                     line("net_sold_mwh", "net sold MWh", COLORS["net_sold"]),
                     line("idx_full_eur_mwh", "idx_full EUR/MWh", COLORS["idx"], "y2", "dash"),
                     line("vwap_eur_mwh", "our VWAP EUR/MWh", COLORS["vwap"], "y2", "dash")],
            "layout": {"title": {"text": title}, "height": 360, "xaxis": {"title": {"text": "Europe/Berlin"}},
                       "yaxis": {"title": {"text": "MWh"}},
                       "yaxis2": {"title": {"text": "EUR/MWh"}, "overlaying": "y", "side": "right"},
                       "legend": {"orientation": "h", "y": -0.25}}}


def _fmt(v: Any, f: Any) -> str:
    if v is None:
        return "–"
    if f == "pct":
        return f"{100 * v:,.1f} %"
    return f"{v:,.{f}f}"


def kpi_columns(report: dict | None) -> list[dict[str, str]]:
    cols = [{"name": "", "id": "metric"}, {"name": "Portfolio", "id": "portfolio"}]
    if report:
        cols += [{"name": a["asset_id"], "id": a["asset_id"]} for a in report["assets"]]
        cols.append({"name": "Listed assets (total; ratios from the totals)", "id": "assets_total"})
    return cols


def kpi_rows(report: dict | None) -> list[dict[str, str]]:
    """The key-figure table: one row per metric, one column per scope (formatted text)."""
    if not report:
        return []
    scopes = [("portfolio", report["portfolio"])] + [(a["asset_id"], a) for a in report["assets"]] + [
        ("assets_total", report["assets_total"])]
    return [{"metric": label, **{sid: _fmt(m.get(key), f) for sid, m in scopes}} for key, label, f in KPI_METRICS]


# ---------------------------------------------------------------------------------------------
# layout


def layout(day: dt.date | None = None, asset_options: Sequence[dict[str, str]] = (), *, hidden: bool = False) -> Any:
    """The report page (a ``html.Div`` with id ``report-pane``); ``day`` pre-selects the period;
    ``hidden`` starts it with ``display: none`` (a tab switch sets ``report-pane.style``)."""
    from dash import dash_table, dcc, html

    d = (day or dt.datetime.now(dt.UTC).date()).isoformat()
    return html.Div(id="report-pane", style={"display": "none"} if hidden else {"display": "block"}, children=[
        html.Div([
            html.Div([html.Label("Delivery days (Europe/Berlin)"),
                      dcc.DatePickerRange(id="report-range", start_date=d, end_date=d, display_format="YYYY-MM-DD",
                                          minimum_nights=0)], className="control"),
            html.Div([html.Label("Assets (empty: all)"),
                      dcc.Dropdown(id="report-assets", options=list(asset_options), multi=True, value=[],
                                   style={"minWidth": "20em"})], className="control"),
            html.Div([html.Button("Compute report", id="report-run"),
                      html.Span(id="report-msg", className="msg")], className="control"),
        ], className="controls"),
        dash_table.DataTable(id="report-kpis", columns=kpi_columns(None), data=[],
                             style_cell={"fontFamily": "system-ui, sans-serif", "fontSize": 13, "padding": "3px 6px",
                                         "textAlign": "right"},
                             style_cell_conditional=[{"if": {"column_id": "metric"}, "textAlign": "left"}],
                             style_header={"fontWeight": "600", "backgroundColor": "#f0f2f5"}),
        html.Div([html.Label("Waterfall of"),
                  dcc.Dropdown(id="report-scope", options=[{"label": "Portfolio", "value": "portfolio"}],
                               value="portfolio", clearable=False, style={"width": "20em"})], className="control"),
        dcc.Graph(id="report-waterfall", figure=waterfall_figure(None), config={"displaylogo": False}),
        dcc.Graph(id="report-assets-graph", figure=assets_figure(None), config={"displaylogo": False}),
        dcc.Graph(id="report-fe", figure=forecast_error_figure(None), config={"displaylogo": False}),
        dcc.Graph(id="report-qh", figure=qh_figure(None), config={"displaylogo": False}),
        html.Div([html.Button("Download JSON", id="report-dl-json"), html.Button("Download CSV", id="report-dl-csv"),
                  html.Button("Download HTML", id="report-dl-html"), dcc.Download(id="report-download")],
                 className="row"),
        html.P(["Definitions: docs/report.md. Amounts in EUR, net of VAT; trading and imbalance amounts of an "
                "asset are its share of the portfolio's by produced MWh per QH."], className="note"),
        dcc.Store(id="report-data"),
    ])


# ---------------------------------------------------------------------------------------------
# callbacks


def register_callbacks(app, pool, *, db_scoped: bool = False) -> None:
    """Run / draw / download. ``pool``: the dashboard's ``psycopg_pool.ConnectionPool``.
    ``db_scoped``: run the queries as the user's database role (docs/permissions.md)."""
    import dash
    import psycopg
    from dash import Input, Output, State
    from psycopg_pool import PoolTimeout

    from intraday.backoffice.report.files import report_csv, report_json
    from intraday.backoffice.report.page import delivered_text, render_html
    from intraday.dashboard.auth import require_user

    no = dash.no_update
    db_errors = (psycopg.Error, PoolTimeout)

    @app.callback(Output("report-assets", "options"), Input("report-range", "start_date"),
                  Input("report-range", "end_date"))
    def asset_options(start_day, end_day):
        user = require_user()
        if not allowed(user):
            return []
        try:
            start, end = period_from_days(start_day, end_day)
            with pool.connection() as conn:
                rows = conn.execute("SELECT DISTINCT asset_id FROM asset_qh WHERE in_scope AND delivery_start >= %s"
                                    " AND delivery_start < %s ORDER BY 1", (start, end)).fetchall()
        except (ValueError, *db_errors):
            return no
        return [{"label": r[0], "value": r[0]} for r in rows]

    @app.callback(Output("report-data", "data"), Output("report-msg", "children"), Input("report-run", "n_clicks"),
                  State("report-range", "start_date"), State("report-range", "end_date"),
                  State("report-assets", "value"), prevent_initial_call=True)
    def run(_clicks, start_day, end_day, assets):
        user = require_user()
        try:
            with pool.connection() as conn:
                report = compute(conn, user, start_day, end_day, assets, db_scoped=db_scoped)
        except PermissionError as exc:
            return None, str(exc)
        except ValueError as exc:
            return no, f"period: {exc}"
        except db_errors as exc:
            msg = first_line(exc)
            log.warning("report failed: %s", msg)
            return no, f"database unavailable: {msg}"
        p = report["period"]
        return report, f"{p['first_day']} to {p['last_day']}: {delivered_text(p)}" + (
            f" · {len(report['warnings'])} note(s): " + " | ".join(report["warnings"]) if report["warnings"] else "")

    @app.callback(Output("report-kpis", "data"), Output("report-kpis", "columns"), Output("report-scope", "options"),
                  Output("report-waterfall", "figure"), Output("report-assets-graph", "figure"),
                  Output("report-fe", "figure"), Output("report-qh", "figure"),
                  Input("report-data", "data"), Input("report-scope", "value"))
    def draw(report, scope):
        user = require_user()
        if not allowed(user) or not isinstance(report, dict):
            report = None
        try:
            options = [{"label": "Portfolio", "value": "portfolio"}]
            if report:
                options += [{"label": a["asset_id"], "value": a["asset_id"]} for a in report["assets"]]
                options.append({"label": "Listed assets (total)", "value": "assets_total"})
            return (kpi_rows(report), kpi_columns(report), options, waterfall_figure(report, scope),
                    assets_figure(report), forecast_error_figure(report), qh_figure(report))
        except (KeyError, TypeError, ValueError, AttributeError):  # the browser's copy is not trusted
            return [], kpi_columns(None), no, waterfall_figure(None), assets_figure(None), \
                forecast_error_figure(None), qh_figure(None)

    @app.callback(Output("report-download", "data"), Input("report-dl-json", "n_clicks"),
                  Input("report-dl-csv", "n_clicks"), Input("report-dl-html", "n_clicks"),
                  State("report-range", "start_date"), State("report-range", "end_date"),
                  State("report-assets", "value"), prevent_initial_call=True)
    def download(_j, _c, _h, start_day, end_day, assets):
        user = require_user()
        which = dash.callback_context.triggered_id
        try:
            with pool.connection() as conn:
                report = compute(conn, user, start_day, end_day, assets, db_scoped=db_scoped)
        except (PermissionError, ValueError, *db_errors):
            raise dash.exceptions.PreventUpdate from None  # nothing to send (HTTP 204)
        p = report["period"]
        stem = f"performance_report_{p['first_day']}_{p['last_day']}"
        if which == "report-dl-csv":
            return {"content": report_csv(report), "filename": stem + ".csv", "type": "text/csv", "base64": False}
        if which == "report-dl-html":
            return {"content": render_html(report), "filename": stem + ".html", "type": "text/html", "base64": False}
        return {"content": report_json(report), "filename": stem + ".json", "type": "application/json",
                "base64": False}
