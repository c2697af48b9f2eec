"""The Faust application: four agents keep the desk's state per quarter-hour.

Flow (topics in ``intraday.topics``)::

    vpp.forecasts, vpp.live-infeed,        --> assets   --> derived.asset-qh --+
    dso.final-production, dso.redispatch       (by asset)                     |
    exchange.private/public-trades,        --> trading  --> derived.trading-qh +--> qh --> derived.qh-results
    derived.trade-slices                       (by delivery hour)              |   (by QH)   imbalance.alerts
    crm.contracts                          --> portfolio --> derived.portfolio -+
    imbalance.prices ------------------------------------------------------------+

Each agent is a thin shell: decode raw bytes (a poison record goes to the DLQ), load the state
of the touched keys from its table, call the pure rules of :mod:`intraday.rules`, write each
changed key once per batch (explicitly to the changelog partition of the batch's source
partition) and publish the new *absolute* results per key, so that redelivery is harmless.

Crash safety (at-least-once): every state update is idempotent, except trade sums, which are
guarded twice: a trade id is applied only at the offset of its first occurrence (table
``seen-trades``, see :class:`SeenIndex`), and each (book, QH) state records which source records
it has absorbed (a watermark and the offsets past it, :meth:`SeenIndex.begin`). Faust may
deliver a record after later ones of its partition (``faust_fixes`` seeks back over holes):
trade sums count it once all the same, and QH snapshots never go back to an older one.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
from collections import defaultdict
from typing import Any

import faust
import orjson
from faust.serializers import codecs

from intraday import events, rules, topics
from intraday.qh import HOUR_S, QH_S, iso, parse_iso, qh_slices
from stream_processors import faust_fixes
from stream_processors.alerts import (
    AlertConfig,
    evaluate_alerts,
    evaluate_open_position,
    evaluate_stale_feed,
    feed_sample,
    qhs_due_for_position_check,
)

log = logging.getLogger("intraday.processors")

BATCH_MAX = 5000
BATCH_WITHIN_S = 0.1


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


codecs.register("orjson", OrjsonCodec())


def _patch_for_tansu(fetch_wait_ms: int) -> None:
    """Embedded-mode fixes of the aiokafka consumer Faust creates (Tansu, embedded-stack.md).

    - Faust's driver hard-codes ``fetch_max_wait_ms=1500`` and Tansu sleeps it out even when
      data is there: lowered to ``fetch_wait_ms``.
    - Tansu's ListOffsets(latest) is too low when the last record batch holds several records;
      Faust ends table recovery at that offset and would drop the rest of the batch. The end
      offsets are corrected by reading the partition's tail (:func:`true_end_offsets`).
    """
    import asyncio

    import aiokafka

    from intraday.kafka import true_end_offsets

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "_intraday_patched", False):
        return

    class Consumer(base):  # type: ignore[misc, valid-type]
        _intraday_patched = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = fetch_wait_ms
            super().__init__(*args, **kwargs)

        async def end_offsets(self, partitions):  # type: ignore[no-untyped-def]
            reported = await super().end_offsets(partitions)
            servers = self._client._bootstrap_servers
            bootstrap = servers if isinstance(servers, str) else ",".join(servers)
            fixed = await asyncio.get_running_loop().run_in_executor(
                None, true_end_offsets, bootstrap, {(tp.topic, tp.partition): off for tp, off in reported.items()})
            return {tp: fixed[(tp.topic, tp.partition)] for tp in reported}

    aiokafka.AIOKafkaConsumer = Consumer


class Emitter:
    """Collects output messages of a batch and sends them without awaiting each one."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.app = app
        self.partitions = partitions
        self._topics: dict[str, Any] = {}
        self._pending: list[Any] = []

    def topic(self, name: str):
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = self.app.topic(name, key_serializer="raw", value_serializer="raw")
        return t

    def send(self, name: str, key: str, value: dict[str, Any], partition: int | None = None) -> None:
        if partition is None:
            partition = 0 if name in topics.SINGLE_PARTITION else topics.partition_for(key, self.partitions)
        self._pending.append(
            self.topic(name).send_soon(key=key.encode(), value=orjson.dumps(value), partition=partition))

    async def delivered(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout`` s) until the broker has every result sent so far.

        Agents call this before they write the batch's state to the changelogs: a changelog
        record that outlives its result (a crash between the two) would make the replayed batch
        look like "no change" after recovery, and the result would never be sent. In this order
        a crash loses at most changelog records, and the replayed batch sends its results again.
        The wait is bounded: during a rebalance Faust waits for the agents to finish their
        batch while the results may not be sent, and an unbounded wait here deadlocked it.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return
        t0 = time.monotonic()
        _done, left = await asyncio.wait(pending, timeout=timeout)
        waited = time.monotonic() - t0
        if left:
            log.warning("%d of %d results not confirmed by the broker within %.1fs (a rebalance?); "
                        "writing the state anyway", len(left), len(pending), timeout)
        elif waited > 0.5:
            log.warning("waited %.1fs for the broker to take %d results", waited, len(pending))

    def dead_letter(self, source_topic: str, message: Any, reason: str) -> None:
        raw = message.value if isinstance(message.value, bytes) else b""
        record = events.dlq_record(f"{message.topic}[{message.partition}]@{message.offset}",
                                   message.offset, reason, raw.decode("utf-8", "replace"), source_topic)
        self._pending.append(self.topic(topics.dlq(source_topic)).send_soon(
            key=source_topic.encode(), value=orjson.dumps(record), partition=0))
        log.warning("poison record on %s[%s]@%s: %s", message.topic, message.partition,
                    message.offset, reason)


