"""The files of a delivery-day directory as typed source events (data-formats.md).

Errors are values: every parser returns ``(records, rejections)`` and never lets an exception
escape for bad content. A :class:`Record` is one event for one topic (schemas: ``intraday.contract.events``);
a :class:`Rejection` names the file, the physical line (0 for a whole file or a JSON row) and a
one-line reason, and goes to the dead-letter topic ``topics.dlq(rejection.topic)``.

``parse_day(day_dir)`` reads a whole day: master data first (CRM contracts map metering points to
assets and, with the technical data, say which assets exist), then every other file; it returns
the records in replay order ``(event_time_s, source_file, source_line)``, a trade id re-sent within
a book published once.

Times (interpretations.md "Times in files"): every instant becomes UTC. JSON timestamps labelled
``ms`` are seconds or milliseconds by magnitude. Imbalance ``von``/``bis`` are read in the zone of
``Zeitzone``; with ``Europe/Berlin`` a wall time that occurs twice on the fall-back day is taken in
row order, first occurrence CEST, second CET::

    26.10.2025 Europe/Berlin  02:00-02:15 (1st row) -> 2025-10-26T00:00:00Z
                              02:00-02:15 (2nd row) -> 2025-10-26T01:00:00Z

Example::

    >>> day = parse_day(Path("sample_day"))                      # doctest: +SKIP
    >>> day.records[0].topic, day.records[0].event["type"]       # doctest: +SKIP
    ('exchange.public-trades', 'trade')
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from intraday.contract import topics
from intraday.contract.events import SCHEMA_VERSION, dlq_record, occurrence_order
from intraday.core.qh import BERLIN, QH_S, UTC, delivery_range_problem, epoch_from_number, iso, iso_precise
from intraday.core.settlement import contract_problems

__all__ = [
    "ParsedDay", "Record", "Rejection", "classify", "contract_assets", "metering_point_assets",
    "parse_contract_file", "parse_day", "parse_decimal_comma", "parse_file",
    "parse_final_production_file", "parse_forecast_file", "parse_imbalance_file",
    "parse_live_infeed_file", "parse_redispatch_compensation_file", "parse_redispatch_flag_file",
    "parse_technical_data_file", "parse_trade_file",
]


# ----------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Record:
    """One source event for one topic."""

    topic: str           # e.g. topics.FORECASTS
    key: str             # contract.md: asset_id, or delivery_start ISO text for trades/prices
    event_time_s: float  # UTC epoch seconds at which the data became available
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A file, row or line that could not become an event, with the reason (for the DLQ)."""

    topic: str        # the source topic whose DLQ gets it
    source_file: str  # path relative to the day directory
    line: int         # 1-based physical line; 0 for a whole file (and for rows of a JSON file)
    reason: str       # short, one line
    raw: str          # the raw line, or the first 200 characters of the file

    @property
    def dlq_topic(self) -> str:
        return topics.dlq(self.topic)

    def dlq_event(self) -> dict[str, Any]:
        """The dead-letter record (``intraday.contract.events.dlq_record``)."""
        return dlq_record(self.source_file, self.line, self.reason, self.raw, self.topic)

    def message(self) -> str:
        """``vpp/forecasts/x.json:0: truncated JSON: ...`` on one line."""
        return _one_line(f"{self.source_file}:{self.line}: {self.reason}", 500)


@dataclass
class ParsedDay:
    records: list[Record]        # sorted by (event_time_s, source_file, source_line), stable
    rejections: list[Rejection]  # sorted by (source_file, line)
    missing_sources: list[str]   # what the day lacks, e.g. "no imbalance final price files"
    files_read: int
    duplicates_dropped: int = 0  # trades whose id was already seen in the same book
    ignored_files: list[str] = field(default_factory=list)  # outside the layout, no source name


Parsed = tuple[list[Record], list[Rejection]]


# ----------------------------------------------------------------------------------------------
# file kinds (data-formats.md layout)

_TS_DASHED = r"(\d{4}-\d{2}-\d{2}T\d{6}Z)"


@dataclass(frozen=True, slots=True)
class _Stamp:
    """The time or date in a kind's file names: the pattern group that holds it and how it is read
    (``ValueError`` if the text is no valid stamp: the file is then rejected as a whole)."""

    group: int
    what: str                   # "time" or "date": "bad <what> in file name: <text>"
    read: Callable[[str], Any]  # epoch seconds of a time, a ``dt.date`` of a date


def _time_at(group: int, fmt: str) -> _Stamp:
    """A UTC time in the name, as epoch seconds (:func:`_name_time`)."""
    return _Stamp(group, "time", lambda text: _name_time(text, fmt))


def _date_at(group: int, fmt: str) -> _Stamp:
    """A date in the name (:func:`_name_date`)."""
    return _Stamp(group, "date", lambda text: _name_date(text, fmt))


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    directory: str
    pattern: re.Pattern[str]
    topic: str
    expected: str  # the name pattern, for messages
    label: str     # for missing_sources: "no <label> files"
    stamp: _Stamp | None = None  # the time or date in the name its parser reads, if any


_KINDS: tuple[_Kind, ...] = (
    _Kind("technical_data", "vpp/technical_data", re.compile(rf"technical_data_{_TS_DASHED}\.json"),
          topics.TECHNICAL_DATA, "technical_data_<YYYY-MM-DDTHHMMSSZ>.json", "technical data",
          _time_at(1, "%Y-%m-%dT%H%M%SZ")),
    _Kind("forecast", "vpp/forecasts", re.compile(rf"forecast_(.+)_{_TS_DASHED}\.json"),
          topics.FORECASTS, "forecast_<ASSET_ID>_<YYYY-MM-DDTHHMMSSZ>.json", "forecast"),
    _Kind("live", "vpp/live_measured_infeed", re.compile(r"([^_]+)_(\d{8})\.json"),
          topics.LIVE_INFEED, "<SHORT>_<YYYYMMDD>.json", "live infeed"),
    _Kind("crm", "crm", re.compile(r"asset_contracts_(\d{8}_\d{6})\.csv"),
          topics.CRM_CONTRACTS, "asset_contracts_<YYYYMMDD>_<HHMMSS>.csv", "CRM contract",
          _time_at(1, "%Y%m%d_%H%M%S")),
    _Kind("private_trades", "exchange", re.compile(r"(Private)_Trades-(\d{8})-(\d{8}T\d{9}Z)\.csv", re.I),
          topics.PRIVATE_TRADES, "Private_Trades-<YYYYMMDD>-<YYYYMMDDTHHMMSSmmmZ>.csv", "private trade"),
    _Kind("public_trades", "exchange", re.compile(r"(Public)_Trades-(\d{8})-(\d{8}T\d{9}Z)\.csv", re.I),
          topics.PUBLIC_TRADES, "Public_Trades-<YYYYMMDD>-<YYYYMMDDTHHMMSSmmmZ>.csv", "public trade"),
    _Kind("imbalance_estimate", "imbalance",
          re.compile(rf"imbalance_price_estimation_{_TS_DASHED}\.csv"), topics.IMBALANCE_PRICES,
          "imbalance_price_estimation_<YYYY-MM-DDTHHMMSSZ>.csv", "imbalance estimate",
          _time_at(1, "%Y-%m-%dT%H%M%SZ")),
    _Kind("imbalance_final", "imbalance", re.compile(r"imbalance_price_final_(\d{8}_\d{6})\.csv"),
          topics.IMBALANCE_PRICES, "imbalance_price_final_<YYYYMMDD>_<HHMMSS>.csv",
          "imbalance final price", _time_at(1, "%Y%m%d_%H%M%S")),
    _Kind("final_production", "distribution_system_operator",
          re.compile(r"final_production_(.+)_(\d{8})\.csv"), topics.DSO_FINAL,
          "final_production_<METERING_POINT>_<YYYYMMDD>.csv", "DSO final production",
          _date_at(2, "%Y%m%d")),
    _Kind("redispatch_flag", "distribution_system_operator",
          re.compile(r"redispatch_flag_(.+)_(\d{8}_\d{4})\.csv"), topics.DSO_REDISPATCH,
          "redispatch_flag_<METERING_POINT>_<YYYYMMDD>_<HHMM>.csv", "redispatch flag",
          _time_at(2, "%Y%m%d_%H%M")),
    _Kind("redispatch_compensation", "distribution_system_operator",
          re.compile(r"redispatch_compensation_(\d{4}-\d{2}-\d{2})\.csv"), topics.DSO_COMPENSATION,
          "redispatch_compensation_<YYYY-MM-DD>.csv", "redispatch compensation",
          _Stamp(1, "date", dt.date.fromisoformat)),
)
_KIND_BY_NAME = {k.name: k for k in _KINDS}
_DIRECTORIES = {k.directory for k in _KINDS}


