"""The file parsers: every source kind of data-formats.md, its quirks and its malformed inputs.

Each test writes a small file into ``tmp_path`` and checks the events (schemas of
``intraday.contract.events``) or the rejections (file, line, reason) that come out.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intraday.contract import topics
from intraday.core.qh import BERLIN, delivery_day_qhs, parse_iso
from intraday.ingest.day import parse_day
from intraday.ingest.formats.crm import parse_contract_file
from intraday.ingest.formats.dso import (
    parse_final_production_file,
    parse_redispatch_compensation_file,
    parse_redispatch_flag_file,
)
from intraday.ingest.formats.exchange import parse_trade_file
from intraday.ingest.formats.imbalance import parse_imbalance_file
from intraday.ingest.formats.vpp import parse_forecast_file, parse_live_infeed_file, parse_technical_data_file
from intraday.ingest.records import ParsedDay, Record, Rejection, classify
from intraday.ingest.values import parse_decimal_comma

T0 = 1749340800  # 2025-06-08T00:00:00Z
COMMON = {"schema_version", "type", "event_time", "source_file", "source_line"}


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def table(key: dict, columns: dict[str, list], units: dict[str, str] | None = None) -> str:
    names = list(columns)
    return json.dumps({"key": key, "column_ids": names,
                       "units": [(units or {}).get(n, "") for n in names],
                       "values": [columns[n] for n in names]})


def reasons(rejections: list[Rejection]) -> list[str]:
    return [r.reason for r in rejections]


# ---------------------------------------------------------------------------------------------
# forecasts

FORECAST = "vpp/forecasts/forecast_WND-DE-003_2025-06-08T000000Z.json"


def test_a_forecast_file_becomes_one_event_with_iso_starts_and_kw_in_the_schema(tmp_path):
    starts = [T0 + i * 900 for i in range(3)]
    doc = table({"asset_id": "WND-DE-003", "type_id": "pv-forecast-real"},
                {"start": starts, "end": [s + 900 for s in starts], "version": [T0] * 3,
                 "power": [10.0, 12.5, 0]}, {"start": "ms", "end": "ms", "version": "ms"})
    records, rejections = parse_forecast_file(write(tmp_path, FORECAST, doc), FORECAST)
    assert rejections == []
    [r] = records
    assert (r.topic, r.key, r.event_time_s) == (topics.FORECASTS, "WND-DE-003", T0)
    assert set(r.event) == COMMON | {"asset_id", "type_id", "version", "delivery_start", "power_kw"}
    assert r.event["type"] == "forecast" and r.event["schema_version"] == 1
    assert r.event["version"] == r.event["event_time"] == "2025-06-08T00:00:00Z"
    assert r.event["delivery_start"] == ["2025-06-08T00:00:00Z", "2025-06-08T00:15:00Z",
                                         "2025-06-08T00:30:00Z"]
    assert r.event["power_kw"] == [10.0, 12.5, 0.0]
    assert (r.event["source_file"], r.event["source_line"], r.event["type_id"]) == (
        FORECAST, 0, "pv-forecast-real")


def test_forecast_columns_are_read_by_name_whatever_their_order(tmp_path):
    doc = table({"asset_id": "WND-DE-003"},
                {"power": [7.0], "version": [T0], "end": [T0 + 1800], "start": [T0 + 900]})
    [r], _ = parse_forecast_file(write(tmp_path, FORECAST, doc), FORECAST)
    assert r.event["delivery_start"] == ["2025-06-08T00:15:00Z"] and r.event["power_kw"] == [7.0]


def test_timestamps_labelled_ms_are_seconds_or_milliseconds_by_magnitude(tmp_path):
    doc = table({"asset_id": "WND-DE-003"},
                {"start": [float(T0), (T0 + 900) * 1000], "version": [T0 * 1000, float(T0)],
                 "power": [1, 2]}, {"start": "ms", "version": "ms"})
    [r], rej = parse_forecast_file(write(tmp_path, FORECAST, doc), FORECAST)
    assert rej == []
    assert r.event["delivery_start"] == ["2025-06-08T00:00:00Z", "2025-06-08T00:15:00Z"]


def test_rows_of_one_file_with_different_versions_become_one_event_per_version(tmp_path):
    doc = table({"asset_id": "WND-DE-003"},
                {"start": [T0 + 900, T0 + 1800, T0 + 1800, T0 + 2700],
                 "version": [T0 + 900, T0, T0 + 900, T0], "power": [1, 2, 3, 4]})
    records, _ = parse_forecast_file(write(tmp_path, FORECAST, doc), FORECAST)
    assert [(r.event["version"], r.event["delivery_start"], r.event["power_kw"]) for r in records] == [
        ("2025-06-08T00:00:00Z", ["2025-06-08T00:30:00Z", "2025-06-08T00:45:00Z"], [2.0, 4.0]),
        ("2025-06-08T00:15:00Z", ["2025-06-08T00:15:00Z", "2025-06-08T00:30:00Z"], [1.0, 3.0]),
    ]
    assert [r.event_time_s for r in records] == [T0, T0 + 900]


@pytest.mark.parametrize("power, words", [(None, "power is not a number (None)"),
                                          ("abc", "power is not a number ('abc')"),
                                          (float("nan"), "power is NaN")])
def test_a_forecast_row_with_a_non_numeric_power_is_rejected_and_the_other_rows_go_out(tmp_path, power, words):
    text = table({"asset_id": "WND-DE-003"},
                 {"start": [T0, T0 + 900, T0 + 1800], "version": [T0] * 3, "power": [1.0, power, 3.0]})
    records, rejections = parse_forecast_file(write(tmp_path, FORECAST, text), FORECAST)
    assert records[0].event["power_kw"] == [1.0, 3.0]
    [rej] = rejections
    assert rej.reason.startswith("row 1: ") and words in rej.reason
    assert (rej.topic, rej.line, rej.source_file) == (topics.FORECASTS, 0, FORECAST)


def test_a_nan_literal_in_the_json_text_is_a_rejected_row_not_a_broken_file(tmp_path):
    text = ('{"key": {"asset_id": "WND-DE-003"}, "column_ids": ["start", "version", "power"], '
            f'"values": [[{T0}, {T0 + 900}], [{T0}, {T0}], [NaN, 5.0]]}}')
    records, rejections = parse_forecast_file(write(tmp_path, FORECAST, text), FORECAST)
    assert records[0].event["power_kw"] == [5.0]
    assert reasons(rejections) == ["row 0: power is NaN"]


def test_a_forecast_row_whose_start_is_not_on_a_quarter_hour_is_rejected(tmp_path):
    text = table({"asset_id": "WND-DE-003"},
                 {"start": [T0, T0 + 60], "version": [T0, T0], "power": [1.0, 2.0]})
    records, rejections = parse_forecast_file(write(tmp_path, FORECAST, text), FORECAST)
    assert records[0].event["delivery_start"] == ["2025-06-08T00:00:00Z"]
    assert reasons(rejections) == ["row 1: start 2025-06-08T00:01:00Z is not aligned to 15 min"]


def test_truncated_json_is_a_whole_file_rejection_with_the_reason(tmp_path):
    text = table({"asset_id": "WND-DE-003"}, {"start": [T0], "version": [T0], "power": [1.0]})
    records, [rej] = parse_forecast_file(write(tmp_path, FORECAST, text[:-25]), FORECAST)
    assert records == []
    assert rej.line == 0 and rej.reason.startswith("truncated JSON: ")
    assert rej.raw == text[:-25][:200]
    assert rej.message().startswith(f"{FORECAST}:0: truncated JSON: ") and "\n" not in rej.message()


def test_an_empty_file_is_a_whole_file_rejection(tmp_path):
    _, [rej] = parse_forecast_file(write(tmp_path, FORECAST, ""), FORECAST)
    assert (rej.line, rej.reason) == (0, "empty file")


def test_a_forecast_without_the_power_column_is_rejected_as_missing_a_column(tmp_path):
    text = table({"asset_id": "WND-DE-003"}, {"start": [T0], "version": [T0], "kw": [1.0]})
    _, [rej] = parse_forecast_file(write(tmp_path, FORECAST, text), FORECAST)
    assert rej.reason == "missing column power"


def test_a_forecast_of_an_asset_unknown_to_the_master_data_is_rejected_whole(tmp_path):
    text = table({"asset_id": "WND-DE-003"}, {"start": [T0], "version": [T0], "power": [1.0]})
    path = write(tmp_path, FORECAST, text)
    records, [rej] = parse_forecast_file(path, FORECAST, known_assets={"SOL-DE-001"})
    assert records == [] and rej.reason == "unknown asset WND-DE-003" and rej.line == 0
    assert len(parse_forecast_file(path, FORECAST, known_assets=None)[0]) == 1


# ---------------------------------------------------------------------------------------------
# live infeed

LIVE = "vpp/live_measured_infeed/WND01_20250608.json"


def test_live_samples_keep_negative_night_values_and_read_the_asset_from_entity_id(tmp_path):
    text = table({"entity_id": "WND-DE-003"},
                 {"timestamp": [T0 * 1000, T0 + 61.5], "value": [-0.4, 1200.0], "quality": [1, None]},
                 {"timestamp": "ms", "value": "kW", "quality": "factor"})
    records, rejections = parse_live_infeed_file(write(tmp_path, LIVE, text), LIVE)
    assert rejections == []
    assert [(r.key, r.event_time_s, r.event["timestamp"], r.event["value_kw"], r.event["quality"])
            for r in records] == [("WND-DE-003", T0, "2025-06-08T00:00:00Z", -0.4, 1),
                                  ("WND-DE-003", T0 + 61.5, "2025-06-08T00:01:01.500000Z", 1200.0, None)]
    assert set(records[0].event) == COMMON | {"asset_id", "timestamp", "value_kw", "quality", "source_row"}
    assert [r.event["source_row"] for r in records] == [0, 1]  # orders a re-sent sample
    assert records[0].topic == topics.LIVE_INFEED and records[0].event["type"] == "live_sample"


def test_a_live_sample_without_a_value_is_rejected_and_the_others_go_out(tmp_path):
    text = ('{"key": {"asset_id": "WND-DE-003"}, "column_ids": ["value", "timestamp"], '
            f'"values": [[null, NaN, 3.5], [{T0}, {T0 + 60}, {T0 + 120}]]}}')
    records, rejections = parse_live_infeed_file(write(tmp_path, LIVE, text), LIVE)
    assert [r.event["value_kw"] for r in records] == [3.5]
    assert [r.event["quality"] for r in records] == [None]
    assert reasons(rejections) == ["row 0: value is not a number (None)", "row 1: value is NaN"]


def test_a_live_file_of_an_unknown_asset_is_rejected_whole(tmp_path):
    text = table({"asset_id": "XXX-9"}, {"timestamp": [T0], "value": [1.0]})
    _, [rej] = parse_live_infeed_file(write(tmp_path, LIVE, text), LIVE, known_assets={"WND-DE-003"})
    assert rej.reason == "unknown asset XXX-9" and rej.topic == topics.LIVE_INFEED


# ---------------------------------------------------------------------------------------------
# technical data

TECH = "vpp/technical_data/technical_data_2025-06-08T123000Z.json"


def test_technical_data_gives_one_event_per_asset_at_the_file_name_time(tmp_path):
    doc = {"assets": [
        {"asset_id": "WND-DE-003", "name": "Wind 3", "type": "wind",
         "location": {"latitude": 53.1, "longitude": 8.2, "timezone": "Europe/Berlin"},
         "technical_attributes": {"capacity_kw": 3600, "hub_height_m": 120}, "status": "active",
         "owner": {"name": "Owner A"}},
        {"name": "no id"}]}
    records, rejections = parse_technical_data_file(write(tmp_path, TECH, json.dumps(doc)), TECH)
    [r] = records
    assert (r.topic, r.key, r.event_time_s) == (topics.TECHNICAL_DATA, "WND-DE-003", T0 + 12.5 * 3600)
    assert r.event == {"schema_version": 1, "type": "technical_data", "event_time": "2025-06-08T12:30:00Z",
                       "source_file": TECH, "source_line": 0, "asset_id": "WND-DE-003", "name": "Wind 3",
                       "asset_type": "wind", "capacity_kw": 3600.0, "status": "active",
                       "owner": "Owner A", "latitude": 53.1, "longitude": 8.2,
                       "timezone": "Europe/Berlin"}
    assert reasons(rejections) == ["asset 1: no asset_id"]


# ---------------------------------------------------------------------------------------------
# CRM contracts

CRM = "crm/asset_contracts_20250601_043000.csv"
CRM_HEADER = ("contract_id,asset_id,metering_point_id,capacity,technology,contract_begin,contract_end,"
              "price_model,price,fee_model,fee,fee_percent,email")
GOOD_CONTRACT = "C1,WND-DE-003,MP003,3.6,wind,2025-01-01,,fixed,85.5,fixed_as_produced,1.2,,a@b.de"


def test_a_crm_row_becomes_a_contract_event_with_numbers_and_nulls(tmp_path):
    records, rejections = parse_contract_file(write(tmp_path, CRM, f"{CRM_HEADER}\n{GOOD_CONTRACT}\n"), CRM)
    assert rejections == []
    [r] = records
    assert (r.topic, r.key, r.event_time_s) == (topics.CRM_CONTRACTS, "WND-DE-003",
                                                parse_iso("2025-06-01T04:30:00Z"))
    assert r.event == {
        "schema_version": 1, "type": "contract", "event_time": "2025-06-01T04:30:00Z",
        "source_file": CRM, "source_line": 2, "file_time": "2025-06-01T04:30:00Z", "contract_id": "C1",
        "asset_id": "WND-DE-003", "metering_point_id": "MP003", "capacity_mw": 3.6,
        "technology": "wind", "contract_begin": "2025-01-01", "contract_end": None,
        "price_model": "fixed", "price_eur_mwh": 85.5, "fee_model": "fixed_as_produced", "fee": 1.2,
        "fee_percent": None, "email": "a@b.de", "errors": []}


@pytest.mark.parametrize("row, error", [
    ("C1,A,MP,3.6,wind,2025-01-01,,fixed,,fixed_as_produced,1.2,,", "price_model fixed requires price"),
    ("C1,A,MP,3.6,wind,2025-01-01,,auction,,fixed_as_produced,1.2,,", "unknown price_model 'auction'"),
    ("C1,A,MP,3.6,wind,2025-01-01,,,,fixed_as_produced,1.2,,", "missing price_model"),
    ("C1,A,,3.6,wind,2025-01-01,,market,,fixed_as_produced,1.2,,", "missing metering_point_id"),
    ("C1,A,MP,3.6,wind,,,market,,fixed_as_produced,1.2,,", "missing contract_begin"),
    ("C1,A,MP,3.6,wind,2025-01-01,,market,,flat,1.2,,", "unknown fee_model 'flat'"),
    ("C1,A,MP,3.6,wind,2025-01-01,,market,,fixed_as_produced,,,", "fee_model fixed_as_produced requires fee"),
    ("C1,A,MP,3.6,wind,2025-01-01,,market,,fixed_for_capacity,,,", "fee_model fixed_for_capacity requires fee"),
    ("C1,A,MP,,wind,2025-01-01,,market,,fixed_for_capacity,100,,", "fee_model fixed_for_capacity requires capacity"),
    ("C1,A,MP,3.6,wind,2025-01-01,,market,,percent_of_market,,,",
     "fee_model percent_of_market requires fee_percent"),
    ("C1,A,MP,3.6,wind,2025-13-01,,market,,percent_of_market,,2,", "bad date in contract_begin: '2025-13-01'"),
    ("C1,A,MP,3.6,wind,2025-06-01,2025-05-31,market,,percent_of_market,,2,", "contract_end before contract_begin"),
    ("C1,A,MP,abc,wind,2025-06-01,,market,,percent_of_market,,2,", "bad number in capacity: 'abc'"),
])
def test_an_inconsistent_contract_is_kept_and_flagged_with_the_problem(tmp_path, row, error):
    [r], rejections = parse_contract_file(write(tmp_path, CRM, f"{CRM_HEADER}\n{row}\n"), CRM)
    assert rejections == []
    assert error in r.event["errors"]


def test_a_contract_with_several_problems_lists_every_one(tmp_path):
    row = "C1,A,MP,,wind,bad,,fixed,,fixed_for_capacity,,,"
    [r], _ = parse_contract_file(write(tmp_path, CRM, f"{CRM_HEADER}\n{row}\n"), CRM)
    assert r.event["errors"] == ["bad date in contract_begin: 'bad'", "price_model fixed requires price",
                                 "fee_model fixed_for_capacity requires fee",
                                 "fee_model fixed_for_capacity requires capacity"]


def test_a_crm_row_with_the_wrong_number_of_columns_is_rejected_with_its_line(tmp_path):
    text = f"{CRM_HEADER}\n{GOOD_CONTRACT}\nC2,SOL-1,MP9,1.0\n"
    records, [rej] = parse_contract_file(write(tmp_path, CRM, text), CRM)
    assert len(records) == 1
    assert (rej.line, rej.reason, rej.raw) == (3, "expected 13 fields, found 4", "C2,SOL-1,MP9,1.0")


def test_a_crm_file_with_the_wrong_delimiter_is_rejected_whole(tmp_path):
    text = f"{CRM_HEADER.replace(',', ';')}\n{GOOD_CONTRACT.replace(',', ';')}\n"
    records, [rej] = parse_contract_file(write(tmp_path, CRM, text), CRM)
    assert records == [] and (rej.line, rej.reason) == (0, "wrong delimiter (expected ',')")


def test_a_crm_file_without_a_column_is_rejected_whole_naming_the_column(tmp_path):
    header = CRM_HEADER.replace(",fee_percent", "")
    _, [rej] = parse_contract_file(write(tmp_path, CRM, f"{header}\nC1\n"), CRM)
    assert (rej.line, rej.reason) == (0, "missing column fee_percent")


# ---------------------------------------------------------------------------------------------
# exchange trades

PRIVATE = "exchange/Private_Trades-20250608-20250608T220000000Z.csv"
PUBLIC = "exchange/Public_Trades-20250608-20250608T220000000Z.csv"
PRIVATE_HEAD = ("# Private Trades - 2025-06-08 - export;;;;;;;;\n"
                "TradeId;Side;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit\n")
PUBLIC_HEAD = ("# Public Trades - 2025-06-08 - export;;;;;;;\n"
               "TradeId;DeliveryStart;DeliveryEnd;ExecutionTime;Price;Currency;Volume;VolumeUnit\n")


def private_row(tid="T1", side="SELL", ds="2025-06-08 10:00:00+00:00", de="2025-06-08 10:15:00+00:00",
                ex="2025-06-07 15:03:44.509000+00:00", price="61.9", volume="2.5") -> str:
    return f"{tid};{side};{ds};{de};{ex};{price};EUR;{volume};MWH\n"


def test_a_private_trade_is_keyed_by_delivery_start_at_its_execution_time(tmp_path):
    records, rejections = parse_trade_file(write(tmp_path, PRIVATE, PRIVATE_HEAD + private_row()), PRIVATE)
    assert rejections == []
    [r] = records
    assert (r.topic, r.key) == (topics.PRIVATE_TRADES, "2025-06-08T10:00:00Z")
    assert r.event_time_s == pytest.approx(parse_iso("2025-06-07T15:03:44.509Z"))
    assert r.event == {
        "schema_version": 1, "type": "trade", "event_time": "2025-06-07T15:03:44.509000Z",
        "source_file": PRIVATE, "source_line": 3, "book": "private", "trade_id": "T1", "side": "SELL",
        "delivery_start": "2025-06-08T10:00:00Z", "delivery_end": "2025-06-08T10:15:00Z",
        "execution_time": "2025-06-07T15:03:44.509000Z", "price_eur_mwh": 61.9, "volume_mw": 2.5}


def test_a_public_trade_has_no_side_and_may_have_a_negative_price_and_an_hourly_range(tmp_path):
    text = PUBLIC_HEAD + "P1;2025-06-08 12:00:00+00:00;2025-06-08 13:00:00+00:00;2025-06-08 11:00:00+00:00;-14.5;EUR;10;MWH\n"
    [r], rejections = parse_trade_file(write(tmp_path, PUBLIC, text), PUBLIC)
    assert rejections == []
    assert (r.topic, r.event["book"], r.event["side"], r.event["price_eur_mwh"]) == (
        topics.PUBLIC_TRADES, "public", None, -14.5)
    assert (r.event["delivery_start"], r.event["delivery_end"]) == ("2025-06-08T12:00:00Z", "2025-06-08T13:00:00Z")
    assert r.event["execution_time"] == "2025-06-08T11:00:00Z"


def test_trade_timestamps_with_other_offsets_are_converted_to_utc(tmp_path):
    row = private_row(ds="2025-06-08 12:00:00+02:00", de="2025-06-08T12:15:00+02:00",
                      ex="2025-06-08 09:30:00.250000+01:00")
    [r], _ = parse_trade_file(write(tmp_path, PRIVATE, PRIVATE_HEAD + row), PRIVATE)
    assert (r.key, r.event["delivery_end"], r.event["execution_time"]) == (
        "2025-06-08T10:00:00Z", "2025-06-08T10:15:00Z", "2025-06-08T08:30:00.250000Z")


def test_trade_columns_are_read_by_name_whatever_their_order(tmp_path):
    text = ("# Private Trades\n"
            "Side;Volume;TradeId;Price;ExecutionTime;DeliveryEnd;DeliveryStart\n"
            "BUY;1.5;T9;70;2025-06-08 08:00:00+00:00;2025-06-08 10:15:00+00:00;2025-06-08 10:00:00+00:00\n")
    [r], _ = parse_trade_file(write(tmp_path, PRIVATE, text), PRIVATE)
    assert (r.event["side"], r.event["volume_mw"], r.event["price_eur_mwh"], r.key) == (
        "BUY", 1.5, 70.0, "2025-06-08T10:00:00Z")


@pytest.mark.parametrize("row, reason", [
    (private_row(price="61,9"), "bad number in Price: '61,9'"),
    (private_row(volume="NaN"), "bad number in Volume: 'NaN'"),
    (private_row(volume="-1"), "Volume must be positive: '-1'"),
    (private_row(side="HOLD"), "unknown Side 'HOLD'"),
    (private_row(ds="2025-06-08 10:05:00+00:00"), "delivery range is not aligned to quarter-hours"),
    (private_row(de="2025-06-08 10:00:00+00:00"), "delivery end is not after delivery start"),
    (private_row(de="2099-01-01 00:00:00+00:00"), "delivery range longer than 48 h"),  # not 2.6M slices
    (private_row(ds="2025-06-08 10:00:00"), "bad DeliveryStart '2025-06-08 10:00:00': no time zone"),
    (private_row(ex="yesterday"), "bad ExecutionTime 'yesterday'"),
    ("T7;SELL;2025-06-08 10:00:00+00:00;62.0\n", "expected 9 fields, found 4"),
])
def test_a_bad_trade_row_is_rejected_with_its_line_and_the_good_rows_go_out(tmp_path, row, reason):
    text = PRIVATE_HEAD + private_row(tid="A") + row + private_row(tid="B")
    records, [rej] = parse_trade_file(write(tmp_path, PRIVATE, text), PRIVATE)
    assert [r.event["trade_id"] for r in records] == ["A", "B"]
    assert rej.reason.startswith(reason)
    assert (rej.topic, rej.line, rej.raw) == (topics.PRIVATE_TRADES, 4, row.rstrip("\n"))
    assert rej.message() == f"{PRIVATE}:4: {rej.reason}"


def test_a_private_trades_file_without_the_side_column_is_rejected_whole(tmp_path):
    text = PUBLIC_HEAD + "P1;2025-06-08 12:00:00+00:00;2025-06-08 12:15:00+00:00;2025-06-08 11:00:00+00:00;1;EUR;1;MWH\n"
    records, [rej] = parse_trade_file(write(tmp_path, PRIVATE, text), PRIVATE)
    assert records == [] and (rej.line, rej.reason) == (0, "missing column Side")


def test_a_trades_file_with_the_wrong_delimiter_is_rejected_whole(tmp_path):
    text = (PRIVATE_HEAD + private_row()).replace(";", ",")
    _, [rej] = parse_trade_file(write(tmp_path, PRIVATE, text), PRIVATE)
    assert (rej.line, rej.reason, rej.topic) == (0, "wrong delimiter (expected ';')", topics.PRIVATE_TRADES)


def test_a_trade_re_sent_in_another_file_of_the_same_book_is_published_once(tmp_path):
    later = "exchange/Private_Trades-20250608-20250608T230000000Z.csv"
    write(tmp_path, PRIVATE, PRIVATE_HEAD + private_row(tid="T1") + private_row(tid="T2", price="70"))
    write(tmp_path, later, PRIVATE_HEAD + private_row(tid="T2", price="99") + private_row(tid="T3"))
    write(tmp_path, PUBLIC, PUBLIC_HEAD + "T1;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;"
          "2025-06-07 15:03:44.509000+00:00;61.9;EUR;2.5;MWH\n")
    day = parse_day(tmp_path)
    trades = [(r.event["book"], r.event["trade_id"], r.event["price_eur_mwh"], r.event["source_file"])
              for r in day.records if r.event["type"] == "trade"]
    assert sorted(trades) == sorted([("private", "T1", 61.9, PRIVATE), ("private", "T2", 70.0, PRIVATE),
                                     ("private", "T3", 61.9, later), ("public", "T1", 61.9, PUBLIC)])
    assert day.duplicates_dropped == 1


def test_the_first_occurrence_of_a_re_sent_trade_is_the_first_in_file_order_not_by_execution_time(tmp_path):
    """The reference keeps the first occurrence in file-name time order; so do parse_day and the
    processors, also when the re-sent copy has another delivery period and an earlier execution."""
    later = "exchange/Private_Trades-20250608-20250608T230000000Z.csv"
    write(tmp_path, PRIVATE, PRIVATE_HEAD + private_row(tid="T1", price="70"))
    write(tmp_path, later, PRIVATE_HEAD + private_row(tid="T1", price="99", ds="2025-06-08 14:00:00+00:00",
                                                       de="2025-06-08 15:00:00+00:00",
                                                       ex="2025-06-07 09:00:00+00:00"))
    [r] = [r for r in parse_day(tmp_path).records if r.event["type"] == "trade"]
    assert (r.event["price_eur_mwh"], r.event["source_file"]) == (70.0, PRIVATE)


# ---------------------------------------------------------------------------------------------
# imbalance prices

ESTIMATE = "imbalance/imbalance_price_estimation_2025-06-08T101500Z.csv"
FINAL = "imbalance/imbalance_price_final_20250609_120000.csv"
EST_HEADER = "Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;AEP-Schätzer;Status\n"
FIN_HEADER = "Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;reBAP unterdeckt;reBAP ueberdeckt\n"


@pytest.mark.parametrize("text, value", [
    ("-14,35", -14.35), ("1.234,5", 1234.5), ("61,9", 61.9), ("42", 42.0), ("-1.234.567,25", -1234567.25),
    ("0,5", 0.5), ("", None), ("  ", None), ("61.9", 61.9),
])
def test_decimal_comma_numbers_never_lose_their_decimal_point(text, value):
    assert parse_decimal_comma(text) == value


@pytest.mark.parametrize("text", ["1.234", "abc", "1,2,3", "12.34,5", "NaN", "1e3"])
def test_a_german_number_that_is_ambiguous_or_malformed_is_refused(text):
    with pytest.raises(ValueError):
        parse_decimal_comma(text)


def test_in_a_file_with_decimal_commas_a_lone_dot_is_a_thousands_separator(tmp_path):
    """A reBAP of 1.234 EUR/MWh without cents, in a file whose other prices have commas."""
    text = (EST_HEADER + "08.06.2025;UTC;10:00;10:15;AEP;Schätzer;EUR/MWh;-14,35;\n"
            "08.06.2025;UTC;10:15;10:30;AEP;Schätzer;EUR/MWh;1.234;\n"
            "08.06.2025;UTC;10:30;10:45;AEP;Schätzer;EUR/MWh;61.9;\n")
    records, rejections = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert [r.event["price_eur_mwh"] for r in records] == [-14.35, 1234.0]
    assert [(x.line, "61.9" in x.reason) for x in rejections] == [(4, True)]


def test_an_estimate_row_is_a_price_keyed_by_delivery_start_published_at_the_file_time(tmp_path):
    text = ("\ufeff" + EST_HEADER + "08.06.2025;UTC;10:00;10:15;AEP;Schätzer;EUR/MWh;-14,35;vorläufig\n"
            "08.06.2025;UTC;10:15;10:30;AEP;Schätzer;EUR/MWh;1.234,5;\n"
            "08.06.2025;UTC;10:30;10:45;AEP;Schätzer;EUR/MWh;;\n")
    records, rejections = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert rejections == []
    assert [(r.key, r.event["price_eur_mwh"], r.event["status"]) for r in records] == [
        ("2025-06-08T10:00:00Z", -14.35, "vorläufig"), ("2025-06-08T10:15:00Z", 1234.5, None)]
    r = records[0]
    assert r.topic == topics.IMBALANCE_PRICES and r.event_time_s == T0 + 10.25 * 3600
    assert r.event == {
        "schema_version": 1, "type": "imbalance_price", "event_time": "2025-06-08T10:15:00Z",
        "source_file": ESTIMATE, "source_line": 2, "kind": "estimate",
        "delivery_start": "2025-06-08T10:00:00Z", "delivery_end": "2025-06-08T10:15:00Z",
        "published_at": "2025-06-08T10:15:00Z", "price_eur_mwh": -14.35, "unterdeckt_eur_mwh": None,
        "ueberdeckt_eur_mwh": None, "status": "vorläufig"}


def test_final_prices_may_be_missing_and_a_row_without_both_is_no_event(tmp_path):
    text = (FIN_HEADER + "08.06.2025;UTC;23:45;00:00;reBAP;final;EUR/MWh;61,9;-3,5\n"
            "08.06.2025;UTC;23:30;23:45;reBAP;final;EUR/MWh;;\n"
            "08.06.2025;UTC;23:15;23:30;reBAP;final;EUR/MWh;;12,0\n")
    records, rejections = parse_imbalance_file(write(tmp_path, FINAL, text), FINAL)
    assert rejections == []
    assert [(r.event["delivery_start"], r.event["delivery_end"], r.event["unterdeckt_eur_mwh"],
             r.event["ueberdeckt_eur_mwh"], r.event["kind"]) for r in records] == [
        ("2025-06-08T23:45:00Z", "2025-06-09T00:00:00Z", 61.9, -3.5, "final"),
        ("2025-06-08T23:15:00Z", "2025-06-08T23:30:00Z", None, 12.0, "final")]
    assert records[0].event["published_at"] == "2025-06-09T12:00:00Z"


def test_an_imbalance_row_with_a_bad_number_is_rejected_and_the_others_go_out(tmp_path):
    text = (FIN_HEADER + "08.06.2025;UTC;10:00;10:15;reBAP;final;EUR/MWh;abc;1,0\n"
            "08.06.2025;UTC;10:15;10:30;reBAP;final;EUR/MWh;2,0;1,0\n")
    records, [rej] = parse_imbalance_file(write(tmp_path, FINAL, text), FINAL)
    assert [r.key for r in records] == ["2025-06-08T10:15:00Z"]
    assert (rej.line, rej.reason) == (2, "bad number in reBAP unterdeckt: bad number 'abc'")


def test_an_imbalance_file_without_its_price_column_is_rejected_whole(tmp_path):
    text = EST_HEADER + "08.06.2025;UTC;10:00;10:15;AEP;Schätzer;EUR/MWh;1,0;x\n"
    _, [rej] = parse_imbalance_file(write(tmp_path, FINAL, text), FINAL)
    assert (rej.line, rej.reason) == (0, "missing columns reBAP unterdeckt, reBAP ueberdeckt")


def berlin_day_rows(day: dt.date, zone: str = "Europe/Berlin") -> list[str]:
    """von/bis rows of a Berlin delivery day as a desk export writes them, DST hour repeated."""
    rows = []
    for start in delivery_day_qhs(day):
        local = dt.datetime.fromtimestamp(start, BERLIN)
        end = dt.datetime.fromtimestamp(start + 900, BERLIN)
        rows.append(f"{local:%d.%m.%Y};{zone};{local:%H:%M};{end:%H:%M};AEP;S;EUR/MWh;1,5;x\n")
    return rows


def test_the_fall_back_day_in_berlin_time_gives_100_distinct_quarter_hours_by_row_order(tmp_path):
    rows = berlin_day_rows(dt.date(2025, 10, 26))
    assert sum(1 for r in rows if ";02:00;02:15;" in r) == 2
    records, rejections = parse_imbalance_file(write(tmp_path, ESTIMATE, EST_HEADER + "".join(rows)), ESTIMATE)
    assert rejections == []
    assert [parse_iso(r.key) for r in records] == delivery_day_qhs(dt.date(2025, 10, 26))
    twice = [(r.event["delivery_start"], r.event["delivery_end"]) for r in records
             if r.event["source_line"] in (10, 13, 14, 17)]  # 02:00 and 02:45, first and second time
    assert twice == [("2025-10-26T00:00:00Z", "2025-10-26T00:15:00Z"),
                     ("2025-10-26T00:45:00Z", "2025-10-26T01:00:00Z"),
                     ("2025-10-26T01:00:00Z", "2025-10-26T01:15:00Z"),
                     ("2025-10-26T01:45:00Z", "2025-10-26T02:00:00Z")]


@pytest.mark.parametrize("bis", ["03:00", "02:00"])
def test_the_last_summer_quarter_hour_of_the_fall_back_day_ends_at_the_switch_however_bis_is_written(
        tmp_path, bis):
    text = EST_HEADER + f"26.10.2025;Europe/Berlin;02:45;{bis};A;S;EUR/MWh;1,0;x\n"
    [r], _ = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert (r.event["delivery_start"], r.event["delivery_end"]) == ("2025-10-26T00:45:00Z", "2025-10-26T01:00:00Z")


def test_fixed_offset_zone_names_make_the_repeated_hour_unambiguous_in_any_row_order(tmp_path):
    text = (EST_HEADER + "26.10.2025;CET;02:00;02:15;A;S;EUR/MWh;2,0;x\n"
            "26.10.2025;MESZ;02:00;02:15;A;S;EUR/MWh;1,0;x\n"
            "26.10.2025;UTC;02:00;02:15;A;S;EUR/MWh;3,0;x\n")
    records, _ = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert [(r.key, r.event["price_eur_mwh"]) for r in records] == [
        ("2025-10-26T01:00:00Z", 2.0), ("2025-10-26T00:00:00Z", 1.0), ("2025-10-26T02:00:00Z", 3.0)]


def test_a_third_row_for_the_repeated_berlin_hour_is_rejected_as_ambiguous(tmp_path):
    row = "26.10.2025;Europe/Berlin;02:15;02:30;A;S;EUR/MWh;1,0;x\n"
    records, [rej] = parse_imbalance_file(write(tmp_path, ESTIMATE, EST_HEADER + row * 3), ESTIMATE)
    assert [r.key for r in records] == ["2025-10-26T00:15:00Z", "2025-10-26T01:15:00Z"]
    assert rej.line == 4 and rej.reason.startswith("ambiguous local time occurs more than twice")


def test_the_spring_forward_day_in_berlin_time_gives_92_quarter_hours(tmp_path):
    rows = berlin_day_rows(dt.date(2025, 3, 30))
    records, rejections = parse_imbalance_file(write(tmp_path, ESTIMATE, EST_HEADER + "".join(rows)), ESTIMATE)
    assert rejections == []
    assert [parse_iso(r.key) for r in records] == delivery_day_qhs(dt.date(2025, 3, 30))


@pytest.mark.parametrize("bis", ["02:00", "03:00"])
def test_the_last_quarter_hour_before_the_spring_jump_ends_at_the_jump_however_bis_is_written(tmp_path, bis):
    text = EST_HEADER + f"30.03.2025;Europe/Berlin;01:45;{bis};A;S;EUR/MWh;1,0;x\n"
    [r], _ = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert (r.event["delivery_start"], r.event["delivery_end"]) == ("2025-03-30T00:45:00Z", "2025-03-30T01:00:00Z")


def test_a_berlin_wall_time_skipped_by_the_spring_jump_is_rejected(tmp_path):
    text = EST_HEADER + "30.03.2025;Europe/Berlin;02:15;02:30;A;S;EUR/MWh;1,0;x\n"
    _, [rej] = parse_imbalance_file(write(tmp_path, ESTIMATE, text), ESTIMATE)
    assert rej.reason.startswith("nonexistent local time")


# ---------------------------------------------------------------------------------------------
# DSO files

FINAL_PROD = "distribution_system_operator/final_production_MP003_20250608.csv"
FLAG = "distribution_system_operator/redispatch_flag_MP003_20250608_1430.csv"
COMP = "distribution_system_operator/redispatch_compensation_2025-06-08.csv"


def test_final_production_maps_the_metering_point_to_its_asset_and_arrives_the_next_day(tmp_path):
    text = ("delivery_start__utc_,MP003__kw_\n2025-06-08 00:15:00.000000 UTC,1865.76\n"
            "2025-06-08 00:30:00.000000 UTC,\n2025-06-08 00:45:00.000000 UTC,-2.5\n")
    records, rejections = parse_final_production_file(write(tmp_path, FINAL_PROD, text), FINAL_PROD,
                                                      {"MP003": "WND-DE-003"})
    assert rejections == []
    assert [(r.key, r.event["delivery_start"], r.event["value_kw"]) for r in records] == [
        ("WND-DE-003", "2025-06-08T00:15:00Z", 1865.76), ("WND-DE-003", "2025-06-08T00:45:00Z", -2.5)]
    r = records[0]
    assert r.topic == topics.DSO_FINAL and r.event_time_s == T0 + 86400
    assert r.event == {"schema_version": 1, "type": "final_production", "event_time": "2025-06-09T00:00:00Z",
                       "source_file": FINAL_PROD, "source_line": 2, "asset_id": "WND-DE-003",
                       "metering_point_id": "MP003", "delivery_start": "2025-06-08T00:15:00Z",
                       "value_kw": 1865.76, "published_at": "2025-06-09T00:00:00Z"}


def test_final_production_is_never_available_before_its_last_quarter_hour_ends(tmp_path):
    text = "delivery_start__utc_,MP003__kw_\n2025-06-09 03:00:00.000000 UTC,5\n"
    [r], _ = parse_final_production_file(write(tmp_path, FINAL_PROD, text), FINAL_PROD, {"MP003": "A"})
    assert r.event["published_at"] == "2025-06-09T03:15:00Z"


def test_a_dso_file_of_an_unknown_metering_point_is_rejected_whole(tmp_path):
    text = "delivery_start__utc_,MP999__kw_\n2025-06-08 00:15:00.000000 UTC,1\n"
    path = write(tmp_path, FINAL_PROD, text)
    records, [rej] = parse_final_production_file(path, FINAL_PROD, {"MP003": "WND-DE-003"})
    assert records == [] and (rej.line, rej.reason, rej.topic) == (0, "unknown metering point MP999",
                                                                     topics.DSO_FINAL)
    flag = write(tmp_path, FLAG.replace("MP003", "MP999"), "delivery_start,delivery_end,is_redispatched\n")
    _, [rej] = parse_redispatch_flag_file(flag, FLAG.replace("MP003", "MP999"), {"MP003": "WND-DE-003"})
    assert rej.reason == "unknown metering point MP999" and rej.topic == topics.DSO_REDISPATCH


def test_a_final_production_row_with_a_bad_number_is_rejected_with_its_line(tmp_path):
    text = ("delivery_start__utc_,MP003__kw_\n2025-06-08 00:15:00.000000 UTC,1.865,76\n"
            "2025-06-08 00:30:00.000000 UTC,x\n2025-06-08 00:45:00.000000 UTC,3\n")
    records, rejections = parse_final_production_file(write(tmp_path, FINAL_PROD, text), FINAL_PROD,
                                                      {"MP003": "A"})
    assert [r.event["value_kw"] for r in records] == [3.0]
    assert [(j.line, j.reason) for j in rejections] == [(2, "expected 2 fields, found 3"),
                                                        (3, "bad number in MP003__kw_: 'x'")]


def test_redispatch_flags_are_booleans_for_the_asset_at_the_file_name_time(tmp_path):
    text = ("delivery_start,delivery_end,is_redispatched\n2025-06-08T10:15:00Z,2025-06-08T11:00:00Z,1\n"
            "2025-06-08T11:00:00Z,2025-06-08T11:15:00Z,0\n2025-06-08T11:15:00Z,2025-06-08T11:30:00Z,yes\n")
    records, [rej] = parse_redispatch_flag_file(write(tmp_path, FLAG, text), FLAG, {"MP003": "WND-DE-003"})
    assert [(r.key, r.event["delivery_start"], r.event["delivery_end"], r.event["is_redispatched"])
            for r in records] == [("WND-DE-003", "2025-06-08T10:15:00Z", "2025-06-08T11:00:00Z", True),
                                  ("WND-DE-003", "2025-06-08T11:00:00Z", "2025-06-08T11:15:00Z", False)]
    assert records[0].topic == topics.DSO_REDISPATCH
    assert records[0].event_time_s == T0 + 14.5 * 3600
    assert set(records[0].event) == COMMON | {"asset_id", "metering_point_id", "delivery_start",
                                              "delivery_end", "is_redispatched", "published_at"}
    assert (rej.line, rej.reason) == (4, "bad is_redispatched 'yes' (expected 1 or 0)")


def test_redispatch_compensation_is_keyed_by_delivery_start_and_accepts_iso_times(tmp_path):
    text = ("delivery_start__utc_,delivery_end__utc_,price__euro_per_mwh_\n"
            "2025-06-08 10:15:00.000000 UTC,2025-06-08 10:30:00.000000 UTC,55.1\n"
            "2025-06-08T10:30:00Z,2025-06-08T10:45:00Z,\n"
            "2025-06-08T10:45:00Z,2025-06-08T10:40:00Z,3\n")
    records, [rej] = parse_redispatch_compensation_file(write(tmp_path, COMP, text), COMP)
    [r] = records
    assert (r.topic, r.key, r.event_time_s) == (topics.DSO_COMPENSATION, "2025-06-08T10:15:00Z", T0 + 86400)
    assert r.event == {"schema_version": 1, "type": "redispatch_compensation",
                       "event_time": "2025-06-09T00:00:00Z", "source_file": COMP, "source_line": 2,
                       "delivery_start": "2025-06-08T10:15:00Z", "delivery_end": "2025-06-08T10:30:00Z",
                       "price_eur_mwh": 55.1, "published_at": "2025-06-09T00:00:00Z"}
    assert (rej.line, rej.reason) == (4, "delivery end is not after delivery start")


# ---------------------------------------------------------------------------------------------
# a whole day


def small_day(root: Path) -> None:
    write(root, "crm/asset_contracts_20250601_043000.csv",
          f"{CRM_HEADER}\n{GOOD_CONTRACT}\nC2,SOL-DE-001,MP001,1,solar,2025-01-01,,market,,percent_of_market,,3,\n")
    write(root, "crm/asset_contracts_20250608_043000.csv",
          f"{CRM_HEADER}\nC3,SOL-DE-002,MP003,1,solar,2025-06-01,,market,,percent_of_market,,3,\n")
    write(root, FORECAST, table({"asset_id": "WND-DE-003"}, {"start": [T0], "version": [T0 - 900], "power": [1]}))
    write(root, "vpp/forecasts/forecast_XXX_2025-06-08T000000Z.json",
          table({"asset_id": "XXX"}, {"start": [T0], "version": [T0], "power": [1]}))
    write(root, "vpp/forecasts/forecast_SOL-DE-001_2025-06-08T000000Z.json", '{"key": {"asset_id": "SOL')
    write(root, "vpp/forecasts/notes.txt", "hello")
    write(root, "forecast_WND-DE-003_2025-06-08T001500Z.json", "{}")
    write(root, "README.md", "about this day")
    write(root, FINAL_PROD, "delivery_start__utc_,MP003__kw_\n2025-06-08 00:15:00.000000 UTC,5\n")
    write(root, PRIVATE, PRIVATE_HEAD + private_row())
    write(root, ESTIMATE, EST_HEADER + "08.06.2025;UTC;10:00;10:15;AEP;S;EUR/MWh;-14,35;x\n")


def test_a_day_is_parsed_in_event_time_order_with_every_problem_reported(tmp_path):
    small_day(tmp_path)
    day = parse_day(tmp_path)
    assert isinstance(day, ParsedDay) and all(isinstance(r, Record) for r in day.records)
    order = [(r.event_time_s, r.event["source_file"], r.event["source_line"]) for r in day.records]
    assert order == sorted(order)
    assert day.files_read == 8
    assert [(j.source_file, j.line, j.topic, j.reason.split(":")[0]) for j in day.rejections] == [
        ("forecast_WND-DE-003_2025-06-08T001500Z.json", 0, topics.FORECASTS, "misplaced file"),
        ("vpp/forecasts/forecast_SOL-DE-001_2025-06-08T000000Z.json", 0, topics.FORECASTS, "truncated JSON"),
        ("vpp/forecasts/forecast_XXX_2025-06-08T000000Z.json", 0, topics.FORECASTS, "unknown asset XXX"),
        ("vpp/forecasts/notes.txt", 0, topics.FORECASTS,
         "unrecognised file name (expected forecast_<ASSET_ID>_<YYYY-MM-DDTHHMMSSZ>.json)")]
    assert day.rejections[0].reason == "misplaced file: belongs in vpp/forecasts/"
    assert day.ignored_files == ["README.md"]
    types = sorted({r.event["type"] for r in day.records})
    assert types == ["contract", "final_production", "forecast", "imbalance_price", "trade"]
    assert "no imbalance final price files" in day.missing_sources
    assert "no live infeed files" in day.missing_sources
    assert "asset SOL-DE-002: no forecasts" in day.missing_sources


def test_the_newest_crm_file_decides_which_asset_a_metering_point_belongs_to(tmp_path):
    small_day(tmp_path)
    [final] = [r for r in parse_day(tmp_path).records if r.topic == topics.DSO_FINAL]
    assert final.key == "SOL-DE-002"


def test_without_any_master_data_forecasts_of_every_asset_are_accepted(tmp_path):
    write(tmp_path, "vpp/forecasts/forecast_XXX_2025-06-08T000000Z.json",
          table({"asset_id": "XXX"}, {"start": [T0], "version": [T0], "power": [1]}))
    day = parse_day(tmp_path)
    assert [r.key for r in day.records] == ["XXX"] and day.rejections == []
    assert "no CRM contract files" in day.missing_sources


def test_an_unrecognised_file_name_is_rejected_for_the_topic_it_most_likely_belongs_to():
    assert classify("exchange/private_trades_today.csv") == (None, topics.PRIVATE_TRADES)
    assert classify("distribution_system_operator/redispatch_flag_MP1.csv") == (None, topics.DSO_REDISPATCH)
    assert classify("imbalance/prices.xlsx") == (None, topics.IMBALANCE_PRICES)
    assert classify("README.md") == (None, None)
    assert classify(PUBLIC) == ("public_trades", topics.PUBLIC_TRADES)


def test_a_missing_day_directory_raises_file_not_found_with_a_one_line_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        parse_day(tmp_path / "nope")
    assert str(info.value) == f"day directory not found: {tmp_path / 'nope'}"


def test_rejections_become_dead_letter_records_on_the_source_topics_dlq(tmp_path):
    _, [rej] = parse_forecast_file(write(tmp_path, FORECAST, "{"), FORECAST)
    assert rej.dlq_topic == "vpp.forecasts.dlq"
    assert rej.dlq_event() == {"schema_version": 1, "source_file": FORECAST, "line": 0,
                               "reason": rej.reason, "raw": "{", "topic": topics.FORECASTS}


@pytest.mark.slow
def test_300k_public_trades_all_parse(tmp_path):
    """Volume, not speed: a day of 300,000 public trades parses completely (its speed is in
    `make bench`, never a wall-clock assertion here)."""
    qhs = [(dt.datetime.fromtimestamp(T0 + q * 900, dt.UTC).isoformat(sep=" "),
            dt.datetime.fromtimestamp(T0 + q * 900 + 900, dt.UTC).isoformat(sep=" ")) for q in range(96)]
    lines = [PUBLIC_HEAD]
    for i in range(300_000):
        ds, de = qhs[i % 96]
        lines.append(f"{i};{ds};{de};2025-06-07 {i % 24:02d}:{i % 60:02d}:{i % 57:02d}.{i % 1000:03d}000+00:00;"
                     f"{i % 300 - 50}.25;EUR;{i % 20 + 1}.5;MWH\n")
    write(tmp_path, PUBLIC, "".join(lines))
    day = parse_day(tmp_path)
    assert len(day.records) == 300_000 and day.rejections == []


# ---------------------------------------------------------------------------------------------
# property: any bytes, any lines -> only records and rejections, never an exception

CSV_PARSERS = {
    "crm": (CRM, ",", CRM_HEADER, lambda p, rel: parse_contract_file(p, rel)),
    "private": (PRIVATE, ";", PRIVATE_HEAD.rstrip("\n"), lambda p, rel: parse_trade_file(p, rel)),
    "public": (PUBLIC, ";", PUBLIC_HEAD.rstrip("\n"), lambda p, rel: parse_trade_file(p, rel)),
    "estimate": (ESTIMATE, ";", EST_HEADER.rstrip("\n"), lambda p, rel: parse_imbalance_file(p, rel)),
    "final": (FINAL, ";", FIN_HEADER.rstrip("\n"), lambda p, rel: parse_imbalance_file(p, rel)),
    "production": (FINAL_PROD, ",", "delivery_start__utc_,MP003__kw_",
                   lambda p, rel: parse_final_production_file(p, rel, {"MP003": "A"})),
    "flag": (FLAG, ",", "delivery_start,delivery_end,is_redispatched",
             lambda p, rel: parse_redispatch_flag_file(p, rel, {"MP003": "A"})),
    "compensation": (COMP, ",", "delivery_start__utc_,delivery_end__utc_,price__euro_per_mwh_",
                     lambda p, rel: parse_redispatch_compensation_file(p, rel)),
}
JSON_PARSERS = {
    "forecast": (FORECAST, lambda p, rel: parse_forecast_file(p, rel)),
    "live": (LIVE, lambda p, rel: parse_live_infeed_file(p, rel, {"WND-DE-003"})),
    "technical": (TECH, lambda p, rel: parse_technical_data_file(p, rel)),
}
PLAUSIBLE_CELLS = st.sampled_from([
    "", "T1", "BUY", "SELL", "2025-06-08 00:00:00+00:00", "2025-06-08 00:15:00+00:00",
    "2025-06-07 15:03:44.509000+00:00", "0001-01-01 00:00:00+01:00", "9999-12-31 23:59:59-01:00",
    "61.9", "-14,35", "1.234,5", "NaN", "inf", "1_0", "08.06.2025", "26.10.2025", "31.12.9999",
    "01.01.0001", "UTC", "Europe/Berlin", "MESZ", "UTC+14", "02:00", "24:00", "00:00", "99:99",
    "2025-06-08T10:15:00Z", "2025-06-08 00:15:00.000000 UTC", "1", "0", "fixed", "market",
    "fixed_for_capacity", "percent_of_market", "2025-01-01", '"', "\x00", "\r", "#"])
CELLS = st.one_of(PLAUSIBLE_CELLS, st.text(max_size=12))


def check_only_values(result) -> None:
    records, rejections = result
    assert all(isinstance(r, Record) for r in records)
    assert all(isinstance(j, Rejection) for j in rejections)
    for r in records:
        assert r.event["schema_version"] == 1 and isinstance(r.key, str) and math.isfinite(r.event_time_s)
        json.dumps(r.event, allow_nan=False)
    for j in rejections:
        assert j.line >= 0 and "\n" not in j.reason and "\n" not in j.message()


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(CSV_PARSERS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes_fed_to_a_csv_parser_give_only_records_and_rejections(tmp_path_factory, name, data):
    rel, _, _, parse = CSV_PARSERS[name]
    root = tmp_path_factory.getbasetemp() / f"fuzz-bytes-{name}"
    check_only_values(parse(write(root, rel, data), rel))


@pytest.mark.parametrize("name", sorted(CSV_PARSERS))
@FUZZ
@given(rows=st.lists(st.lists(CELLS, max_size=14), max_size=8), with_header=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_lines_under_a_real_header_give_only_records_and_rejections(tmp_path_factory, name, rows,
                                                                         with_header, newline):
    rel, delimiter, header, parse = CSV_PARSERS[name]
    lines = ([header] if with_header else []) + [delimiter.join(cells) for cells in rows]
    root = tmp_path_factory.getbasetemp() / f"fuzz-lines-{name}"
    check_only_values(parse(write(root, rel, newline.join(lines)), rel))


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from([T0, T0 * 1000, T0 + 60.5, 10 ** 30, -1])),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


@pytest.mark.parametrize("name", sorted(JSON_PARSERS))
@FUZZ
@given(data=st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda ids, cols: json.dumps({
                          "key": {"asset_id": "WND-DE-003"}, "column_ids": ids, "values": cols,
                          "assets": cols}).encode(),
                          st.lists(st.sampled_from(["start", "end", "version", "power", "timestamp",
                                                    "value", "quality"]), max_size=4),
                          st.lists(st.lists(JSON_VALUES, max_size=4), max_size=4))))
def test_any_json_fed_to_a_json_parser_gives_only_records_and_rejections(tmp_path_factory, name, data):
    rel, parse = JSON_PARSERS[name]
    root = tmp_path_factory.getbasetemp() / f"fuzz-json-{name}"
    check_only_values(parse(write(root, rel, data), rel))
