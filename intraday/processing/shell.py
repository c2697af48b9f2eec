"""The imperative shell every agent shares: decode, refuse, send and confirm, retention, barriers.

An agent's batch runs as: decode each record (a poison record goes to the DLQ alone), step the
pure core per event (an event the core refuses goes to the DLQ alone, its state untouched),
send the batch's results, **confirm every send**, then write the state. Only then does the
batch end and Faust ack its records. Faust's ``take_events`` acks the whole buffer in a
``finally`` even when the agent raises, so an exception escaping a batch would lose it: a
failure the shell cannot absorb (results the broker does not confirm, a bug) ends the process
before the ack instead (:func:`die`), and the records come again from the committed offset.

Kafka offsets never enter the domain state: the core's state is a set of facts, and redelivery
cannot count twice by construction (``intraday.processing.state``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

from intraday.contract import events, topics
from intraday.processing.state import wire

log = logging.getLogger("intraday.processors")

CONFIRM_TIMEOUT_S = 120.0  # the broker's acknowledgement of a batch's results, at the most
EXIT_UNCONFIRMED = 70


def die(reason: str) -> None:
    """End the worker at once, before Faust acks the batch: nothing past it gets committed."""
    log.critical("%s; exiting without committing (the records come again after a restart)", reason)
    logging.shutdown()
    os._exit(EXIT_UNCONFIRMED)


class Emitter:
    """Collects a batch's output records; :meth:`confirm` returns when the broker has every one."""

    def __init__(self, send_soon: Any, partitions: int, confirm_timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        self.send_soon = send_soon  # (topic, key, value, partition) -> a future of the broker's ack
        self.partitions = partitions
        self.confirm_timeout_s = confirm_timeout_s
        self._pending: list[tuple[str, bytes, bytes, int, Any]] = []
        self.failed_sends = 0

    def _send(self, name: str, key: bytes, value: bytes, partition: int) -> None:
        fut = self.send_soon(name, key, value, partition)
        self._pending.append((name, key, value, partition, fut))

    def send(self, name: str, key: str, value: dict[str, Any] | bytes, partition: int | None = None) -> None:
        if partition is None:
            partition = 0 if name in topics.SINGLE_PARTITION else topics.partition_for(key, self.partitions)
        self._send(name, key.encode(), value if isinstance(value, bytes) else orjson.dumps(value), partition)

    def send_events(self, name: str, key: str, values: list[bytes]) -> None:
        """Events of one key as few records: schema-version-2 batches when there are several
        (contract.md), so a batch of results costs one message per key, not one per event."""
        for value in events.batch_records(values, len(values) or 1):
            self.send(name, key, value)

    def to_every_partition(self, name: str, key: str, value: dict[str, Any]) -> None:
        raw = orjson.dumps(value)
        for p in range(topics.partition_count(name, self.partitions)):
            self._send(name, key.encode(), raw, p)

    def dead_letter(self, message: Any, reason: str, event: Any = None) -> None:
        """Refuse one record, or one ``event`` of a batch record: to ``<topic>.dlq`` with where it
        was and why (the sink stores it in ``quarantine`` with stage ``processors``, where
        ``intraday run`` counts it)."""
        where, line = f"{message.topic}[{message.partition}]@{message.offset}", message.offset
        if event is not None:  # named by its own file and line: each refused event is a row of its own
            raw = msgspec.json.encode(event)
            where = f"{where} {getattr(event, 'source_file', '') or type(event).__name__}"
            line = getattr(event, "source_line", 0) or 0
            if getattr(event, "source_row", 0):  # a row of a JSON file (its line is 0)
                where = f"{where} row {event.source_row}"
        else:
            raw = message.value if isinstance(message.value, bytes) else b""
        record = events.dlq_record(where, line, reason, raw.decode("utf-8", "replace"), message.topic)
        record["stage"] = "processors"
        self._send(topics.dlq(message.topic), message.topic.encode(), orjson.dumps(record), 0)
        log.warning("refused %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)

    async def confirm(self) -> None:
        """Wait until the broker has acknowledged every record sent so far. A failed send is sent
        again; if the broker has not taken everything within ``CONFIRM_TIMEOUT_S`` the worker
        exits before the batch is acked (never "write the state anyway")."""
        timeout = self.confirm_timeout_s
        pending, self._pending = self._pending, []
        deadline = time.monotonic() + timeout
        delay = 0.2
        while pending:
            failed = []
            for item in pending:  # in send order: once one is acknowledged most of the rest are too
                fut = item[4]
                if not fut.done():
                    left = deadline - time.monotonic()
                    if left > 0:
                        await asyncio.wait((fut,), timeout=left)  # never cancels the send
                    if not fut.done():
                        die(f"{len(pending)} results not confirmed by the broker within {timeout:.0f}s")
                if fut.exception() is not None:
                    failed.append(item)
            if not failed:
                return
            self.failed_sends += len(failed)
            log.warning("%d sends failed (%s); sending them again in %.1fs", len(failed),
                        failed[0][4].exception(), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            pending = [(name, key, value, partition, self.send_soon(name, key, value, partition))
                       for name, key, value, partition, _fut in failed]


def decoded(emitter: Emitter, msgs: list) -> Iterator[tuple[Any, wire.V1, bool]]:
    """(message, event, whether the message is a batch) for every event of the batch's records
    (each with ``topic``, ``partition``, ``offset``, ``value``, ``timestamp``); a record that does
    not decode goes to the DLQ alone."""
    for msg in msgs:
        try:
            items = wire.decode(msg.value)
        except wire.PoisonMessage as exc:
            emitter.dead_letter(msg, str(exc))
            continue
        many = len(items) > 1
        for e in items:
            yield msg, e, many


class Watermark:
    """Event time an agent's own input has reached, and the state retention it allows.

    Per input topic, the event time reached is the least over the partitions that brought data of
    the newest event time processed there; the agent's watermark is the least over its topics that
    brought data (Flink / Kafka Streams style). A topic that runs ahead (a file dated two weeks
    after the day) therefore cannot move it past data another input still has to deliver, and the
    replay clock, which runs ahead of everything, does not count at all. Retention forgets QHs
    more than ``retention_s`` behind the watermark and refuses events about them.
    """

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self.reached: dict[str, dict[int, float]] = defaultdict(dict)
        self.pruned_at: float | None = None
        self.oldest_qh: float | None = None  # of the state kept: nothing to prune before it

    def clear(self) -> None:
        self.reached.clear()
        self.pruned_at = None
        self.oldest_qh = None

    def saw(self, topic: str, partition: int, event_time_s: float | None, qh_s: float | None = None) -> None:
        """An event was taken into the state: its event time (the watermark) and its oldest QH."""
        if qh_s is not None and (self.oldest_qh is None or qh_s < self.oldest_qh):
            self.oldest_qh = qh_s
        if event_time_s is not None:
            parts = self.reached[topic]
            if event_time_s > parts.get(partition, float("-inf")):
                parts[partition] = event_time_s

    def value(self) -> float | None:
        per_topic = [min(p.values()) for p in self.reached.values() if p]
        return min(per_topic) if per_topic else None

    def cutoff(self) -> float | None:
        wm = self.value()
        return None if wm is None or self.retention_s <= 0 else wm - self.retention_s

    def too_old(self, qh_s: float | None) -> bool:
        c = self.cutoff()
        return c is not None and qh_s is not None and qh_s < c

    def due_for_pruning(self) -> float | None:
        """The cutoff, once per hour of watermark progress, and only when state older than it may
        exist: after a prune, what it left (:meth:`pruned`) and what was taken in since say so; a
        worker that has not pruned yet (e.g. restarted on recovered state) does not know and prunes."""
        c = self.cutoff()
        if c is None or (self.pruned_at is not None and c - self.pruned_at < 3600):
            return None
        if self.pruned_at is not None and (self.oldest_qh is None or self.oldest_qh >= c):
            return None
        self.pruned_at = c
        return c

    def pruned(self, oldest_left: float | None) -> None:
        """A prune is done; ``oldest_left``: the oldest point of the state it kept (None: empty)."""
        self.oldest_qh = oldest_left


TOO_OLD = "older than the processors' state retention (INTRADAY_STATE_RETENTION_DAYS)"


class Barriers:
    """End-of-input barriers (``wire.EndOfInput``) through one agent.

    An unaligned agent forwards the barrier of each input partition to every partition it writes,
    after the results of everything before it (they were confirmed in earlier batches or are sent
    ahead of it in this one, on the same producer). An aligned agent keeps, per own partition and
    replay, the origins it has seen on its inputs (in a table, so a restart keeps them) and
    forwards one barrier for the partition once all expected origins are in.
    """

    def __init__(self, spec: topics.AgentSpec, partitions: int, table: Any | None = None) -> None:
        self.spec = spec
        self.partitions = partitions
        self.table = table
        if spec.aligned:
            self.expected = frozenset(f"{t}<{o}" for t in spec.inputs
                                      for o in topics.expected_origins(t, partitions))

    def forward(self, emitter: Emitter, replay_id: str, origin: str) -> None:
        value = {"schema_version": 1, "type": "end_of_input", "replay_id": replay_id, "origin": origin}
        for name in self.spec.writes:
            emitter.to_every_partition(name, "end_of_input", value)

    def on_barrier(self, emitter: Emitter, msg: Any, e: wire.EndOfInput) -> None:
        if not self.spec.aligned:
            self.forward(emitter, e.replay_id, f"{self.spec.name}:{msg.topic}:{msg.partition}")
            return
        assert self.table is not None
        key = f"{e.replay_id}|{msg.partition}"
        seen = set(self.table.data.get(key) or ())
        tag = f"{msg.topic}<{e.origin}"
        if tag in seen:
            return
        seen.add(tag)
        self.table.data[key] = sorted(seen)
        self.table.send_changelog(msg.partition, key, sorted(seen))
        if self.expected <= seen:
            log.info("%s partition %d: every input has ended for replay %s", self.spec.name, msg.partition,
                     e.replay_id)
            self.forward(emitter, e.replay_id, f"{self.spec.name}:{msg.partition}")


def batch_source_ms(msgs: list) -> int | None:
    """Wall-clock publication time (ms) of the oldest source record behind a batch (latency)."""
    times = [int(m.timestamp * 1000) for m in msgs if m.timestamp and not m.topic.startswith("derived.")]
    return min(times) if times else None