def _guess_topic(directory: str | None, name: str) -> str | None:
    """The topic an unrecognised file most likely belongs to (its DLQ gets the rejection)."""
    low = name.lower()
    if directory == "exchange" or "trade" in low:
        return topics.PRIVATE_TRADES if "priv" in low else topics.PUBLIC_TRADES
    if directory == "distribution_system_operator" or low.startswith(("final_production",
                                                                      "redispatch")):
        if "compensation" in low:
            return topics.DSO_COMPENSATION
        if "redispatch" in low or "flag" in low:
            return topics.DSO_REDISPATCH
        return topics.DSO_FINAL
    by_dir = {"vpp/technical_data": topics.TECHNICAL_DATA, "vpp/forecasts": topics.FORECASTS,
              "vpp/live_measured_infeed": topics.LIVE_INFEED, "crm": topics.CRM_CONTRACTS,
              "imbalance": topics.IMBALANCE_PRICES}
    if directory in by_dir:
        return by_dir[directory]
    for word, topic in (("technical", topics.TECHNICAL_DATA), ("forecast", topics.FORECASTS),
                        ("infeed", topics.LIVE_INFEED), ("contract", topics.CRM_CONTRACTS),
                        ("imbalance", topics.IMBALANCE_PRICES)):
        if word in low:
            return topic
    return None


def classify(rel_name: str) -> tuple[str | None, str | None]:
    """``(kind, topic)`` of a file by its path relative to the day directory.

    A known name in its directory gives its kind; anything else gives ``kind=None`` and the topic
    it most likely belongs to (``None`` when it looks like no source at all).

    >>> classify("vpp/forecasts/forecast_WND-DE-003_2025-06-08T101500Z.json")
    ('forecast', 'vpp.forecasts')
    >>> classify("vpp/forecasts/notes.txt")
    (None, 'vpp.forecasts')
    """
    parts = rel_name.replace("\\", "/").split("/")
    name, directory = parts[-1], "/".join(parts[:-1])
    for kind in _KINDS:
        if kind.directory == directory and kind.pattern.fullmatch(name):
            return kind.name, kind.topic
    if directory in _DIRECTORIES:
        return None, _guess_topic(directory, name)
    for kind in _KINDS:  # a source file in the wrong directory
        if kind.pattern.fullmatch(name):
            return None, kind.topic
    return None, _guess_topic(None, name)


# ----------------------------------------------------------------------------------------------
# small helpers


def _one_line(text: str, limit: int = 300) -> str:
    s = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _show(value: Any, limit: int = 60) -> str:
    """A value quoted for a reason: ``'abc'``, cut to ``limit`` characters."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def _reject(topic: str, rel: str, line: int, reason: str, raw: str) -> Rejection:
    return Rejection(topic, rel, line, _one_line(reason), raw[:2000])


def _file_head(data: bytes) -> str:
    return data[:400].decode("utf-8", errors="replace").lstrip("\ufeff")[:200]


def _peek(path: Path) -> str:
    """The first 200 characters of a file (for the ``raw`` of a whole-file rejection)."""
    try:
        with open(path, "rb") as f:
            return _file_head(f.read(400))
    except OSError:
        return ""


def _read(path: Path, rel: str, topic: str) -> tuple[bytes | None, Rejection | None]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, _reject(topic, rel, 0, f"cannot read file: {exc.strerror or exc}", "")
    if not data.strip():
        return None, _reject(topic, rel, 0, "empty file", _file_head(data))
    return data, None


def _name_time(text: str, fmt: str) -> float:
    """UTC epoch seconds of a time in a file name (``ValueError`` if it is no valid time)."""
    return _in_range(dt.datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())


_MIN_EPOCH_S = 946684800.0   # 2000-01-01T00:00:00Z: instants outside [2000, 2100) are no data
_MAX_EPOCH_S = 4102444800.0  # 2100-01-01T00:00:00Z  (and keep date arithmetic far from year 9999)


def _in_range(epoch_s: float) -> float:
    if not _MIN_EPOCH_S <= epoch_s < _MAX_EPOCH_S:
        raise ValueError("out of range (years 2000-2099)")
    return epoch_s


def _name_date(text: str, fmt: str) -> dt.date:
    d = dt.datetime.strptime(text, fmt).replace(tzinfo=UTC)
    _in_range(d.timestamp())
    return d.date()


def _number(text: str) -> float:
    """A dot-decimal number; ``ValueError`` for text, NaN, infinities and ``1_000``."""
    v = float(text)
    if v != v or v in (math.inf, -math.inf) or "_" in text:
        raise ValueError(text)
    return v


def _opt_number(text: str) -> float | None:
    s = text.strip()
    return None if not s else _number(s)


def _json_number(value: Any) -> float:
    """A finite number from a JSON cell (a numeric string is accepted); ``ValueError`` else."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    try:
        if isinstance(value, (int, float)):
            v = float(value)
        elif isinstance(value, str):
            v = float(value.strip())
        else:
            raise ValueError("not a number")
    except OverflowError:
        raise ValueError("infinite") from None
    if v != v:
        raise ValueError("NaN")
    if v in (math.inf, -math.inf) or (isinstance(value, str) and "_" in value):
        raise ValueError("infinite" if v in (math.inf, -math.inf) else "not a number")
    return v


