"""A delivery-day directory as typed source events (data-formats.md); one module per file format
in :mod:`intraday.ingest.formats`.

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

from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from intraday.contract import topics
from intraday.contract.events import occurrence_order
from intraday.ingest.formats.crm import contract_assets, metering_point_assets, parse_contract_file
from intraday.ingest.formats.dso import (
    parse_final_production_file,
    parse_redispatch_compensation_file,
    parse_redispatch_flag_file,
)
from intraday.ingest.formats.exchange import parse_trade_file
from intraday.ingest.formats.imbalance import parse_imbalance_file
from intraday.ingest.formats.vpp import parse_forecast_file, parse_live_infeed_file, parse_technical_data_file
from intraday.ingest.reading import peek, reject
from intraday.ingest.records import DIRECTORIES, KINDS, Parsed, ParsedDay, Record, Rejection, classify


def parse_file(path: Path, rel_name: str, known_assets: Collection[str] | None = None,
               metering_points: Mapping[str, str] | None = None) -> Parsed:
    """Parse one file of a day directory by its kind (``classify``); unknown names are rejected."""
    kind, topic = classify(rel_name)
    if kind is None:
        head = peek(path)
        expected = [k.expected for k in KINDS if k.topic == topic]
        hint = f" (expected {' or '.join(expected)})" if expected else ""
        where = "/".join(rel_name.split("/")[:-1])
        if where not in DIRECTORIES:
            dirs = sorted({k.directory for k in KINDS if k.topic == topic})
            if dirs and any(k.pattern.fullmatch(rel_name.split("/")[-1]) for k in KINDS):
                reason = f"misplaced file: belongs in {' or '.join(d + '/' for d in dirs)}"
                return [], [reject(topic or topics.FORECASTS, rel_name, 0, reason, head)]
        return [], [reject(topic or topics.FORECASTS, rel_name, 0, f"unrecognised file name{hint}", head)]
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
    by_kind: dict[str, list[tuple[Path, str]]] = {k.name: [] for k in KINDS}
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
    for k in KINDS:
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
