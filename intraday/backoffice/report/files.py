"""The report's files (JSON, CSV summary, waterfall, per-QH series, contracts, HTML) and the command's body."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from intraday.backoffice.report.compute import (
    ASSET_METRICS,
    PORTFOLIO_METRICS,
    performance_report,
    report_scopes,
)
from intraday.backoffice.report.page import render_html
from intraday.backoffice.report.svg import fmt
from intraday.sink.db import connect


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"




def _csv_text(header: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in r])
    return buf.getvalue()


def report_csv(report: dict) -> str:
    """The summary CSV: one row per scope (portfolio, assets, assets total), one column per metric."""
    cols = list(dict.fromkeys(PORTFOLIO_METRICS + ASSET_METRICS))
    return _csv_text(["scope", "period_start", "period_end"] + cols,
                     ([scope, report["period"]["start"], report["period"]["end"]] + [m.get(c) for c in cols]
                      for scope, _, m in report_scopes(report)))


def waterfall_csv(report: dict) -> str:
    return _csv_text(["scope", "step", "label", "kind", "eur"],
                     ([scope, s["step"], s["label"], s["kind"], s["eur"]]
                      for scope, _, m in report_scopes(report) for s in m["waterfall"]))


def series_csv(report: dict) -> str:
    cols = ["delivery_start", "produced_mwh", "tradeable_forecast_mwh", "latest_forecast_mwh", "net_sold_mwh",
            "idx_full_eur_mwh", "vwap_eur_mwh", "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_cost_eur",
            "revenue_eur"]
    return _csv_text(cols, ([s.get(c) for c in cols] for s in report["series"]))


def contracts_csv(report: dict) -> str:
    cols = ["contract_id", "asset_id", "status", "price_model", "fee_model", "qh", "volume_mwh", "infeed_payout_eur",
            "redispatch_payout_eur", "fees_eur", "unpriced_qh", "errors"]
    return _csv_text(cols, ([("; ".join(r[c]) if c == "errors" else r.get(c)) for c in cols]
                            for r in report["contracts"]))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """``performance_report.json``, ``.csv`` (summary), ``_waterfall.csv``, ``_qh.csv``,
    ``_contracts.csv`` and ``.html`` in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        _write(out / "performance_report.json", report_json(report)),
        _write(out / "performance_report.csv", report_csv(report)),
        _write(out / "performance_report_waterfall.csv", waterfall_csv(report)),
        _write(out / "performance_report_qh.csv", series_csv(report)),
        _write(out / "performance_report_contracts.csv", contracts_csv(report)),
        _write(out / "performance_report.html", render_html(report)),
    ]


# ---------------------------------------------------------------------------------------------
# command


def run_report(database_url: str, start: dt.datetime, end: dt.datetime, out_dir: Path,
               assets: Sequence[str] | None = None) -> int:
    """``intraday report --from --to --out``: compute and write; prints the files and the headline."""
    with connect(database_url) as conn:
        report = performance_report(conn, start, end, assets)
    listed = {a["asset_id"] for a in report["assets"]}
    unknown = sorted(set(assets or ()) - listed)
    if unknown:  # a typo must not give an empty report and exit 0
        print(f"intraday report: no data in {report['period']['first_day']} .. {report['period']['last_day']}"
              f" for asset(s) {', '.join(unknown)} (known: {', '.join(sorted(listed)) or 'none'})", file=sys.stderr)
        return 1
    paths = write_report(report, Path(out_dir))
    p = report["portfolio"]
    print(f"{report['period']['first_day']} .. {report['period']['last_day']}: produced {fmt(p['produced_mwh'], 3)} "
          f"MWh, realised revenue {fmt(p['realised_revenue_eur'])} EUR, margin {fmt(p['margin_eur'])} EUR, "
          f"capture rate {fmt(p['capture_rate'], pct=True)}")
    for w in report["warnings"]:
        print(f"note: {w}")
    for path in paths:
        print(path)
    return 0
