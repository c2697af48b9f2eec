"""The imbalance price files (German CSV): estimates and finals, in the zone the file names."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from pathlib import Path

from intraday.core.qh import BERLIN, QH_S, UTC, iso, iso_precise
from intraday.ingest.reading import fitted_rows, norm, open_file, parser, reject
from intraday.ingest.records import KIND_BY_NAME, Parsed, Record
from intraday.ingest.values import base, in_range, name_date, parse_decimal_comma, show

_FIXED_ZONES = {"utc": 0, "gmt": 0, "z": 0, "cet": 3600, "mez": 3600, "cest": 7200, "mesz": 7200}
_BERLIN_ZONES = {"europe/berlin", "mez/mesz", "cet/cest", "berlin"}
_UTC_OFFSET = re.compile(r"(?:utc|gmt)\s*([+-])(\d{1,2})(?::?(\d{2}))?")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})(?::00)?")


def _zone(text: str) -> int | dt.tzinfo | None:
    """Offset seconds of a fixed zone name, BERLIN for civil time, None if unknown."""
    z = text.strip().casefold()
    if z in _FIXED_ZONES:
        return _FIXED_ZONES[z]
    if z in _BERLIN_ZONES:
        return BERLIN
    m = _UTC_OFFSET.fullmatch(z)
    if m:
        sec = int(m[2]) * 3600 + int(m[3] or 0) * 60
        return sec if m[1] == "+" else -sec
    return None


def _hhmm(text: str) -> int:
    """Minutes after midnight of ``HH:MM`` (``24:00`` allowed)."""
    m = _HHMM.fullmatch(text.strip())
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2])):
        raise ValueError(text)
    return int(m[1]) * 60 + int(m[2])


def _local(day: dt.date, minutes: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0)) + dt.timedelta(minutes=minutes)


def _local_interval(day: dt.date, von: int, bis: int, zone: int | dt.tzinfo,
                    occurrences: Counter[tuple[dt.date, int]]) -> tuple[float, float] | str:
    """UTC ``(start, end)`` of a ``von``-``bis`` row, or the reason it has none.

    In a civil zone a wall time that occurs twice is taken in row order (``occurrences`` counts
    them per file): first the earlier offset (CEST), then the later (CET); a wall time skipped by
    the spring jump has no instant. ``bis`` is the first instant after the start among its
    readings: on the same day or the next (``00:00``), with ``von``'s offset or either of its own.
    That is right on both DST days, however the export writes the end: 02:45-03:00 and
    02:45-02:00 (first time) both end at 01:00Z on 2025-10-26; 01:45-02:00 and 01:45-03:00 both
    end at 01:00Z on 2025-03-30.
    """
    in_range(dt.datetime.combine(day, dt.time(0), tzinfo=UTC).timestamp())
    start_local = _local(day, von)
    ends_local = [_local(day, bis), _local(day + dt.timedelta(days=1), bis)]
    if isinstance(zone, int):
        start = start_local.replace(tzinfo=UTC).timestamp() - zone
        candidates = [e.replace(tzinfo=UTC).timestamp() - zone for e in ends_local]
    else:
        s0 = start_local.replace(tzinfo=zone, fold=0)
        if s0.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != start_local:
            return "nonexistent local time (clocks jump forward)"
        s1 = start_local.replace(tzinfo=zone, fold=1)
        if s0.utcoffset() != s1.utcoffset():  # the wall time occurs twice: row order decides
            occurrences[(day, von)] += 1
            n = occurrences[(day, von)]
            if n > 2:
                return "ambiguous local time occurs more than twice"
            start = (s0 if n == 1 else s1).timestamp()
        else:
            start = s0.timestamp()
        candidates = []
        for e in ends_local:
            candidates += [start + (e - start_local).total_seconds(),
                           e.replace(tzinfo=zone, fold=0).timestamp(),
                           e.replace(tzinfo=zone, fold=1).timestamp()]
    return start, min(c for c in candidates if c > start)


_IMBALANCE_BASE = {"datum": ("Datum",), "zeitzone": ("Zeitzone",), "von": ("von",), "bis": ("bis",)}
_IMBALANCE_ESTIMATE = {**_IMBALANCE_BASE, "estimate": ("AEP-Schätzer", "AEP-Schatzer", "AEP Schätzer")}
_IMBALANCE_FINAL = {**_IMBALANCE_BASE, "unterdeckt": ("reBAP unterdeckt",),
                    "ueberdeckt": ("reBAP ueberdeckt", "reBAP überdeckt", "reBAP uberdeckt")}
_ESTIMATES, _FINALS = KIND_BY_NAME["imbalance_estimate"], KIND_BY_NAME["imbalance_final"]


@parser
def parse_imbalance_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``imbalance_price`` event per row of an estimate or final file (kind from the name).

    ``Datum`` DD.MM.YYYY, ``von``/``bis`` HH:MM in the zone of ``Zeitzone`` (interpretations.md);
    ``bis`` not after ``von`` is on the next day. With ``Europe/Berlin`` a wall time that occurs
    twice (fall-back day) is CEST on its first row and CET on its second; a third is rejected, as
    is a wall time that does not exist (spring-forward day). Numbers use a decimal comma
    (:func:`parse_decimal_comma`). A row without the price(s) is no event; a bad number is
    rejected. ``published_at`` = ``event_time`` = the time in the file name.
    """
    f = open_file(path, rel_name, _ESTIMATES, _FINALS,
                   guess=lambda low: _FINALS if "final" in low else _ESTIMATES)
    rel, topic, t = f.rel, f.topic, f.stamp
    kind = "estimate" if f.kind is _ESTIMATES else "final"
    text, h, ncols, cols = f.read_csv(";", _IMBALANCE_ESTIMATE if kind == "estimate" else _IMBALANCE_FINAL)
    header = next(csv.reader([text.lines[h]], delimiter=";"))
    labels = {ours: header[i].strip() for ours, i in cols.items()}
    i_status = next((i for i, c in enumerate(header) if norm(c) == "status"), None)
    t_iso = iso_precise(t)
    occurrences: Counter[tuple[dt.date, int]] = Counter()
    dates: dict[str, dt.date] = {}
    records, rejections = [], []

    def bad(first: int, last: int, reason: str) -> None:
        rejections.append(reject(topic, rel, first, reason, text.raw(first, last)))

    price_cols = [cols[c] for c in (("estimate",) if kind == "estimate" else ("unterdeckt", "ueberdeckt"))]
    rows = list(text.rows(";", h + 1))
    # the file's number style, from all its price cells: any decimal comma makes dots thousands
    cells = [r[i] for _, _, r, _ in rows if r is not None for i in price_cols if i < len(r)]
    comma_file = True if any("," in c for c in cells) else None

    for first, last, row in fitted_rows(text, rows, ncols, topic, rel, rejections):
        datum = row[cols["datum"]].strip()
        day = dates.get(datum)
        if day is None:
            try:
                day = dates[datum] = name_date(datum, "%d.%m.%Y")
            except ValueError:
                bad(first, last, f"bad Datum {show(datum)} (expected DD.MM.YYYY)")
                continue
        try:
            von = _hhmm(row[cols["von"]])
        except ValueError:
            bad(first, last, f"bad von {show(row[cols['von']])} (expected HH:MM)")
            continue
        try:
            bis = _hhmm(row[cols["bis"]])
        except ValueError:
            bad(first, last, f"bad bis {show(row[cols['bis']])} (expected HH:MM)")
            continue
        zone = _zone(row[cols["zeitzone"]])
        if zone is None:
            bad(first, last, f"unknown Zeitzone {show(row[cols['zeitzone']].strip())}")
            continue
        try:
            interval = _local_interval(day, von, bis, zone, occurrences)
        except (ValueError, OverflowError):
            interval = "date out of range (years 2000-2099)"
        if isinstance(interval, str):
            bad(first, last, f"{interval}: {datum} {row[cols['von']].strip()} "
                             f"{row[cols['zeitzone']].strip()}")
            continue
        start, end = interval
        if start % QH_S or end - start != QH_S:
            bad(first, last, f"row is not one quarter-hour ({iso_precise(start)} - {iso_precise(end)})")
            continue
        try:
            if kind == "estimate":
                price = parse_decimal_comma(row[cols["estimate"]], comma_file)
                under = over = None
                if price is None:
                    continue
            else:
                price = None
                try:
                    under = parse_decimal_comma(row[cols["unterdeckt"]], comma_file)
                except ValueError as exc:
                    raise ValueError(f"{labels['unterdeckt']}: {exc}") from None
                try:
                    over = parse_decimal_comma(row[cols["ueberdeckt"]], comma_file)
                except ValueError as exc:
                    raise ValueError(f"{labels['ueberdeckt']}: {exc}") from None
                if under is None and over is None:
                    continue
        except ValueError as exc:
            msg = str(exc)
            if kind == "estimate":
                msg = f"{labels['estimate']}: {msg}"
            bad(first, last, f"bad number in {msg}")
            continue
        status = row[i_status].strip() or None if i_status is not None and i_status < len(row) else None
        ds_iso = iso(int(start))
        event = base("imbalance_price", t_iso, rel, first)
        event.update(kind=kind, delivery_start=ds_iso, delivery_end=iso(int(end)), published_at=t_iso,
                     price_eur_mwh=price, unterdeckt_eur_mwh=under, ueberdeckt_eur_mwh=over,
                     status=status)
        records.append(Record(topic, ds_iso, t, event))
    return records, rejections
