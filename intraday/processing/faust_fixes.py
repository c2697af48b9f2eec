"""Fixes of faust-streaming 0.15.3 that at-least-once processing depends on (all modes).

Faust commits a source offset only after its events are acked, and before committing it calls
``producer.flush()`` so that every record produced while processing those events (results and
table changelogs) is on the broker first. That flush was not complete:

- ``ProducerBuffer.flush`` returns as soon as no buffered message was sent within 0.1 s, even
  with messages still buffered: under load (``producer buffer full`` in the log) the buffer
  holds thousands of changelog records, and the sender waits on the broker longer than that.
- A message the buffer's sender has taken but not yet handed to aiokafka counts neither as
  buffered nor as in flight.

Either way the commit went out first, and a worker killed at that moment came back with its
offsets past events whose state was never written: trades counted by no table (found by the
kill-loop fault test: 13 public-trade quarter-hours a few trades short). The flush below waits
until the buffer is empty and nothing is between the buffer and aiokafka; aiokafka's own flush
then waits for the broker's acknowledgements.

Faust also picks the offset to commit from its list of acked offsets per partition
(``Consumer._new_offset``), and that bookkeeping goes wrong after a rebalance (upstream
faust-streaming #596, #625): events still buffered from before the rebalance are acked again,
so the list holds duplicates and offsets below the committed one, and each commit then advances
by a single stale entry; and an offset right after the committed one is taken as the start of
the run even when the committed offset itself is still being processed, which skips it. The
version below drops what is already committed, counts each offset once, always starts the run at
the committed offset, and seeks back over a hole that no record in progress will fill.

Faust's ``getmany`` hands the fetched records to the streams one by one and silently drops
those of a partition that is no longer active when its turn comes (paused while the batch was
being handed out, e.g. around recovery), and the rest of the batch when the flow stops or the
group generation changes. The fetch position has already moved past them; Faust counts on the
seek to the committed offset that follows a rebalance, but that seek does nothing for a
partition with no committed offset yet. A restarted worker therefore started a partition of
public trades at its end and 5,000 trades were never counted (found by the kill-loop test).
Here each partition with dropped records is sought back to the first of them, and a partition
with no committed offset is sought to its beginning (where ``auto_offset_reset=earliest`` starts
it anyway), which also gives the commit bookkeeping above its reference point.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("intraday.processors")

FLUSH_REPORT_S = 10.0


_held: dict = {}


def reference_offset(consumer, tp) -> int | None:  # type: ignore[no-untyped-def]
    """The partition's committed offset or, if none yet, the start the last seek went to
    (:func:`install`'s ``perform_seek``): every record below it is done."""
    offset = consumer._committed_offset.get(tp)
    return consumer.__dict__.get("_intraday_start", {}).get(tp) if offset is None else offset


def _in_progress(consumer, tp, lo: int, hi: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether a record of ``tp`` in ``[lo, hi)`` was delivered to this worker and is not yet acked."""
    return any(m.tp == tp and lo <= m.offset < hi and not m.acked for m in list(consumer._unacked_messages))


def _report_hold(tp, offset: int) -> None:  # type: ignore[no-untyped-def]
    now = time.monotonic()
    if now - _held.get(tp, 0.0) >= FLUSH_REPORT_S:
        _held[tp] = now
        log.warning("commit of %s[%s] held at %d: later offsets are acked, %d is still being processed "
                    "(Faust would have skipped it)", tp.topic, tp.partition, offset, offset)


STUCK_SEEK_S = 3.0
MAX_HEAL_SEEKS = 2
_stuck: dict = {}


def _heal_hole(consumer, tp, committed: int, offsets: list[int]) -> bool:  # type: ignore[no-untyped-def]
    """Later offsets are acked but the records from the committed offset on were neither acked
    nor are they being processed: this worker will not ack them, and the commit would stay where
    it is for good. Seen after restarts and rebalances, when records were dropped between the
    fetcher and the streams. Once the hole has lasted ``STUCK_SEEK_S``, seek back to the committed
    offset: the records are fetched and processed again, which the agents' state makes harmless
    (trade sums count each source record once, snapshots never go back to an older one).

    Never True: the commit never passes over a record this worker has not processed (the first
    wave took the records as absent after two seeks and committed past them, a silent loss). A
    hole that seeking cannot fill keeps the commit where it is and is reported every time; the
    drain of a replay then never completes and the run fails instead of reporting success."""
    if _in_progress(consumer, tp, committed, offsets[0]):
        _stuck.pop(tp, None)
        return False
    now = time.monotonic()
    st = _stuck.get(tp)
    if st is None or st["committed"] != committed:
        _stuck[tp] = {"committed": committed, "next": now + STUCK_SEEK_S, "seeks": 0}
        return False
    if now < st["next"]:
        return False
    if st["seeks"] >= MAX_HEAL_SEEKS:
        log.error("%s[%s]: records %d-%d still did not come after %d seeks back; the commit stays at %d "
                  "and seeking goes on", tp.topic, tp.partition, committed, offsets[0] - 1, st["seeks"], committed)
    st["seeks"] += 1
    st["next"] = now + 10 * STUCK_SEEK_S  # give the seek time to work
    log.warning("%s[%s]: records %d-%d were never processed by this worker while later ones were; "
                "seeking back to %d to process them", tp.topic, tp.partition, committed, offsets[0] - 1,
                committed)
    asyncio.ensure_future(consumer.seek(tp, committed))
    return False


PATCHED_VERSION = "0.15.3"  # the patches replace methods of this release; pyproject pins it


def install() -> None:
    """Patch the Faust classes once per process (idempotent); refuses another faust-streaming
    release, whose methods the patches would silently replace."""
    import faust
    from faust.transport.producer import ProducerBuffer

    if faust.__version__ != PATCHED_VERSION:
        raise RuntimeError(f"intraday.processing.faust_fixes patches faust-streaming {PATCHED_VERSION}, "
                           f"not {faust.__version__}: check each patch against the new release first")

    if getattr(ProducerBuffer, "_intraday_complete_flush", False):
        return
    upstream_send_pending = ProducerBuffer._send_pending
    upstream_flush = ProducerBuffer.flush

    async def _send_pending(self, fut) -> None:  # type: ignore[no-untyped-def]
        self._intraday_in_flight = getattr(self, "_intraday_in_flight", 0) + 1
        try:
            await upstream_send_pending(self, fut)
        finally:
            self._intraday_in_flight -= 1

    async def flush(self) -> None:  # type: ignore[no-untyped-def]
        if self.should_stop:  # stopping: upstream behaviour (its sender task is going away)
            await upstream_flush(self)
            return
        t0 = time.monotonic()
        next_report = t0 + FLUSH_REPORT_S
        while self.size or getattr(self, "_intraday_in_flight", 0):
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                pass
            if time.monotonic() >= next_report:
                next_report += FLUSH_REPORT_S
                log.warning("still flushing the producer before a commit after %.0fs: %d records buffered",
                            time.monotonic() - t0, self.size)

    from faust.transport.consumer import Consumer

    upstream_new_offset = Consumer._new_offset

    def _new_offset(self, tp):  # type: ignore[no-untyped-def]
        acked = self._acked[tp]
        committed = reference_offset(self, tp)
        if not acked or committed is None:  # no reference point
            return upstream_new_offset(self, tp)
        gap = self._gap[tp]  # offsets the broker never delivered count as done, as upstream
        if gap:
            top = max(acked)
            spans = sorted(gap.overlap(0, top), key=lambda i: i.begin)
            if spans:
                filled = [o for span in spans for o in range(span.begin, span.end)]
                acked.extend(filled)
                gap.chop(0, max(filled[-1], top + 1))
        offsets = sorted({o for o in acked if o >= committed})
        start = committed
        if offsets and offsets[0] > committed:
            if offsets[0] == committed + 1 and _in_progress(self, tp, committed, committed + 1):
                _report_hold(tp, committed)
            elif _heal_hole(self, tp, committed, offsets):
                start = offsets[0]
        run = 0
        while run < len(offsets) and offsets[run] == start + run:
            run += 1
        rest = offsets[run:]
        acked[:] = rest
        index = self._acked_index[tp]
        index.clear()
        index.update(rest)
        return start + run if run else None

    async def getmany(self, timeout: float):  # type: ignore[no-untyped-def]
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # upstream: the records are dropped and the stream seeks back
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - as upstream
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        to_message = self._to_message
        not_yielded: dict = {}  # tp -> offset of its first record not handed to the streams
        records_it = self.scheduler.iterate(records)
        for tp, record in records_it:
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                not_yielded.setdefault(tp, record.offset)
                break
            if tp in not_yielded:
                continue
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
            else:
                not_yielded[tp] = record.offset
        for tp, record in records_it:
            not_yielded.setdefault(tp, record.offset)
        if not_yielded:
            assigned = self.assignment()
            for tp, offset in not_yielded.items():
                if tp in assigned:
                    await self.seek(tp, offset)

    Consumer.getmany = getmany

    upstream_perform_seek = Consumer.perform_seek

    async def perform_seek(self) -> None:  # type: ignore[no-untyped-def]
        await upstream_perform_seek(self)
        start = self.__dict__.setdefault("_intraday_start", {})
        start.clear()
        fresh = [tp for tp in self.assignment()
                 if not self._is_changelog_tp(tp) and self._committed_offset.get(tp) is None]
        if fresh:
            earliest = await self.earliest_offsets(*fresh)
            for tp in fresh:
                start[tp] = earliest.get(tp) or 0
                await self.seek(tp, start[tp])

    Consumer.perform_seek = perform_seek
    Consumer._new_offset = _new_offset

    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush
    ProducerBuffer._intraday_complete_flush = True
