"""Forecast versions kept by the sink and overlaid in the asset drill-down."""

from __future__ import annotations

import datetime as dt

import psycopg

from intraday.contract import topics
from intraday.core.qh import iso
from intraday.dashboard import figures as F
from intraday.readmodels import queries as Q
from intraday.sink.writer import rows_of, write_batch

DAY = dt.date(2025, 6, 8)
T0 = 1_749_333_600  # 2025-06-07T22:00:00Z, the day's first QH


def _version_event(asset, version_s, base_kw):
    starts = [T0 + i * 900 for i in range(-8, 100)]
    return {"schema_version": 1, "type": "forecast", "asset_id": asset, "version": iso(version_s),
            "delivery_start": [iso(t) for t in starts], "power_kw": [base_kw + i for i in range(len(starts))],
            "event_time": iso(version_s)}


def _store(url, events):
    rows = {}
    for e in events:
        for name, row in rows_of(topics.FORECASTS, e):
            rows.setdefault(name, {})[(row[0], row[1])] = row
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, rows, {})


def test_each_forecast_event_becomes_one_row_with_its_profile(fresh_db):
    _store(fresh_db, [_version_event("A", T0 - 7200, 100.0)])
    with psycopg.connect(fresh_db) as conn:
        version, starts, powers = conn.execute(
            "SELECT version, delivery_start, power_kw FROM forecast_versions WHERE asset_id = 'A'").fetchone()
    assert version == dt.datetime.fromtimestamp(T0 - 7200, dt.UTC)
    assert len(starts) == len(powers) == 108 and powers[8] == 108.0


def test_the_drill_down_picks_a_few_versions_over_the_day_and_the_newest(fresh_db):
    events = [_version_event("A", T0 - 3 * 3600 + k * 900, 1000.0 * k) for k in range(40)]
    events.append(_version_event("B", T0, 5.0))
    _store(fresh_db, events)
    with psycopg.connect(fresh_db) as conn:
        df = Q.query_forecast_versions(conn, DAY, "A", None, n=4)
        owner = Q.query_forecast_versions(conn, DAY, "A", ["B"], n=4)
    versions = sorted(df["version"].unique())
    assert len(versions) == 5  # the first of 4 spans, and the newest
    assert versions[0] == dt.datetime.fromtimestamp(T0 - 3 * 3600, dt.UTC)
    assert versions[-1] == dt.datetime.fromtimestamp(T0 - 3 * 3600 + 39 * 900, dt.UTC)
    assert df["delivery_start"].min() == dt.datetime.fromtimestamp(T0, dt.UTC)  # only the day's QHs
    assert owner.empty  # an owner of B sees nothing of A
    with psycopg.connect(fresh_db) as conn:
        asset = Q.query_asset(conn, DAY, "A", None)
    fig = F.asset_figure(asset, DAY, "A", None, versions=df)
    versions = [t for t in fig["data"] if t.get("legendgroup") == "versions"]
    assert len(versions) == 5 and all("<br>version " in t["hovertemplate"] for t in versions)
    # one legend entry for them all, so that the legend stays one row under the time axis
    assert [t["name"] for t in versions if t["showlegend"]] == ["5 forecast versions (older greyer)"]
