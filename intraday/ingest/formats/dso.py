"""The DSO's files: final production, redispatch flags, redispatch compensation."""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from intraday.core.qh import QH_S, UTC, iso, iso_precise
from intraday.ingest.reading import fitted_rows, norm, open_file, parser, reject
from intraday.ingest.records import KIND_BY_NAME, Parsed, Record, Rejection
from intraday.ingest.values import base, check_range, opt_number, show, utc_time


def _mp_lookup(metering_points: Mapping[str, str] | None, mp: str) -> str | None:
    if not metering_points:
        return None
    asset = metering_points.get(mp)
    if asset is None:
        folded = mp.casefold()
        asset = next((a for k, a in metering_points.items() if k.casefold() == folded), None)
    return asset


def _next_day_midnight(day: dt.date) -> float:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=UTC).timestamp()


@parser
def parse_final_production_file(path: Path, rel_name: str | None = None,
                                metering_points: Mapping[str, str] | None = None) -> Parsed:
    """One ``final_production`` event per QH row of a DSO final production file.

    The metering point is the one in the header (``<MP>__kw_``); ``metering_points`` (from the
    CRM) maps it to the asset, an unknown one rejects the whole file. An empty value is no event.
    Available (event_time = published_at) at 00:00 UTC of the day after the file-name date, or at
    the end of the latest row's QH if that is later.
    """
    f = open_file(path, rel_name, KIND_BY_NAME["final_production"])
    rel, topic, file_day = f.rel, f.topic, f.stamp
    text, h, ncols, cols = f.read_csv(",", {"delivery_start": ("delivery_start__utc_", "delivery_start")})
    header = next(csv.reader([text.lines[h]], delimiter=","))
    value_i = next((i for i, c in enumerate(header) if norm(c).endswith("__kw_")), None)
    if value_i is None:
        raise f.refuse("missing column <METERING_POINT>__kw_", text.head())
    mp = header[value_i].strip().strip('"')[:-5]
    asset = _mp_lookup(metering_points, mp)
    if asset is None:
        raise f.refuse(f"unknown metering point {mp}", text.head())
    i_ds = cols["delivery_start"]
    rows: list[tuple[int, float, float]] = []
    rejections: list[Rejection] = []
    latest_end = -math.inf
    for first, last, fitted in fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        try:
            start = utc_time(fitted[i_ds])
        except ValueError:
            rejections.append(reject(topic, rel, first, f"bad delivery_start {show(fitted[i_ds])}",
                                      text.raw(first, last)))
            continue
        if start % QH_S:
            rejections.append(reject(topic, rel, first, f"delivery_start {iso_precise(start)} is not "
                                      "aligned to 15 min", text.raw(first, last)))
            continue
        try:
            value = opt_number(fitted[value_i])
        except ValueError:
            rejections.append(reject(topic, rel, first, f"bad number in {header[value_i].strip()}: "
                                      f"{show(fitted[value_i])}", text.raw(first, last)))
            continue
        latest_end = max(latest_end, start + QH_S)
        if value is not None:
            rows.append((first, start, value))
    t = max(_next_day_midnight(file_day), latest_end)
    t_iso = iso(int(t))
    records = []
    for line, start, value in rows:
        event = base("final_production", t_iso, rel, line)
        event.update(asset_id=asset, metering_point_id=mp, delivery_start=iso(int(start)),
                     value_kw=value, published_at=t_iso)
        records.append(Record(topic, asset, t, event))
    return records, rejections


_FLAG_VALUES = {"1": True, "0": False, "true": True, "false": False}


def _range_rows(text: Any, h: int, ncols: int, cols: dict[str, int], topic: str, rel: str,
                rejections: list, range_label: str):
    """The data rows of a comma-separated DSO file with a delivery range: yields (line, raw,
    fields, start, end) of each well-formed row; every other row becomes a Rejection."""
    for first, last, fitted in fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        raw = text.raw(first, last)
        try:
            start = utc_time(fitted[cols["delivery_start"]])
            end = utc_time(fitted[cols["delivery_end"]])
        except ValueError:
            rejections.append(reject(topic, rel, first, f"bad {range_label}", raw))
            continue
        problem = check_range(start, end)
        if problem:
            rejections.append(reject(topic, rel, first, problem, raw))
            continue
        yield first, raw, fitted, start, end


