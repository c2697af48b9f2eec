"""Topic names, partition counts and the one partitioner every producer uses.

Names of source topics and ``imbalance.alerts`` are part of the outside contract (contract.md);
``derived.*`` and ``replay.clock`` are ours. Keys are UTF-8 strings, values JSON objects with a
``schema_version`` field.

Partitioning (why each key goes where):
- ``vpp.*`` and ``dso.*``: key asset_id, so one asset's forecasts, live samples, finals and
  redispatch flags meet in one partition: the asset processor needs no repartition.
- ``exchange.*``: key delivery_start (contract), but the partition is chosen from the *trade id*,
  so every copy of a trade id meets in one partition, whatever its delivery period: a re-sent id
  counts once per book (domain.md 3). Each trade partition sends its own sums per (book, QH)
  (``derived.trading-partials``); the QH processor adds the partitions' sums.
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
TRADING_PARTIALS = "derived.trading-partials"  # key delivery_start: one trade partition's sums per (book, QH)
PORTFOLIO = "derived.portfolio"          # broadcast to every partition: portfolio membership
QH_RESULTS = "derived.qh-results"        # key delivery_start: asset imbalance + portfolio rows
CLOCK_BROADCAST = "derived.clock"        # replay.clock copied to every partition: "now" for all

SOURCE_TOPICS = (
    FORECASTS, LIVE_INFEED, TECHNICAL_DATA, PRIVATE_TRADES, PUBLIC_TRADES, IMBALANCE_PRICES,
    DSO_FINAL, DSO_REDISPATCH, DSO_COMPENSATION, CRM_CONTRACTS,
)
DERIVED_TOPICS = (ASSET_QH, TRADING_QH, TRADING_PARTIALS, PORTFOLIO, QH_RESULTS, CLOCK_BROADCAST)
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
    specs.extend(TopicSpec(dlq(t), 1) for t in (*SOURCE_TOPICS, CLOCK, *DERIVED_TOPICS))
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


def trade_partition(trade_id: str, partitions: int) -> int:
    """Partition of a trade: by its trade id (see module docstring)."""
    return partition_for(trade_id, partitions)


def partition_count(topic: str, partitions: int) -> int:
    return 1 if topic in SINGLE_PARTITION or topic.endswith(".dlq") else partitions


# --------------------------------------------------------------------------------------------
# The processors' topology: which agent reads and writes what. The end-of-input barrier travels
# along it (see ``expected_origins``), and the Faust app and the drain check both read it here.

@dataclass(frozen=True)
class AgentSpec:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    aligned: bool = False  # forwards one barrier per partition once every input's barrier is in

    @property
    def writes(self) -> tuple[str, ...]:
        """Every topic the agent writes: its outputs and the DLQs of its inputs."""
        return self.outputs + tuple(dlq(t) for t in self.inputs)


AGENTS = (
    AgentSpec("assets", (FORECASTS, LIVE_INFEED, DSO_FINAL, DSO_REDISPATCH, CLOCK_BROADCAST), (ASSET_QH, ALERTS)),
    AgentSpec("trading", (PRIVATE_TRADES, PUBLIC_TRADES), (TRADING_PARTIALS,)),
    AgentSpec("portfolio", (CRM_CONTRACTS,), (PORTFOLIO,)),
    AgentSpec("clock", (CLOCK,), (CLOCK_BROADCAST,)),
    AgentSpec("qh", (ASSET_QH, TRADING_PARTIALS, IMBALANCE_PRICES, PORTFOLIO, CLOCK_BROADCAST),
              (QH_RESULTS, TRADING_QH, ALERTS), aligned=True),
)
AGENT = {a.name: a for a in AGENTS}
PROCESSOR_INPUTS = tuple(dict.fromkeys(t for a in AGENTS for t in a.inputs))
# what a replay publishes (and puts its end-of-input barrier on, every partition)
REPLAYED = (*SOURCE_TOPICS, CLOCK, *(dlq(t) for t in SOURCE_TOPICS))

# The consumers and what each reads: the processors (one consumer group, the Faust app's id) and
# the sink. The drain check, the lag on the health page and the consumers all read them here.
PROCESSOR_GROUP = "intraday-processors"
PROCESSOR_TOPICS = list(PROCESSOR_INPUTS)
PROCESSOR_SOURCES = [t for t in PROCESSOR_TOPICS if t in SOURCE_TOPICS]  # what the replay publishes to them
SINK_GROUP = "intraday-sink"
SINK_TOPICS = [ASSET_QH, TRADING_QH, QH_RESULTS, ALERTS, CRM_CONTRACTS, TECHNICAL_DATA, IMBALANCE_PRICES,
               DSO_COMPENSATION, CLOCK, FORECASTS, *[dlq(t) for t in (*SOURCE_TOPICS, CLOCK, *DERIVED_TOPICS)]]


def expected_origins(topic: str, partitions: int) -> frozenset[str]:
    """The barriers every partition of ``topic`` receives for one replay, by origin.

    The replay puts ``source`` on what it publishes. An agent forwards each barrier it reads to
    every partition it writes: per input partition (``agent:topic:partition``) or, when aligned,
    one per own partition once all of that partition's inputs have theirs (``agent:partition``).
    A partition holds everything of a replay once it holds all of these.
    """
    out = {"source"} if topic in REPLAYED else set()
    for a in AGENTS:
        if topic not in a.writes:
            continue
        if a.aligned:
            out |= {f"{a.name}:{p}" for p in range(partitions)}
        else:
            out |= {f"{a.name}:{t}:{p}" for t in a.inputs for p in range(partition_count(t, partitions))}
    return frozenset(out)


def expected_barriers(names: list[str] | tuple[str, ...], partitions: int) -> frozenset[tuple[str, int, str]]:
    """(topic, partition, origin) of every barrier a consumer of ``names`` sees for one replay."""
    return frozenset((t, p, o) for t in names for p in range(partition_count(t, partitions))
                     for o in expected_origins(t, partitions))