class StateCache:
    """Batch-local view of a table: read each key once, write each changed key once."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.values: dict[str, Any] = {}
        self.partition_of: dict[str, int] = {}
        self.dirty: set[str] = set()

    def get(self, key: str, partition: int, default: Any) -> Any:
        v = self.values.get(key)
        if v is None:
            v = self.table.data.get(key)
            if v is None:
                v = default() if callable(default) else default
            self.values[key] = v
            self.partition_of[key] = partition
        return v

    def mark(self, key: str) -> None:
        self.dirty.add(key)

    def flush(self) -> None:
        for key in self.dirty:
            value = self.values[key]
            self.table.data[key] = value
            self.table.send_changelog(self.partition_of[key], key, value)
        self.dirty.clear()


def batch_source_ms(evs: list, decoded: list[dict] | None = None) -> int | None:
    """Wall-clock publication time (ms) of the oldest source record behind a batch: a source
    record's Kafka timestamp, or the ``src_ms`` a derived record carries from its own sources.
    The sink turns it into end-to-end latency (publication -> database)."""
    times = [e["src_ms"] for e in (decoded or []) if e.get("src_ms")]
    times += [int(ev.message.timestamp * 1000) for ev in evs
              if ev.message.timestamp and not ev.message.topic.startswith("derived.")]
    return min(times) if times else None


def _decode_batch(emitter: Emitter, evs: list, expected: frozenset[str], on_poison=None):
    for ev in evs:
        msg = ev.message
        try:
            yield msg, events.decode(msg.value, expected)
        except events.PoisonMessage as exc:
            emitter.dead_letter(msg.topic, msg, str(exc))
            if on_poison is not None:
                on_poison(msg)


def create_app(bootstrap: str, partitions: int, *, embedded: bool, app_id: str = "intraday-processors",
               web_port: int = 6066, alert_config: AlertConfig | None = None,
               retention_days: float = 4.0, fetch_wait_ms: int = 50) -> faust.App:
    """Build the Faust app and register its tables and agents. Nothing connects until it runs."""
    faust_fixes.install()
    conf: dict[str, Any] = {}
    if embedded:
        _patch_for_tansu(fetch_wait_ms)
        conf.update(broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=6,
                    broker_request_timeout=30)
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", store="memory://", topic_partitions=partitions,
        topic_allow_declare=True, topic_disable_leader=False, value_serializer="raw",
        key_serializer="raw", web_port=web_port, web_bind="127.0.0.1", web_enabled=True,
        broker_commit_interval=0.5, producer_linger_ms=5, table_cleanup_interval=3600,
        producer_compression_type="lz4",  # changelogs and derived topics are repetitive JSON
        broker_max_poll_records=5000, stream_buffer_maxsize=20000, **conf)
    alert_config = alert_config or AlertConfig()

    def table(name: str):
        return app.Table(name, partitions=partitions)  # JSON changelog (faust uses orjson when installed)

    asset_obs = table("asset-observations")
    forecast_versions = table("forecast-versions")
    feed_state = table("feed-state")
    trading_state = table("trading-state")
    seen_trades = table("seen-trades")
    seen_index = SeenIndex(seen_trades)
    qh_state = table("qh-state")
    portfolio_state = table("portfolio-state")
    emitter = Emitter(app, partitions)

    def raw_topic(*names: str):
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    # ------------------------------------------------------------------ assets (by asset_id)
    asset_types = frozenset({"forecast", "live_sample", "final_production", "redispatch_flag", "clock"})
    forecasts = ForecastIndex(forecast_versions)
    retention_s = retention_days * 86400
    asset_retention, trade_retention, qh_retention = Retention(retention_s), Retention(retention_s), Retention(retention_s)

    @app.on_partitions_revoked.connect
    async def _revoked(app_, revoked, **kwargs):  # another worker may now update those keys
        forecasts.clear()
        seen_index.clear()

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs):
        forecasts.clear()
        seen_index.clear()

    @app.agent(raw_topic(topics.FORECASTS, topics.LIVE_INFEED, topics.DSO_FINAL, topics.DSO_REDISPATCH,
                         topics.CLOCK_BROADCAST), name="assets")
    async def assets(stream):
        async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            obs = StateCache(asset_obs)
            versions = StateCache(forecast_versions)
            feeds = StateCache(feed_state)
            changed: dict[str, float] = {}  # "asset|qh" -> knowledge time
            for msg, e in _decode_batch(emitter, evs, asset_types):
                try:
                    if e["type"] == "clock":
                        now_s = parse_iso(e["now"])
                        _check_feeds(feeds, feed_state, msg.partition, partitions, now_s, alert_config, emitter)
                        cutoff = asset_retention.tick(msg.partition, now_s)
                        if cutoff is not None:
                            _prune_assets(asset_obs, forecast_versions, forecasts, obs, versions, msg.partition,
                                          partitions, cutoff)
                        continue
                    if _asset_event_qh(e) is not None and asset_retention.too_old(msg.partition, _asset_event_qh(e)):
                        emitter.dead_letter(msg.topic, msg, "older than the processors' state retention "
                                                            "(INTRADAY_STATE_RETENTION_DAYS)")
                        continue
                    _apply_asset_event(obs, versions, forecasts, msg.partition, e, changed)
                    if e["type"] == "live_sample":
                        feed = feeds.get(e["asset_id"], msg.partition, dict)
                        last = feed.get("last")
                        for alert in feed_sample(alert_config, e["asset_id"], feed, parse_iso(e["timestamp"])):
                            emitter.send(topics.ALERTS, alert["subject"], alert)
                        if feed.get("last") != last:
                            feeds.mark(e["asset_id"])
                except (KeyError, TypeError, ValueError) as exc:
                    emitter.dead_letter(msg.topic, msg, f"invalid {e.get('type')} event: {exc!r}")
            by_qh: dict[int, list] = defaultdict(list)
            for key in changed:
                asset_id, qh_text = key.rsplit("|", 1)
                qh_s = int(qh_text)
                state = dict(obs.values.get(key) or asset_obs.data.get(key) or {})
                state.update(forecasts.state(asset_id, qh_s))
                by_qh[qh_s].append(rules.asset_snapshot(asset_id, qh_s, state))
            src_ms = batch_source_ms(evs)
            for qh_s, snaps in by_qh.items():
                emitter.send(topics.ASSET_QH, iso(qh_s), {
                    "schema_version": 1, "type": "asset_qh", "qh": qh_s,
                    "known_at": max(changed[s["asset_id"] + "|" + str(qh_s)] for s in snaps),
                    "src_ms": src_ms, "assets": snaps})
            await emitter.delivered()  # results before state: see Emitter.delivered
            feeds.flush()
            versions.flush()
            obs.flush()

    # ------------------------------------------------------------------ trading (by delivery hour)
    trade_types = frozenset({"trade", "trade_slice", "clock"})

    @app.agent(raw_topic(topics.PRIVATE_TRADES, topics.PUBLIC_TRADES, topics.TRADE_SLICES, topics.CLOCK_BROADCAST),
               name="trading")
    async def trading(stream):
        def finished(msg: Any, touched: tuple | list = ()) -> None:  # a trade record, whatever came of it
            if msg.topic != topics.CLOCK_BROADCAST:
                seen_index.finish(f"{msg.topic}:{msg.partition}", msg.offset,
                                  faust_fixes.reference_offset(app.consumer, msg.tp), touched)

        async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            cache = StateCache(trading_state)
            known: dict[str, float] = {}
            for msg, e in _decode_batch(emitter, evs, trade_types, on_poison=finished):
                touched: list[dict] = []
                try:
                    if e["type"] == "clock":
                        cutoff = trade_retention.tick(msg.partition, parse_iso(e["now"]))
                        if cutoff is not None:
                            _prune_trading(trading_state, seen_trades, seen_index, cache, msg.partition, partitions,
                                           cutoff)
                        continue
                    first_qh = int(e["qh"]) if e["type"] == "trade_slice" else int(parse_iso(e["delivery_start"]))
                    if trade_retention.too_old(msg.partition, first_qh):
                        emitter.dead_letter(msg.topic, msg, "older than the processors' state retention "
                                                            "(INTRADAY_STATE_RETENTION_DAYS)")
                        continue
                    touched = _apply_trade_event(cache, seen_index, emitter, partitions, msg, e, known)
                except (KeyError, TypeError, ValueError) as exc:
                    emitter.dead_letter(msg.topic, msg, f"invalid {e.get('type')} event: {exc!r}")
                finally:
                    finished(msg, touched)
            src_ms = batch_source_ms(evs)
            for key in cache.dirty:
                book, qh_text = key.split("|")
                qh_s = int(qh_text)
                snap = rules.trading_snapshot(book, qh_s, cache.values[key])
                snap["known_at"] = known.get(key)
                snap["src_ms"] = src_ms
                emitter.send(topics.TRADING_QH, iso(qh_s), {"schema_version": 1, "type": "trading_qh", **snap})
            await emitter.delivered()  # results before state: see Emitter.delivered
            if evs:
                last = evs[-1].message
                seen_index.flush(f"{last.topic}:{last.partition}:{last.offset}")
            cache.flush()

    # ------------------------------------------------------------------ portfolio membership
    @app.agent(raw_topic(topics.CRM_CONTRACTS), name="portfolio")
    async def portfolio(stream):
        async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            cache = StateCache(portfolio_state)
            files = cache.get("files", 0, dict)
            before = _newest_members(files)
            for _msg, e in _decode_batch(emitter, evs, frozenset({"contract"})):
                members = files.setdefault(e["file_time"], [])
                if e["asset_id"] not in members:
                    members.append(e["asset_id"])
                    members.sort()
                    cache.mark("files")
            newest = _newest_members(files)
            if newest != before and newest is not None:
                file_time, members = newest
                for p in range(partitions):  # broadcast: every QH partition needs the membership
                    emitter.send(topics.PORTFOLIO, "portfolio", {
                        "schema_version": 1, "type": "portfolio", "file_time": file_time,
                        "members": members}, partition=p)
            await emitter.delivered()  # results before state: see Emitter.delivered
            cache.flush()

    # ------------------------------------------------------------------ replay clock broadcast
    @app.agent(raw_topic(topics.CLOCK), name="clock")
    async def clock(stream):
        async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            for _msg, tick in _decode_batch(emitter, evs, frozenset({"clock"})):
                for p in range(partitions):  # every tick: time-driven checks must see each minute
                    emitter.send(topics.CLOCK_BROADCAST, "clock", tick, partition=p)

    # ------------------------------------------------------------------ imbalance per QH
    qh_types = frozenset({"asset_qh", "trading_qh", "imbalance_price", "portfolio", "clock"})

    @app.agent(raw_topic(topics.ASSET_QH, topics.TRADING_QH, topics.IMBALANCE_PRICES, topics.PORTFOLIO,
                         topics.CLOCK_BROADCAST), name="qh")
    async def qh(stream):
        async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            cache = StateCache(qh_state)
            members_changed: set[int] = set()
            known: dict[int, float] = {}
            ticks: dict[int, list[float]] = defaultdict(list)
            decoded: list[dict] = []
            for msg, e in _decode_batch(emitter, evs, qh_types):
                decoded.append(e)
                try:
                    if e["type"] == "clock":
                        ticks[msg.partition].append(parse_iso(e["now"]))
                        cutoff = qh_retention.tick(msg.partition, parse_iso(e["now"]))
                        if cutoff is not None:
                            old = [k for k in list(qh_state.data.keys()) if k.startswith("qh|")
                                   and int(k[3:]) < cutoff
                                   and topics.partition_for(iso(int(k[3:])), partitions) == msg.partition]
                            for k in old:
                                cache.values.pop(k, None)
                                cache.dirty.discard(k)
                            delete_keys(qh_state, msg.partition, old)
                        continue
                    if e["type"] == "portfolio":
                        mkey = f"members|{msg.partition}"
                        m = cache.get(mkey, msg.partition, dict)
                        if (m.get("file_time") or "") <= e["file_time"] and m.get("members") != e["members"]:
                            m["file_time"], m["members"] = e["file_time"], e["members"]
                            cache.mark(mkey)
                            members_changed.add(msg.partition)
                        continue
                    _apply_qh_event(cache, msg.partition, e, known, msg.offset)
                except (KeyError, TypeError, ValueError) as exc:
                    emitter.dead_letter(msg.topic, msg, f"invalid {e.get('type')} event: {exc!r}")
            for p in members_changed:  # a new CRM file: every QH of the partition is recomputed
                for key in list(qh_state.data.keys()):
                    if key.startswith("qh|") and topics.partition_for(iso(int(key[3:])), partitions) == p:
                        cache.get(key, p, dict)
                        cache.mark(key)
            changed = [k for k in cache.dirty if k.startswith("qh|")]
            src_ms = batch_source_ms([ev for ev in evs if ev.message.topic == topics.IMBALANCE_PRICES], decoded)
            for key in changed:
                qh_s = int(key[3:])
                state = cache.values[key]
                p = cache.partition_of[key]
                m = cache.get(f"members|{p}", p, dict).get("members")
                members = set(m) if m is not None else None
                port = rules.portfolio_row(qh_s, state, members)
                # every asset's row, also the unchanged ones: a row lost in a crash is then sent
                # again with the QH's next change
                rows = [rules.asset_imbalance(aid, qh_s, a, state) for aid, a in state.get("a", {}).items()
                        if a[4]]
                known_at = max(known.get(qh_s) or 0, state.get("k") or 0) or None  # monotonic per QH
                for alert in evaluate_alerts(alert_config, qh_s, state, port, known_at):
                    emitter.send(topics.ALERTS, alert["subject"], alert)
                emitter.send(topics.QH_RESULTS, iso(qh_s), {
                    "schema_version": 1, "type": "qh_result", "qh": qh_s, "known_at": known_at,
                    "src_ms": src_ms, "portfolio": port, "assets": rows})
            for p, nows in ticks.items():  # time-driven: open positions close to gate closure
                m = cache.get(f"members|{p}", p, dict).get("members")
                members = set(m) if m is not None else None
                for now_s, qh_s in ((n, q) for n in sorted(nows) for q in qhs_due_for_position_check(alert_config, n)):
                    key = f"qh|{qh_s}"
                    if topics.partition_for(iso(qh_s), partitions) != p or (
                            key not in cache.values and key not in qh_state.data):
                        continue
                    state = cache.get(key, p, dict)
                    port = rules.portfolio_row(qh_s, state, members)
                    alerts = evaluate_open_position(alert_config, qh_s, state, port, now_s)
                    for alert in alerts:
                        emitter.send(topics.ALERTS, alert["subject"], alert)
                    if alerts:
                        cache.mark(key)
            await emitter.delivered()  # results before state: see Emitter.delivered
            cache.flush()

    app.intraday_tables = {  # type: ignore[attr-defined]
        "asset-observations": asset_obs, "forecast-versions": forecast_versions, "feed-state": feed_state, "trading-state": trading_state, "seen-trades": seen_trades,
        "qh-state": qh_state, "portfolio-state": portfolio_state}
    return app


def _newest_members(files: dict[str, list]) -> tuple[str, list] | None:
    """(file time, a copy of the members) of the newest CRM file: a copy, because the caller
    compares it with the same file's list after appending to it."""
    if not files:
        return None
    newest = max(files)
    return newest, list(files[newest])


