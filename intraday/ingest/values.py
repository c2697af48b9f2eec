"""Values in files: numbers (German decimal commas too), instants in names and content, one-line reasons."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import orjson

from intraday.contract.events import SCHEMA_VERSION
from intraday.core.qh import UTC, delivery_range_problem, epoch_from_number


def one_line(text: str, limit: int = 300) -> str:
    s = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def show(value: Any, limit: int = 60) -> str:
    """A value quoted for a reason: ``'abc'``, cut to ``limit`` characters."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 4] + "...'"










def name_time(text: str, fmt: str) -> float:
    """UTC epoch seconds of a time in a file name (``ValueError`` if it is no valid time)."""
    return in_range(dt.datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())


_MIN_EPOCH_S = 946684800.0   # 2000-01-01T00:00:00Z: instants outside [2000, 2100) are no data
_MAX_EPOCH_S = 4102444800.0  # 2100-01-01T00:00:00Z  (and keep date arithmetic far from year 9999)


def in_range(epoch_s: float) -> float:
    if not _MIN_EPOCH_S <= epoch_s < _MAX_EPOCH_S:
        raise ValueError("out of range (years 2000-2099)")
    return epoch_s


def name_date(text: str, fmt: str) -> dt.date:
    d = dt.datetime.strptime(text, fmt).replace(tzinfo=UTC)
    in_range(d.timestamp())
    return d.date()


def number(text: str) -> float:
    """A dot-decimal number; ``ValueError`` for text, NaN, infinities and ``1_000``."""
    v = float(text)
    if v != v or v in (math.inf, -math.inf) or "_" in text:
        raise ValueError(text)
    return v


def opt_number(text: str) -> float | None:
    s = text.strip()
    return None if not s else number(s)


def json_number(value: Any) -> float:
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


def json_epoch(value: Any) -> float:
    """Epoch seconds of a JSON timestamp, seconds or ms by magnitude; ``ValueError`` if absurd."""
    return in_range(epoch_from_number(json_number(value)))


_EPOCH_CACHE: dict[float, float] = {}


def json_epoch_cached(value: Any) -> float:
    """``json_epoch`` memoised for plain numbers: forecast versions overlap by 192 of 193 QHs."""
    if type(value) is float or type(value) is int:
        v = _EPOCH_CACHE.get(value)
        if v is None:
            v = json_epoch(value)
            if len(_EPOCH_CACHE) < 500_000:
                _EPOCH_CACHE[value] = v
        return v
    return json_epoch(value)


def json_power(value: Any) -> float:
    if type(value) is float and value - value == 0.0:  # finite float: the common case
        return value
    return json_number(value)


def json_text(value: Any, limit: int = 2000) -> str:
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


def aware_time(text: str) -> tuple[float, str]:
    """Epoch seconds and ISO UTC text of a timestamp with an offset (``2025-06-08 00:00:00+00:00``)."""
    s = text.strip()
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise ValueError("no time zone")
    try:
        epoch = in_range(d.timestamp())
        # fast path (300k trades a day): UTC text with 0 or 6 fraction digits, as the exchange writes
        if s.endswith("+00:00") and s[10] in " T" and (len(s) == 25 or (len(s) == 32 and s[19] == ".")):
            return epoch, f"{s[:10]}T{s[11:26]}Z" if d.microsecond else f"{s[:10]}T{s[11:19]}Z"
        return epoch, _iso_dt(d)
    except (OverflowError, OSError):
        raise ValueError("out of range") from None


def utc_time(text: str) -> float:
    """DSO times: ``2025-06-08 00:15:00.000000 UTC``, ISO with ``Z``/offset; naive text is UTC."""
    s = text.strip()
    if s[-4:].upper() == " UTC":
        s = s[:-4].rstrip()
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    try:
        return in_range(d.timestamp())
    except (OverflowError, OSError):
        raise ValueError("out of range") from None


def check_range(start: float, end: float) -> str | None:
    return delivery_range_problem(start, end)


def base(type_: str, event_time: str, rel: str, line: int) -> dict[str, Any]:
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
