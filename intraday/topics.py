"""Topic names, partition counts and the one partitioner every producer uses.

Names of source topics and ``imbalance.alerts`` are part of the outside contract (contract.md);
``derived.*`` and ``replay.clock`` are ours. Keys are UTF-8 strings, values JSON objects with a
``schema_version`` field.

Partitioning (why each key goes where):
- ``vpp.*`` and ``dso.*``: key asset_id, so one asset's forecasts, live samples, finals and
  redispatch flags meet in one partition: the asset processor needs no repartition.
- ``exchange.*``: key delivery_start (contract), but the partition is chosen from the delivery
  *hour*, so an hourly trade and the quarter-hour trades it overlaps meet in one partition and a
  QH's trading state has exactly one owner.
- ``imbalance.prices`` and every ``derived.*`` topic read by the QH processor: key and partition
  by delivery_start, so prices, asset results and trading results of a QH meet in one partition.
- master data (``crm.contracts``, ``vpp.technical-data``), ``replay.clock`` and DLQs: 1 partition,
  they are small and their order matters.
N workers of one app then split the partitions of these topics between them with correct results.
"""

from __future__ import annotations

from dataclasses import dataclass

FORECASTS = "vpp.forecasts"
LIVE_INFEED = "vpp.live-infeed"
TECHNICAL_DATA = "vpp.technical-data"
PRIVATE_TRADES = "exchange.private-trades"
PUBLIC_TRADES = "exchange.public-trades"
IMBALANCE_PRICES = "imbalance.prices"
DSO_FINAL = "dso.final-production"
DSO_REDISPATCH = "dso.redispatch"
DSO_COMPENSATION = "dso.redispatch-compensation"
CRM_CONTRACTS = "crm.contracts"
ALERTS = "imbalance.alerts"
CLOCK = "replay.clock"

# derived topics between the processors and the sink
ASSET_QH = "derived.asset-qh"            # key delivery_start: per-QH bundle of asset states
TRADING_QH = "derived.trading-qh"        # key delivery_start: trading metrics per QH and book
TRADE_SLICES = "derived.trade-slices"    # key delivery_start: slices of multi-hour products
PORTFOLIO = "derived.portfolio"          # broadcast to every partition: portfolio membership
QH_RESULTS = "derived.qh-results"        # key delivery_start: asset imbalance + portfolio rows
CLOCK_BROADCAST = "derived.clock"        # replay.clock copied to every partition: "now" for all

SOURCE_TOPICS = (
    FORECASTS, LIVE_INFEED, TECHNICAL_DATA, PRIVATE_TRADES, PUBLIC_TRADES, IMBALANCE_PRICES,
    DSO_FINAL, DSO_REDISPATCH, DSO_COMPENSATION, CRM_CONTRACTS,
)
DERIVED_TOPICS = (ASSET_QH, TRADING_QH, TRADE_SLICES, PORTFOLIO, QH_RESULTS, CLOCK_BROADCAST)
SINGLE_PARTITION = {TECHNICAL_DATA, CRM_CONTRACTS, CLOCK, DSO_COMPENSATION}


def dlq(topic: str) -> str:
    """The dead-letter topic of a source topic."""
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int = -1
    cleanup_policy: str = "delete"


def all_topics(partitions: int) -> list[TopicSpec]:
    """Every topic the system uses, with its declared partition count."""
    specs = []
    for name in (*SOURCE_TOPICS, ALERTS, CLOCK, *DERIVED_TOPICS):
        specs.append(TopicSpec(name, 1 if name in SINGLE_PARTITION else partitions))
    specs.extend(TopicSpec(dlq(t), 1) for t in (*SOURCE_TOPICS, *DERIVED_TOPICS))
    return specs


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's default partitioner), so that any client agrees."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) | ((data[i4 + 1] & 0xFF) << 8) | ((data[i4 + 2] & 0xFF) << 16) | (
            (data[i4 + 3] & 0xFF) << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


_cache: dict[tuple[str, int], int] = {}


def partition_for(key: str, partitions: int) -> int:
    """Partition of a key, as Kafka's default partitioner computes it (murmur2, positive)."""
    ck = (key, partitions)
    p = _cache.get(ck)
    if p is None:
        p = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
        if len(_cache) < 200_000:
            _cache[ck] = p
    return p


def trade_partition(delivery_start_s: int, partitions: int) -> int:
    """Partition of a trade: by its delivery hour (see module docstring)."""
    from intraday.qh import iso
    return partition_for(iso(delivery_start_s - delivery_start_s % 3600), partitions)