class ForecastIndex:
    """Latest and tradeable forecast per (asset, QH), derived in memory from the stored versions.

    The table ``forecast-versions`` keeps each version once (key ``asset|version``), so a new
    version costs one changelog record instead of one per quarter-hour it covers. The derived
    per-QH state is rebuilt from that table after a restart or a rebalance, on first use of an
    asset; the rule (newest version wins, order-independent) makes the rebuild exact.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.by_asset: dict[str, dict[int, dict[str, Any]]] = {}
        self._versions_of: dict[str, list[str]] | None = None

    def clear(self) -> None:
        self.by_asset.clear()
        self._versions_of = None

    def _asset(self, asset_id: str) -> dict[int, dict[str, Any]]:
        derived = self.by_asset.get(asset_id)
        if derived is None:
            derived = self.by_asset[asset_id] = {}
            if self._versions_of is None:
                self._versions_of = defaultdict(list)
                for key in list(self.table.data.keys()):
                    self._versions_of[key.rsplit("|", 1)[0]].append(key)
            for key in self._versions_of.pop(asset_id, []):
                v = self.table.data.get(key)
                if v:
                    self._fold(derived, float(key.rsplit("|", 1)[1]), v["s"], v["p"], None)
        return derived

    @staticmethod
    def _fold(derived: dict, version_s: float, starts: list, powers: list, changed: list | None) -> None:
        for qh_s, kw in zip(starts, powers, strict=True):
            st = derived.get(qh_s)
            if st is None:
                st = derived[qh_s] = {}
            if rules.apply_forecast_row(st, version_s, qh_s, kw) and changed is not None:
                changed.append(qh_s)

    def apply(self, asset_id: str, version_s: float, starts: list[int], powers: list[float]) -> list[int]:
        """Fold a version in; returns the QHs whose forecast state changed."""
        changed: list[int] = []
        self._fold(self._asset(asset_id), version_s, starts, powers, changed)
        return changed

    def state(self, asset_id: str, qh_s: int) -> dict[str, Any]:
        return self._asset(asset_id).get(qh_s, {})


class Retention:
    """Event-time retention of the processors' state (tables and in-memory indexes).

    On a clock tick at most once per hour of event time per partition, every key of that
    partition whose QH lies more than ``retention_s`` behind the clock is deleted (a tombstone in
    the changelog), so a system that runs for weeks keeps a bounded state. The database keeps the
    results. An event for a QH that old would meet no state and overwrite its stored row with a
    partial one, so it is refused to the DLQ instead (:meth:`too_old`).
    """

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self.now: dict[int, float] = {}
        self.pruned_at: dict[int, float] = {}

    def tick(self, partition: int, now_s: float) -> float | None:
        """Record the clock; the cutoff if this partition is due for pruning, else None."""
        if now_s <= self.now.get(partition, 0):
            return None
        self.now[partition] = now_s
        if self.retention_s <= 0 or now_s - self.pruned_at.get(partition, 0) < HOUR_S:
            return None
        self.pruned_at[partition] = now_s
        return now_s - self.retention_s

    def too_old(self, partition: int, qh_s: float) -> bool:
        now = self.now.get(partition)
        return self.retention_s > 0 and now is not None and qh_s < now - self.retention_s


def delete_keys(table: Any, partition: int, keys: list[str]) -> None:
    for key in keys:
        table.data.pop(key, None)
        table.send_changelog(partition, key, None, value_serializer="raw")


class OffsetSet:
    """A set of offsets kept as sorted, disjoint, inclusive ranges (in-order use: one range)."""

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []

    def __contains__(self, offset: int) -> bool:
        i = bisect.bisect_right(self.lo, offset) - 1
        return i >= 0 and offset <= self.hi[i]

    def end_of_run(self, start: int) -> int:
        """The last offset of the unbroken run from ``start`` (``start - 1`` if it is absent)."""
        i = bisect.bisect_right(self.lo, start) - 1
        return self.hi[i] if i >= 0 and start <= self.hi[i] else start - 1

    def add(self, offset: int) -> None:
        i = bisect.bisect_right(self.lo, offset) - 1
        if i >= 0 and offset <= self.hi[i]:
            return
        joins_left = i >= 0 and self.hi[i] == offset - 1
        joins_right = i + 1 < len(self.lo) and self.lo[i + 1] == offset + 1
        if joins_left and joins_right:
            self.hi[i] = self.hi[i + 1]
            del self.lo[i + 1], self.hi[i + 1]
        elif joins_left:
            self.hi[i] = offset
        elif joins_right:
            self.lo[i + 1] = offset
        else:
            self.lo.insert(i + 1, offset)
            self.hi.insert(i + 1, offset)


class SeenIndex:
    """Trade ids already counted, with the source position of their first occurrence.

    Stored as one record per (book, delivery hour) and batch holding the ids that batch added
    (key ``book|hour|position``), not one record per trade: a batch of 5,000 public trades costs
    a few dozen changelog records. The in-memory index is rebuilt from the table after a restart
    or a rebalance, on first use.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.ids: dict[str, dict[str, str]] | None = None
        self.added: dict[tuple[str, int], dict[str, str]] = {}
        self.processed: dict[str, OffsetSet] = defaultdict(OffsetSet)  # source -> offsets done here
        self.start: dict[str, int] = {}  # source -> its committed offset when this worker took it

    def clear(self) -> None:
        self.ids = None
        self.added.clear()
        self.processed.clear()
        self.start.clear()

    # A trading state must absorb each record of a source once, whatever order Faust delivers
    # the records in (it seeks back over holes: a record can come after later ones) and across
    # crashes. Each state keeps, per source, a watermark below which every record is absorbed
    # and the offsets it absorbed above it ("xo"). The watermark is this worker's frontier: the
    # end of the unbroken run of records it has processed from the committed offset it started
    # at, so it never claims a record that is still missing; a record past a hole goes to "xo"
    # until the hole is filled.
    def finish(self, source: str, offset: int, committed: int | None, touched=()) -> None:
        """Mark a record of ``source`` done, whatever came of it, and record in each state it
        changed (``touched``) that the state holds it. ``committed``: the partition's committed
        offset (:func:`faust_fixes.reference_offset`)."""
        self.start.setdefault(source, offset if committed is None else committed)
        self.processed[source].add(offset)
        for state in touched:
            self._settle(source, offset, state, committed)

    def frontier(self, source: str, committed: int | None = None) -> int:
        """The last offset up to which every record of ``source`` is done; records below the
        committed offset are (Faust commits only unbroken runs of finished records)."""
        start = self.start.get(source)
        if committed is not None and (start is None or committed > start):
            start = committed
        if start is None:
            return -1
        return self.processed[source].end_of_run(start)

    def already_absorbed(self, source: str, offset: int, state: dict) -> bool:
        return (offset <= state.get("wm", {}).get(source, -1) or offset in state.get("xo", {}).get(source, ())
                or offset in self.processed[source])

    def _settle(self, source: str, offset: int, state: dict, committed: int | None) -> None:
        wm = state.setdefault("wm", {})
        mark = wm[source] = max(wm.get(source, -1), self.frontier(source, committed))
        xo = state.setdefault("xo", {})
        above = sorted({o for o in xo.get(source, ()) if o > mark} | ({offset} if offset > mark else set()))
        if above:
            xo[source] = above
        else:
            xo.pop(source, None)
        if not xo:
            del state["xo"]

    def _index(self) -> dict[str, dict[str, str]]:
        if self.ids is None:
            self.ids = defaultdict(dict)
            for key in list(self.table.data.keys()):
                group = key.rsplit("|", 1)[0]
                for ident, pos in (self.table.data.get(key) or {}).items():
                    self.ids[group].setdefault(ident, pos)
        return self.ids

    def first(self, group: str, ident: str, pos: str, partition: int) -> str:
        """The position of the id's first occurrence, recording ``pos`` if it is new."""
        known = self._index()[group]
        first = known.get(ident)
        if first is None:
            known[ident] = first = pos
            self.added.setdefault((group, partition), {})[ident] = pos
        return first

    def flush(self, batch_pos: str) -> None:
        for (group, partition), ids in self.added.items():
            key = f"{group}|{batch_pos}"
            self.table.data[key] = ids
            self.table.send_changelog(partition, key, ids)
        self.added.clear()


