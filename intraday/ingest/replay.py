"""Replay a delivery-day directory onto the topics in event-time order, at a chosen speed.

The scheduler is pure: :func:`schedule` maps event times to wall-clock offsets for a speed
factor; :class:`Replayer` publishes with an injected clock (tests advance a fake one). Every
record is keyed as contract.md says and sent to the partition ``intraday.contract.topics`` chooses; bad
records go to the source's DLQ with file and line. The current replay time is published on
``replay.clock`` (every minute of event time and at the end), so that processors, alerts and the
dashboard show "now" in event time.
"""

from __future__ import annotations

import bisect
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from intraday.contract import events, topics
from intraday.core.qh import iso

log = logging.getLogger("intraday.replay")

CLOCK_EVERY_S = 60.0


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class WallClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as possible), else a positive factor (``60`` = 60x real time)."""
    if str(text).lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--speed must be a positive number or 'max', not {text!r}") from None
    if not value > 0:
        raise ValueError(f"--speed must be a positive number or 'max', not {text!r}")
    return value


def schedule(event_times: Iterable[float], speed: float | None) -> list[float]:
    """Wall-clock offsets (s from the start) at which each event is due: (t - t0) / speed."""
    times = list(event_times)
    if not times or speed is None:
        return [0.0] * len(times)
    t0 = times[0]
    return [(t - t0) / speed for t in times]


def partition_of(topic: str, key: str, event: dict[str, Any], partitions: int) -> int:
    if topic in topics.SINGLE_PARTITION:
        return 0
    if topic in (topics.PRIVATE_TRADES, topics.PUBLIC_TRADES):
        return topics.trade_partition(str(event["trade_id"]), partitions)
    return topics.partition_for(key, partitions)


class DeliveryFailed(RuntimeError):
    """Records the broker did not take: the replay did not publish the day."""


@dataclass
class ReplayStats:
    published: int = 0
    rejected: int = 0
    failed: int = 0
    first_event_time: float | None = None
    last_event_time: float | None = None
    wall_s: float = 0.0
    replay_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


BURST = 5000         # records grouped at --speed max before they go out
BATCH_EVENTS = 500   # events of one key in one message at --speed max, at the most


class Replayer:
    def __init__(self, producer: Any, partitions: int, *, clock: Clock | None = None,
                 progress: bool = True) -> None:
        self.producer = producer
        self.partitions = partitions
        self.clock = clock or WallClock()
        self.progress = progress
        self.failed = 0
        self.failures: list[str] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        """Delivery report of every record: a record the broker did not take is counted (and the
        replay fails at its end), never reported as published."""
        if err is not None:
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def _produce(self, topic: str, key: str, value: bytes, partition: int) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value, partition=partition,
                                      on_delivery=self._delivered)
                return
            except BufferError:  # local queue full: let it drain
                self.producer.poll(0.05)

    def _replay_timed(self, chosen: list[Any], due: list[float], start: float, speed: float | None,
                      stats: ReplayStats, bar: Any, on_progress: Callable[[int, float], None] | None,
                      offset: int = 0) -> None:
        """One event per message, each at its due time on the injected clock."""
        next_tick = chosen[0].event_time_s
        for j, (r, due_s) in enumerate(zip(chosen, due, strict=True)):
            i = offset + j
            if speed is not None:
                wait = start + due_s - self.clock.monotonic()
                if wait > 0:
                    self.producer.poll(0)
                    self.clock.sleep(wait)
            value = orjson.dumps(r.event)
            self._produce(r.topic, r.key, value, partition_of(r.topic, r.key, r.event, self.partitions))
            if r.event_time_s >= next_tick:
                self.clock_tick(stats, r.event_time_s, speed)
                next_tick = r.event_time_s + CLOCK_EVERY_S
            stats.published += 1
            if i % 1000 == 0:
                self.producer.poll(0)
                if bar is not None:
                    bar.update(i - bar.n)
                    bar.set_postfix_str(f"event time {iso(int(r.event_time_s))}")
                if on_progress:
                    on_progress(i, r.event_time_s)

    def _replay_packed(self, chosen: list[Any], stats: ReplayStats, pack: int, bar: Any,
                       on_progress: Callable[[int, float], None] | None) -> None:
        """--speed max: bursts of records, grouped by (topic, partition, key), as batch messages."""
        next_tick = chosen[0].event_time_s
        for first in range(0, len(chosen), BURST):
            burst = chosen[first:first + BURST]
            groups: dict[tuple[str, int, str], list[bytes]] = {}
            ticks = []
            for r in burst:
                where = (r.topic, partition_of(r.topic, r.key, r.event, self.partitions), r.key)
                groups.setdefault(where, []).append(orjson.dumps(r.event))
                if r.event_time_s >= next_tick:
                    ticks.append(r.event_time_s)
                    next_tick = r.event_time_s + CLOCK_EVERY_S
            for (topic, partition, key), values in groups.items():
                for value in events.batch_records(values, pack):
                    self._produce(topic, key, value, partition)
            for t in ticks:  # "now" moves on only behind the data before it
                self.clock_tick(stats, t, None)
            stats.published += len(burst)
            self.producer.poll(0)
            if bar is not None:
                bar.update(stats.published - bar.n)
                bar.set_postfix_str(f"event time {iso(int(burst[-1].event_time_s))}")
            if on_progress:
                on_progress(stats.published, burst[-1].event_time_s)

    def end_of_input(self, stats: ReplayStats) -> None:
        """The replay's barrier: on every partition of everything it publishes, after the last
        record (the processors forward it behind their results; the drain waits for it)."""
        value = orjson.dumps({"schema_version": 1, "type": "end_of_input", "replay_id": stats.replay_id,
                              "origin": "source"})
        for name in topics.REPLAYED:
            for p in range(topics.partition_count(name, self.partitions)):
                self._produce(name, "end_of_input", value, p)

    def finish(self, stats: ReplayStats, timeout: float = 60) -> None:
        """Wait for every delivery report; raise :class:`DeliveryFailed` with the count if the
        broker refused or never confirmed any record."""
        remaining = self.producer.flush(timeout)
        stats.failed = self.failed + remaining
        if stats.failed:
            detail = "; ".join(self.failures)
            raise DeliveryFailed(f"{stats.failed} records were not delivered to the broker"
                                 + (f" ({remaining} unconfirmed after {timeout:.0f}s)" if remaining else "")
                                 + (f": {detail}" if detail else ""))

    def publish_rejections(self, rejections: Iterable[Any]) -> int:
        n = 0
        for r in rejections:
            rec = events.dlq_record(r.source_file, r.line, r.reason, r.raw, r.topic)
            self._produce(topics.dlq(r.topic), r.source_file, orjson.dumps(rec), 0)
            n += 1
        return n

    def clock_tick(self, stats: ReplayStats, now_s: float, speed: float | None, done: bool = False) -> None:
        self._produce(topics.CLOCK, "clock", orjson.dumps({
            "schema_version": 1, "type": "clock", "now": iso(int(now_s)), "speed": speed or "max",
            "replay_id": stats.replay_id, "done": done, "event_time": iso(int(now_s))}), 0)

    def replay(self, records: list[Any], speed: float | None, *, from_s: float | None = None,
               to_s: float | None = None, on_progress: Callable[[int, float], None] | None = None,
               batch_events: int | None = None, jump_to_s: float | None = None) -> ReplayStats:
        """Publish ``records`` (sorted by event time) between ``from_s`` and ``to_s``.

        At ``--speed max`` every event is due at once: the events of one topic, partition and key
        within a burst of ``BURST`` records go out as schema-version-2 batches of up to
        ``batch_events`` (default ``BATCH_EVENTS``; 1 sends one event per message) and
        ``events.MAX_BATCH_BYTES``, in event-time
        order, and the clock ticks of the burst after its data (contract.md). At a finite speed
        each event is its own message, at its due time.

        ``jump_to_s`` skips empty event time: everything before it (master data, forecasts and
        trades of the days before) goes out at once, packed as at ``--speed max``, the replay clock
        then stands at ``jump_to_s``, and the rest follows at ``speed`` from there."""
        chosen = [r for r in records if (from_s is None or r.event_time_s >= from_s)
                  and (to_s is None or r.event_time_s < to_s)]
        stats = ReplayStats()
        if not chosen:
            self.end_of_input(stats)
            self.finish(stats)
            return stats
        stats.first_event_time = chosen[0].event_time_s
        bar = None
        if self.progress and sys.stderr.isatty():
            from tqdm import tqdm
            bar = tqdm(total=len(chosen), unit="ev", desc="replay", mininterval=0.5)
        start = self.clock.monotonic()
        pack = batch_events if batch_events is not None else (BATCH_EVENTS if speed is None else 1)
        rest = chosen
        if jump_to_s is not None and speed is not None:
            ahead = bisect.bisect_left(chosen, jump_to_s, key=lambda r: r.event_time_s)  # in event-time order
            if ahead:
                self._replay_packed(chosen[:ahead], stats, batch_events or BATCH_EVENTS, bar, on_progress)
            self.clock_tick(stats, jump_to_s, speed)
            log.info("published the %d events before %s at once; replaying the rest at %gx", ahead,
                     iso(int(jump_to_s)), speed)
            rest = chosen[ahead:]
        if rest and pack > 1:
            self._replay_packed(rest, stats, pack, bar, on_progress)
        elif rest:
            times = [r.event_time_s for r in rest]
            # after a jump the clock stands at jump_to_s: the due times count from there
            due = schedule(times, speed) if jump_to_s is None else schedule([jump_to_s, *times], speed)[1:]
            self._replay_timed(rest, due, self.clock.monotonic(), speed, stats, bar, on_progress,
                               offset=stats.published)
        stats.last_event_time = chosen[-1].event_time_s
        self.clock_tick(stats, stats.last_event_time, speed, done=True)
        self.end_of_input(stats)
        self.finish(stats)
        if bar is not None:
            bar.update(len(chosen) - bar.n)
            bar.close()
        stats.wall_s = self.clock.monotonic() - start
        return stats
