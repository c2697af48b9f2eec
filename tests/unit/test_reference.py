"""Tests of the pandas reference (the oracle) and of the result comparison, on tiny hand-written days.

Every expected number is worked out by hand in the comment next to it: the tests never re-compute
the reference's own expressions.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    from compare import assert_results_equal, compare_results
    from reference import CONTRACT, compute_reference
except ImportError:  # tests/ imported as a package
    from tests.compare import assert_results_equal, compare_results
    from tests.reference import CONTRACT, compute_reference


# --------------------------------------------------------------------------------------------
# writers of the raw formats of data-formats.md


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_crm(day: Path, stamp: str, rows: list[tuple[str, str]]) -> None:
    """rows: (asset_id, metering_point_id); stamp: YYYYMMDD_HHMMSS."""
    lines = ["contract_id,asset_id,metering_point_id,capacity,technology,contract_begin,contract_end,"
             "price_model,price,fee_model,fee,fee_percent,email"]
    for i, (asset, meter) in enumerate(rows):
        lines.append(f"C{i},{asset},{meter},5,wind,2025-01-01,,fixed,80,fixed_as_produced,1,,desk@example.com")
    write(day / "crm" / f"asset_contracts_{stamp}.csv", "\n".join(lines) + "\n")


def write_forecast(day: Path, asset: str, file_time: str, version: str, rows: dict[str, float],
                   in_ms: bool = False) -> None:
    """One forecast version file; rows: delivery start (ISO) -> kW. Times in epoch seconds (the
    quirk) unless ``in_ms``."""
    scale = 1000 if in_ms else 1
    starts = [epoch_s(s) * scale for s in rows]
    doc = {
        "key": {"asset_id": asset, "type_id": "pv-forecast-real"},
        "column_ids": ["start", "end", "version", "power"],
        "units": ["ms", "ms", "ms", "kW"],
        "values": [starts, [s + 900 * scale for s in starts], [epoch_s(version) * scale] * len(rows),
                   list(rows.values())],
    }
    stamp = file_time.replace(":", "").replace("+0000", "")
    write(day / "vpp" / "forecasts" / f"forecast_{asset}_{stamp}.json", json.dumps(doc))


def write_live(day: Path, short: str, asset: str, samples: list[tuple[str, float]], key: str = "asset_id") -> None:
    doc = {
        "key": {key: asset},
        "column_ids": ["timestamp", "value", "quality"],
        "units": ["ms", "kW", "factor"],
        "values": [[epoch_s(t) * 1000 for t, _ in samples], [v for _, v in samples], [1.0] * len(samples)],
    }
    date = samples[0][0][:10].replace("-", "")
    write(day / "vpp" / "live_measured_infeed" / f"{short}_{date}.json", json.dumps(doc))


def write_trades(day: Path, book: str, stamp: str, rows: list[str]) -> None:
    """rows: raw `;` lines after the header; stamp: YYYYMMDDTHHMMSSmmmZ."""
    if book == "private":
        name, header = "Private_Trades", "TradeId;Side;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit"
    else:
        name, header = "Public_Trades", "TradeId;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit"
    title = f"# {name.replace('_', ' ')} - 2025-06-08 - {stamp};;;;;;;;"
    write(day / "exchange" / f"{name}-{stamp[:8]}-{stamp}.csv", "\n".join([title, header, *rows]) + "\n")


def write_estimate(day: Path, stamp: str, rows: list[str]) -> None:
    """rows: `Datum;Zeitzone;von;bis;price` shorthand; stamp: YYYY-MM-DDTHHMMSSZ."""
    lines = ["Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;AEP-Schätzer;Status"]
    for row in rows:
        datum, zone, von, bis, price = row.split(";")
        lines.append(f"{datum};{zone};{von};{bis};Ausgleichsenergiepreis;Schätzer;EUR/MWh;{price};vorläufig")
    write(day / "imbalance" / f"imbalance_price_estimation_{stamp}.csv", "\n".join(lines) + "\n")


def write_final_prices(day: Path, stamp: str, rows: list[str]) -> None:
    """rows: `Datum;Zeitzone;von;bis;unterdeckt;ueberdeckt`; stamp: YYYYMMDD_HHMMSS."""
    lines = ["Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;reBAP unterdeckt;reBAP ueberdeckt"]
    for row in rows:
        datum, zone, von, bis, short, long = row.split(";")
        lines.append(f"{datum};{zone};{von};{bis};reBAP;final;EUR/MWh;{short};{long}")
    write(day / "imbalance" / f"imbalance_price_final_{stamp}.csv", "\n".join(lines) + "\n")


def write_final_production(day: Path, meter: str, date: str, rows: list[str]) -> None:
    lines = [f"delivery_start__utc_,{meter}__kw_", *rows]
    write(day / "distribution_system_operator" / f"final_production_{meter}_{date}.csv", "\n".join(lines) + "\n")


def write_flags(day: Path, meter: str, stamp: str, rows: list[str]) -> None:
    """stamp: YYYYMMDD_HHMM."""
    lines = ["delivery_start,delivery_end,is_redispatched", *rows]
    write(day / "distribution_system_operator" / f"redispatch_flag_{meter}_{stamp}.csv", "\n".join(lines) + "\n")


def row(table: pd.DataFrame, **key) -> pd.Series:
    """The single row of ``table`` with the given key values."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in key.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, f"expected one row for {key}, found {int(mask.sum())}"
    return table[mask].iloc[0]