def _apply_asset_event(obs: StateCache, versions: StateCache, forecasts: ForecastIndex, partition: int,
                       e: dict, changed: dict[str, float]) -> None:
    kind = e["type"]
    asset_id = e["asset_id"]
    t_known = parse_iso(e["event_time"])

    def touched(qh_s: int) -> None:
        key = f"{asset_id}|{qh_s}"
        if changed.get(key, 0) < t_known:
            changed[key] = t_known

    if kind == "forecast":
        version_s = parse_iso(e["version"])
        starts = [int(parse_iso(x)) for x in e["delivery_start"]]
        powers = [float(x) for x in e["power_kw"]]
        if len(starts) != len(powers):
            raise ValueError("delivery_start and power_kw differ in length")
        vkey = f"{asset_id}|{version_s!r}"
        value = {"s": starts, "p": powers}
        if versions.get(vkey, partition, None) != value:
            versions.values[vkey] = value
            versions.mark(vkey)
        for qh_s in forecasts.apply(asset_id, version_s, starts, powers):
            touched(qh_s)
        return
    if kind == "live_sample":
        ts = parse_iso(e["timestamp"])
        qh_s = int(ts // QH_S) * QH_S
        key = f"{asset_id}|{qh_s}"
        if rules.apply_live_sample(obs.get(key, partition, dict), repr(ts), float(e["value_kw"])):
            obs.mark(key)
            touched(qh_s)
        return
    published_s = parse_iso(e["published_at"])
    line = int(e.get("source_line") or 0)
    if kind == "final_production":
        qh_s = int(parse_iso(e["delivery_start"]))
        key = f"{asset_id}|{qh_s}"
        if rules.apply_final(obs.get(key, partition, dict), published_s, line, float(e["value_kw"])):
            obs.mark(key)
            touched(qh_s)
    elif kind == "redispatch_flag":
        start_s = int(parse_iso(e["delivery_start"]))
        end_s = int(parse_iso(e["delivery_end"]))
        for qh_s in qh_slices(start_s, end_s):
            key = f"{asset_id}|{qh_s}"
            if rules.apply_redispatch(obs.get(key, partition, dict), published_s, line,
                                      bool(e["is_redispatched"])):
                obs.mark(key)
                touched(qh_s)


def _asset_event_qh(e: dict) -> float | None:
    """The QH (or, for a forecast, the last QH) an asset event is about."""
    kind = e.get("type")
    if kind == "live_sample":
        return parse_iso(e["timestamp"])
    if kind in ("final_production", "redispatch_flag"):
        return parse_iso(e["delivery_start"])
    if kind == "forecast" and e.get("delivery_start"):
        return max(parse_iso(x) for x in e["delivery_start"])
    return None


def _prune_assets(obs_table: Any, versions_table: Any, forecasts: ForecastIndex, obs: StateCache,
                  versions: StateCache, partition: int, partitions: int, cutoff: float) -> None:
    def mine(key: str) -> bool:
        return topics.partition_for(key.rsplit("|", 1)[0], partitions) == partition

    old_obs = [k for k in list(obs_table.data.keys()) if float(k.rsplit("|", 1)[1]) < cutoff and mine(k)]
    # a version covers 48 h from its time: gone when even its last QH is behind the cutoff
    old_versions = [k for k in list(versions_table.data.keys())
                    if float(k.rsplit("|", 1)[1]) + 2 * 86400 < cutoff and mine(k)]
    for cache, keys in ((obs, old_obs), (versions, old_versions)):
        for k in keys:
            cache.values.pop(k, None)
            cache.dirty.discard(k)
    delete_keys(obs_table, partition, old_obs)
    delete_keys(versions_table, partition, old_versions)
    for asset_id, derived in forecasts.by_asset.items():
        if topics.partition_for(asset_id, partitions) == partition:
            for qh_s in [q for q in derived if q < cutoff]:
                del derived[qh_s]


def _prune_trading(state_table: Any, seen_table: Any, seen: SeenIndex, cache: StateCache, partition: int,
                   partitions: int, cutoff: float) -> None:
    old_state = [k for k in list(state_table.data.keys()) if int(k.split("|")[1]) < cutoff
                 and topics.trade_partition(int(k.split("|")[1]), partitions) == partition]
    old_seen = [k for k in list(seen_table.data.keys()) if int(k.split("|")[1]) + HOUR_S <= cutoff
                and topics.trade_partition(int(k.split("|")[1]), partitions) == partition]
    for k in old_state:
        cache.values.pop(k, None)
        cache.dirty.discard(k)
    delete_keys(state_table, partition, old_state)
    delete_keys(seen_table, partition, old_seen)
    if seen.ids is not None:
        for group in [g for g in seen.ids if int(g.split("|")[1]) + HOUR_S <= cutoff]:
            if topics.trade_partition(int(group.split("|")[1]), partitions) == partition:
                del seen.ids[group]


def _check_feeds(feeds: StateCache, table: Any, partition: int, partitions: int, now_s: float,
                 config: AlertConfig, emitter: Emitter) -> None:
    """On a clock tick: a stale-feed alert for each asset of this partition gone silent."""
    for asset_id in list(table.data.keys()) + [k for k in feeds.values if k not in table.data]:
        if topics.partition_for(asset_id, partitions) != partition:
            continue
        feed = feeds.get(asset_id, partition, dict)
        alerts = evaluate_stale_feed(config, asset_id, feed, now_s)
        for alert in alerts:
            emitter.send(topics.ALERTS, alert["subject"], alert)
        if alerts:
            feeds.mark(asset_id)


def _apply_trade_event(cache: StateCache, seen: SeenIndex, emitter: Emitter, partitions: int,
                       msg: Any, e: dict, known: dict[str, float]) -> list[dict]:
    """Apply a trade (or a forwarded slice) exactly once per trade id, crash-safe; returns the
    states it changed (the caller then marks the record done: :meth:`SeenIndex.finish`).

    ``seen`` holds the source position of each id's first occurrence: a later occurrence at
    another position is a re-sent duplicate and is ignored; the same position again is a
    redelivery, which each (book, QH) state absorbs only if it does not hold that record yet
    (:meth:`SeenIndex.already_absorbed`, see :meth:`SeenIndex.finish`).
    """
    book = e["book"]
    pos = f"{msg.topic}:{msg.partition}:{msg.offset}"
    t_known = parse_iso(e.get("event_time") or e["execution_time"])
    if e["type"] == "trade_slice":
        ident = f"{e['trade_id']}|{e['qh']}"
        slices = [int(e["qh"])]
    else:
        ident = str(e["trade_id"])
        slices = qh_slices(int(parse_iso(e["delivery_start"])), int(parse_iso(e["delivery_end"])))
    group = f"{book}|{slices[0] - slices[0] % HOUR_S}"
    if seen.first(group, ident, pos, msg.partition) != pos:
        return []  # a duplicate of an id already counted
    side = e.get("side") if book == "private" else None
    volume = float(e["volume_mw"])
    price = float(e["price_eur_mwh"])
    execution_s = parse_iso(e["execution_time"])
    home_hour = slices[0] - slices[0] % HOUR_S if e["type"] == "trade" else None
    wm_key = f"{msg.topic}:{msg.partition}"
    touched: list[dict] = []
    for qh_s in slices:
        if home_hour is not None and qh_s - qh_s % HOUR_S != home_hour:
            # a multi-hour product: the slice belongs to another hour's owner
            emitter.send(topics.TRADE_SLICES, iso(qh_s), {
                "schema_version": 1, "type": "trade_slice", "book": book, "trade_id": e["trade_id"],
                "qh": qh_s, "side": side, "volume_mw": volume, "price_eur_mwh": price,
                "execution_time": e["execution_time"], "event_time": e.get("event_time")},
                partition=topics.trade_partition(qh_s, partitions))
            continue
        key = f"{book}|{qh_s}"
        state = cache.get(key, msg.partition, rules.new_trading_state)
        if seen.already_absorbed(wm_key, msg.offset, state):
            continue  # a redelivery of a record this state holds
        rules.apply_trade_slice(state, qh_s, side, volume, price, execution_s)
        touched.append(state)
        cache.mark(key)
        known[key] = max(known.get(key, 0), t_known)
    return touched


def _apply_qh_event(cache: StateCache, partition: int, e: dict, known: dict[int, float], offset: int) -> None:
    """Fold a derived or price event into its QH's state; mark the QH changed if it did.

    Asset and trading snapshots are absolute and replace what the state holds; each keeps the
    offset it came from (a QH's snapshots share one partition, and a later one never holds
    less), so a snapshot delivered after a newer one (Faust seeking back over a hole) is
    ignored instead of bringing old values back."""
    kind = e["type"]
    if kind == "imbalance_price":
        qh_s = int(parse_iso(e["delivery_start"]))
        k = parse_iso(e["event_time"])
        state = cache.get(f"qh|{qh_s}", partition, dict)
        if rules.apply_price(state, e["kind"], parse_iso(e["published_at"]), int(e.get("source_line") or 0),
                             e.get("price_eur_mwh"), e.get("unterdeckt_eur_mwh"), e.get("ueberdeckt_eur_mwh")):
            _touch(cache, qh_s, state, k, known)
        return
    qh_s = int(e["qh"])
    key = f"qh|{qh_s}"
    state = cache.get(key, partition, dict)
    k = e.get("known_at") or 0
    if kind == "asset_qh":
        a = state.setdefault("a", {})
        changed = False
        for s in e["assets"]:
            old = a.get(s["asset_id"])
            if old is not None and len(old) > 5 and old[5] > offset:
                continue  # older than the snapshot the state holds
            new = [s["best_kw"], s["latest_kw"], s["tradeable_kw"], s["redispatched"], s["exists"], offset]
            if old is None or old[:5] != new[:5]:
                changed = True
            a[s["asset_id"]] = new
        if changed:
            _touch(cache, qh_s, state, k, known)
    elif kind == "trading_qh":
        if e["book"] == "private":
            if state.get("to", -1) > offset:
                return  # older than the snapshot the state holds
            state["to"] = offset
            snap = {"net_mwh": e["net_mwh"], "trades": e["trades"]}
            if state.get("t") == snap and state.get("has_trades"):
                return
            state["t"] = snap
        elif state.get("has_trades"):
            return  # public trades only bring the QH into scope (their prices are trading_qh's)
        state["has_trades"] = True
        _touch(cache, qh_s, state, k, known)


def _touch(cache: StateCache, qh_s: int, state: dict, k: float, known: dict[int, float]) -> None:
    if k and k > (state.get("k") or 0):
        state["k"] = k
    known[qh_s] = max(known.get(qh_s, 0), k or 0)
    cache.mark(f"qh|{qh_s}")


def app_from_env() -> faust.App:
    """The worker's app, configured from the environment (``intraday worker`` sets it)."""
    from intraday.config import Settings

    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS must be set for a worker (intraday run/demo set it)")
    return create_app(settings.kafka_bootstrap, settings.partitions,
                      embedded=os.environ.get("INTRADAY_EMBEDDED") == "1",
                      web_port=int(os.environ.get("INTRADAY_WORKER_WEB_PORT", "6066")),
                      alert_config=AlertConfig.from_settings(settings),
                      retention_days=settings.state_retention_days, fetch_wait_ms=settings.fetch_wait_ms)