def _json_epoch(value: Any) -> float:
    """Epoch seconds of a JSON timestamp, seconds or ms by magnitude; ``ValueError`` if absurd."""
    return _in_range(epoch_from_number(_json_number(value)))


_EPOCH_CACHE: dict[float, float] = {}


def _json_epoch_cached(value: Any) -> float:
    """``_json_epoch`` memoised for plain numbers: forecast versions overlap by 192 of 193 QHs."""
    if type(value) is float or type(value) is int:
        v = _EPOCH_CACHE.get(value)
        if v is None:
            v = _json_epoch(value)
            if len(_EPOCH_CACHE) < 500_000:
                _EPOCH_CACHE[value] = v
        return v
    return _json_epoch(value)


def _json_power(value: Any) -> float:
    if type(value) is float and value - value == 0.0:  # finite float: the common case
        return value
    return _json_number(value)


def _json_text(value: Any, limit: int = 2000) -> str:
    """JSON text of a parsed value for a rejection's ``raw`` (repr if orjson cannot write it)."""
    try:
        return orjson.dumps(value)[:limit].decode(errors="replace")
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)[:limit]


def _iso_dt(d: dt.datetime) -> str:
    """ISO UTC text of an aware datetime, microseconds only when present (like ``iso_precise``)."""
    u = d.astimezone(UTC)
    if u.microsecond:
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return u.strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware_time(text: str) -> tuple[float, str]:
    """Epoch seconds and ISO UTC text of a timestamp with an offset (``2025-06-08 00:00:00+00:00``)."""
    s = text.strip()
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise ValueError("no time zone")
    try:
        epoch = _in_range(d.timestamp())
        # fast path (300k trades a day): UTC text with 0 or 6 fraction digits, as the exchange writes
        if s.endswith("+00:00") and s[10] in " T" and (len(s) == 25 or (len(s) == 32 and s[19] == ".")):
            return epoch, f"{s[:10]}T{s[11:26]}Z" if d.microsecond else f"{s[:10]}T{s[11:19]}Z"
        return epoch, _iso_dt(d)
    except (OverflowError, OSError):
        raise ValueError("out of range") from None


def _utc_time(text: str) -> float:
    """DSO times: ``2025-06-08 00:15:00.000000 UTC``, ISO with ``Z``/offset; naive text is UTC."""
    s = text.strip()
    if s[-4:].upper() == " UTC":
        s = s[:-4].rstrip()
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    try:
        return _in_range(d.timestamp())
    except (OverflowError, OSError):
        raise ValueError("out of range") from None


def _check_range(start: float, end: float) -> str | None:
    return delivery_range_problem(start, end)


def _base(type_: str, event_time: str, rel: str, line: int) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "type": type_, "event_time": event_time,
            "source_file": rel, "source_line": line}


_DE_COMMA = re.compile(r"([+-]?)(\d{1,3}(?:\.\d{3})+|\d+),(\d+)")
_DE_INT = re.compile(r"[+-]?\d+")
_DE_THOUSANDS_ONLY = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+")
_DOT_DECIMAL = re.compile(r"[+-]?\d*\.\d+")


def parse_decimal_comma(text: str, comma_file: bool | None = None) -> float | None:
    """A German number: decimal comma, optional thousands dots; ``None`` for an empty cell.

    A dot is a thousands separator next to a decimal comma, or anywhere in a file known to use
    decimal commas (``comma_file``: ``1.234`` is then 1234, as in a reBAP of 1.234 EUR/MWh with
    no cents). Without that knowledge a number that could be either (``1.234``) is refused,
    never guessed (reliability-notes.md: ``61,9`` must not become ``619``).

    >>> parse_decimal_comma("-14,35"), parse_decimal_comma("1.234,5"), parse_decimal_comma("61,9")
    (-14.35, 1234.5, 61.9)
    >>> parse_decimal_comma("1.234", comma_file=True)
    1234.0
    """
    s = text.strip().replace("\u00a0", "")
    if not s:
        return None
    m = _DE_COMMA.fullmatch(s)
    if m:
        return float(f"{m[1]}{m[2].replace('.', '')}.{m[3]}")
    if _DE_INT.fullmatch(s):
        return float(s)
    if _DE_THOUSANDS_ONLY.fullmatch(s):
        if comma_file:
            return float(s.replace(".", ""))
        raise ValueError(f"ambiguous number {s!r} (thousands dot or decimal point?)")
    if comma_file and "." in s:
        raise ValueError(f"bad number {s!r} (a decimal point in a file with decimal commas)")
    if _DOT_DECIMAL.fullmatch(s):
        return float(s)
    raise ValueError(f"bad number {s!r}")


# ----------------------------------------------------------------------------------------------
# CSV reading


def _decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped); a file that is not UTF-8 is read as Windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


class _CsvText:
    """A CSV file's physical lines and its rows with their line numbers."""

    def __init__(self, data: bytes) -> None:
        self.lines = io.StringIO(_decode(data), newline="").readlines()

    def raw(self, first: int, last: int | None = None) -> str:
        return "".join(self.lines[first - 1: (last or first)]).rstrip("\r\n")

    def head(self) -> str:
        return "".join(self.lines)[:200]

    def rows(self, delimiter: str, skip: int = 0) -> Iterator[tuple[int, int, list[str] | None, str]]:
        """``(first_line, last_line, fields, error)`` per record after ``skip`` lines.

        ``fields`` is None when the csv module refused the record (then ``error`` says why).
        """
        reader = csv.reader(iter(self.lines[skip:]), delimiter=delimiter)
        prev = skip
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                first, prev = prev + 1, skip + reader.line_num
                yield first, max(first, prev), None, f"CSV error: {exc}"
                continue
            first, prev = prev + 1, skip + reader.line_num
            yield first, prev, row, ""

    def header(self, delimiter: str, comments: bool = True) -> tuple[int, list[str] | None]:
        """Index of the header line (0-based) and its fields; leading blank/``#`` lines skipped."""
        for i, line in enumerate(self.lines):
            s = line.strip()
            if not s or (comments and s.startswith("#")):
                continue
            try:
                return i, next(csv.reader([line], delimiter=delimiter))
            except (csv.Error, StopIteration):
                return i, None
        return len(self.lines), None


def _norm(name: str) -> str:
    s = name.strip().strip('"').strip().casefold()
    return s.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")


