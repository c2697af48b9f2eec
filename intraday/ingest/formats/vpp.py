"""The VPP's JSON files: forecasts, live infeed, technical data."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from intraday.core.qh import QH_S, iso, iso_precise
from intraday.ingest.reading import open_file, parser, reject
from intraday.ingest.records import KIND_BY_NAME, Parsed, Record, Rejection
from intraday.ingest.values import (
    base,
    json_epoch,
    json_epoch_cached,
    json_number,
    json_power,
    json_text,
    show,
)


def _columns(doc: dict[str, Any]) -> tuple[dict[str, list[Any]], int, str | None]:
    """Column-oriented table: ``values[i]`` is the column named ``column_ids[i]`` (by name)."""
    ids, values = doc.get("column_ids"), doc.get("values")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return {}, 0, "missing or bad column_ids"
    if not isinstance(values, list) or not all(isinstance(v, list) for v in values):
        return {}, 0, "missing or bad values (expected a list of columns)"
    if len(ids) != len(values):
        return {}, 0, f"column_ids names {len(ids)} columns but values has {len(values)}"
    cols = {name.strip().lower(): col for name, col in zip(ids, values, strict=True)}
    lengths = {name: len(col) for name, col in cols.items()}
    if len(set(lengths.values())) > 1:
        return {}, 0, "columns differ in length (" + ", ".join(f"{k}: {v}" for k, v in lengths.items()) + ")"
    return cols, (len(values[0]) if values else 0), None


def _key_asset(doc: dict[str, Any]) -> str | None:
    key = doc.get("key")
    if not isinstance(key, dict):
        return None
    for name in ("asset_id", "entity_id"):
        v = key.get(name)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _row_raw(cols: Mapping[str, list[Any]], i: int) -> str:
    return json_text({k: c[i] for k, c in cols.items()})


def _missing_columns(cols: Mapping[str, list[Any]], names: tuple[str, ...]) -> str | None:
    missing = [n for n in names if n not in cols]
    if not missing:
        return None
    return ("missing column " if len(missing) == 1 else "missing columns ") + ", ".join(missing)


@parser
def parse_forecast_file(path: Path, rel_name: str | None = None,
                        known_assets: Collection[str] | None = None) -> Parsed:
    """One ``forecast`` event per (asset, version) of a forecast file.

    Rows of one file with different ``version`` values become one event per version (in version
    order). A row whose power is not a finite number, whose start is not on a quarter-hour or
    repeats a start of its version is rejected (reason names the row index); the other rows go
    out. ``known_assets`` (None: accept all) rejects the whole file of an unknown asset.
    """
    f = open_file(path, rel_name, KIND_BY_NAME["forecast"])
    rel, topic = f.rel, f.topic
    doc, head = f.read_json()
    cols, n, problem = _columns(doc)
    problem = problem or _missing_columns(cols, ("start", "version", "power"))
    if problem:
        raise f.refuse(problem, head)
    asset = _key_asset(doc) or f.match[1]
    if known_assets is not None and asset not in known_assets:
        raise f.refuse(f"unknown asset {asset}", head)
    key = doc.get("key")
    type_id = key.get("type_id") if isinstance(key, dict) else None
    starts, versions, powers = cols["start"], cols["version"], cols["power"]
    by_version: dict[float, tuple[list[str], list[float], set[float]]] = {}
    rejections: list[Rejection] = []
    for i in range(n):
        try:
            start = json_epoch_cached(starts[i])
        except (ValueError, TypeError, OverflowError):
            problem = f"row {i}: start is not a timestamp ({show(starts[i])})"
        else:
            try:
                version = json_epoch_cached(versions[i])
            except (ValueError, TypeError, OverflowError):
                problem = f"row {i}: version is not a timestamp ({show(versions[i])})"
            else:
                try:
                    power = json_power(powers[i])
                except (ValueError, TypeError) as exc:
                    what = "NaN" if str(exc) == "NaN" else f"not a number ({show(powers[i])})"
                    problem = f"row {i}: power is {what}"
                else:
                    problem = ""
                    if start % QH_S:
                        problem = f"row {i}: start {iso_precise(start)} is not aligned to 15 min"
        if not problem:
            group = by_version.setdefault(version, ([], [], set()))
            if start in group[2]:
                problem = f"row {i}: start {iso(int(start))} repeats within version {iso_precise(version)}"
            else:
                group[0].append(iso(int(start)))
                group[1].append(power)
                group[2].add(start)
        if problem:
            rejections.append(reject(topic, rel, 0, problem, _row_raw(cols, i)))
    records = []
    for version in sorted(by_version):
        starts_iso, power_kw, _ = by_version[version]
        v_iso = iso_precise(version)
        event = base("forecast", v_iso, rel, 0)
        event.update(asset_id=asset, type_id=type_id, version=v_iso, delivery_start=starts_iso,
                     power_kw=power_kw)
        records.append(Record(topic, asset, version, event))
    return records, rejections


@parser
def parse_live_infeed_file(path: Path, rel_name: str | None = None,
                           known_assets: Collection[str] | None = None) -> Parsed:
    """One ``live_sample`` event per sample; negative values are real and kept.

    The asset is ``key.asset_id`` or, in some files, ``key.entity_id``. A sample whose value is
    null/NaN/not a number, or whose timestamp is not one, is rejected; ``quality`` may be absent.
    """
    f = open_file(path, rel_name, KIND_BY_NAME["live"])
    rel, topic = f.rel, f.topic
    doc, head = f.read_json()
    cols, n, problem = _columns(doc)
    problem = problem or _missing_columns(cols, ("timestamp", "value"))
    if problem:
        raise f.refuse(problem, head)
    asset = _key_asset(doc)
    if asset is None:
        raise f.refuse("no asset id in key (asset_id or entity_id)", head)
    if known_assets is not None and asset not in known_assets:
        raise f.refuse(f"unknown asset {asset}", head)
    stamps, values = cols["timestamp"], cols["value"]
    qualities = cols.get("quality")
    records, rejections = [], []
    for i in range(n):
        try:
            ts = json_epoch(stamps[i])
        except (ValueError, TypeError, OverflowError):
            rejections.append(reject(topic, rel, 0, f"row {i}: timestamp is not a timestamp "
                                      f"({show(stamps[i])})", _row_raw(cols, i)))
            continue
        try:
            value = json_power(values[i])
        except (ValueError, TypeError) as exc:
            what = "NaN" if str(exc) == "NaN" else f"not a number ({show(values[i])})"
            rejections.append(reject(topic, rel, 0, f"row {i}: value is {what}", _row_raw(cols, i)))
            continue
        quality: Any = None
        if qualities is not None:
            q = qualities[i]
            if isinstance(q, str) or (isinstance(q, (int, float)) and not isinstance(q, bool)
                                      and math.isfinite(q)):
                quality = q
        t_iso = iso_precise(ts)
        event = base("live_sample", t_iso, rel, 0)
        event.update(asset_id=asset, timestamp=t_iso, value_kw=value, quality=quality, source_row=i)
        records.append(Record(topic, asset, ts, event))
    return records, rejections


def _opt_json_number(value: Any) -> float | None:
    try:
        return json_number(value)
    except (ValueError, TypeError):
        return None


def _opt_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    return None


@parser
def parse_technical_data_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``technical_data`` event per asset, at the time in the file name."""
    f = open_file(path, rel_name, KIND_BY_NAME["technical_data"])
    rel, topic, t = f.rel, f.topic, f.stamp
    doc, head = f.read_json()
    assets = doc.get("assets")
    if not isinstance(assets, list):
        raise f.refuse("missing or bad assets list", head)
    t_iso = iso_precise(t)
    records, rejections = [], []
    for i, a in enumerate(assets):
        raw = json_text(a)
        if not isinstance(a, dict):
            rejections.append(reject(topic, rel, 0, f"asset {i}: not a JSON object", raw))
            continue
        asset_id = _opt_text(a.get("asset_id"))
        if asset_id is None:
            rejections.append(reject(topic, rel, 0, f"asset {i}: no asset_id", raw))
            continue
        loc = a.get("location") if isinstance(a.get("location"), dict) else {}
        attrs = a.get("technical_attributes") if isinstance(a.get("technical_attributes"), dict) else {}
        owner = a.get("owner")
        owner_name = _opt_text(owner.get("name")) if isinstance(owner, dict) else _opt_text(owner)
        event = base("technical_data", t_iso, rel, 0)
        event.update(asset_id=asset_id, name=_opt_text(a.get("name")), asset_type=_opt_text(a.get("type")),
                     capacity_kw=_opt_json_number(attrs.get("capacity_kw")),
                     status=_opt_text(a.get("status")), owner=owner_name,
                     latitude=_opt_json_number(loc.get("latitude")),
                     longitude=_opt_json_number(loc.get("longitude")),
                     timezone=_opt_text(loc.get("timezone")))
        records.append(Record(topic, asset_id, t, event))
    return records, rejections