def empty(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# forecasts


def test_latest_forecast_is_the_newest_version_at_delivery_start_and_tradeable_the_one_at_gate_closure(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T113000Z", "2025-06-08T11:30:00Z", {"2025-06-08T12:00:00Z": 100.0})
    write_forecast(tmp_path, "WND-1", "2025-06-08T114500Z", "2025-06-08T11:45:00Z", {"2025-06-08T12:00:00Z": 200.0},
                   in_ms=True)
    write_forecast(tmp_path, "WND-1", "2025-06-08T120000Z", "2025-06-08T12:00:00Z",
                   {"2025-06-08T12:00:00Z": 300.0, "2025-06-08T12:15:00Z": 310.0})
    # a version after the delivery start is never the latest for it
    write_forecast(tmp_path, "WND-1", "2025-06-08T121500Z", "2025-06-08T12:15:00Z",
                   {"2025-06-08T12:00:00Z": 999.0, "2025-06-08T12:15:00Z": 410.0})
    # an older version (11:40) delivered late (12:30) does not replace the newer ones
    write_forecast(tmp_path, "WND-1", "2025-06-08T123000Z", "2025-06-08T11:40:00Z",
                   {"2025-06-08T12:00:00Z": 555.0, "2025-06-08T12:15:00Z": 565.0})

    fc = compute_reference(tmp_path)["forecast_qh.csv"]

    assert list(fc["delivery_start"]) == ["2025-06-08T12:00:00Z", "2025-06-08T12:15:00Z"]
    noon = row(fc, delivery_start="2025-06-08T12:00:00Z")
    assert (noon["latest_version"], noon["latest_kw"]) == ("2025-06-08T12:00:00Z", 300.0)
    assert (noon["tradeable_version"], noon["tradeable_kw"]) == ("2025-06-08T11:45:00Z", 200.0)
    quarter_past = row(fc, delivery_start="2025-06-08T12:15:00Z")
    assert (quarter_past["latest_version"], quarter_past["latest_kw"]) == ("2025-06-08T12:15:00Z", 410.0)
    assert (quarter_past["tradeable_version"], quarter_past["tradeable_kw"]) == ("2025-06-08T12:00:00Z", 310.0)


# --------------------------------------------------------------------------------------------
# best-of-infeed


def test_best_of_infeed_prefers_final_then_live_then_redispatch_then_forecast(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {
        "2025-06-08T10:00:00Z": 1000.0, "2025-06-08T10:15:00Z": 1100.0,
        "2025-06-08T10:30:00Z": 1200.0, "2025-06-08T10:45:00Z": 1300.0})
    write_live(tmp_path, "WND01", "WND-1", [
        ("2025-06-08T10:01:00Z", 500.0), ("2025-06-08T10:16:00Z", 700.0), ("2025-06-08T10:20:00Z", 800.0)])
    write_final_production(tmp_path, "MP1", "20250608", ["2025-06-08 10:00:00.000000 UTC,1865.76"])
    write_flags(tmp_path, "MP1", "20250608_0930", ["2025-06-08T10:15:00Z,2025-06-08T10:45:00Z,1"])

    infeed = compute_reference(tmp_path)["infeed_qh.csv"]

    assert len(infeed) == 4
    q1000 = row(infeed, delivery_start="2025-06-08T10:00:00Z")
    assert (q1000["best_kw"], q1000["best_source"], q1000["live_kw"], q1000["final_kw"]) == (
        1865.76, "final", 500.0, 1865.76)
    assert not q1000["redispatched"]
    q1015 = row(infeed, delivery_start="2025-06-08T10:15:00Z")
    # live mean (700 + 800) / 2 = 750 beats the redispatch flag
    assert (q1015["best_kw"], q1015["best_source"], q1015["live_kw"]) == (750.0, "live", 750.0)
    assert empty(q1015["final_kw"]) and q1015["redispatched"]
    q1030 = row(infeed, delivery_start="2025-06-08T10:30:00Z")
    assert (q1030["best_kw"], q1030["best_source"]) == (0.0, "redispatch")
    assert empty(q1030["live_kw"]) and q1030["redispatched"]
    q1045 = row(infeed, delivery_start="2025-06-08T10:45:00Z")
    assert (q1045["best_kw"], q1045["best_source"]) == (1300.0, "forecast")
    assert not q1045["redispatched"]


def test_live_mean_keeps_negative_night_values_and_a_resent_sample_replaces_the_earlier(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("SOL-1", "MP1")])
    write_live(tmp_path, "SOL01", "SOL-1", [
        ("2025-06-08T00:00:00Z", -4.0),
        ("2025-06-08T00:05:00Z", 100.0),
        ("2025-06-08T00:14:59Z", 0.0),
        ("2025-06-08T00:05:00Z", 1.0),   # re-sent: replaces the 100.0
        ("2025-06-08T00:15:00Z", 6.0),   # the next QH starts exactly here
    ], key="entity_id")

    infeed = compute_reference(tmp_path)["infeed_qh.csv"]

    first = row(infeed, delivery_start="2025-06-08T00:00:00Z")
    assert first["asset_id"] == "SOL-1"
    assert first["live_kw"] == pytest.approx(-1.0)  # (-4 + 1 + 0) / 3
    assert (first["best_kw"], first["best_source"]) == (pytest.approx(-1.0), "live")
    assert row(infeed, delivery_start="2025-06-08T00:15:00Z")["live_kw"] == 6.0


# --------------------------------------------------------------------------------------------
# trading


def test_an_hourly_trade_counts_as_four_quarter_hour_trades_with_the_same_mw_and_price(tmp_path):
    write_trades(tmp_path, "private", "20250608T090000000Z", [
        "H1;SELL;2025-06-08 10:00:00+00:00;2025-06-08 11:00:00+00:00;2025-06-08 08:00:00.000000+00:00;50.0;EUR;2.0;MWH"])

    trading = compute_reference(tmp_path)["trading_qh.csv"]

    private = trading[trading["book"] == "private"]
    assert list(private["delivery_start"]) == [
        "2025-06-08T10:00:00Z", "2025-06-08T10:15:00Z", "2025-06-08T10:30:00Z", "2025-06-08T10:45:00Z"]
    for _, r in private.iterrows():
        # 2 MW x 0.25 h = 0.5 MWh, revenue 0.5 x 50 = 25 EUR
        assert (r["trades"], r["sold_mwh"], r["bought_mwh"], r["net_mwh"]) == (1.0, 0.5, 0.0, 0.5)
        assert (r["revenue_eur"], r["vwap_eur_mwh"]) == (25.0, 50.0)
        assert empty(r["idx_full_eur_mwh"]) and empty(r["idx_3h_eur_mwh"]) and empty(r["idx_1h_eur_mwh"])
    public = row(trading, delivery_start="2025-06-08T10:30:00Z", book="public")
    assert (public["trades"], public["sold_mwh"], public["net_mwh"]) == (0.0, 0.0, 0.0)
    assert empty(public["revenue_eur"]) and empty(public["vwap_eur_mwh"])


def test_a_duplicated_trade_id_counts_once_and_vwap_and_revenue_have_the_right_signs(tmp_path):
    write_trades(tmp_path, "private", "20250608T090000000Z", [
        "T1;SELL;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 08:00:00.000000+00:00;100.0;EUR;4.0;MWH"])
    write_trades(tmp_path, "private", "20250608T100000000Z", [
        # T1 re-sent (even with another content): ignored
        "T1;BUY;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 08:00:00.000000+00:00;1.0;EUR;8.0;MWH",
        "T2;BUY;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 09:30:00.250000+00:00;-20.0;EUR;2.0;MWH"])
    write_trades(tmp_path, "public", "20250608T090000000Z", [
        "P1;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 08:00:00+00:00;70.0;EUR;3.0;MWH"])
    write_trades(tmp_path, "public", "20250608T100000000Z", [
        "P1;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 08:00:00+00:00;70.0;EUR;3.0;MWH"])

    trading = compute_reference(tmp_path)["trading_qh.csv"]

    private = row(trading, delivery_start="2025-06-08T10:00:00Z", book="private")
    assert private["trades"] == 2.0
    assert (private["sold_mwh"], private["bought_mwh"], private["net_mwh"]) == (1.0, 0.5, 0.5)
    # +4 x 0.25 x 100 - 2 x 0.25 x (-20) = 100 + 10
    assert private["revenue_eur"] == pytest.approx(110.0)
    # (100 x 4 + (-20) x 2) / (4 + 2) = 360 / 6
    assert private["vwap_eur_mwh"] == pytest.approx(60.0)
    public = row(trading, delivery_start="2025-06-08T10:00:00Z", book="public")
    assert (public["trades"], public["vwap_eur_mwh"], public["idx_full_eur_mwh"]) == (1.0, 70.0, 70.0)


def test_a_trade_id_re_sent_with_another_delivery_period_in_another_file_counts_once_per_book(tmp_path):
    # domain.md 3 (second edition): once per book whatever the delivery period; the first in file
    # order counts (T1 for 10:00), the re-sent T1 for 15:00 in a later file is ignored
    write_trades(tmp_path, "private", "20250608T090000000Z", [
        "T1;SELL;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 08:00:00+00:00;100.0;EUR;4.0;MWH"])
    write_trades(tmp_path, "private", "20250608T140000000Z", [
        "T1;SELL;2025-06-08 15:00:00+00:00;2025-06-08 16:00:00+00:00;2025-06-08 13:00:00+00:00;50.0;EUR;4.0;MWH",
        "T9;SELL;2025-06-08 15:00:00+00:00;2025-06-08 15:15:00+00:00;2025-06-08 13:00:00+00:00;50.0;EUR;2.0;MWH"])
    write_trades(tmp_path, "public", "20250608T140000000Z", [  # the same id in the other book counts there
        "T1;2025-06-08 15:00:00+00:00;2025-06-08 15:15:00+00:00;2025-06-08 13:00:00+00:00;60.0;EUR;1.0;MWH"])

    trading = compute_reference(tmp_path)["trading_qh.csv"]

    assert row(trading, delivery_start="2025-06-08T10:00:00Z", book="private")["trades"] == 1.0
    at_three = row(trading, delivery_start="2025-06-08T15:00:00Z", book="private")
    assert (at_three["trades"], at_three["sold_mwh"]) == (1.0, 0.5)  # T9 only
    assert row(trading, delivery_start="2025-06-08T15:00:00Z", book="public")["trades"] == 1.0
    assert trading[(trading["book"] == "private") & (trading["delivery_start"] == "2025-06-08T15:15:00Z")].empty \
        or row(trading, delivery_start="2025-06-08T15:15:00Z", book="private")["trades"] == 0.0


def test_index_windows_include_an_execution_exactly_three_hours_before_and_exclude_one_at_delivery_start(tmp_path):
    qh = "2025-06-08 12:00:00+00:00;2025-06-08 12:15:00+00:00"
    write_trades(tmp_path, "public", "20250608T120000000Z", [
        f"A;{qh};2025-06-08 08:59:59.999000+00:00;1000.0;EUR;1.0;MWH",  # before t - 3h: full only
        f"B;{qh};2025-06-08 09:00:00+00:00;10.0;EUR;1.0;MWH",           # exactly t - 3h: full, 3h
        f"C;{qh};2025-06-08 11:00:00+00:00;40.0;EUR;3.0;MWH",           # exactly t - 1h: full, 3h, 1h
        f"D;{qh};2025-06-08 12:00:00+00:00;500.0;EUR;2.0;MWH",          # exactly t: full only
    ])

    public = row(compute_reference(tmp_path)["trading_qh.csv"], delivery_start="2025-06-08T12:00:00Z", book="public")

    # full: (1000 + 10 + 120 + 1000) / 7 = 2130 / 7
    assert public["idx_full_eur_mwh"] == pytest.approx(304.2857142857143)
    assert public["vwap_eur_mwh"] == pytest.approx(304.2857142857143)
    assert public["idx_3h_eur_mwh"] == pytest.approx(32.5)  # (10 + 120) / 4
    assert public["idx_1h_eur_mwh"] == pytest.approx(40.0)  # 120 / 3
    assert public["trades"] == 4.0


def test_index_windows_of_an_hourly_trade_use_each_slice_start_not_the_hour_start(tmp_path):
    write_trades(tmp_path, "public", "20250608T120000000Z", [
        "H;2025-06-08 12:00:00+00:00;2025-06-08 13:00:00+00:00;2025-06-08 11:40:00+00:00;80.0;EUR;5.0;MWH"])

    trading = compute_reference(tmp_path)["trading_qh.csv"]

    first = row(trading, delivery_start="2025-06-08T12:00:00Z", book="public")
    assert (first["idx_3h_eur_mwh"], first["idx_1h_eur_mwh"]) == (80.0, 80.0)  # 11:40 in [11:00, 12:00)
    last = row(trading, delivery_start="2025-06-08T12:45:00Z", book="public")
    assert last["idx_3h_eur_mwh"] == 80.0
    assert empty(last["idx_1h_eur_mwh"])  # 11:40 not in [11:45, 12:45)


# --------------------------------------------------------------------------------------------
# imbalance


def test_imbalance_price_is_final_by_side_else_estimate_else_missing(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {
        "2025-06-08T10:00:00Z": 1000.0, "2025-06-08T10:15:00Z": 1000.0,
        "2025-06-08T10:30:00Z": 1000.0, "2025-06-08T10:45:00Z": 1000.0})  # position 0.25 MWh each
    write_live(tmp_path, "WND01", "WND-1", [
        ("2025-06-08T10:00:00Z", 600.0),    # actual 0.15 MWh: short by 0.1
        ("2025-06-08T10:15:00Z", 1400.0),   # actual 0.35 MWh: long by 0.1
        ("2025-06-08T10:30:00Z", 1400.0),
        ("2025-06-08T10:45:00Z", 1400.0)])
    write_final_prices(tmp_path, "20250609_120000", [
        "08.06.2025;UTC;10:00;10:15;200,5;50,25",
        "08.06.2025;UTC;10:15;10:30;210,0;60,0",
        "08.06.2025;UTC;10:30;10:45;300,0;",       # the long price is missing: no final for a long QH
    ])
    write_estimate(tmp_path, "2025-06-08T100000Z", ["08.06.2025;UTC;10:30;10:45;70,0"])
    write_estimate(tmp_path, "2025-06-08T110000Z", [
        "08.06.2025;UTC;10:00;10:15;999,0", "08.06.2025;UTC;10:30;10:45;80,0"])

    imb = compute_reference(tmp_path)["asset_imbalance_qh.csv"]

    short = row(imb, delivery_start="2025-06-08T10:00:00Z")
    assert (short["position_mwh"], short["actual_mwh"]) == (pytest.approx(0.25), pytest.approx(0.15))
    assert short["imbalance_mwh"] == pytest.approx(-0.1)
    assert (short["price_eur_mwh"], short["price_source"]) == (200.5, "final")  # unterdeckt
    assert short["cost_eur"] == pytest.approx(20.05)  # -(-0.1) x 200.5: we pay
    long = row(imb, delivery_start="2025-06-08T10:15:00Z")
    assert long["imbalance_mwh"] == pytest.approx(0.1)
    assert (long["price_eur_mwh"], long["price_source"]) == (60.0, "final")  # ueberdeckt
    assert long["cost_eur"] == pytest.approx(-6.0)
    estimated = row(imb, delivery_start="2025-06-08T10:30:00Z")
    assert (estimated["price_eur_mwh"], estimated["price_source"]) == (80.0, "estimate")  # newest estimate file
    assert estimated["cost_eur"] == pytest.approx(-8.0)
    missing = row(imb, delivery_start="2025-06-08T10:45:00Z")
    assert missing["price_source"] == "missing"
    assert empty(missing["price_eur_mwh"]) and empty(missing["cost_eur"])
    assert missing["imbalance_mwh"] == pytest.approx(0.1)


def test_a_redispatched_quarter_hour_carries_no_imbalance_for_the_asset(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {
        "2025-06-08T10:00:00Z": 1000.0, "2025-06-08T10:15:00Z": 1000.0})
    write_forecast(tmp_path, "WND-1", "2025-06-08T101000Z", "2025-06-08T10:10:00Z", {
        "2025-06-08T10:15:00Z": 1200.0})  # latest for 10:15, but after its gate closure (10:00)
    write_flags(tmp_path, "MP1", "20250608_0930", ["2025-06-08T10:00:00Z,2025-06-08T10:30:00Z,1"])
    write_flags(tmp_path, "MP1", "20250608_1000", ["2025-06-08T10:15:00Z,2025-06-08T10:30:00Z,0"])  # lifted
    write_estimate(tmp_path, "2025-06-08T100000Z", [
        "08.06.2025;UTC;10:00;10:15;100,0", "08.06.2025;UTC;10:15;10:30;100,0"])

    ref = compute_reference(tmp_path)
    imb, infeed = ref["asset_imbalance_qh.csv"], ref["infeed_qh.csv"]

    curtailed = row(imb, delivery_start="2025-06-08T10:00:00Z")
    assert (curtailed["position_mwh"], curtailed["actual_mwh"]) == (0.25, 0.0)
    assert (curtailed["imbalance_mwh"], curtailed["cost_eur"]) == (0.0, 0.0)
    assert (curtailed["price_eur_mwh"], curtailed["price_source"]) == (100.0, "estimate")
    assert row(infeed, delivery_start="2025-06-08T10:00:00Z")["redispatched"]
    lifted = row(imb, delivery_start="2025-06-08T10:15:00Z")
    assert not row(infeed, delivery_start="2025-06-08T10:15:00Z")["redispatched"]
    # best = latest forecast 1200 kW = 0.3 MWh; position = tradeable 1000 kW = 0.25 MWh
    assert (lifted["position_mwh"], lifted["actual_mwh"]) == (pytest.approx(0.25), pytest.approx(0.3))
    assert lifted["imbalance_mwh"] == pytest.approx(0.05)
    assert lifted["cost_eur"] == pytest.approx(-5.0)


def test_a_redispatched_asset_counts_as_delivering_its_position_in_the_portfolio_imbalance(tmp_path):
    # WND-1 curtailed at 10:00 (position 1000 kW = 0.25 MWh, best 0); SOL-2 live 2000 kW = 0.5 MWh;
    # 0.6 MWh sold: imbalance = 0.5 + 0.25 - 0.6 = 0.15 (long), not 0.5 - 0.6 = -0.1 (short)
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1"), ("SOL-2", "MP2")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {"2025-06-08T10:00:00Z": 1000.0})
    write_flags(tmp_path, "MP1", "20250608_0930", ["2025-06-08T10:00:00Z,2025-06-08T10:15:00Z,1"])
    write_live(tmp_path, "SOL02", "SOL-2", [("2025-06-08T10:00:00Z", 2000.0)])
    write_trades(tmp_path, "private", "20250608T093000000Z", [
        "S;SELL;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 09:00:00+00:00;90.0;EUR;2.4;MWH"])
    write_final_prices(tmp_path, "20250609_120000", ["08.06.2025;UTC;10:00;10:15;120,0;30,0"])

    p = row(compute_reference(tmp_path)["portfolio_qh.csv"], delivery_start="2025-06-08T10:00:00Z")

    assert p["best_of_infeed_kw"] == 2000.0  # still 0 for the curtailed park
    assert p["imbalance_mwh"] == pytest.approx(0.15)
    assert (p["imbalance_price_eur_mwh"], p["imbalance_cost_eur"]) == (30.0, pytest.approx(-4.5))  # long: ueberdeckt


def test_portfolio_imbalance_is_best_of_infeed_minus_net_sold_over_the_newest_crm_assets(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MPA"), ("SOL-2", "MPB"), ("OLD-3", "MPC")])
    write_crm(tmp_path, "20250607_043000", [("WND-1", "MPA"), ("SOL-2", "MPB")])  # newest: OLD-3 left
    write_forecast(tmp_path, "WND-1", "2025-06-08T094500Z", "2025-06-08T09:45:00Z", {"2025-06-08T10:00:00Z": 1800.0})
    write_final_production(tmp_path, "MPA", "20250608", ["2025-06-08 10:00:00.000000 UTC,2000.0"])
    write_live(tmp_path, "SOL02", "SOL-2", [("2025-06-08T10:00:00Z", 900.0), ("2025-06-08T10:10:00Z", 1100.0)])
    write_forecast(tmp_path, "OLD-3", "2025-06-08T094500Z", "2025-06-08T09:45:00Z", {"2025-06-08T11:00:00Z": 5000.0})
    write_trades(tmp_path, "private", "20250608T093000000Z", [
        "S;SELL;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 09:00:00+00:00;90.0;EUR;5.0;MWH",
        "B;BUY;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 09:10:00+00:00;95.0;EUR;1.0;MWH"])
    write_final_prices(tmp_path, "20250609_120000", ["08.06.2025;UTC;10:00;10:15;120,0;30,0"])

    ref = compute_reference(tmp_path)
    portfolio, imb = ref["portfolio_qh.csv"], ref["asset_imbalance_qh.csv"]

    assert list(portfolio["delivery_start"]) == ["2025-06-08T10:00:00Z"]  # nothing of OLD-3 at 11:00
    assert set(imb["asset_id"]) == {"WND-1", "SOL-2"}
    p = portfolio.iloc[0]
    assert p["best_of_infeed_kw"] == 3000.0  # final 2000 + live (900 + 1100) / 2
    assert (p["latest_forecast_kw"], p["tradeable_forecast_kw"]) == (1800.0, 1800.0)  # SOL-2 has none
    assert p["net_sold_mwh"] == 1.0  # 5 x 0.25 - 1 x 0.25
    assert p["imbalance_mwh"] == pytest.approx(-0.25)  # 3000 x 0.25 / 1000 - 1.0: short
    assert (p["imbalance_price_eur_mwh"], p["imbalance_price_source"]) == (120.0, "final")
    assert p["imbalance_cost_eur"] == pytest.approx(30.0)
    wind = row(imb, asset_id="WND-1")
    assert wind["imbalance_mwh"] == pytest.approx(0.05)  # 0.5 - 0.45: long
    assert (wind["price_eur_mwh"], wind["cost_eur"]) == (30.0, pytest.approx(-1.5))
    solar = row(imb, asset_id="SOL-2")  # no forecast: no position, no imbalance, no cost
    assert solar["actual_mwh"] == 0.25
    assert empty(solar["position_mwh"]) and empty(solar["imbalance_mwh"]) and empty(solar["cost_eur"])


# --------------------------------------------------------------------------------------------
# time


def test_on_the_autumn_dst_day_the_two_berlin_hours_from_two_to_three_stay_separate_utc_quarter_hours(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    starts = pd.date_range("2025-10-25T22:00:00Z", "2025-10-26T22:45:00Z", freq="15min")  # the Berlin day
    write_forecast(tmp_path, "WND-1", "2025-10-25T210000Z", "2025-10-25T21:00:00Z",
                   {s.strftime("%Y-%m-%dT%H:%M:%SZ"): float(i) for i, s in enumerate(starts)}, in_ms=True)
    write_live(tmp_path, "WND01", "WND-1", [
        ("2025-10-26T00:30:00Z", 10.0),   # 02:30 summer time
        ("2025-10-26T01:30:00Z", 20.0)])  # 02:30 winter time
    write_estimate(tmp_path, "2025-10-26T120000Z", [
        "26.10.2025;Europe/Berlin;01:00;01:15;5,0",
        "26.10.2025;Europe/Berlin;02:30;02:45;11,0",
        "26.10.2025;Europe/Berlin;02:30;02:45;22,0"])

    ref = compute_reference(tmp_path)

    assert len(ref["forecast_qh.csv"]) == 100
    assert len(ref["portfolio_qh.csv"]) == 100
    infeed = ref["infeed_qh.csv"]
    assert row(infeed, delivery_start="2025-10-26T00:30:00Z")["live_kw"] == 10.0
    assert row(infeed, delivery_start="2025-10-26T01:30:00Z")["live_kw"] == 20.0
    imb = ref["asset_imbalance_qh.csv"]
    assert row(imb, delivery_start="2025-10-25T23:00:00Z")["price_eur_mwh"] == 5.0
    summer = row(imb, delivery_start="2025-10-26T00:30:00Z")
    winter = row(imb, delivery_start="2025-10-26T01:30:00Z")
    assert (summer["price_eur_mwh"], winter["price_eur_mwh"]) == (11.0, 22.0)
    # the forecast's row index is its kW: 00:30Z is row 10, 01:30Z row 14
    assert (summer["position_mwh"], winter["position_mwh"]) == (0.0025, 0.0035)


# --------------------------------------------------------------------------------------------
# robustness


def test_malformed_rows_and_files_are_skipped_without_stopping_the_rest(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    doc = {"key": {"asset_id": "WND-1"}, "column_ids": ["start", "end", "version", "power"],
           "units": ["ms", "ms", "ms", "kW"],
           "values": [[epoch_s("2025-06-08T10:00:00Z"), epoch_s("2025-06-08T10:15:00Z"), epoch_s("2025-06-08T10:30:00Z")],
                      [0, 0, 0], [epoch_s("2025-06-08T09:00:00Z")] * 3, [None, "n/a", 42.0]]}
    write(tmp_path / "vpp" / "forecasts" / "forecast_WND-1_2025-06-08T090000Z.json", json.dumps(doc))
    write(tmp_path / "vpp" / "forecasts" / "forecast_WND-1_2025-06-08T091500Z.json", '{"key": {"asset_id"')
    qh = "2025-06-08 10:30:00+00:00;2025-06-08 10:45:00+00:00"
    write_trades(tmp_path, "private", "20250608T090000000Z", [
        f"X1;SELL;{qh};2025-06-08 09:00:00+00:00;abc;EUR;1.0;MWH",
        "garbage",
        f"X2;SELL;{qh};2025-06-08 09:00:00+00:00;10.0;EUR;1.0;MWH;extra;fields",
        f"X3;HOLD;{qh};2025-06-08 09:00:00+00:00;10.0;EUR;1.0;MWH",
        f'X5;SELL;"{qh};2025-06-08 09:00:00+00:00;10.0;EUR;1.0;MWH',  # a stray quote spoils only its row
        f"X4;SELL;{qh};2025-06-08 09:00:00+00:00;10.0;EUR;2.0;MWH"])
    write_estimate(tmp_path, "2025-06-08T100000Z", [
        "31.02.2025;UTC;10:30;10:45;1,0", "08.06.2025;UTC;10:30;10:45;abc", "08.06.2025;UTC;10:30;10:45;7,5"])

    ref = compute_reference(tmp_path)

    fc = ref["forecast_qh.csv"]
    assert list(fc["delivery_start"]) == ["2025-06-08T10:30:00Z"]
    assert fc.iloc[0]["latest_kw"] == 42.0
    private = row(ref["trading_qh.csv"], delivery_start="2025-06-08T10:30:00Z", book="private")
    assert (private["trades"], private["sold_mwh"]) == (1.0, 0.5)
    assert row(ref["asset_imbalance_qh.csv"], delivery_start="2025-06-08T10:30:00Z")["price_eur_mwh"] == 7.5


def test_the_result_tables_have_exactly_the_contract_columns(tmp_path):
    write_crm(tmp_path, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(tmp_path, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {"2025-06-08T10:00:00Z": 1.0})

    ref = compute_reference(tmp_path)

    assert set(ref) == {"forecast_qh.csv", "infeed_qh.csv", "trading_qh.csv", "asset_imbalance_qh.csv",
                        "portfolio_qh.csv"}
    assert list(ref["portfolio_qh.csv"].columns) == [
        "delivery_start", "best_of_infeed_kw", "latest_forecast_kw", "tradeable_forecast_kw", "net_sold_mwh",
        "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_price_source", "imbalance_cost_eur"]
    for name, table in ref.items():
        assert list(table.columns) == CONTRACT[name]
    assert ref["infeed_qh.csv"]["redispatched"].dtype == bool


# --------------------------------------------------------------------------------------------
# compare_results


@pytest.fixture
def small_reference() -> dict[str, pd.DataFrame]:
    infeed = pd.DataFrame({
        "asset_id": ["WND-1", "WND-1"],
        "delivery_start": ["2025-06-08T10:00:00Z", "2025-06-08T10:15:00Z"],
        "best_kw": [1865.76, 0.0], "best_source": ["final", "redispatch"],
        "live_kw": [500.0, np.nan], "final_kw": [1865.76, np.nan], "redispatched": [False, True],
    })
    return {"infeed_qh.csv": infeed}


INFEED_HEADER = "asset_id,delivery_start,best_kw,best_source,live_kw,final_kw,redispatched"


def test_compare_accepts_equal_files_whatever_the_spelling_of_booleans_and_utc(tmp_path, small_reference):
    write(tmp_path / "infeed_qh.csv", "\n".join([
        INFEED_HEADER + ",extra_column",
        "WND-1,2025-06-08T10:00:00+00:00,1865.7600000001,final,500,1865.76,False,x",
        "WND-1,2025-06-08T10:15:00Z,0,redispatch,,,true,y"]) + "\n")
    assert compare_results(tmp_path, small_reference) == []
    write(tmp_path / "infeed_qh.csv", "\n".join([
        INFEED_HEADER, "WND-1,2025-06-08T10:00:00Z,1865.76,final,500.0,1865.76,0",
        "WND-1,2025-06-08T10:15:00Z,0.0,redispatch,,,True"]) + "\n")
    assert_results_equal(tmp_path, small_reference)


def test_compare_reports_a_changed_value(tmp_path, small_reference):
    write(tmp_path / "infeed_qh.csv", "\n".join([
        INFEED_HEADER, "WND-1,2025-06-08T10:00:00Z,1865.77,final,500,1865.76,false",
        "WND-1,2025-06-08T10:15:00Z,0,redispatch,,,true"]) + "\n")
    lines = compare_results(tmp_path, small_reference)
    assert any("best_kw" in line and "1865.77" in line for line in lines), lines
    with pytest.raises(AssertionError, match="best_kw"):
        assert_results_equal(tmp_path, small_reference)


def test_compare_reports_a_value_where_the_reference_is_empty_and_a_wrong_boolean(tmp_path, small_reference):
    write(tmp_path / "infeed_qh.csv", "\n".join([
        INFEED_HEADER, "WND-1,2025-06-08T10:00:00Z,1865.76,final,500,1865.76,true",
        "WND-1,2025-06-08T10:15:00Z,0,redispatch,n/a,,true"]) + "\n")
    lines = compare_results(tmp_path, small_reference)
    assert any("live_kw" in line for line in lines), lines
    assert any("redispatched" in line for line in lines), lines


def test_compare_reports_a_missing_key_and_an_extra_key(tmp_path, small_reference):
    write(tmp_path / "infeed_qh.csv", "\n".join([
        INFEED_HEADER, "WND-1,2025-06-08T10:00:00Z,1865.76,final,500,1865.76,false",
        "WND-1,2025-06-08T10:30:00Z,0,forecast,,,false"]) + "\n")
    lines = compare_results(tmp_path, small_reference)
    assert any("missing" in line and "10:15" in line for line in lines), lines
    assert any("not in the reference" in line and "10:30" in line for line in lines), lines


def test_compare_reports_a_wrong_column_order_and_a_missing_file(tmp_path, small_reference):
    write(tmp_path / "infeed_qh.csv", "\n".join([
        "asset_id,delivery_start,best_source,best_kw,live_kw,final_kw,redispatched",
        "WND-1,2025-06-08T10:00:00Z,final,1865.76,500,1865.76,false",
        "WND-1,2025-06-08T10:15:00Z,redispatch,0,,,true"]) + "\n")
    lines = compare_results(tmp_path, small_reference)
    assert any("columns must start with" in line for line in lines), lines
    missing = compare_results(tmp_path, {**small_reference, "portfolio_qh.csv": pd.DataFrame()})
    assert any("portfolio_qh.csv: file missing" in line for line in missing), missing


def test_an_exported_reference_compares_equal_to_itself(tmp_path):
    day = tmp_path / "day"
    write_crm(day, "20250601_043000", [("WND-1", "MP1")])
    write_forecast(day, "WND-1", "2025-06-08T090000Z", "2025-06-08T09:00:00Z", {
        "2025-06-08T10:00:00Z": 1000.0, "2025-06-08T10:15:00Z": 1100.0})
    write_live(day, "WND01", "WND-1", [("2025-06-08T10:01:00Z", 500.0)])
    write_flags(day, "MP1", "20250608_0930", ["2025-06-08T10:15:00Z,2025-06-08T10:30:00Z,1"])
    write_trades(day, "public", "20250608T090000000Z", [
        "P1;2025-06-08 10:00:00+00:00;2025-06-08 11:00:00+00:00;2025-06-08 08:00:00+00:00;70.0;EUR;3.0;MWH"])
    ref = compute_reference(day)
    out = tmp_path / "out"
    out.mkdir()
    for name, table in ref.items():
        table.to_csv(out / name, index=False)

    assert compare_results(out, ref) == []