def _header_index(header: list[str], delimiter: str, required: Mapping[str, tuple[str, ...]]
                  ) -> tuple[dict[str, int], str | None]:
    """Column positions by name: ``required`` maps our name to the accepted header names (the
    first one is named in a "missing column" reason); case, spaces and umlaut spelling ignored."""
    positions: dict[str, int] = {}
    for i, h in enumerate(header):
        positions.setdefault(_norm(h), i)
    found: dict[str, int] = {}
    missing = []
    for ours, accepted in required.items():
        for a in accepted:
            if _norm(a) in positions:
                found[ours] = positions[_norm(a)]
                break
        else:
            missing.append(accepted[0])
    if missing:
        other = [d for d in ",;\t|" if d != delimiter]
        if len(header) == 1 and any(d in header[0] for d in other):
            return found, f"wrong delimiter (expected {delimiter!r})"
        return found, ("missing column " if len(missing) == 1 else "missing columns ") + ", ".join(missing)
    return found, None


def _fit(row: list[str], n: int) -> list[str] | None:
    """The row with exactly ``n`` fields (trailing empty extras dropped), else None."""
    if len(row) == n:
        return row
    if len(row) > n and not any(f.strip() for f in row[n:]):
        return row[:n]
    return None


def _blank(row: list[str]) -> bool:
    return not any(f.strip() for f in row)


def _fitted_rows(text: _CsvText, rows: Iterable[tuple[int, int, list[str] | None, str]], ncols: int,
                 topic: str, rel: str, rejections: list[Rejection]) -> Iterator[tuple[int, int, list[str]]]:
    """``(first_line, last_line, fields)`` of each row of ``rows`` (:meth:`_CsvText.rows`) with
    ``ncols`` fields (:func:`_fit`); blank rows are skipped, a row the csv module refused or with
    another number of fields becomes a Rejection."""
    for first, last, row, err in rows:
        if row is None:
            rejections.append(_reject(topic, rel, first, err, text.raw(first, last)))
            continue
        if _blank(row):
            continue
        fitted = _fit(row, ncols)
        if fitted is None:
            rejections.append(_reject(topic, rel, first, f"expected {ncols} fields, found {len(row)}",
                                      text.raw(first, last)))
            continue
        yield first, last, fitted


# ----------------------------------------------------------------------------------------------
# what every parser starts with: the name, the stamp in it, the content, the header


class _Stop(Exception):
    """Ends a parser early: its file is rejected as a whole (line 0). Raised by the helpers below
    and by the parsers themselves, turned into the parser's result by :func:`_parser`."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


def _parser(parse: Callable[..., Parsed]) -> Callable[..., Parsed]:
    """A file parser that may raise :class:`_Stop`: it then returns ``([], [rejection])`` (so no
    exception leaves it for bad content)."""

    @functools.wraps(parse)
    def run(*args: Any, **kwargs: Any) -> Parsed:
        try:
            return parse(*args, **kwargs)
        except _Stop as stop:
            return [], [stop.rejection]

    return run


@dataclass(frozen=True, slots=True)
class _File:
    """A file that passed the checks every parser starts with (:func:`_open_file`)."""

    kind: _Kind
    rel: str               # path relative to the day directory: the rejections' source_file
    match: re.Match[str]   # of the kind's name pattern
    stamp: Any             # the time (epoch seconds) or date in the name; None if the kind has none
    data: bytes            # the content, not blank

    @property
    def topic(self) -> str:
        return self.kind.topic

    def refuse(self, reason: str, raw: str) -> _Stop:
        """The whole-file rejection for ``reason``, to raise."""
        return _Stop(_reject(self.topic, self.rel, 0, reason, raw))

    def read_csv(self, delimiter: str, required: Mapping[str, tuple[str, ...]]
            ) -> tuple[_CsvText, int, int, dict[str, int]]:
        """Decode, find the header, map the required columns (:func:`_header_index`):
        ``(text, header_line, n_cols, cols)``. No header or a missing column refuses the file."""
        text = _CsvText(self.data)
        h_index, header = text.header(delimiter)
        if header is None:
            reason = "no header row" if h_index >= len(text.lines) else "unreadable header row"
            raise self.refuse(reason, text.head())
        cols, problem = _header_index(header, delimiter, required)
        if problem:
            raise self.refuse(problem, text.head())
        return text, h_index, len(header), cols

    def read_json(self) -> tuple[dict[str, Any], str]:
        """The top-level JSON object and the file's first 200 characters (for whole-file
        rejections); invalid JSON or another top level refuses the file."""
        head = _file_head(self.data)
        doc, problem = _load_json(self.data)
        if problem:
            raise self.refuse(problem, head)
        if not isinstance(doc, dict):
            raise self.refuse("top level is not a JSON object", head)
        return doc, head


def _open_file(path: Path, rel_name: str | None, *kinds: _Kind,
               guess: Callable[[str], _Kind] | None = None) -> _File:
    """The file as the first of ``kinds`` whose name pattern fits, read; else :class:`_Stop`.

    Whole-file rejections, in this order: a name that fits none of ``kinds`` (for the topic and
    the expected name of the kind ``guess`` picks by the lower-cased name, else of the first
    kind), a bad time or date in the name (the kind's ``stamp``), a file that cannot be read or
    is blank. ``rel_name`` (the path relative to the day directory) defaults to the file's name.
    """
    rel = rel_name or Path(path).name
    name = Path(rel).name
    for kind in kinds:
        m = kind.pattern.fullmatch(name)
        if m:
            break
    else:
        like = guess(name.lower()) if guess else kinds[0]
        raise _Stop(_reject(like.topic, rel, 0, f"unrecognised file name (expected {like.expected})",
                            _peek(path)))
    stamp = None
    if kind.stamp is not None:
        text = m[kind.stamp.group]
        try:
            stamp = kind.stamp.read(text)
        except ValueError:
            reason = f"bad {kind.stamp.what} in file name: {text}"
            raise _Stop(_reject(kind.topic, rel, 0, reason, "")) from None
    data, rej = _read(path, rel, kind.topic)
    if rej:
        raise _Stop(rej)
    assert data is not None
    return _File(kind, rel, m, stamp, data)


# ----------------------------------------------------------------------------------------------
# JSON sources


def _load_json(data: bytes) -> tuple[Any, str | None]:
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "file is not UTF-8 text"
    try:
        return json.loads(text), None  # the stdlib also reads the NaN some exporters write
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            return None, f"truncated JSON: {where}"
        return None, f"invalid JSON: {where}"
    except (ValueError, RecursionError) as exc:
        return None, f"invalid JSON: {type(exc).__name__}"


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
    return _json_text({k: c[i] for k, c in cols.items()})


def _missing_columns(cols: Mapping[str, list[Any]], names: tuple[str, ...]) -> str | None:
    missing = [n for n in names if n not in cols]
    if not missing:
        return None
    return ("missing column " if len(missing) == 1 else "missing columns ") + ", ".join(missing)


@_parser
def parse_forecast_file(path: Path, rel_name: str | None = None,
                        known_assets: Collection[str] | None = None) -> Parsed:
    """One ``forecast`` event per (asset, version) of a forecast file.

    Rows of one file with different ``version`` values become one event per version (in version
    order). A row whose power is not a finite number, whose start is not on a quarter-hour or
    repeats a start of its version is rejected (reason names the row index); the other rows go
    out. ``known_assets`` (None: accept all) rejects the whole file of an unknown asset.
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["forecast"])
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
            start = _json_epoch_cached(starts[i])
        except (ValueError, TypeError, OverflowError):
            problem = f"row {i}: start is not a timestamp ({_show(starts[i])})"
        else:
            try:
                version = _json_epoch_cached(versions[i])
            except (ValueError, TypeError, OverflowError):
                problem = f"row {i}: version is not a timestamp ({_show(versions[i])})"
            else:
                try:
                    power = _json_power(powers[i])
                except (ValueError, TypeError) as exc:
                    what = "NaN" if str(exc) == "NaN" else f"not a number ({_show(powers[i])})"
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
            rejections.append(_reject(topic, rel, 0, problem, _row_raw(cols, i)))
    records = []
    for version in sorted(by_version):
        starts_iso, power_kw, _ = by_version[version]
        v_iso = iso_precise(version)
        event = _base("forecast", v_iso, rel, 0)
        event.update(asset_id=asset, type_id=type_id, version=v_iso, delivery_start=starts_iso,
                     power_kw=power_kw)
        records.append(Record(topic, asset, version, event))
    return records, rejections


