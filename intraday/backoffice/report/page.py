"""The report as one self-contained HTML page: key figures, the waterfall, charts, owner payments."""

from __future__ import annotations

import datetime as dt
import html

from intraday.backoffice.report.compute import WATERFALL_STEPS, report_scopes
from intraday.backoffice.report.svg import GOOD, GREY, TOTAL, fmt, svg_bars, svg_lines, svg_waterfall
from intraday.core.qh import BERLIN

_KPI_ROWS = [  # (metric, label, digits or "pct")
    ("produced_mwh", "Produced (MWh)", 3),
    ("fe_gate_mae_mwh", "Forecast MAE at gate closure (MWh/QH)", 4),
    ("fe_gate_bias_mwh", "Forecast bias at gate closure (MWh/QH)", 4),
    ("fe_delivery_mae_mwh", "Forecast MAE at delivery (MWh/QH)", 4),
    ("fe_delivery_bias_mwh", "Forecast bias at delivery (MWh/QH)", 4),
    ("fe_gate_abs_eur", "|Error| x imbalance price, gate closure (EUR)", 2),
    ("fe_delivery_abs_eur", "|Error| x imbalance price, delivery (EUR)", 2),
    ("market_capture_price_eur_mwh", "Market capture price, idx_full weighted by production (EUR/MWh)", 2),
    ("base_price_eur_mwh", "Base price, mean idx_full (EUR/MWh)", 2),
    ("capture_price_eur_mwh", "Realised capture price (EUR/MWh)", 2),
    ("capture_rate", "Capture rate (realised / market capture)", "pct"),
    ("revenue_eur", "Trading revenue (EUR)", 2),
    ("imbalance_mwh", "Imbalance, net (MWh)", 3),
    ("imbalance_abs_mwh", "Imbalance, absolute (MWh)", 3),
    ("imbalance_cost_eur", "Imbalance cost (EUR)", 2),
    ("imbalance_cost_eur_per_mwh", "Imbalance cost per produced MWh (EUR/MWh)", 2),
    ("redispatch_mwh", "Redispatch volume (MWh, latest forecast)", 3),
    ("redispatch_compensation_eur", "Redispatch compensation (EUR)", 2),
    ("infeed_payout_eur", "Infeed payouts to owners (EUR)", 2),
    ("fees_eur", "Fees from owners (EUR)", 2),
    ("margin_eur", "Our margin (EUR)", 2),
    ("margin_eur_per_mwh", "Our margin per produced MWh (EUR/MWh)", 2),
]


def _berlin_label(text: str) -> str:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(BERLIN)
    return t.strftime("%d.%m. %H:%M")


