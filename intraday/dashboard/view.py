"""Small pure helpers of the page: change fingerprints, slider marks, table records, parsed inputs (tested without a server)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from dash import html

from intraday.core.qh import BERLIN, UTC, to_dt
from intraday.dashboard import clock as CL
from intraday.dashboard import frames as FR


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
            "detected": CL.berlin_time(r.detected_at), "qh": CL.berlin_short(r.delivery_start),
            "status": r.status, "severity": r.severity, "kind": r.kind, "subject": r.subject,
            "value": None if pd.isna(r.value) else round(float(r.value), 3),
            "threshold": None if pd.isna(r.threshold) else float(r.threshold), "unit": r.unit or "",
            "eur_at_risk": None if pd.isna(r.eur_at_risk) else round(float(r.eur_at_risk), 2),
            "action": r.suggested_action or "",
            "acknowledged": "" if not isinstance(r.acknowledged_by, str) else
            f"{r.acknowledged_by} {CL.berlin_time(r.acknowledged_at)}",
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
        expected, status = FR.feed_status(r.source, age)
        out.append({"source": r.source, "latest": CL.berlin_time(r.latest_at) if not pd.isna(r.latest_at) else "–",
                    "age_min": age, "expected": expected, "status": status})
    return out


def kpi_children(tiles: list[dict[str, Any]]) -> list[Any]:
    return [html.Div([html.Div(t["label"], className="kpi-label"),
                      html.Div([html.Span(t["value"], className="kpi-value"), html.Span(" " + t["unit"], className="kpi-unit")]),
                      html.Div(t.get("sub", ""), className="kpi-sub")],
                     className=f"kpi kpi-{t['tone']}", id=f"kpi-{t['key']}") for t in tiles]


def parse_as_of(live: Any, value: Any) -> dt.datetime | None:
    """The slider's instant (epoch seconds) unless live; malformed (forged) input means live."""
    if isinstance(live, list) and "live" in live:
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return to_dt(t) if 0 < t < 4e9 else None


def parse_day(value: Any) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