@_parser
def parse_live_infeed_file(path: Path, rel_name: str | None = None,
                           known_assets: Collection[str] | None = None) -> Parsed:
    """One ``live_sample`` event per sample; negative values are real and kept.

    The asset is ``key.asset_id`` or, in some files, ``key.entity_id``. A sample whose value is
    null/NaN/not a number, or whose timestamp is not one, is rejected; ``quality`` may be absent.
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["live"])
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
            ts = _json_epoch(stamps[i])
        except (ValueError, TypeError, OverflowError):
            rejections.append(_reject(topic, rel, 0, f"row {i}: timestamp is not a timestamp "
                                      f"({_show(stamps[i])})", _row_raw(cols, i)))
            continue
        try:
            value = _json_power(values[i])
        except (ValueError, TypeError) as exc:
            what = "NaN" if str(exc) == "NaN" else f"not a number ({_show(values[i])})"
            rejections.append(_reject(topic, rel, 0, f"row {i}: value is {what}", _row_raw(cols, i)))
            continue
        quality: Any = None
        if qualities is not None:
            q = qualities[i]
            if isinstance(q, str) or (isinstance(q, (int, float)) and not isinstance(q, bool)
                                      and math.isfinite(q)):
                quality = q
        t_iso = iso_precise(ts)
        event = _base("live_sample", t_iso, rel, 0)
        event.update(asset_id=asset, timestamp=t_iso, value_kw=value, quality=quality, source_row=i)
        records.append(Record(topic, asset, ts, event))
    return records, rejections


def _opt_json_number(value: Any) -> float | None:
    try:
        return _json_number(value)
    except (ValueError, TypeError):
        return None


def _opt_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    return None


@_parser
def parse_technical_data_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``technical_data`` event per asset, at the time in the file name."""
    f = _open_file(path, rel_name, _KIND_BY_NAME["technical_data"])
    rel, topic, t = f.rel, f.topic, f.stamp
    doc, head = f.read_json()
    assets = doc.get("assets")
    if not isinstance(assets, list):
        raise f.refuse("missing or bad assets list", head)
    t_iso = iso_precise(t)
    records, rejections = [], []
    for i, a in enumerate(assets):
        raw = _json_text(a)
        if not isinstance(a, dict):
            rejections.append(_reject(topic, rel, 0, f"asset {i}: not a JSON object", raw))
            continue
        asset_id = _opt_text(a.get("asset_id"))
        if asset_id is None:
            rejections.append(_reject(topic, rel, 0, f"asset {i}: no asset_id", raw))
            continue
        loc = a.get("location") if isinstance(a.get("location"), dict) else {}
        attrs = a.get("technical_attributes") if isinstance(a.get("technical_attributes"), dict) else {}
        owner = a.get("owner")
        owner_name = _opt_text(owner.get("name")) if isinstance(owner, dict) else _opt_text(owner)
        event = _base("technical_data", t_iso, rel, 0)
        event.update(asset_id=asset_id, name=_opt_text(a.get("name")), asset_type=_opt_text(a.get("type")),
                     capacity_kw=_opt_json_number(attrs.get("capacity_kw")),
                     status=_opt_text(a.get("status")), owner=owner_name,
                     latitude=_opt_json_number(loc.get("latitude")),
                     longitude=_opt_json_number(loc.get("longitude")),
                     timezone=_opt_text(loc.get("timezone")))
        records.append(Record(topic, asset_id, t, event))
    return records, rejections


# ----------------------------------------------------------------------------------------------
# CRM contracts

_CRM_COLUMNS = ("contract_id", "asset_id", "metering_point_id", "capacity", "technology",
                "contract_begin", "contract_end", "price_model", "price", "fee_model", "fee",
                "fee_percent", "email")


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text.strip())


@_parser
def parse_contract_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``contract`` event per CRM row; inconsistent contracts are kept with ``errors``.

    ``errors`` lists every problem: an unknown price_model/fee_model, a model without the value it
    needs (``price_model fixed requires price``, ``fee_model fixed_as_produced requires fee``,
    ``fee_model percent_of_market requires fee_percent``, ``fee_model fixed_for_capacity requires
    capacity``), a bad number or date, ``contract_end before contract_begin``. Only a row with the
    wrong number of fields, or without contract_id/asset_id (it could not be keyed), is rejected.
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["crm"])
    rel, topic, t = f.rel, f.topic, f.stamp
    text, h, ncols, cols = f.read_csv(",", {c: (c,) for c in _CRM_COLUMNS})
    t_iso = iso(int(t)) if t == int(t) else iso_precise(t)
    records, rejections = [], []
    for first, last, fitted in _fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        v = {c: fitted[i].strip() for c, i in cols.items()}
        if not v["contract_id"] or not v["asset_id"]:
            missing = "contract_id" if not v["contract_id"] else "asset_id"
            rejections.append(_reject(topic, rel, first, f"empty {missing}", text.raw(first, last)))
            continue
        errors: list[str] = []
        nums: dict[str, float | None] = {}
        for col in ("capacity", "price", "fee", "fee_percent"):
            try:
                nums[col] = _opt_number(v[col])
            except ValueError:
                nums[col] = None
                errors.append(f"bad number in {col}: {_show(v[col])}")
        dates: dict[str, dt.date | None] = {}
        for col in ("contract_begin", "contract_end"):
            dates[col] = None
            if v[col]:
                try:
                    dates[col] = _date(v[col])
                except ValueError:
                    errors.append(f"bad date in {col}: {_show(v[col])}")
        begin, end = dates["contract_begin"], dates["contract_end"]
        price_model, fee_model = v["price_model"].lower(), v["fee_model"].lower()
        errors += contract_problems(begin, end, v["price_model"], nums["price"], v["fee_model"], nums["fee"],
                                    nums["fee_percent"], nums["capacity"], begin_given=bool(v["contract_begin"]))
        if not v["metering_point_id"]:
            errors.append("missing metering_point_id")
        event = _base("contract", t_iso, rel, first)
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


