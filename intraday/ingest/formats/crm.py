"""The CRM's contract files (CSV), and the assets and metering points they name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from intraday.core.qh import iso, iso_precise
from intraday.core.settlement import contract_problems
from intraday.ingest.reading import fitted_rows, open_file, parser, reject
from intraday.ingest.records import KIND_BY_NAME, Parsed, Record
from intraday.ingest.values import base, opt_number, show

_CRM_COLUMNS = ("contract_id", "asset_id", "metering_point_id", "capacity", "technology",
                "contract_begin", "contract_end", "price_model", "price", "fee_model", "fee",
                "fee_percent", "email")


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text.strip())


@parser
def parse_contract_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``contract`` event per CRM row; inconsistent contracts are kept with ``errors``.

    ``errors`` lists every problem: an unknown price_model/fee_model, a model without the value it
    needs (``price_model fixed requires price``, ``fee_model fixed_as_produced requires fee``,
    ``fee_model percent_of_market requires fee_percent``, ``fee_model fixed_for_capacity requires
    capacity``), a bad number or date, ``contract_end before contract_begin``. Only a row with the
    wrong number of fields, or without contract_id/asset_id (it could not be keyed), is rejected.
    """
    f = open_file(path, rel_name, KIND_BY_NAME["crm"])
    rel, topic, t = f.rel, f.topic, f.stamp
    text, h, ncols, cols = f.read_csv(",", {c: (c,) for c in _CRM_COLUMNS})
    t_iso = iso(int(t)) if t == int(t) else iso_precise(t)
    records, rejections = [], []
    for first, last, fitted in fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        v = {c: fitted[i].strip() for c, i in cols.items()}
        if not v["contract_id"] or not v["asset_id"]:
            missing = "contract_id" if not v["contract_id"] else "asset_id"
            rejections.append(reject(topic, rel, first, f"empty {missing}", text.raw(first, last)))
            continue
        errors: list[str] = []
        nums: dict[str, float | None] = {}
        for col in ("capacity", "price", "fee", "fee_percent"):
            try:
                nums[col] = opt_number(v[col])
            except ValueError:
                nums[col] = None
                errors.append(f"bad number in {col}: {show(v[col])}")
        dates: dict[str, dt.date | None] = {}
        for col in ("contract_begin", "contract_end"):
            dates[col] = None
            if v[col]:
                try:
                    dates[col] = _date(v[col])
                except ValueError:
                    errors.append(f"bad date in {col}: {show(v[col])}")
        begin, end = dates["contract_begin"], dates["contract_end"]
        price_model, fee_model = v["price_model"].lower(), v["fee_model"].lower()
        errors += contract_problems(begin, end, v["price_model"], nums["price"], v["fee_model"], nums["fee"],
                                    nums["fee_percent"], nums["capacity"], begin_given=bool(v["contract_begin"]))
        if not v["metering_point_id"]:
            errors.append("missing metering_point_id")
        event = base("contract", t_iso, rel, first)
        event.update(file_time=t_iso, contract_id=v["contract_id"], asset_id=v["asset_id"],
                     metering_point_id=v["metering_point_id"] or None, capacity_mw=nums["capacity"],
                     technology=v["technology"] or None,
                     contract_begin=begin.isoformat() if begin else None,
                     contract_end=end.isoformat() if end else None,
                     price_model=price_model or None, price_eur_mwh=nums["price"],
                     fee_model=fee_model or None, fee=nums["fee"], fee_percent=nums["fee_percent"],
                     email=v["email"] or None, errors=errors)
        records.append(Record(topic, v["asset_id"], t, event))
    return records, rejections


def metering_point_assets(contract_records: list[Record]) -> dict[str, str]:
    """metering point -> asset over CRM records; the newest file (file time) wins per point."""
    ordered = sorted(contract_records, key=lambda r: (r.event_time_s, r.event["source_file"],
                                                      r.event["source_line"]))
    out: dict[str, str] = {}
    for r in ordered:
        mp = r.event.get("metering_point_id")
        if mp:
            out[mp] = r.event["asset_id"]
    return out


def contract_assets(contract_records: list[Record]) -> list[str]:
    """Assets of the newest CRM file (the portfolio, interpretations.md), in file order."""
    if not contract_records:
        return []
    newest = max((r.event_time_s, r.event["source_file"]) for r in contract_records)
    seen: dict[str, None] = {}
    for r in contract_records:
        if (r.event_time_s, r.event["source_file"]) == newest:
            seen.setdefault(r.event["asset_id"], None)
    return list(seen)
