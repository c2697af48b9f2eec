"""Event schemas: the JSON values on every topic (schema_version 1).

Every source event is a JSON object with these common fields:

- ``schema_version``: 1
- ``type``: one of the names below
- ``event_time``: ISO 8601 UTC instant at which the data became available to the desk
  (a forecast at its version, a live sample at its timestamp, a trade at its execution time,
  a file-based source at the time in its file name); the replay orders by it.
- ``source_file``, ``source_line``: where the record came from (line 1-based; 0 for a whole file).

Instants are ISO 8601 UTC text (``2025-06-08T10:15:00Z``); units are in field names.

| type | topic | key | fields |
| --- | --- | --- | --- |
| forecast | vpp.forecasts | asset_id | asset_id, type_id, version, delivery_start[], power_kw[] |
| live_sample | vpp.live-infeed | asset_id | asset_id, timestamp, value_kw, quality |
| technical_data | vpp.technical-data | asset_id | asset_id, name, asset_type, capacity_kw, status, owner, latitude, longitude, timezone |
| contract | crm.contracts | asset_id | file_time, contract_id, asset_id, metering_point_id, capacity_mw, technology, contract_begin, contract_end, price_model, price_eur_mwh, fee_model, fee, fee_percent, email, errors[] |
| trade | exchange.private-trades / exchange.public-trades | delivery_start | book, trade_id, side (null for public), delivery_start, delivery_end, execution_time, price_eur_mwh, volume_mw |
| imbalance_price | imbalance.prices | delivery_start | kind (estimate/final), delivery_start, delivery_end, published_at, price_eur_mwh (estimate), unterdeckt_eur_mwh, ueberdeckt_eur_mwh (final), status |
| final_production | dso.final-production | asset_id | asset_id, metering_point_id, delivery_start, value_kw, published_at |
| redispatch_flag | dso.redispatch | asset_id | asset_id, metering_point_id, delivery_start, delivery_end, is_redispatched, published_at |
| redispatch_compensation | dso.redispatch-compensation | delivery_start | delivery_start, delivery_end, price_eur_mwh, published_at |
| clock | replay.clock | ``clock`` | now, speed, replay_id, done |

Dead-letter records (``<topic>.dlq``, key = source file) are ``{schema_version, source_file,
line, reason, raw, topic}``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

SCHEMA_VERSION = 1


class PoisonMessage(ValueError):
    """A record on a topic that is not a valid event of our schema."""


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode(raw: bytes | None, expected_types: frozenset[str] | None = None) -> dict[str, Any]:
    """Decode a topic value; raise :class:`PoisonMessage` with the reason if it is not ours."""
    if raw is None:
        raise PoisonMessage("empty value")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"invalid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise PoisonMessage("value is not a JSON object")
    if event.get("schema_version") != SCHEMA_VERSION:
        raise PoisonMessage(f"unsupported schema_version {event.get('schema_version')!r}")
    if expected_types is not None and event.get("type") not in expected_types:
        raise PoisonMessage(f"unexpected event type {event.get('type')!r}")
    return event


def dlq_record(source_file: str, line: int, reason: str, raw: str, topic: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "source_file": source_file, "line": line,
            "reason": reason, "raw": raw[:2000], "topic": topic}


_FILE_TIME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[T_](\d{4,9})")


def file_time_key(source_file: str) -> str:
    """The production time in a file name as sortable text (files are ordered by it, then by
    name, as the batch reference reads them): ``..._20250608T150344509Z.csv`` -> ``20250608150344509``.

    >>> file_time_key("exchange/Private_Trades-20250608-20250608T150344509Z.csv")
    '20250608150344509'
    """
    found = _FILE_TIME.findall(source_file.rsplit("/", 1)[-1])
    return "".join(found[-1]).ljust(17, "0") if found else ""


def occurrence_order(source_file: str, source_line: int) -> str:
    """Sortable text of where a record stands among the day's files: file-name time, file, line.
    The first occurrence of a re-sent trade id is the smallest (domain.md 3)."""
    return f"{file_time_key(source_file)}|{source_file}|{source_line:09d}"


MAX_BATCH_BYTES = 256 * 1024  # a batch record stays far below Kafka's default 1 MB record limit


def batch_records(values: list[bytes], max_events: int, max_bytes: int = MAX_BATCH_BYTES) -> list[bytes]:
    """Encoded events of one key as few records: a schema-version-2 batch per run of at most
    ``max_events`` events and ``max_bytes`` (a single event stays a version-1 record)."""
    out: list[bytes] = []
    run: list[bytes] = []
    size = 0
    for v in values:
        if run and (len(run) >= max_events or size + len(v) > max_bytes):
            out.append(_batch(run))
            run, size = [], 0
        run.append(v)
        size += len(v) + 1
    if run:
        out.append(_batch(run))
    return out


def _batch(run: list[bytes]) -> bytes:
    if len(run) == 1:
        return run[0]
    return b'{"schema_version":2,"type":"batch","events":[' + b",".join(run) + b"]}"
