"""The exchange's trade files (CSV): our private trades and the market's public ones."""

from __future__ import annotations

import csv
from pathlib import Path

from intraday.contract.events import SCHEMA_VERSION
from intraday.ingest.reading import blank, fit, norm, open_file, parser, reject
from intraday.ingest.records import KIND_BY_NAME, Parsed, Record, Rejection
from intraday.ingest.values import aware_time, check_range, number, show

_TRADE_COLUMNS = {"trade_id": ("TradeId",), "delivery_start": ("DeliveryStart",),
                  "delivery_end": ("DeliveryEnd",), "execution_time": ("ExecutionTime",),
                  "price": ("Price",), "volume": ("Volume",)}
_PRIVATE_TRADES, _PUBLIC_TRADES = KIND_BY_NAME["private_trades"], KIND_BY_NAME["public_trades"]


@parser
def parse_trade_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``trade`` event per row of a private or public trades file (book from the file name).

    The first line is a ``#`` title, then the header; columns are read by name. Timestamps with
    any offset become UTC; Price may be negative; Volume is MW and must be positive. Duplicate
    trade ids are *not* removed here (``parse_day`` does it across the files of a book).
    """
    f = open_file(path, rel_name, _PRIVATE_TRADES, _PUBLIC_TRADES,
                   guess=lambda low: _PRIVATE_TRADES if "priv" in low else _PUBLIC_TRADES)
    rel, topic = f.rel, f.topic
    private = f.kind is _PRIVATE_TRADES
    book = "private" if private else "public"
    required = {**_TRADE_COLUMNS, "side": ("Side",)} if private else _TRADE_COLUMNS
    text, h, ncols, cols = f.read_csv(";", required)
    # optional: Currency (must be EUR when present)
    currency_i = next((i for i, c in enumerate(next(csv.reader([text.lines[h]], delimiter=";")))
                       if norm(c) == "currency"), None)
    i_id, i_ds, i_de = cols["trade_id"], cols["delivery_start"], cols["delivery_end"]
    i_ex, i_p, i_v, i_side = cols["execution_time"], cols["price"], cols["volume"], cols.get("side")
    cache: dict[str, tuple[float, str]] = {}
    records: list[Record] = []
    rejections: list[Rejection] = []
    append = records.append

    def bad(first: int, last: int, reason: str) -> None:
        rejections.append(reject(topic, rel, first, reason, text.raw(first, last)))

    for first, last, row, err in text.rows(";", h + 1):
        if row is None:
            bad(first, last, err)
            continue
        if len(row) != ncols:
            if not row or blank(row):
                continue
            fitted = fit(row, ncols)
            if fitted is None:
                bad(first, last, f"expected {ncols} fields, found {len(row)}")
                continue
            row = fitted
        trade_id = row[i_id].strip()
        if not trade_id:
            if blank(row):
                continue
            bad(first, last, "empty TradeId")
            continue
        try:
            ds_text = row[i_ds]
            ds = cache.get(ds_text)
            if ds is None:
                ds = cache[ds_text] = aware_time(ds_text)
        except ValueError as exc:
            bad(first, last, f"bad DeliveryStart {show(row[i_ds])}: {exc}")
            continue
        try:
            de_text = row[i_de]
            de = cache.get(de_text)
            if de is None:
                de = cache[de_text] = aware_time(de_text)
        except ValueError as exc:
            bad(first, last, f"bad DeliveryEnd {show(row[i_de])}: {exc}")
            continue
        problem = check_range(ds[0], de[0])
        if problem:
            bad(first, last, f"{problem} ({ds[1]} - {de[1]})")
            continue
        try:
            ex_s, ex_iso = aware_time(row[i_ex])
        except ValueError as exc:
            bad(first, last, f"bad ExecutionTime {show(row[i_ex])}: {exc}")
            continue
        try:
            price = number(row[i_p])
        except ValueError:
            bad(first, last, f"bad number in Price: {show(row[i_p])}")
            continue
        try:
            volume = number(row[i_v])
        except ValueError:
            bad(first, last, f"bad number in Volume: {show(row[i_v])}")
            continue
        if volume <= 0:
            bad(first, last, f"Volume must be positive: {show(row[i_v])}")
            continue
        side = None
        if i_side is not None:
            side = row[i_side].strip().upper()
            if side not in ("BUY", "SELL"):
                bad(first, last, f"unknown Side {show(row[i_side])}")
                continue
        if currency_i is not None and currency_i < len(row):
            cur = row[currency_i].strip()
            if cur and cur.upper() != "EUR":
                bad(first, last, f"Currency {show(cur)} is not EUR")
                continue
        append(Record(topic, ds[1], ex_s, {
            "schema_version": SCHEMA_VERSION, "type": "trade", "event_time": ex_iso,
            "source_file": rel, "source_line": first, "book": book, "trade_id": trade_id,
            "side": side, "delivery_start": ds[1], "delivery_end": de[1], "execution_time": ex_iso,
            "price_eur_mwh": price, "volume_mw": volume}))
    return records, rejections
