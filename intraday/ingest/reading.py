"""Reading a file: decoding, CSV dialects and headers, and what every parser starts with."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from intraday.ingest.records import Kind, Parsed, Rejection
from intraday.ingest.values import one_line


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


def norm(name: str) -> str:
    s = name.strip().strip('"').strip().casefold()
    return s.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")


def _header_index(header: list[str], delimiter: str, required: Mapping[str, tuple[str, ...]]
                  ) -> tuple[dict[str, int], str | None]:
    """Column positions by name: ``required`` maps our name to the accepted header names (the
    first one is named in a "missing column" reason); case, spaces and umlaut spelling ignored."""
    positions: dict[str, int] = {}
    for i, h in enumerate(header):
        positions.setdefault(norm(h), i)
    found: dict[str, int] = {}
    missing = []
    for ours, accepted in required.items():
        for a in accepted:
            if norm(a) in positions:
                found[ours] = positions[norm(a)]
                break
        else:
            missing.append(accepted[0])
    if missing:
        other = [d for d in ",;\t|" if d != delimiter]
        if len(header) == 1 and any(d in header[0] for d in other):
            return found, f"wrong delimiter (expected {delimiter!r})"
        return found, ("missing column " if len(missing) == 1 else "missing columns ") + ", ".join(missing)
    return found, None


def fit(row: list[str], n: int) -> list[str] | None:
    """The row with exactly ``n`` fields (trailing empty extras dropped), else None."""
    if len(row) == n:
        return row
    if len(row) > n and not any(f.strip() for f in row[n:]):
        return row[:n]
    return None


def blank(row: list[str]) -> bool:
    return not any(f.strip() for f in row)


def fitted_rows(text: _CsvText, rows: Iterable[tuple[int, int, list[str] | None, str]], ncols: int,
                 topic: str, rel: str, rejections: list[Rejection]) -> Iterator[tuple[int, int, list[str]]]:
    """``(first_line, last_line, fields)`` of each row of ``rows`` (:meth:`_CsvText.rows`) with
    ``ncols`` fields (:func:`fit`); blank rows are skipped, a row the csv module refused or with
    another number of fields becomes a Rejection."""
    for first, last, row, err in rows:
        if row is None:
            rejections.append(reject(topic, rel, first, err, text.raw(first, last)))
            continue
        if blank(row):
            continue
        fitted = fit(row, ncols)
        if fitted is None:
            rejections.append(reject(topic, rel, first, f"expected {ncols} fields, found {len(row)}",
                                      text.raw(first, last)))
            continue
        yield first, last, fitted


# ----------------------------------------------------------------------------------------------
# what every parser starts with: the name, the stamp in it, the content, the header


class _Stop(Exception):
    """Ends a parser early: its file is rejected as a whole (line 0). Raised by the helpers below
    and by the parsers themselves, turned into the parser's result by :func:`parser`."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


def parser(parse: Callable[..., Parsed]) -> Callable[..., Parsed]:
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
    """A file that passed the checks every parser starts with (:func:`open_file`)."""

    kind: Kind
    rel: str               # path relative to the day directory: the rejections' source_file
    match: re.Match[str]   # of the kind's name pattern
    stamp: Any             # the time (epoch seconds) or date in the name; None if the kind has none
    data: bytes            # the content, not blank

    @property
    def topic(self) -> str:
        return self.kind.topic

    def refuse(self, reason: str, raw: str) -> _Stop:
        """The whole-file rejection for ``reason``, to raise."""
        return _Stop(reject(self.topic, self.rel, 0, reason, raw))

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
        head = file_head(self.data)
        doc, problem = load_json(self.data)
        if problem:
            raise self.refuse(problem, head)
        if not isinstance(doc, dict):
            raise self.refuse("top level is not a JSON object", head)
        return doc, head


def open_file(path: Path, rel_name: str | None, *kinds: Kind,
               guess: Callable[[str], Kind] | None = None) -> _File:
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
        raise _Stop(reject(like.topic, rel, 0, f"unrecognised file name (expected {like.expected})",
                            peek(path)))
    stamp = None
    if kind.stamp is not None:
        text = m[kind.stamp.group]
        try:
            stamp = kind.stamp.read(text)
        except ValueError:
            reason = f"bad {kind.stamp.what} in file name: {text}"
            raise _Stop(reject(kind.topic, rel, 0, reason, "")) from None
    data, rej = read(path, rel, kind.topic)
    if rej:
        raise _Stop(rej)
    assert data is not None
    return _File(kind, rel, m, stamp, data)


def reject(topic: str, rel: str, line: int, reason: str, raw: str) -> Rejection:
    return Rejection(topic, rel, line, one_line(reason), raw[:2000])


def file_head(data: bytes) -> str:
    return data[:400].decode("utf-8", errors="replace").lstrip("\ufeff")[:200]


def peek(path: Path) -> str:
    """The first 200 characters of a file (for the ``raw`` of a whole-file rejection)."""
    try:
        with open(path, "rb") as f:
            return file_head(f.read(400))
    except OSError:
        return ""


def read(path: Path, rel: str, topic: str) -> tuple[bytes | None, Rejection | None]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, reject(topic, rel, 0, f"cannot read file: {exc.strerror or exc}", "")
    if not data.strip():
        return None, reject(topic, rel, 0, "empty file", file_head(data))
    return data, None


def load_json(data: bytes) -> tuple[Any, str | None]:
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
