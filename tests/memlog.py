"""An in-memory log that runs the processors' real batch functions without a broker.

Topics are lists of records per partition; each agent of ``intraday.contract.topics.AGENTS`` consumes its
input partitions from a committed offset; a schedule (chosen by the caller, e.g. hypothesis)
decides which agent takes which records next, in what interleaving across partitions, when a
worker crashes (its in-memory indexes are lost and it starts again from the committed offsets,
possibly after its results were sent but before its state was written), and which records are
delivered twice. The sink's view is the last record per key in each partition, as the real sink
writes it (in the spirit of bytewax's recovery tests).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from intraday.contract import topics
from intraday.processing.agents import TABLES, build_processors
from intraday.processing.shell import Emitter

MAX_RECORD_BYTES = 1_048_576  # Kafka's default max.request.size / message.max.bytes


class Crash(Exception):
    """The worker dies here."""


class MemTable:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def send_changelog(self, partition: int, key: str, value: Any, value_serializer: Any = None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


@dataclass
class MemLog:
    partitions: int
    logs: dict[str, list[list[tuple[bytes, bytes]]]] = field(default_factory=dict)

    def partition_list(self, topic: str) -> list[list[tuple[bytes, bytes]]]:
        if topic not in self.logs:
            self.logs[topic] = [[] for _ in range(topics.partition_count(topic, self.partitions))]
        return self.logs[topic]

    def append(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        if len(value) >= MAX_RECORD_BYTES:  # a broker refuses it (aiokafka: MessageSizeTooLargeError)
            raise AssertionError(f"a {len(value)}-byte record for {topic}: over Kafka's default limit")
        self.partition_list(topic)[partition].append((key, value))

    # the confluent-kafka Producer surface the Replayer uses
    def produce(self, topic: str, key: bytes, value: bytes, partition: int, on_delivery=None) -> None:  # type: ignore[no-untyped-def]
        self.append(topic, key, value, partition)

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0


class MemWorker:
    """One worker running every agent, with its positions and a crash switch."""

    def __init__(self, log: MemLog, tables: dict[str, MemTable], rnd: random.Random, *,
                 crash_rate: float, duplicate_rate: float) -> None:
        self.log, self.tables, self.rnd = log, tables, rnd
        self.crash_rate, self.duplicate_rate = crash_rate, duplicate_rate
        self.committed: dict[tuple[str, str, int], int] = defaultdict(int)
        self.crashes = 0
        self.crash_next_confirm = False
        self._start()

    def _start(self) -> None:
        worker = self

        class Sender:
            def __call__(self, name: str, key: bytes, value: bytes, partition: int) -> Any:
                worker.log.append(name, key, value, partition)
                fut = asyncio.get_running_loop().create_future()
                fut.set_result(None)
                return fut

        class CrashingEmitter(Emitter):
            async def confirm(self) -> None:
                await super().confirm()
                if worker.crash_next_confirm:  # results are out, the state is not written
                    worker.crash_next_confirm = False
                    raise Crash

        self.emitter = CrashingEmitter(Sender(), self.log.partitions)
        self.processors = build_processors(self.tables, self.emitter, self.log.partitions, retention_days=4.0)
        self.position = dict(self.committed)

    def crash(self) -> None:
        """Lose everything in memory; the tables (the changelogs) and committed offsets remain."""
        self.crashes += 1
        self._start()

    def pending(self, spec: topics.AgentSpec) -> list[tuple[str, int]]:
        return [(t, p) for t in spec.inputs for p, recs in enumerate(self.log.partition_list(t))
                if self.position.get((spec.name, t, p), 0) < len(recs)]

    def step(self, spec: topics.AgentSpec, max_records: int) -> bool:
        """One batch of ``spec``'s agent over records of its pending partitions, interleaved at
        random (each partition in order); True if it processed anything."""
        parts = self.pending(spec)
        if not parts:
            return False
        msgs: list[SimpleNamespace] = []
        taken: dict[tuple[str, int], int] = {}
        while len(msgs) < max_records and parts:
            t, p = self.rnd.choice(parts)
            pos = self.position.get((spec.name, t, p), 0) + taken.get((t, p), 0)
            recs = self.log.partition_list(t)[p]
            if pos >= len(recs):
                parts.remove((t, p))
                continue
            key, value = recs[pos]
            msgs.append(SimpleNamespace(topic=t, partition=p, offset=pos, key=key, value=value, timestamp=None))
            taken[(t, p)] = taken.get((t, p), 0) + 1
            if self.rnd.random() < self.duplicate_rate and pos > 0:  # an earlier record delivered again
                back = self.rnd.randrange(pos)
                k2, v2 = recs[back]
                msgs.append(SimpleNamespace(topic=t, partition=p, offset=back, key=k2, value=v2, timestamp=None))
        self.crash_next_confirm = self.rnd.random() < self.crash_rate
        try:
            asyncio.run(self.processors.bodies[spec.name](msgs))
        except Crash:
            self.crash()
            return True
        for (t, p), n in taken.items():
            self.position[(spec.name, t, p)] = self.position.get((spec.name, t, p), 0) + n
        if self.rnd.random() < self.crash_rate:  # state written, offsets not committed yet
            self.crash()
            return True
        for (t, p), n in taken.items():
            self.committed[(spec.name, t, p)] = self.position[(spec.name, t, p)]
        return True


def run_processors(log: MemLog, rnd: random.Random, *, crash_rate: float = 0.0, duplicate_rate: float = 0.0,
                   max_batch: int = 500) -> MemWorker:
    """Run every agent until no input is left, in an order ``rnd`` chooses."""
    worker = MemWorker(log, {name: MemTable() for name in TABLES}, rnd, crash_rate=crash_rate,
                       duplicate_rate=duplicate_rate)
    agents = list(topics.AGENTS)
    while True:
        ready = [a for a in agents if worker.pending(a)]
        if not ready:
            return worker
        worker.step(rnd.choice(ready), rnd.randint(1, max_batch))
