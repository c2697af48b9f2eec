"""The Faust fixes at-least-once depends on (intraday/processing/faust_fixes.py), on Faust's own
classes: a commit must not go out before every record produced for its events is sent, and the
offset committed must not skip a record still being processed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from intervaltree import IntervalTree

from intraday.processing import faust_fixes

faust_fixes.install()
TP0 = TP("exchange.public-trades", 1)


def consumer(committed: int | None, acked: list[int], unacked: list[int] = (), gap=None) -> SimpleNamespace:
    c = SimpleNamespace(_acked=defaultdict(list), _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree),
                        _committed_offset=defaultdict(lambda: None),
                        _unacked_messages=[SimpleNamespace(tp=TP0, offset=o, acked=False) for o in unacked])
    c._acked[TP0] = list(acked)
    c._acked_index[TP0] = set(acked)
    c._committed_offset[TP0] = committed
    if gap:
        c._gap[TP0].addi(*gap)
    return c


def new_offset(c) -> int | None:
    return Consumer._new_offset(c, TP0)


def test_stale_and_duplicate_acks_do_not_slow_the_commit_down():
    # after a rebalance: entries below the committed offset and offsets acked twice
    c = consumer(100, [50, 52, 54, 100, 101, 101, 102, 103, 105])
    assert new_offset(c) == 104
    assert c._acked[TP0] == [105] and c._acked_index[TP0] == {105}


def test_the_committed_offset_still_being_processed_holds_the_commit():
    c = consumer(100, [101, 102, 103], unacked=[100])
    assert new_offset(c) is None  # upstream Faust committed 104 here, skipping record 100
    c._acked[TP0].append(100)
    c._unacked_messages.clear()
    assert new_offset(c) == 104


def test_a_hole_no_record_will_fill_is_sought_back_and_never_committed_past(monkeypatch):
    """Record 100 was dropped on its way to the streams (or never existed): upstream committed
    103 at once. Now the worker seeks back to 100 twice, and only then takes it as absent."""
    now = [1000.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: now[0])
    faust_fixes._stuck.clear()
    seeks: list[int] = []

    async def run() -> list:
        c = consumer(100, [101, 102])

        async def seek(tp, offset):
            seeks.append(offset)

        c.seek = seek
        results = []
        for t in (0, 1, 4, 5, 40, 80):
            now[0] = 1000.0 + t
            results.append(new_offset(c))
            await asyncio.sleep(0)
        return results

    # the first wave committed 103 here, past records 100-102 it never processed (a silent loss)
    assert asyncio.run(run()) == [None, None, None, None, None, None]
    assert seeks == [100, 100, 100]


def test_a_hole_in_the_middle_ends_the_run_and_gaps_count_as_done():
    assert new_offset(consumer(10, [10, 11, 13])) == 12
    assert new_offset(consumer(10, [10, 11, 14], gap=(12, 14))) == 15


def test_nothing_acked_commits_nothing():
    assert new_offset(consumer(10, [])) is None


def test_the_producer_flush_waits_for_every_buffered_record():
    """Upstream returned when no record went out within 0.1 s, records still buffered, and the
    commit that follows the flush then went out before them."""
    sent: list[int] = []

    async def run() -> tuple[int, int]:
        buf = ProducerBuffer()
        buf.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))

        async def slow_publish(fut, wait=False):  # a broker slower than 0.1 s per record
            await asyncio.sleep(0.15)
            sent.append(fut)

        channel = SimpleNamespace(publish_message=slow_publish)
        await buf.start()
        try:
            for i in range(5):
                buf.put(SimpleNamespace(message=SimpleNamespace(channel=channel), i=i))
            await buf.flush()
            return len(sent), buf.size
        finally:
            await buf.stop()

    n_sent, left = asyncio.run(asyncio.wait_for(run(), 30))
    assert (n_sent, left) == (5, 0)


def test_a_partition_never_committed_is_checked_against_where_it_started():
    # upstream trusted the smallest acked offset here and committed 6, past records 0-2
    c = consumer(None, [3, 4, 5], unacked=[0])
    c._intraday_start = {TP0: 0}
    assert new_offset(c) is None
    c._acked[TP0].extend([0, 1, 2])
    c._unacked_messages.clear()
    assert new_offset(c) == 6


def test_a_batch_cancelled_midway_is_never_acked_by_take_events_finally():
    """A stop (or Faust cancelling the agent) inside a batch: take_events' finally acks every
    event of the buffer as the cancellation passes. keep_unacked makes those acks no-ops on
    Faust's own Message, so the consumer never marks the offsets committable."""
    from faust.types.tuples import ConsumerMessage as Message  # what the consumer hands the streams

    from intraday.processing.app import keep_unacked

    final_acks: list[int] = []
    fake_consumer = SimpleNamespace(ack=lambda m: final_acks.append(m.offset) or True)
    msgs = [Message(TP0.topic, TP0.partition, offset, 0.0, 0, None, b"k", b"v", None) for offset in (7, 8)]
    for m in msgs:
        m.incref()
    msgs[0].ack(fake_consumer)                      # an ordinary ack reaches the consumer
    assert final_acks == [7]

    batch = [Message(TP0.topic, TP0.partition, 9, 0.0, 0, None, b"k", b"v", None)]
    batch[0].incref()
    keep_unacked([SimpleNamespace(message=m) for m in batch])
    assert batch[0].ack(fake_consumer) is False     # what take_events' finally does
    assert final_acks == [7]                        # offset 9 never became committable