@parser
def parse_redispatch_flag_file(path: Path, rel_name: str | None = None,
                               metering_points: Mapping[str, str] | None = None) -> Parsed:
    """One ``redispatch_flag`` event per row, at the file-name time ``<YYYYMMDD>_<HHMM>`` UTC.

    The metering point comes from the file name and maps to the asset through the CRM; an
    unknown one rejects the whole file. ``is_redispatched`` is ``1``/``0`` (``true``/``false``).
    """
    f = open_file(path, rel_name, KIND_BY_NAME["redispatch_flag"])
    rel, topic, t, mp = f.rel, f.topic, f.stamp, f.match[1]
    text, h, ncols, cols = f.read_csv(",", {"delivery_start": ("delivery_start", "delivery_start__utc_"),
                                            "delivery_end": ("delivery_end", "delivery_end__utc_"),
                                            "is_redispatched": ("is_redispatched",)})
    asset = _mp_lookup(metering_points, mp)
    if asset is None:
        raise f.refuse(f"unknown metering point {mp}", text.head())
    t_iso = iso(int(t))
    records: list[Record] = []
    rejections: list[Rejection] = []
    for first, raw, fitted, start, end in _range_rows(text, h, ncols, cols, topic, rel, rejections,
                                                       "delivery_start or delivery_end"):
        flag_text = fitted[cols["is_redispatched"]].strip().lower()
        if flag_text not in _FLAG_VALUES:
            rejections.append(reject(topic, rel, first, f"bad is_redispatched {show(flag_text)} "
                                      "(expected 1 or 0)", raw))
            continue
        event = base("redispatch_flag", t_iso, rel, first)
        event.update(asset_id=asset, metering_point_id=mp, delivery_start=iso(int(start)),
                     delivery_end=iso(int(end)), is_redispatched=_FLAG_VALUES[flag_text],
                     published_at=t_iso)
        records.append(Record(topic, asset, t, event))
    return records, rejections


@parser
def parse_redispatch_compensation_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``redispatch_compensation`` event per row (key delivery_start); an empty price is none.

    Available at 00:00 UTC of the day after the file-name date, or at the latest row's delivery
    end if that is later (as the final production).
    """
    f = open_file(path, rel_name, KIND_BY_NAME["redispatch_compensation"])
    rel, topic, file_day = f.rel, f.topic, f.stamp
    text, h, ncols, cols = f.read_csv(",", {"delivery_start": ("delivery_start__utc_", "delivery_start"),
                                            "delivery_end": ("delivery_end__utc_", "delivery_end"),
                                            "price": ("price__euro_per_mwh_", "price_eur_mwh", "price")})
    rows: list[tuple[int, float, float, float]] = []
    rejections: list[Rejection] = []
    latest_end = -math.inf
    for first, raw, fitted, start, end in _range_rows(text, h, ncols, cols, topic, rel, rejections,
                                                       "delivery_start__utc_ or delivery_end__utc_"):
        try:
            price = opt_number(fitted[cols["price"]])
        except ValueError:
            rejections.append(reject(topic, rel, first, "bad number in price__euro_per_mwh_: "
                                      f"{show(fitted[cols['price']])}", raw))
            continue
        latest_end = max(latest_end, end)
        if price is not None:
            rows.append((first, start, end, price))
    t = max(_next_day_midnight(file_day), latest_end)
    t_iso = iso(int(t))
    records = []
    for line, start, end, price in rows:
        ds = iso(int(start))
        event = base("redispatch_compensation", t_iso, rel, line)
        event.update(delivery_start=ds, delivery_end=iso(int(end)), price_eur_mwh=price, published_at=t_iso)
        records.append(Record(topic, ds, t, event))
    return records, rejections