# ----------------------------------------------------------------------------------------------
# exchange trades

_TRADE_COLUMNS = {"trade_id": ("TradeId",), "delivery_start": ("DeliveryStart",),
                  "delivery_end": ("DeliveryEnd",), "execution_time": ("ExecutionTime",),
                  "price": ("Price",), "volume": ("Volume",)}
_PRIVATE_TRADES, _PUBLIC_TRADES = _KIND_BY_NAME["private_trades"], _KIND_BY_NAME["public_trades"]


@_parser
def parse_trade_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``trade`` event per row of a private or public trades file (book from the file name).

    The first line is a ``#`` title, then the header; columns are read by name. Timestamps with
    any offset become UTC; Price may be negative; Volume is MW and must be positive. Duplicate
    trade ids are *not* removed here (``parse_day`` does it across the files of a book).
    """
    f = _open_file(path, rel_name, _PRIVATE_TRADES, _PUBLIC_TRADES,
                   guess=lambda low: _PRIVATE_TRADES if "priv" in low else _PUBLIC_TRADES)
    rel, topic = f.rel, f.topic
    private = f.kind is _PRIVATE_TRADES
    book = "private" if private else "public"
    required = {**_TRADE_COLUMNS, "side": ("Side",)} if private else _TRADE_COLUMNS
    text, h, ncols, cols = f.read_csv(";", required)
    # optional: Currency (must be EUR when present)
    currency_i = next((i for i, c in enumerate(next(csv.reader([text.lines[h]], delimiter=";")))
                       if _norm(c) == "currency"), None)
    i_id, i_ds, i_de = cols["trade_id"], cols["delivery_start"], cols["delivery_end"]
    i_ex, i_p, i_v, i_side = cols["execution_time"], cols["price"], cols["volume"], cols.get("side")
    cache: dict[str, tuple[float, str]] = {}
    records: list[Record] = []
    rejections: list[Rejection] = []
    append = records.append

    def bad(first: int, last: int, reason: str) -> None:
        rejections.append(_reject(topic, rel, first, reason, text.raw(first, last)))

    for first, last, row, err in text.rows(";", h + 1):
        if row is None:
            bad(first, last, err)
            continue
        if len(row) != ncols:
            if not row or _blank(row):
                continue
            fitted = _fit(row, ncols)
            if fitted is None:
                bad(first, last, f"expected {ncols} fields, found {len(row)}")
                continue
            row = fitted
        trade_id = row[i_id].strip()
        if not trade_id:
            if _blank(row):
                continue
            bad(first, last, "empty TradeId")
            continue
        try:
            ds_text = row[i_ds]
            ds = cache.get(ds_text)
            if ds is None:
                ds = cache[ds_text] = _aware_time(ds_text)
        except ValueError as exc:
            bad(first, last, f"bad DeliveryStart {_show(row[i_ds])}: {exc}")
            continue
        try:
            de_text = row[i_de]
            de = cache.get(de_text)
            if de is None:
                de = cache[de_text] = _aware_time(de_text)
        except ValueError as exc:
            bad(first, last, f"bad DeliveryEnd {_show(row[i_de])}: {exc}")
            continue
        problem = _check_range(ds[0], de[0])
        if problem:
            bad(first, last, f"{problem} ({ds[1]} - {de[1]})")
            continue
        try:
            ex_s, ex_iso = _aware_time(row[i_ex])
        except ValueError as exc:
            bad(first, last, f"bad ExecutionTime {_show(row[i_ex])}: {exc}")
            continue
        try:
            price = _number(row[i_p])
        except ValueError:
            bad(first, last, f"bad number in Price: {_show(row[i_p])}")
            continue
        try:
            volume = _number(row[i_v])
        except ValueError:
            bad(first, last, f"bad number in Volume: {_show(row[i_v])}")
            continue
        if volume <= 0:
            bad(first, last, f"Volume must be positive: {_show(row[i_v])}")
            continue
        side = None
        if i_side is not None:
            side = row[i_side].strip().upper()
            if side not in ("BUY", "SELL"):
                bad(first, last, f"unknown Side {_show(row[i_side])}")
                continue
        if currency_i is not None and currency_i < len(row):
            cur = row[currency_i].strip()
            if cur and cur.upper() != "EUR":
                bad(first, last, f"Currency {_show(cur)} is not EUR")
                continue
        append(Record(topic, ds[1], ex_s, {
            "schema_version": SCHEMA_VERSION, "type": "trade", "event_time": ex_iso,
            "source_file": rel, "source_line": first, "book": book, "trade_id": trade_id,
            "side": side, "delivery_start": ds[1], "delivery_end": de[1], "execution_time": ex_iso,
            "price_eur_mwh": price, "volume_mw": volume}))
    return records, rejections


# ----------------------------------------------------------------------------------------------
# imbalance prices

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
    _in_range(dt.datetime.combine(day, dt.time(0), tzinfo=UTC).timestamp())
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
_ESTIMATES, _FINALS = _KIND_BY_NAME["imbalance_estimate"], _KIND_BY_NAME["imbalance_final"]


@_parser
def parse_imbalance_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``imbalance_price`` event per row of an estimate or final file (kind from the name).

    ``Datum`` DD.MM.YYYY, ``von``/``bis`` HH:MM in the zone of ``Zeitzone`` (interpretations.md);
    ``bis`` not after ``von`` is on the next day. With ``Europe/Berlin`` a wall time that occurs
    twice (fall-back day) is CEST on its first row and CET on its second; a third is rejected, as
    is a wall time that does not exist (spring-forward day). Numbers use a decimal comma
    (:func:`parse_decimal_comma`). A row without the price(s) is no event; a bad number is
    rejected. ``published_at`` = ``event_time`` = the time in the file name.
    """
    f = _open_file(path, rel_name, _ESTIMATES, _FINALS,
                   guess=lambda low: _FINALS if "final" in low else _ESTIMATES)
    rel, topic, t = f.rel, f.topic, f.stamp
    kind = "estimate" if f.kind is _ESTIMATES else "final"
    text, h, ncols, cols = f.read_csv(";", _IMBALANCE_ESTIMATE if kind == "estimate" else _IMBALANCE_FINAL)
    header = next(csv.reader([text.lines[h]], delimiter=";"))
    labels = {ours: header[i].strip() for ours, i in cols.items()}
    i_status = next((i for i, c in enumerate(header) if _norm(c) == "status"), None)
    t_iso = iso_precise(t)
    occurrences: Counter[tuple[dt.date, int]] = Counter()
    dates: dict[str, dt.date] = {}
    records, rejections = [], []

    def bad(first: int, last: int, reason: str) -> None:
        rejections.append(_reject(topic, rel, first, reason, text.raw(first, last)))

    price_cols = [cols[c] for c in (("estimate",) if kind == "estimate" else ("unterdeckt", "ueberdeckt"))]
    rows = list(text.rows(";", h + 1))
    # the file's number style, from all its price cells: any decimal comma makes dots thousands
    cells = [r[i] for _, _, r, _ in rows if r is not None for i in price_cols if i < len(r)]
    comma_file = True if any("," in c for c in cells) else None

    for first, last, row in _fitted_rows(text, rows, ncols, topic, rel, rejections):
        datum = row[cols["datum"]].strip()
        day = dates.get(datum)
        if day is None:
            try:
                day = dates[datum] = _name_date(datum, "%d.%m.%Y")
            except ValueError:
                bad(first, last, f"bad Datum {_show(datum)} (expected DD.MM.YYYY)")
                continue
        try:
            von = _hhmm(row[cols["von"]])
        except ValueError:
            bad(first, last, f"bad von {_show(row[cols['von']])} (expected HH:MM)")
            continue
        try:
            bis = _hhmm(row[cols["bis"]])
        except ValueError:
            bad(first, last, f"bad bis {_show(row[cols['bis']])} (expected HH:MM)")
            continue
        zone = _zone(row[cols["zeitzone"]])
        if zone is None:
            bad(first, last, f"unknown Zeitzone {_show(row[cols['zeitzone']].strip())}")
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
        event = _base("imbalance_price", t_iso, rel, first)
        event.update(kind=kind, delivery_start=ds_iso, delivery_end=iso(int(end)), published_at=t_iso,
                     price_eur_mwh=price, unterdeckt_eur_mwh=under, ueberdeckt_eur_mwh=over,
                     status=status)
        records.append(Record(topic, ds_iso, t, event))
    return records, rejections


