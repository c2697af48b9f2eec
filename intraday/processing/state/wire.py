"""The processors' functional core: typed events, typed state, pure steps. No Kafka, no Faust.

Correct by construction, whatever the delivery order, batching or timing:

- Every agent's state is a *set of facts* folded by rules that are commutative and idempotent
  (newest version wins, newest file wins, first trade occurrence wins, union of samples), so a
  redelivered, duplicated or reordered record leaves the state as it was or moves it to the same
  result. ``step(state, event) -> (state, changed keys)`` never mutates its input: a step that
  raises leaves the state untouched (the shell sends that one record to the DLQ alone).
- Results are *absolute* per key, recomputed from the state (trade sums with ``math.fsum`` over
  the trades the state holds, never ``+=``), so sending one twice is harmless.
- Where several producers feed one key downstream (asset snapshots and trading partials into a
  quarter-hour), each snapshot carries ``rev``: the number of distinct facts behind it. The facts
  behind a key only grow, so the final snapshot has the largest ``rev`` and a stale one delivered
  late can never replace it.

Time is UTC epoch seconds inside (``_s``), ISO 8601 text on the wire; units are in names.
Sections cited are those of ``domain.md``.
"""

from __future__ import annotations

import msgspec

from intraday.core.qh import parse_iso


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    schema_version: int
    event_time: str | None = None
    source_file: str = ""
    source_line: int = 0


class Forecast(Event, tag="forecast", kw_only=True):
    asset_id: str
    version: str
    delivery_start: list[str]
    power_kw: list[float]


class LiveSample(Event, tag="live_sample", kw_only=True):
    asset_id: str
    timestamp: str
    value_kw: float
    source_row: int = 0


class FinalProduction(Event, tag="final_production", kw_only=True):
    asset_id: str
    delivery_start: str
    value_kw: float
    published_at: str


class RedispatchFlag(Event, tag="redispatch_flag", kw_only=True):
    asset_id: str
    delivery_start: str
    delivery_end: str
    is_redispatched: bool
    published_at: str


class Trade(Event, tag="trade", kw_only=True):
    book: str
    trade_id: str
    side: str | None = None
    delivery_start: str
    delivery_end: str
    execution_time: str
    price_eur_mwh: float
    volume_mw: float


class ImbalancePrice(Event, tag="imbalance_price", kw_only=True):
    kind: str
    delivery_start: str
    published_at: str
    price_eur_mwh: float | None = None
    unterdeckt_eur_mwh: float | None = None
    ueberdeckt_eur_mwh: float | None = None


class Contract(Event, tag="contract", kw_only=True):
    file_time: str
    asset_id: str


class Clock(Event, tag="clock", kw_only=True):
    now: str
    done: bool = False
    replay_id: str | None = None


class EndOfInput(Event, tag="end_of_input", kw_only=True):
    """The barrier of a replay: everything before it on its partition belongs to ``replay_id``.
    ``origin`` says who put it there (``source`` = the replay, else ``agent:topic:partition``
    or ``agent:partition``)."""
    replay_id: str
    origin: str = "source"


class AssetSnap(msgspec.Struct, kw_only=True):
    asset_id: str
    qh: int
    latest_version: float | None
    latest_kw: float | None
    tradeable_version: float | None
    tradeable_kw: float | None
    best_kw: float | None
    best_source: str | None
    live_kw: float | None
    live_samples: int
    final_kw: float | None
    redispatched: bool
    exists: bool
    rev: int = 0


class AssetQhBundle(Event, tag="asset_qh", kw_only=True):
    qh: int
    known_at: float | None = None
    src_ms: int | None = None
    assets: list[AssetSnap]


class TradingPartial(Event, tag="trading_partial", kw_only=True):
    """One trade partition's share of a (book, QH): sums over the trades it owns."""
    book: str
    qh: int
    part: int
    rev: int
    trades: int
    sold_mw: float
    bought_mw: float
    revenue_eur: float
    pv: float        # sum(price x MW)
    v: float         # sum(MW)
    idx: list[float]  # [full pv, full v, 3h pv, 3h v, 1h pv, 1h v] (public book)
    known_at: float | None = None
    src_ms: int | None = None


class Portfolio(Event, tag="portfolio", kw_only=True):
    file_time: str
    members: list[str]


V1 = (Forecast | LiveSample | FinalProduction | RedispatchFlag | Trade | ImbalancePrice | Contract | Clock
      | EndOfInput | AssetQhBundle | TradingPartial | Portfolio)


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    schema_version: int
    events: list[V1]


class _Versioned(msgspec.Struct):
    schema_version: object = None


_decoder = msgspec.json.Decoder(V1 | Batch)
_versions = msgspec.json.Decoder(_Versioned)  # only to name the version of a record that failed


class PoisonMessage(ValueError):
    """A record that is not a valid event of our schema (the reason says why)."""


def decode(raw: bytes | None) -> list[V1]:
    """The events of a topic value: one (schema_version 1) or a batch (2); raises PoisonMessage."""
    if raw is None:
        raise PoisonMessage("empty value")
    try:
        value = _decoder.decode(raw)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: first)
        try:
            version = _versions.decode(raw).schema_version
        except msgspec.ValidationError:  # not even an object: the first error says it
            version = 1
        if version not in (1, 2):
            raise PoisonMessage(f"unsupported schema_version {version!r}") from None
        raise PoisonMessage(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PoisonMessage(f"invalid JSON: {exc}") from None
    if isinstance(value, Batch):
        if value.schema_version != 2:
            raise PoisonMessage(f"unsupported schema_version {value.schema_version!r} for a batch")
        events = value.events
    else:
        events = [value]
    for e in events:
        if e.schema_version != 1:
            raise PoisonMessage(f"unsupported schema_version {e.schema_version!r}")
    return events


def event_time_s(e: V1) -> float | None:
    """When the data became available (event time); drives the watermark. Clock ticks and
    barriers carry none: a replay clock runs ahead of the data and must not move retention."""
    if isinstance(e, Clock | EndOfInput):
        return None
    if isinstance(e, AssetQhBundle | TradingPartial):
        return e.known_at
    if isinstance(e, Portfolio):
        return parse_iso(e.file_time)
    return parse_iso(e.event_time) if e.event_time else None


def oldest_qh(e: V1) -> float | None:
    """The earliest QH a data event is about (what retention compares with its cutoff)."""
    if isinstance(e, Forecast):
        return min(parse_iso(x) for x in e.delivery_start) if e.delivery_start else None
    if isinstance(e, LiveSample):
        return parse_iso(e.timestamp)
    if isinstance(e, FinalProduction | RedispatchFlag | Trade | ImbalancePrice):
        return parse_iso(e.delivery_start)
    if isinstance(e, AssetQhBundle | TradingPartial):
        return float(e.qh)
    return None