def delivered_text(period: dict) -> str:
    """"96 quarter-hours", or for a period in progress "40 of 96 quarter-hours delivered (until
    2025-06-08 10:00 CEST)"."""
    if not period.get("in_progress"):
        return f"{period['qh_count']} quarter-hours"
    until = dt.datetime.fromisoformat(period["delivered_until"].replace("Z", "+00:00")).astimezone(BERLIN)
    return (f"{period['delivered_qh']} of {period['qh_count']} quarter-hours delivered "
            f"(until {until.strftime('%Y-%m-%d %H:%M %Z')})")


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (tables and inline SVG charts)."""
    e = html.escape
    scopes = report_scopes(report)
    period = report["period"]
    head = "".join(f"<th>{e(label)}</th>" for _, label, _ in scopes)
    rows = []
    for key, label, digits in _KPI_ROWS:
        cells = "".join(f"<td class=n>{e(fmt(m.get(key), 2 if digits == 'pct' else digits, digits == 'pct'))}</td>"
                        for _, _, m in scopes)
        rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    wf_rows = []
    for step, label, _ in WATERFALL_STEPS:
        cells = "".join(f"<td class=n>{e(fmt(next(s['eur'] for s in m['waterfall'] if s['step'] == step)))}</td>"
                        for _, _, m in scopes)
        wf_rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    assets = report["assets"]
    cats = [a["asset_id"] for a in assets]
    charts = [svg_waterfall(report["portfolio"]["waterfall"], "Portfolio attribution")]
    if assets:
        charts.append(svg_bars(cats, [("produced MWh", [a["produced_mwh"] for a in assets], TOTAL)],
                               "Produced per asset", "MWh"))
        charts.append(svg_bars(cats, [("MAE gate closure", [a["fe_gate_mae_mwh"] for a in assets], "#ff7f0e"),
                                      ("MAE delivery", [a["fe_delivery_mae_mwh"] for a in assets], GREY)],
                               "Forecast error per asset", "MWh/QH"))
        charts.append(svg_bars(cats, [("capture rate", [None if a["capture_rate"] is None else 100 * a["capture_rate"]
                                                        for a in assets], GOOD),
                                      ("market value factor",
                                       [None if a["market_value_factor"] is None else 100 * a["market_value_factor"]
                                        for a in assets], GREY)], "Capture per asset", "%"))
        charts.append(svg_bars(cats, [("margin", [a["margin_eur"] for a in assets], TOTAL)],
                               "Our margin per asset", "EUR"))
    series = report["series"]
    if series:
        labels = [_berlin_label(s["delivery_start"]) for s in series]
        charts.append(svg_lines(labels, [("produced", [s["produced_mwh"] for s in series], "#111111"),
                                         ("tradeable forecast", [s["tradeable_forecast_mwh"] for s in series],
                                          "#1f77b4"),
                                         ("net sold", [s["net_sold_mwh"] for s in series], GOOD)],
                                "Portfolio per QH", "MWh"))
        charts.append(svg_lines(labels, [("idx_full", [s["idx_full_eur_mwh"] for s in series], "#1f77b4"),
                                         ("our VWAP", [s["vwap_eur_mwh"] for s in series], "#111111"),
                                         ("imbalance price", [s["imbalance_price_eur_mwh"] for s in series],
                                          "#ff7f0e")],
                                "Prices per QH", "EUR/MWh"))
    contract_rows = "".join(
        f"<tr><td>{e(r['contract_id'])}</td><td>{e(r['asset_id'])}</td><td>{e(r['status'])}</td>"
        f"<td>{e(str(r['price_model']))} / {e(str(r['fee_model']))}</td><td class=n>{e(fmt(r['volume_mwh'], 3))}</td>"
        f"<td class=n>{e(fmt(r['infeed_payout_eur']))}</td><td class=n>{e(fmt(r['redispatch_payout_eur']))}</td>"
        f"<td class=n>{e(fmt(r['fees_eur']))}</td><td>{e('; '.join(r['errors']))}</td></tr>"
        for r in report["contracts"])
    warnings = "".join(f"<li>{e(w)}</li>" for w in report["warnings"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Performance report {e(period['first_day'])} to {e(period['last_day'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:80em;margin:1.5em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border-bottom:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.9em}}.n{{text-align:right;font-variant-numeric:tabular-nums}}
.charts svg{{display:block;margin:.5em 0 1.2em}}.warn{{color:#a60}}</style></head><body>
<h1>Performance report</h1>
<p>Delivery {e(period['first_day'])} to {e(period['last_day'])} (Europe/Berlin), UTC [{e(period['start'])},
{e(period['end'])}), {delivered_text(period)}. Amounts in EUR, net of VAT. Definitions:
{e(report['definitions'])}. Generated {e(report['generated_at'])}.</p>
{f'<ul class="warn">{warnings}</ul>' if warnings else ''}
<h2>Key figures</h2>
<table><tr><th></th>{head}</tr>{''.join(rows)}</table>
<h2>Attribution waterfall (EUR)</h2>
<table><tr><th></th>{head}</tr>{''.join(wf_rows)}</table>
<div class="charts">{''.join(charts)}</div>
<h2>Owner payments per contract (net EUR)</h2>
<table><tr><th>Contract</th><th>Asset</th><th>Status</th><th>Price / fee model</th><th class=n>MWh</th>
<th class=n>Infeed payout</th><th class=n>Redispatch payout</th><th class=n>Fees</th><th>Errors</th></tr>
{contract_rows}</table>
</body></html>
"""
