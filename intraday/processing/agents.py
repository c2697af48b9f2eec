"""The five agents' batch functions: thin shells around the pure core of :mod:`intraday.processing.state`.

The flow is drawn in :mod:`intraday.processing.app`, the topology listed in ``intraday.contract.topics.AGENTS``.
Each agent decodes, steps the core, sends, confirms and stores (:mod:`intraday.processing.shell`).
State is a set of facts per key (forecast versions, observations, trade occurrences, QH
snapshots keeping the highest ``rev``), so redelivery, duplicates and any delivery order give
the same state; retention follows the agent's own watermark; the end-of-input barrier of a replay
passes each agent only behind the results of everything before it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from intraday.contract import topics
from intraday.core.alerts import (
    AlertConfig,
    evaluate_alerts,
    evaluate_open_position,
    evaluate_stale_feed,
    expire_alerts,
    feed_sample,
    in_horizon,
    qhs_due_for_position_check,
)
from intraday.core.qh import HOUR_S, MAX_DELIVERY_S, QH_S, iso, parse_iso, qh_closing_at, qh_slices
from intraday.processing.shell import TOO_OLD, Barriers, Emitter, Watermark, batch_source_ms, decoded
from intraday.processing.state import assets as asset_state
from intraday.processing.state import quarter_hours as qh_state
from intraday.processing.state import trades as trade_state
from intraday.processing.state import wire

log = logging.getLogger("intraday.processors")

_enc = msgspec.json.Encoder()
TRADE_CHUNK = 2000  # trade occurrences per changelog record (~150 bytes each)


class Cache:
    """Batch-local typed view of a table of raw msgspec values: decode each key once, write each
    changed key once (to the changelog partition the key belongs to)."""

    def __init__(self, table: Any, kind: type, partition_of) -> None:  # type: ignore[no-untyped-def]
        self.table, self.kind, self.partition_of = table, kind, partition_of
        self.values: dict[str, Any] = {}
        self.dirty: set[str] = set()

    def get(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        raw = self.table.data.get(key)
        v = None if raw is None else msgspec.json.decode(raw, type=self.kind)
        self.values[key] = v
        return v

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def flush(self) -> None:
        for key in self.dirty:
            raw = _enc.encode(self.values[key])
            self.table.data[key] = raw
            self.table.send_changelog(self.partition_of(key), key, raw)
        self.dirty.clear()


def _qh_range(after_s: float, upto_s: float) -> range:
    """QH starts ``t`` with ``after_s < t <= upto_s``."""
    first = int(after_s // QH_S) * QH_S + QH_S
    return range(first, int(upto_s // QH_S) * QH_S + 1, QH_S)


def delete_keys(table: Any, keys: list[tuple[str, int]]) -> None:
    for key, partition in keys:
        table.data.pop(key, None)
        table.send_changelog(partition, key, None, value_serializer="raw")


def each_event(emitter: Emitter, msgs: list, accepts: type | tuple, handle, *,  # type: ignore[no-untyped-def]
               wm: Watermark | None = None, on_clock=None) -> list:  # type: ignore[no-untyped-def]
    """The per-record loop every agent shares; returns the batch's barriers (forwarded by the
    caller after its results). Per event: a clock tick goes to ``on_clock``; an event of another
    type than ``accepts``, one older than the watermark's retention, or one ``handle`` refuses
    (raises) goes to the DLQ alone, and the rest of the batch goes on. ``handle`` validates
    before it changes anything, so a refused event leaves the state as it was."""
    barriers = []
    cutoff = wm.cutoff() if wm is not None else None  # the batch's: pruning happens at its end
    for msg, e, many in decoded(emitter, msgs):
        try:
            if isinstance(e, wire.EndOfInput):
                barriers.append((msg, e))
                continue
            if on_clock is not None and isinstance(e, wire.Clock):
                on_clock(msg, e)
                continue
            if not isinstance(e, accepts):
                raise ValueError(f"unexpected event type {type(e).__name__} on {msg.topic}")
            qh_s = wire.oldest_qh(e)
            if cutoff is not None and qh_s is not None and qh_s < cutoff:
                emitter.dead_letter(msg, TOO_OLD, e if many else None)
                continue
            handle(msg, e)
            if wm is not None:
                wm.saw(msg.topic, msg.partition, wire.event_time_s(e), qh_s)
        except Exception as exc:  # noqa: BLE001 - one record refused, the rest goes on
            emitter.dead_letter(msg, f"invalid {type(e).__name__} event: {exc!r}", e if many else None)
    return barriers


class Processors:
    """The agents' batch functions over the given tables and emitter, independent of Faust: the
    Faust app runs them on its streams, the in-memory driver of the tests on a fake log."""

    def __init__(self, bodies: dict, reset) -> None:  # type: ignore[no-untyped-def]
        self.bodies = bodies
        self.reset = reset  # forget the in-memory indexes (after a crash or an assignment change)


TABLES = ("forecast-versions", "asset-observations", "feed-state", "trade-occurrences", "qh-state",
          "portfolio-members", "barriers")
RAW_TABLES = frozenset(TABLES) - {"feed-state", "barriers"}  # msgspec bytes; the others JSON


def build_processors(tables: dict[str, Any], emitter: Emitter, partitions: int, *,
                     alert_config: AlertConfig | None = None, retention_days: float = 4.0) -> Processors:
    """The batch function of each agent of ``topics.AGENTS`` (by name). A table needs ``data``
    (a dict) and ``send_changelog(partition, key, value)``."""
    alert_config = alert_config or AlertConfig()
    retention_s = retention_days * 86400

    def asset_partition(key: str) -> int:
        return topics.partition_for(key.split("|", 1)[0], partitions)

    versions_table = tables["forecast-versions"]   # asset|version -> ForecastVersion
    obs_table = tables["asset-observations"]       # asset|qh -> AssetObs
    feed_table = tables["feed-state"]   # asset -> stale-feed state
    trades_table = tables["trade-occurrences"]     # partition|offset|end -> [[book, id, TradeOcc], ...]
    qh_table = tables["qh-state"]                  # qh -> QhState
    members_table = tables["portfolio-members"]    # partition -> Membership (qh) / "crm" (portfolio)
    barrier_table = tables["barriers"]  # replay|partition -> origins seen (aligned agents)

    # In-memory indexes derived from the tables (rebuilt after every assignment change).
    forecasts: dict[str, dict[int, asset_state.QhForecast]] = {}
    trade_books: dict[int, trade_state.TradeBook] = {}
    marks = {name: Watermark(retention_s) for name in topics.AGENT}

    def forecast_index(asset_id: str) -> dict[int, asset_state.QhForecast]:
        idx = forecasts.get(asset_id)
        if idx is None:
            idx = forecasts[asset_id] = {}
            prefix = asset_id + "|"
            for key in [k for k in list(versions_table.data.keys()) if k.startswith(prefix)]:
                v = msgspec.json.decode(versions_table.data[key], type=asset_state.ForecastVersion)
                for qh_s, kw in zip(v.starts, v.powers, strict=True):
                    idx[qh_s] = asset_state.fold_forecast(idx.get(qh_s), v.version_s, qh_s, kw)
        return idx

    # ------------------------------------------------------------------ assets (by asset_id)
    asset_barriers = Barriers(topics.AGENT["assets"], partitions)

    async def assets(msgs: list) -> None:
        obs = Cache(obs_table, asset_state.AssetObs, asset_partition)
        new_versions: dict[str, tuple[bytes, int]] = {}
        changed: dict[tuple[str, int], float] = {}
        feeds: dict[str, tuple[int, dict]] = {}

        def feed(asset_id: str, partition: int) -> dict:
            if asset_id not in feeds:
                feeds[asset_id] = (partition, dict(feed_table.data.get(asset_id) or {}))
            return feeds[asset_id][1]

        def on_clock(msg: Any, e: wire.Clock) -> None:  # stale live feeds of this partition
            now_s = parse_iso(e.now)
            for asset_id in list(feed_table.data.keys()):
                if topics.partition_for(asset_id, partitions) == msg.partition:
                    for alert in evaluate_stale_feed(alert_config, asset_id, feed(asset_id, msg.partition), now_s):
                        emitter.send(topics.ALERTS, alert["subject"], alert)

        def handle(msg: Any, e: Any) -> None:
            known = wire.event_time_s(e) or 0.0
            for key in _apply_asset_event(e, obs, new_versions, versions_table, forecast_index, msg.partition):
                changed[key] = max(changed.get(key, 0.0), known)
            if isinstance(e, wire.LiveSample):
                for alert in feed_sample(alert_config, e.asset_id, feed(e.asset_id, msg.partition),
                                         parse_iso(e.timestamp)):
                    emitter.send(topics.ALERTS, alert["subject"], alert)

        wm = marks["assets"]
        barriers = each_event(emitter, msgs, wire.Forecast | wire.LiveSample | wire.FinalProduction
                              | wire.RedispatchFlag, handle, wm=wm, on_clock=on_clock)
        by_qh: dict[int, list] = defaultdict(list)
        for (asset_id, qh_s) in sorted(changed):
            by_qh[qh_s].append(asset_state.asset_snap(asset_id, qh_s, forecast_index(asset_id).get(qh_s),
                                               obs.get(f"{asset_id}|{qh_s}")))
        src_ms = batch_source_ms(msgs)
        for qh_s, snaps in by_qh.items():
            known_at = max(changed[(s.asset_id, qh_s)] for s in snaps)
            emitter.send(topics.ASSET_QH, iso(qh_s), _enc.encode(wire.AssetQhBundle(
                schema_version=1, qh=qh_s, known_at=known_at, src_ms=src_ms, assets=snaps,
                event_time=iso(int(known_at)))))
        for msg, e in barriers:
            asset_barriers.on_barrier(emitter, msg, e)
        cutoff = wm.due_for_pruning()
        await emitter.confirm()  # results before state
        for key, (raw, partition) in new_versions.items():
            versions_table.data[key] = raw
            versions_table.send_changelog(partition, key, raw)
        obs.flush()
        for asset_id, (partition, f) in feeds.items():
            if f != feed_table.data.get(asset_id):
                feed_table.data[asset_id] = f
                feed_table.send_changelog(partition, asset_id, f)
        if cutoff is not None:
            wm.pruned(_prune_assets(obs_table, versions_table, forecasts, asset_partition, cutoff))

    # ------------------------------------------------------------------ trading (by trade id)
    trade_barriers = Barriers(topics.AGENT["trading"], partitions)

    def trade_book(partition: int) -> trade_state.TradeBook:
        tb = trade_books.get(partition)
        if tb is None:
            tb = trade_books[partition] = trade_state.TradeBook()
            prefix = f"{partition}|"
            for key in [k for k in list(trades_table.data.keys()) if k.startswith(prefix)]:
                for book, trade_id, occ in msgspec.json.decode(trades_table.data[key],
                                                               type=list[tuple[str, str, trade_state.TradeOcc]]):
                    tb.add(book, trade_id, occ)
        return tb

    async def trading(msgs: list) -> None:
        changed: set[tuple[int, str, int]] = set()
        # new occurrences per source partition, stored as one chunk per topic-partition and batch,
        # keyed by the offsets it holds (unique: never overwrites another batch's chunk)
        added: dict[tuple[int, str], list] = defaultdict(list)
        offsets: dict[tuple[int, str], list[int]] = defaultdict(list)

        def handle(msg: Any, e: wire.Trade) -> None:
            occ = trade_state.trade_occurrence(e)
            keys = trade_book(msg.partition).add(e.book, e.trade_id, occ)
            if keys:
                added[(msg.partition, msg.topic)].append((e.book, e.trade_id, occ))
                offsets[(msg.partition, msg.topic)].append(msg.offset)
                changed.update((msg.partition, book, qh_s) for book, qh_s in keys)

        wm = marks["trading"]
        barriers = each_event(emitter, msgs, wire.Trade, handle, wm=wm)
        src_ms = batch_source_ms(msgs)
        by_qh: dict[int, list[bytes]] = defaultdict(list)
        for partition, book, qh_s in sorted(changed):
            p = trade_book(partition).partial(book, qh_s, partition)
            p.src_ms = src_ms
            by_qh[qh_s].append(_enc.encode(p))
        for qh_s, values in by_qh.items():  # one record per QH: the partials of every book and partition
            emitter.send_events(topics.TRADING_PARTIALS, iso(qh_s), values)
        for msg, e in barriers:
            trade_barriers.on_barrier(emitter, msg, e)
        cutoff = wm.due_for_pruning()
        await emitter.confirm()  # results before state
        for (partition, topic), occs in added.items():
            at = offsets[(partition, topic)]
            for i in range(0, len(occs), TRADE_CHUNK):  # a changelog record stays far below 1 MB
                part = occs[i:i + TRADE_CHUNK]
                end = max(o.qh0 + o.slices * QH_S for _b, _i, o in part)
                key = f"{partition}|{topic}@{min(at)}-{max(at)}#{i}|{end}"
                raw = _enc.encode(part)
                trades_table.data[key] = raw
                trades_table.send_changelog(partition, key, raw)
        if cutoff is not None:
            ends = {k: int(k.rsplit("|", 1)[1]) for k in list(trades_table.data.keys())}
            delete_keys(trades_table, [(k, int(k.split("|")[0])) for k, end in ends.items() if end <= cutoff])
            for tb in trade_books.values():
                tb.forget_before(cutoff)
            wm.pruned(min((end for end in ends.values() if end > cutoff), default=None))

    # ------------------------------------------------------------------ portfolio membership
    portfolio_barriers = Barriers(topics.AGENT["portfolio"], partitions)

    async def portfolio(msgs: list) -> None:
        cache = Cache(members_table, qh_state.Membership, lambda _k: 0)
        before = cache.get("crm")

        def handle(_msg: Any, e: wire.Contract) -> None:
            new = qh_state.step_membership(cache.get("crm"), e.file_time, [e.asset_id])
            if new is not None:
                cache.put("crm", new)

        barriers = each_event(emitter, msgs, wire.Contract, handle)
        now = cache.get("crm")
        if now is not None and now != before:  # broadcast: every QH partition needs it
            emitter.to_every_partition(topics.PORTFOLIO, "portfolio", {
                "schema_version": 1, "type": "portfolio", "file_time": now.file_time,
                "members": sorted(now.members), "event_time": now.file_time})
        for msg, e in barriers:
            portfolio_barriers.on_barrier(emitter, msg, e)
        await emitter.confirm()
        cache.flush()

    # ------------------------------------------------------------------ replay clock broadcast
    clock_barriers = Barriers(topics.AGENT["clock"], partitions)

    async def clock(msgs: list) -> None:
        def handle(_msg: Any, e: wire.Clock) -> None:  # every tick: time-driven checks must see each minute
            emitter.to_every_partition(topics.CLOCK_BROADCAST, "clock", msgspec.to_builtins(e))

        for msg, e in each_event(emitter, msgs, wire.Clock, handle):
            clock_barriers.on_barrier(emitter, msg, e)
        await emitter.confirm()

    # ------------------------------------------------------------------ imbalance per QH
    qh_barriers = Barriers(topics.AGENT["qh"], partitions, barrier_table)

    scanned: dict[int, float] = {}  # per input partition: the replay clock the time-driven checks reached

    def qh_partition(key: str) -> int:
        return topics.partition_for(iso(int(key)), partitions)

    async def qh(msgs: list) -> None:
        states = Cache(qh_table, qh_state.QhState, qh_partition)
        members = Cache(members_table, qh_state.Membership, int)
        changed: set[int] = set()
        trading_changed: set[int] = set()
        members_changed: set[int] = set()
        ticks: dict[int, list[float]] = defaultdict(list)

        def on_clock(msg: Any, e: wire.Clock) -> None:
            ticks[msg.partition].append(parse_iso(e.now))

        def handle(msg: Any, e: Any) -> None:
            if isinstance(e, wire.Portfolio):
                key = str(msg.partition)
                new = qh_state.step_membership(members.get(key), e.file_time, e.members)
                if new is not None:
                    members.put(key, new)
                    members_changed.add(msg.partition)
                return
            qh_s = int(wire.oldest_qh(e) or 0)
            new_state = qh_state.step_qh(states.get(str(qh_s)), e)
            if new_state is not None:
                states.put(str(qh_s), new_state)
                changed.add(qh_s)
                if isinstance(e, wire.TradingPartial):
                    trading_changed.add(qh_s)

        def alerts(qh_s: int, st: qh_state.QhState, evaluate) -> None:  # type: ignore[no-untyped-def]
            """Run an alert rule of intraday.core.alerts on the QH's alert state, send what it
            raises or resolves and keep the new state."""
            al = {"al": {k: list(v) for k, v in st.alerts.items()}}
            for alert in evaluate(al):
                emitter.send(topics.ALERTS, alert["subject"], alert)
            new_alerts = {k: (bool(v[0]), int(v[1])) for k, v in al["al"].items()}
            if new_alerts != st.alerts:
                states.put(str(qh_s), msgspec.structs.replace(st, alerts=new_alerts))

        def portfolio_of(partition: int) -> frozenset[str] | None:
            m = members.get(str(partition))
            return m.members if m else None

        wm = marks["qh"]
        barriers = each_event(emitter, msgs, wire.AssetQhBundle | wire.TradingPartial | wire.ImbalancePrice
                              | wire.Portfolio, handle, wm=wm, on_clock=on_clock)
        if members_changed:  # a new CRM file: every QH of the partition is recomputed
            for key in list(qh_table.data.keys()):
                if qh_partition(key) in members_changed:
                    changed.add(int(key))
        src_ms = batch_source_ms(msgs)
        for qh_s in sorted(changed):
            st = states.get(str(qh_s))
            if st is None:
                continue
            port, rows, trading_by_book = qh_state.qh_results(qh_s, st, portfolio_of(qh_partition(str(qh_s))))
            alerts(qh_s, st, lambda al, q=qh_s, s=st, p=port: evaluate_alerts(alert_config, q, al, p, s.known_at))
            key = iso(qh_s)
            emitter.send(topics.QH_RESULTS, key, {
                "schema_version": 1, "type": "qh_result", "qh": qh_s, "known_at": st.known_at,
                "src_ms": src_ms, "portfolio": port, "assets": rows})
            if qh_s in trading_changed:  # both books in one record
                emitter.send_events(topics.TRADING_QH, key, [orjson.dumps(
                    {"schema_version": 1, "type": "trading_qh", **row, "known_at": st.known_at, "src_ms": src_ms})
                    for row in trading_by_book.values()])

        def recheck(p: int, qhs: Iterable[int], wanted, evaluate) -> None:  # type: ignore[no-untyped-def]
            """Time-driven: run ``evaluate(qh, alert state, portfolio row)`` on the QHs of partition
            ``p`` among ``qhs`` that have a state for which ``wanted(qh, state)`` holds."""
            for qh_s in qhs:
                st = states.get(str(qh_s)) if qh_partition(str(qh_s)) == p else None
                if st is None or not wanted(qh_s, st):
                    continue
                port, _rows, _t = qh_state.qh_results(qh_s, st, portfolio_of(p))
                alerts(qh_s, st, lambda al, q=qh_s, pt=port: evaluate(q, al, pt))

        for p, nows in ticks.items():
            for now_s in sorted(nows):  # open positions close to gate closure
                recheck(p, qhs_due_for_position_check(alert_config, now_s), lambda q, st: True,
                        lambda q, al, pt, n=now_s: evaluate_open_position(alert_config, q, al, pt, n))
            now_s = max(nows)
            last = scanned.get(p, now_s - 86400)
            if now_s <= last:
                continue
            scanned[p] = now_s
            horizon = alert_config.horizon_h * HOUR_S
            recheck(p, _qh_range(qh_closing_at(last), qh_closing_at(now_s)),  # gate closure passed
                    lambda q, st: any(active for active, _ in st.alerts.values()), expire_alerts)
            recheck(p, _qh_range(qh_closing_at(max(last, now_s - 86400) + horizon),  # entered the horizon
                                 qh_closing_at(now_s + horizon)),
                    lambda q, st, n=now_s: in_horizon(alert_config, q, n),
                    lambda q, al, pt, n=now_s: evaluate_alerts(alert_config, q, al, pt, n))
        for msg, e in barriers:
            qh_barriers.on_barrier(emitter, msg, e)
        cutoff = wm.due_for_pruning()
        await emitter.confirm()  # results before state
        states.flush()
        members.flush()
        if cutoff is not None:
            keys = list(qh_table.data.keys())
            delete_keys(qh_table, [(k, qh_partition(k)) for k in keys if int(k) < cutoff])
            wm.pruned(min((int(k) for k in keys if int(k) >= cutoff), default=None))

    bodies = {"assets": assets, "trading": trading, "portfolio": portfolio, "clock": clock, "qh": qh}
    assert set(bodies) == set(topics.AGENT), "one batch function per agent of the topology"

    def reset() -> None:
        forecasts.clear()
        trade_books.clear()
        for m in marks.values():
            m.clear()

    return Processors(bodies, reset)


def _apply_asset_event(e: Any, obs: Cache, new_versions: dict[str, tuple[bytes, int]], versions_table: Any,
                       forecast_index, partition: int) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """Fold one asset event into the state; the (asset, QH) keys whose snapshot changed. The
    event is validated in full before anything is changed (a refused one changes nothing)."""
    if isinstance(e, wire.Forecast):
        v = asset_state.forecast_version(e)
        vkey = f"{e.asset_id}|{v.version_s!r}"
        if vkey in new_versions or vkey in versions_table.data:
            return []  # the same version again (a re-sent file)
        idx = forecast_index(e.asset_id)
        new_versions[vkey] = (_enc.encode(v), partition)
        for qh_s, kw in zip(v.starts, v.powers, strict=True):
            idx[qh_s] = asset_state.fold_forecast(idx.get(qh_s), v.version_s, qh_s, kw)
        return [(e.asset_id, qh_s) for qh_s in v.starts]
    if isinstance(e, wire.LiveSample):
        ts = parse_iso(e.timestamp)
        qh_s = int(ts // QH_S) * QH_S
        key = f"{e.asset_id}|{qh_s}"
        new = asset_state.apply_live(obs.get(key), ts, float(e.value_kw),
                              asset_state.rank(e.source_file, e.source_row))
    elif isinstance(e, wire.FinalProduction):
        qh_s = int(parse_iso(e.delivery_start))
        if qh_s % QH_S:
            raise ValueError("delivery_start is not aligned to a quarter-hour")
        key = f"{e.asset_id}|{qh_s}"
        new = asset_state.apply_final(obs.get(key), parse_iso(e.published_at), e.source_line, float(e.value_kw))
    else:  # RedispatchFlag: every QH of its range
        published = parse_iso(e.published_at)
        qhs = qh_slices(int(parse_iso(e.delivery_start)), int(parse_iso(e.delivery_end)))
        out = []
        for qh_s in qhs:
            key = f"{e.asset_id}|{qh_s}"
            new = asset_state.apply_flag(obs.get(key), published, e.source_line, bool(e.is_redispatched))
            if new is not None:
                obs.put(key, new)
                out.append((e.asset_id, qh_s))
        return out
    if new is None:
        return []
    obs.put(key, new)
    return [(e.asset_id, qh_s)]


def _prune_assets(obs_table: Any, versions_table: Any, forecasts: dict, partition_of,  # type: ignore[no-untyped-def]
                  cutoff: float) -> float | None:
    """Forget (asset, QH) observations before ``cutoff`` and versions whose 48 h are all before it;
    returns the oldest point of what is kept (a QH, or a version's end)."""
    obs = {k: float(k.rsplit("|", 1)[1]) for k in list(obs_table.data.keys())}
    ends = {k: float(k.rsplit("|", 1)[1]) + MAX_DELIVERY_S for k in list(versions_table.data.keys())}
    delete_keys(obs_table, [(k, partition_of(k)) for k, qh_s in obs.items() if qh_s < cutoff])
    delete_keys(versions_table, [(k, partition_of(k)) for k, end in ends.items() if end < cutoff])
    for idx in forecasts.values():
        for qh_s in [q for q in idx if q < cutoff]:
            del idx[qh_s]
    return min((t for t in (*obs.values(), *ends.values()) if t >= cutoff), default=None)