# ----------------------------------------------------------------------------------------------
# DSO files


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


@_parser
def parse_final_production_file(path: Path, rel_name: str | None = None,
                                metering_points: Mapping[str, str] | None = None) -> Parsed:
    """One ``final_production`` event per QH row of a DSO final production file.

    The metering point is the one in the header (``<MP>__kw_``); ``metering_points`` (from the
    CRM) maps it to the asset, an unknown one rejects the whole file. An empty value is no event.
    Available (event_time = published_at) at 00:00 UTC of the day after the file-name date, or at
    the end of the latest row's QH if that is later.
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["final_production"])
    rel, topic, file_day = f.rel, f.topic, f.stamp
    text, h, ncols, cols = f.read_csv(",", {"delivery_start": ("delivery_start__utc_", "delivery_start")})
    header = next(csv.reader([text.lines[h]], delimiter=","))
    value_i = next((i for i, c in enumerate(header) if _norm(c).endswith("__kw_")), None)
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
    for first, last, fitted in _fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        try:
            start = _utc_time(fitted[i_ds])
        except ValueError:
            rejections.append(_reject(topic, rel, first, f"bad delivery_start {_show(fitted[i_ds])}",
                                      text.raw(first, last)))
            continue
        if start % QH_S:
            rejections.append(_reject(topic, rel, first, f"delivery_start {iso_precise(start)} is not "
                                      "aligned to 15 min", text.raw(first, last)))
            continue
        try:
            value = _opt_number(fitted[value_i])
        except ValueError:
            rejections.append(_reject(topic, rel, first, f"bad number in {header[value_i].strip()}: "
                                      f"{_show(fitted[value_i])}", text.raw(first, last)))
            continue
        latest_end = max(latest_end, start + QH_S)
        if value is not None:
            rows.append((first, start, value))
    t = max(_next_day_midnight(file_day), latest_end)
    t_iso = iso(int(t))
    records = []
    for line, start, value in rows:
        event = _base("final_production", t_iso, rel, line)
        event.update(asset_id=asset, metering_point_id=mp, delivery_start=iso(int(start)),
                     value_kw=value, published_at=t_iso)
        records.append(Record(topic, asset, t, event))
    return records, rejections


_FLAG_VALUES = {"1": True, "0": False, "true": True, "false": False}


def _range_rows(text: Any, h: int, ncols: int, cols: dict[str, int], topic: str, rel: str,
                rejections: list, range_label: str):
    """The data rows of a comma-separated DSO file with a delivery range: yields (line, raw,
    fields, start, end) of each well-formed row; every other row becomes a Rejection."""
    for first, last, fitted in _fitted_rows(text, text.rows(",", h + 1), ncols, topic, rel, rejections):
        raw = text.raw(first, last)
        try:
            start = _utc_time(fitted[cols["delivery_start"]])
            end = _utc_time(fitted[cols["delivery_end"]])
        except ValueError:
            rejections.append(_reject(topic, rel, first, f"bad {range_label}", raw))
            continue
        problem = _check_range(start, end)
        if problem:
            rejections.append(_reject(topic, rel, first, problem, raw))
            continue
        yield first, raw, fitted, start, end


@_parser
def parse_redispatch_flag_file(path: Path, rel_name: str | None = None,
                               metering_points: Mapping[str, str] | None = None) -> Parsed:
    """One ``redispatch_flag`` event per row, at the file-name time ``<YYYYMMDD>_<HHMM>`` UTC.

    The metering point comes from the file name and maps to the asset through the CRM; an
    unknown one rejects the whole file. ``is_redispatched`` is ``1``/``0`` (``true``/``false``).
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["redispatch_flag"])
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
            rejections.append(_reject(topic, rel, first, f"bad is_redispatched {_show(flag_text)} "
                                      "(expected 1 or 0)", raw))
            continue
        event = _base("redispatch_flag", t_iso, rel, first)
        event.update(asset_id=asset, metering_point_id=mp, delivery_start=iso(int(start)),
                     delivery_end=iso(int(end)), is_redispatched=_FLAG_VALUES[flag_text],
                     published_at=t_iso)
        records.append(Record(topic, asset, t, event))
    return records, rejections


@_parser
def parse_redispatch_compensation_file(path: Path, rel_name: str | None = None) -> Parsed:
    """One ``redispatch_compensation`` event per row (key delivery_start); an empty price is none.

    Available at 00:00 UTC of the day after the file-name date, or at the latest row's delivery
    end if that is later (as the final production).
    """
    f = _open_file(path, rel_name, _KIND_BY_NAME["redispatch_compensation"])
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
            price = _opt_number(fitted[cols["price"]])
        except ValueError:
            rejections.append(_reject(topic, rel, first, "bad number in price__euro_per_mwh_: "
                                      f"{_show(fitted[cols['price']])}", raw))
            continue
        latest_end = max(latest_end, end)
        if price is not None:
            rows.append((first, start, end, price))
    t = max(_next_day_midnight(file_day), latest_end)
    t_iso = iso(int(t))
    records = []
    for line, start, end, price in rows:
        ds = iso(int(start))
        event = _base("redispatch_compensation", t_iso, rel, line)
        event.update(delivery_start=ds, delivery_end=iso(int(end)), price_eur_mwh=price, published_at=t_iso)
        records.append(Record(topic, ds, t, event))
    return records, rejections


