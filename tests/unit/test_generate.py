"""The synthetic delivery day: formats and file names of data-formats.md, determinism, DST days."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import orjson
import pytest

from intraday.core.qh import delivery_day_qhs
from intraday.ingest.generate.day import generate_day

DAY = dt.date(2025, 6, 8)
SMALL = {"assets": 3, "public_trades": 2000}

# One pattern per kind, transcribed from the layout in data-formats.md.
PATTERNS = {
    "technical_data": r"vpp/technical_data/technical_data_\d{4}-\d{2}-\d{2}T\d{6}Z\.json",
    "forecast": r"vpp/forecasts/forecast_(?:SOL|WND)-DE-\d{3}_\d{4}-\d{2}-\d{2}T\d{6}Z\.json",
    "live": r"vpp/live_measured_infeed/(?:SOL|WND)\d{2,}_\d{8}\.json",
    "crm": r"crm/asset_contracts_\d{8}_\d{6}\.csv",
    "private_trades": r"exchange/Private_Trades-\d{8}-\d{8}T\d{9}Z\.csv",
    "public_trades": r"exchange/Public_Trades-\d{8}-\d{8}T\d{9}Z\.csv",
    "imbalance_estimate": r"imbalance/imbalance_price_estimation_\d{4}-\d{2}-\d{2}T\d{6}Z\.csv",
    "imbalance_final": r"imbalance/imbalance_price_final_\d{8}_\d{6}\.csv",
    "final_production": r"distribution_system_operator/final_production_[A-Z0-9]+_\d{8}\.csv",
    "redispatch_flag": r"distribution_system_operator/redispatch_flag_[A-Z0-9]+_\d{8}_\d{4}\.csv",
    "redispatch_compensation": r"distribution_system_operator/redispatch_compensation_\d{4}-\d{2}-\d{2}\.csv",
}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def read_json(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def read_csv(path: Path, sep: str = ",", skip: int = 0) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8").splitlines()[skip:]
    return list(csv.DictReader(io.StringIO("\n".join(text)), delimiter=sep))


def technical_assets(root: Path) -> list[dict]:
    (path,) = files(root, "vpp/technical_data/*.json")
    return read_json(path)["assets"]


@pytest.fixture(scope="module")
def day_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("day")
    return root, generate_day(root, DAY, seed=7, **SMALL)


def test_the_same_seed_gives_byte_identical_trees(tmp_path: Path) -> None:
    generate_day(tmp_path / "a", DAY, seed=3, **SMALL)
    generate_day(tmp_path / "b", DAY, seed=3, **SMALL)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[name] == b[name] for name in a)


def test_a_different_seed_gives_different_content(tmp_path: Path) -> None:
    generate_day(tmp_path / "a", DAY, seed=3, **SMALL)
    generate_day(tmp_path / "b", DAY, seed=4, **SMALL)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    common = a.keys() & b.keys()
    assert any(a[name] != b[name] for name in common) or a.keys() != b.keys()
    forecasts = [n for n in common if n.startswith("vpp/forecasts/")]
    assert forecasts and all(a[n] != b[n] for n in forecasts)


def test_every_file_name_matches_a_pattern_of_data_formats_and_all_eleven_kinds_exist(day_dir) -> None:
    root, summary = day_dir
    names = list(tree(root))
    unmatched = [n for n in names if not any(re.fullmatch(p, n) for p in PATTERNS.values())]
    assert unmatched == []
    missing = [kind for kind, p in PATTERNS.items() if not any(re.fullmatch(p, n) for n in names)]
    assert missing == []
    assert summary["files_total"] == len(names) == sum(summary["files"].values())


@pytest.mark.parametrize(("day", "qhs"), [(dt.date(2025, 3, 30), 92), (DAY, 96), (dt.date(2025, 10, 26), 100)])
def test_dst_days_give_their_number_of_qhs_in_final_production_compensation_and_final_prices(
        tmp_path: Path, day: dt.date, qhs: int) -> None:
    summary = generate_day(tmp_path, day, **SMALL)
    expected = [dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.000000 UTC")
                for t in delivery_day_qhs(day)]
    assert summary["qhs"] == qhs == len(expected)
    finals = files(tmp_path, "distribution_system_operator/final_production_*.csv")
    full = [f for f in finals if len(read_csv(f)) == qhs]
    assert full, "at least one asset has a final value for every QH of the day"
    for path in full:
        assert [row["delivery_start__utc_"] for row in read_csv(path)] == expected
    (comp,) = files(tmp_path, "distribution_system_operator/redispatch_compensation_*.csv")
    assert [row["delivery_start__utc_"] for row in read_csv(comp)] == expected
    (final,) = files(tmp_path, "imbalance/imbalance_price_final_*.csv")
    assert len(read_csv(final, sep=";")) == qhs
    assert summary["files"]["forecasts"] == 3 * (12 + qhs)


def test_forecast_files_have_193_rows_with_epoch_seconds_labelled_ms(day_dir) -> None:
    root, _ = day_dir
    capacity = {a["asset_id"]: a["technical_attributes"]["capacity_kw"] for a in technical_assets(root)}
    forecasts = files(root, "vpp/forecasts/*.json")
    assert len(forecasts) == 3 * (12 + 96)
    first_qh = delivery_day_qhs(DAY)[0]
    versions = set()
    for path in forecasts[::7]:
        doc = read_json(path)
        assert doc["column_ids"] == ["start", "end", "version", "power"]
        assert doc["units"] == ["ms", "ms", "ms", "kW"]
        start, end, version, power = doc["values"]
        assert len(start) == len(end) == len(version) == len(power) == 193
        assert all(isinstance(v, float) and 1e9 < v < 1e11 for v in start + end + version)
        assert start[0] == version[0] and all(e - s == 900 for s, e in zip(start, end, strict=True))
        assert 0 <= min(power) and max(power) <= capacity[doc["key"]["asset_id"]]
        versions.add(version[0])
    assert min(versions) == first_qh - 3 * 3600
    assert all(v % 900 == 0 for v in versions)


def test_solar_forecasts_are_zero_at_night(day_dir) -> None:
    root, _ = day_dir
    doc = read_json(files(root, "vpp/forecasts/forecast_SOL-DE-001_*.json")[0])
    start, _, _, power = doc["values"]
    utc_hours = [dt.datetime.fromtimestamp(t, tz=dt.UTC).hour for t in start]
    night = [p for p, h in zip(power, utc_hours, strict=True) if h in (0, 1)]  # 02:00-04:00 CEST
    assert night and all(p == 0 for p in night)


def test_exactly_one_asset_has_no_live_file_and_another_has_no_final_file(day_dir) -> None:
    root, summary = day_dir
    assets = technical_assets(root)
    live_ids = set()
    for path in files(root, "vpp/live_measured_infeed/*.json"):
        key = read_json(path)["key"]
        live_ids.add(key.get("asset_id") or key.get("entity_id"))
    without_live = {a["asset_id"] for a in assets} - live_ids
    contracts = files(root, "crm/*.csv")[-1]  # the newest by file-name time
    mp_of = {row["asset_id"]: row["metering_point_id"] for row in read_csv(contracts)}
    final_mps = {p.name.split("_")[2] for p in files(root, "distribution_system_operator/final_production_*")}
    without_final = {a for a, mp in mp_of.items() if mp not in final_mps}
    assert without_live == {summary["roles"]["without_live"]}
    assert without_final == {summary["roles"]["without_final"]}
    assert without_live != without_final


def test_live_files_use_entity_id_for_every_other_asset_and_keep_negative_night_values(day_dir) -> None:
    root, _ = day_dir
    docs = [read_json(p) for p in files(root, "vpp/live_measured_infeed/*.json")]
    keys = [k for d in docs for k in d["key"] if k in ("asset_id", "entity_id")]
    assert sorted(keys) == ["asset_id", "entity_id"]
    solar = next(d for d in docs if "SOL" in str(d["key"]))
    assert solar["column_ids"] == ["timestamp", "value", "quality"]
    assert solar["units"] == ["ms", "kW", "factor"]
    timestamps, values, _ = solar["values"]
    assert all(1e9 < t < 1e11 for t in timestamps)
    assert any(-3.0 <= v <= -0.5 for v in values) and min(values) >= -3.0
    steps = [b - a for a, b in zip(timestamps, timestamps[1:], strict=False)]
    assert min(steps) > 0 and max(steps) >= 180, "about one sample a minute, with gaps of several minutes"


def test_private_trades_second_file_resends_trades_of_the_first_unchanged(day_dir) -> None:
    root, summary = day_dir
    first, second = files(root, "exchange/Private_Trades-*.csv")
    assert first.read_text().splitlines()[0].startswith("# Private Trades - 2025-06-08 - ")
    assert first.read_text().splitlines()[0].endswith(";;;;;;;;")
    a = {r["TradeId"]: r for r in read_csv(first, sep=";", skip=1)}
    b = {r["TradeId"]: r for r in read_csv(second, sep=";", skip=1)}
    duplicates = a.keys() & b.keys()
    assert len(duplicates) == summary["events"]["private_trade_duplicates"] == 5
    assert all(a[i] == b[i] for i in duplicates)
    trades = list(a.values()) + [b[i] for i in b.keys() - duplicates]
    assert {t["Side"] for t in trades} == {"BUY", "SELL"}
    durations = {dt.datetime.fromisoformat(t["DeliveryEnd"]) - dt.datetime.fromisoformat(t["DeliveryStart"])
                 for t in trades}
    assert durations == {dt.timedelta(minutes=15), dt.timedelta(hours=1)}
    assert all(t["Currency"] == "EUR" and t["VolumeUnit"] == "MWH" for t in trades)
    assert all(re.fullmatch(r"-?\d+\.\d{2}", t["Price"]) and re.fullmatch(r"\d+\.\d", t["Volume"]) for t in trades)


def test_public_trades_execute_between_market_opening_and_delivery_start(day_dir) -> None:
    root, summary = day_dir
    rows = [r for p in files(root, "exchange/Public_Trades-*.csv") for r in read_csv(p, sep=";", skip=1)]
    assert len(rows) == summary["events"]["public_trades"] == 2000
    assert len({r["TradeId"] for r in rows}) == len(rows)
    opening = dt.datetime(2025, 6, 7, 13, tzinfo=dt.UTC)  # 15:00 Europe/Berlin
    hourly = 0
    for r in rows:
        start = dt.datetime.fromisoformat(r["DeliveryStart"])
        executed = dt.datetime.fromisoformat(r["ExecutionTime"])
        assert opening <= executed < start
        hourly += dt.datetime.fromisoformat(r["DeliveryEnd"]) - start == dt.timedelta(hours=1)
    assert 0.1 < hourly / len(rows) < 0.3
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}\+00:00", rows[0]["ExecutionTime"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00:00", rows[0]["DeliveryStart"])


def test_the_final_imbalance_file_has_rows_without_prices_and_german_number_format(day_dir) -> None:
    root, summary = day_dir
    (final,) = files(root, "imbalance/imbalance_price_final_*.csv")
    lines = final.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;reBAP unterdeckt;reBAP ueberdeckt"
    rows = read_csv(final, sep=";")
    empty = [r for r in rows if r["reBAP unterdeckt"] == "" and r["reBAP ueberdeckt"] == ""]
    assert 0 < len(empty) == summary["events"]["imbalance_final_missing"] < len(rows) * 0.2
    priced = [r for r in rows if r["reBAP unterdeckt"]]
    assert all(re.fullmatch(r"-?\d+,\d{2}", r["reBAP unterdeckt"]) for r in priced)
    assert any(r["reBAP unterdeckt"] != r["reBAP ueberdeckt"] for r in priced)
    assert any(r["reBAP unterdeckt"].startswith("-") for r in priced)
    assert {r["Zeitzone"] for r in rows} == {"UTC"}
    assert rows[0]["Datum"] == "07.06.2025" and rows[0]["von"] == "22:00"
    assert any(r["bis"] == "00:00" for r in rows)


def test_imbalance_estimates_are_issued_during_the_day_and_reach_the_end_of_the_next_day(day_dir) -> None:
    root, _ = day_dir
    estimates = files(root, "imbalance/imbalance_price_estimation_*.csv")
    assert len(estimates) >= 4
    for path in estimates:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "Datum;Zeitzone;von;bis;Datenkategorie;Datentyp;Einheit;AEP-Schätzer;Status"
        last = read_csv(path, sep=";")[-1]
        assert (last["Datum"], last["bis"]) == ("09.06.2025", "22:00")  # 24:00 Berlin on D+1


def test_exactly_one_contract_is_inconsistent_and_the_older_crm_file_differs(day_dir) -> None:
    root, summary = day_dir
    older, newest = files(root, "crm/asset_contracts_*.csv")
    assert newest.name == "asset_contracts_20250601_044500.csv"  # the Sunday before, 04:45
    rows = read_csv(newest)
    assert list(rows[0]) == ["contract_id", "asset_id", "metering_point_id", "capacity", "technology",
                             "contract_begin", "contract_end", "price_model", "price", "fee_model", "fee",
                             "fee_percent", "email"]
    broken = [r for r in rows if r["price_model"] == "fixed" and r["price"] == ""]
    assert [r["contract_id"] for r in broken] == [summary["roles"]["inconsistent_contract"]]
    assert {r["price_model"] for r in rows} == {"fixed", "market"}
    assert {r["fee_model"] for r in rows} == {"fixed_as_produced", "fixed_for_capacity", "percent_of_market"}
    assert any(r["contract_end"] == "" for r in rows)
    assert any(not r["contract_begin"].endswith("-01") for r in rows)
    assert {r["asset_id"] for r in read_csv(older)} < {r["asset_id"] for r in rows}


def test_the_redispatch_flag_curtails_the_final_production_of_its_asset(day_dir) -> None:
    root, summary = day_dir
    (flag,) = files(root, "distribution_system_operator/redispatch_flag_*.csv")
    rows = read_csv(flag)
    assert [r["is_redispatched"] for r in rows] == ["1", "1", "1", "1", "0"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z", r["delivery_start"]) for r in rows)
    mp = flag.name.split("_")[2]
    (final,) = files(root, f"distribution_system_operator/final_production_{mp}_*.csv")
    value = {r["delivery_start__utc_"][:16]: float(r[f"{mp}__kw_"]) for r in read_csv(final)}
    curtailed = [value[r["delivery_start"][:16].replace("T", " ")] for r in rows[:4]]
    after = value[rows[4]["delivery_start"][:16].replace("T", " ")]
    assert max(curtailed) < after
    contracts = read_csv(files(root, "crm/*.csv")[-1])
    assert {r["asset_id"] for r in contracts if r["metering_point_id"] == mp} == {summary["roles"]["redispatched"]}


def test_generation_refuses_a_portfolio_too_small_for_the_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="assets"):
        generate_day(tmp_path, DAY, assets=1)
