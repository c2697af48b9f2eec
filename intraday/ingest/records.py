"""Parsed records and rejections, and which file of a day directory is which source (data-formats.md layout)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from intraday.contract import topics
from intraday.contract.events import dlq_record
from intraday.ingest.values import name_date, name_time, one_line


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
        return one_line(f"{self.source_file}:{self.line}: {self.reason}", 500)


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
    """A UTC time in the name, as epoch seconds (:func:`name_time`)."""
    return _Stamp(group, "time", lambda text: name_time(text, fmt))


def _date_at(group: int, fmt: str) -> _Stamp:
    """A date in the name (:func:`name_date`)."""
    return _Stamp(group, "date", lambda text: name_date(text, fmt))


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    directory: str
    pattern: re.Pattern[str]
    topic: str
    expected: str  # the name pattern, for messages
    label: str     # for missing_sources: "no <label> files"
    stamp: _Stamp | None = None  # the time or date in the name its parser reads, if any


KINDS: tuple[Kind, ...] = (
    Kind("technical_data", "vpp/technical_data", re.compile(rf"technical_data_{_TS_DASHED}\.json"),
          topics.TECHNICAL_DATA, "technical_data_<YYYY-MM-DDTHHMMSSZ>.json", "technical data",
          _time_at(1, "%Y-%m-%dT%H%M%SZ")),
    Kind("forecast", "vpp/forecasts", re.compile(rf"forecast_(.+)_{_TS_DASHED}\.json"),
          topics.FORECASTS, "forecast_<ASSET_ID>_<YYYY-MM-DDTHHMMSSZ>.json", "forecast"),
    Kind("live", "vpp/live_measured_infeed", re.compile(r"([^_]+)_(\d{8})\.json"),
          topics.LIVE_INFEED, "<SHORT>_<YYYYMMDD>.json", "live infeed"),
    Kind("crm", "crm", re.compile(r"asset_contracts_(\d{8}_\d{6})\.csv"),
          topics.CRM_CONTRACTS, "asset_contracts_<YYYYMMDD>_<HHMMSS>.csv", "CRM contract",
          _time_at(1, "%Y%m%d_%H%M%S")),
    Kind("private_trades", "exchange", re.compile(r"(Private)_Trades-(\d{8})-(\d{8}T\d{9}Z)\.csv", re.I),
          topics.PRIVATE_TRADES, "Private_Trades-<YYYYMMDD>-<YYYYMMDDTHHMMSSmmmZ>.csv", "private trade"),
    Kind("public_trades", "exchange", re.compile(r"(Public)_Trades-(\d{8})-(\d{8}T\d{9}Z)\.csv", re.I),
          topics.PUBLIC_TRADES, "Public_Trades-<YYYYMMDD>-<YYYYMMDDTHHMMSSmmmZ>.csv", "public trade"),
    Kind("imbalance_estimate", "imbalance",
          re.compile(rf"imbalance_price_estimation_{_TS_DASHED}\.csv"), topics.IMBALANCE_PRICES,
          "imbalance_price_estimation_<YYYY-MM-DDTHHMMSSZ>.csv", "imbalance estimate",
          _time_at(1, "%Y-%m-%dT%H%M%SZ")),
    Kind("imbalance_final", "imbalance", re.compile(r"imbalance_price_final_(\d{8}_\d{6})\.csv"),
          topics.IMBALANCE_PRICES, "imbalance_price_final_<YYYYMMDD>_<HHMMSS>.csv",
          "imbalance final price", _time_at(1, "%Y%m%d_%H%M%S")),
    Kind("final_production", "distribution_system_operator",
          re.compile(r"final_production_(.+)_(\d{8})\.csv"), topics.DSO_FINAL,
          "final_production_<METERING_POINT>_<YYYYMMDD>.csv", "DSO final production",
          _date_at(2, "%Y%m%d")),
    Kind("redispatch_flag", "distribution_system_operator",
          re.compile(r"redispatch_flag_(.+)_(\d{8}_\d{4})\.csv"), topics.DSO_REDISPATCH,
          "redispatch_flag_<METERING_POINT>_<YYYYMMDD>_<HHMM>.csv", "redispatch flag",
          _time_at(2, "%Y%m%d_%H%M")),
    Kind("redispatch_compensation", "distribution_system_operator",
          re.compile(r"redispatch_compensation_(\d{4}-\d{2}-\d{2})\.csv"), topics.DSO_COMPENSATION,
          "redispatch_compensation_<YYYY-MM-DD>.csv", "redispatch compensation",
          _Stamp(1, "date", dt.date.fromisoformat)),
)
KIND_BY_NAME = {k.name: k for k in KINDS}
DIRECTORIES = {k.directory for k in KINDS}


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
    for kind in KINDS:
        if kind.directory == directory and kind.pattern.fullmatch(name):
            return kind.name, kind.topic
    if directory in DIRECTORIES:
        return None, _guess_topic(directory, name)
    for kind in KINDS:  # a source file in the wrong directory
        if kind.pattern.fullmatch(name):
            return None, kind.topic
    return None, _guess_topic(None, name)