# ----------------------------------------------------------------------------------------------
# a file, a day


def parse_file(path: Path, rel_name: str, known_assets: Collection[str] | None = None,
               metering_points: Mapping[str, str] | None = None) -> Parsed:
    """Parse one file of a day directory by its kind (``classify``); unknown names are rejected."""
    kind, topic = classify(rel_name)
    if kind is None:
        head = _peek(path)
        expected = [k.expected for k in _KINDS if k.topic == topic]
        hint = f" (expected {' or '.join(expected)})" if expected else ""
        where = "/".join(rel_name.split("/")[:-1])
        if where not in _DIRECTORIES:
            dirs = sorted({k.directory for k in _KINDS if k.topic == topic})
            if dirs and any(k.pattern.fullmatch(rel_name.split("/")[-1]) for k in _KINDS):
                reason = f"misplaced file: belongs in {' or '.join(d + '/' for d in dirs)}"
                return [], [_reject(topic or topics.FORECASTS, rel_name, 0, reason, head)]
        return [], [_reject(topic or topics.FORECASTS, rel_name, 0, f"unrecognised file name{hint}", head)]
    if kind == "forecast":
        return parse_forecast_file(path, rel_name, known_assets)
    if kind == "live":
        return parse_live_infeed_file(path, rel_name, known_assets)
    if kind == "technical_data":
        return parse_technical_data_file(path, rel_name)
    if kind == "crm":
        return parse_contract_file(path, rel_name)
    if kind in ("private_trades", "public_trades"):
        return parse_trade_file(path, rel_name)
    if kind in ("imbalance_estimate", "imbalance_final"):
        return parse_imbalance_file(path, rel_name)
    if kind == "final_production":
        return parse_final_production_file(path, rel_name, metering_points)
    if kind == "redispatch_flag":
        return parse_redispatch_flag_file(path, rel_name, metering_points)
    return parse_redispatch_compensation_file(path, rel_name)


def _record_order(r: Record) -> tuple[float, str, int]:
    return r.event_time_s, r.event["source_file"], r.event["source_line"]


def parse_day(day_dir: Path) -> ParsedDay:
    """Every file of a delivery-day directory as records in replay order, plus what went wrong.

    CRM and technical data are read first: the CRM maps metering points to assets (all CRM files,
    the newest file wins per point) and, with the technical data, names the known assets; with
    neither, forecasts and live files of any asset are accepted. A trade id already seen in the
    same book (earlier in (event_time, file, line) order) is dropped and counted. Files whose name
    fits no source are rejections for the topic they most likely belong to; files outside the
    layout that look like no source are listed in ``ignored_files``. Raises
    ``FileNotFoundError`` (one-line message) when ``day_dir`` is no directory.
    """
    day = Path(day_dir)
    if not day.exists():
        raise FileNotFoundError(f"day directory not found: {day}")
    if not day.is_dir():
        raise FileNotFoundError(f"not a directory: {day}")
    by_kind: dict[str, list[tuple[Path, str]]] = {k.name: [] for k in _KINDS}
    records: list[Record] = []
    rejections: list[Rejection] = []
    ignored: list[str] = []
    files_read = 0
    for p in sorted(day.rglob("*")):
        rel = p.relative_to(day).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not p.is_file():
            continue
        kind, topic = classify(rel)
        if kind is not None:
            by_kind[kind].append((p, rel))
        elif topic is None:
            ignored.append(rel)
        else:
            _, rej = parse_file(p, rel)
            rejections.extend(rej)
    produced: Counter[str] = Counter()

    def run(kind: str, **context: Any) -> list[Record]:
        nonlocal files_read
        out: list[Record] = []
        for p, rel in by_kind[kind]:
            recs, rej = parse_file(p, rel, **context)
            files_read += 1
            out.extend(recs)
            rejections.extend(rej)
        produced[kind] += len(out)
        records.extend(out)
        return out

    contracts = run("crm")
    technical = run("technical_data")
    known = {r.key for r in contracts} | {r.key for r in technical}
    known_assets = known or None
    mp_assets = metering_point_assets(contracts)
    forecasts = run("forecast", known_assets=known_assets)
    lives = run("live", known_assets=known_assets)
    finals = run("final_production", metering_points=mp_assets)
    run("redispatch_flag", metering_points=mp_assets)
    for kind in ("private_trades", "public_trades", "imbalance_estimate", "imbalance_final",
                 "redispatch_compensation"):
        run(kind)
    # imbalance files share one parser: count estimate and final events apart
    produced["imbalance_estimate"] = sum(1 for r in records if r.event["type"] == "imbalance_price"
                                         and r.event["kind"] == "estimate")
    produced["imbalance_final"] = sum(1 for r in records if r.event["type"] == "imbalance_price"
                                      and r.event["kind"] == "final")

    # a trade id re-sent within a book counts once: its first occurrence in file order (file-name
    # time, file, line), whatever its delivery period (domain.md 3); the processors apply the
    # same rule, so a re-sent file published by another replay is not counted twice either
    first: dict[tuple[str, str], tuple[str, int]] = {}
    for i, r in enumerate(records):
        if r.topic in (topics.PRIVATE_TRADES, topics.PUBLIC_TRADES):
            key = (r.topic, r.event["trade_id"])
            order = occurrence_order(r.event["source_file"], r.event["source_line"])
            if key not in first or order < first[key][0]:
                first[key] = (order, i)
    winners = {i for _o, i in first.values()}
    kept: list[Record] = []
    dropped = 0
    for i, r in enumerate(records):
        if r.topic in (topics.PRIVATE_TRADES, topics.PUBLIC_TRADES) and i not in winners:
            dropped += 1
            continue
        kept.append(r)
    kept.sort(key=_record_order)
    rejections.sort(key=lambda j: (j.source_file, j.line))

    missing = []
    for k in _KINDS:
        if k.name == "redispatch_flag":  # a flag file exists only when the DSO curtailed
            continue
        n_files = len(by_kind[k.name])
        if not n_files:
            missing.append(f"no {k.label} files")
        elif not produced[k.name]:
            missing.append(f"no usable {k.label} rows ({n_files} file{'s' if n_files > 1 else ''})")
    portfolio = contract_assets(contracts) or list(dict.fromkeys(r.key for r in technical))
    have_forecast = {r.key for r in forecasts}
    have_live = {r.key for r in lives}
    have_final = {r.key for r in finals}
    for asset in portfolio:
        if asset not in have_forecast:
            missing.append(f"asset {asset}: no forecasts")
        if asset not in have_live:
            missing.append(f"asset {asset}: no live infeed")
        if asset not in have_final:
            missing.append(f"asset {asset}: no DSO final production")
    return ParsedDay(records=kept, rejections=rejections, missing_sources=missing,
                     files_read=files_read, duplicates_dropped=dropped, ignored_files=ignored)
