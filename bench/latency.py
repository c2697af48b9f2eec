"""Latency at --speed 60 (publication to first and to every result row) and the soak run over two days."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import psycopg

from bench.common import DAY, SEED, log, pct, rnd, size_name
from bench.harness import Bench
from bench.parts import dashboard_queries_timing
from intraday.contract import topics
from intraday.platform.kafka import producer


class TimedReplayerMixin:
    """Records the wall-clock time at which each replayed record was handed to the producer.

    ``replay`` publishes the chosen records in order, interleaved with clock ticks on
    ``replay.clock``; so the n-th non-clock produce is the n-th chosen record (checked)."""

    def prepare(self, chosen: list) -> None:
        self._chosen = chosen
        self._i = 0
        self.first_pub: dict[int, float] = {}
        self.last_pub: dict[int, float] = {}

    def _produce(self, topic, key, value, partition):
        super()._produce(topic, key, value, partition)
        if topic == topics.CLOCK or key == "end_of_input":  # clock ticks and the replay's barrier
            return
        now = time.time()
        r = self._chosen[self._i]
        if r.topic != topic or r.key != key:
            raise RuntimeError(f"replay order changed: expected {r.topic}/{r.key}, produced {topic}/{key}")
        self._i += 1
        ms = round(r.event_time_s * 1000)
        self.first_pub.setdefault(ms, now)
        self.last_pub[ms] = now


class ResultPoller:
    """Polls portfolio_qh, asset_qh and trading_qh every ``interval`` s; records when each
    (key, known_at) first appears (wall clock)."""

    def __init__(self, url: str, since_s: float, interval: float) -> None:
        self.url = url
        self.since = dt.datetime.fromtimestamp(since_s, tz=dt.UTC)
        self.interval = interval
        self.seen: dict[tuple, float] = {}
        self.before: set[tuple] = set()
        self.polls = 0
        self.poll_s: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def _query(self, conn) -> list[tuple]:
        rows = conn.execute("SELECT 'portfolio_qh', '', delivery_start, known_at FROM portfolio_qh "
                            "WHERE known_at >= %(s)s UNION ALL "
                            "SELECT 'asset_qh', asset_id, delivery_start, known_at FROM asset_qh "
                            "WHERE known_at >= %(s)s UNION ALL "
                            "SELECT 'trading_qh', book, delivery_start, known_at FROM trading_qh "
                            "WHERE known_at >= %(s)s", {"s": self.since}).fetchall()
        return rows

    def start(self) -> ResultPoller:
        conn = psycopg.connect(self.url, autocommit=True)
        self.before = set(self._query(conn))

        def loop():
            try:
                while not self._stop.is_set():
                    t0 = time.perf_counter()
                    rows = self._query(conn)
                    now = time.time()
                    self.poll_s.append(time.perf_counter() - t0)
                    for r in rows:
                        if r not in self.seen and r not in self.before:
                            self.seen[r] = now
                    self.polls += 1
                    self._stop.wait(self.interval)
            except Exception as exc:  # noqa: BLE001 - reported in the results
                self.error = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()

        self._thread = threading.Thread(target=loop, name="result-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def busiest_window(records, length_s: float, lo_s: float, hi_s: float) -> float:
    """Start (whole hour) of the ``length_s`` window with the most records inside [lo_s, hi_s)."""
    hours = Counter(int(r.event_time_s // 3600) for r in records if lo_s <= r.event_time_s < hi_s)
    if not hours:
        return lo_s
    span = max(1, int(length_s // 3600))
    best = max(hours, key=lambda h: sum(hours.get(h + i, 0) for i in range(span)))
    return best * 3600.0


def run_latency(b: Bench, assets: int, trades: int) -> dict[str, Any]:
    from intraday.core.qh import delivery_day_qhs, iso
    from intraday.ingest.replay import Replayer

    class TimedReplayer(TimedReplayerMixin, Replayer):
        pass

    name = f"latency-{size_name(assets, trades)}"
    parsed, _ = b.parsed(assets, trades)
    records = parsed.records
    qhs = delivery_day_qhs(DAY)
    slice_s = b.args.latency_slice_min * 60
    from_s = busiest_window(records, slice_s, qhs[0], qhs[-1] - slice_s)
    to_s = from_s + slice_s
    chosen = [r for r in records if from_s <= r.event_time_s < to_s]
    res: dict[str, Any] = {"size": size_name(assets, trades), "speed": 60, "from": iso(int(from_s)),
                           "to": iso(int(to_s)), "events_in_slice": len(chosen),
                           "poll_interval_ms": round(b.args.poll_interval * 1000)}
    url = b.dbs.create("latency")
    run = b.start_stack(name, url)
    mon = b.monitor_for(run).start()
    try:
        log.info("[%s] warm-up: replaying the %d events before %s at max speed", name,
                 sum(r.event_time_s < from_s for r in records), iso(int(from_s)))
        b.replay(run.stack, records, None, to_s=from_s)
        b.wait_drained(run.stack, b.args.drain_timeout)
        poller = ResultPoller(url, from_s, b.args.poll_interval).start()
        log.info("[%s] replaying %s .. %s (%d events) at 60x: ~%.0fs of wall time", name, iso(int(from_s)),
                 iso(int(to_s)), len(chosen), slice_s / 60)
        rp = TimedReplayer(producer(run.stack.services.bootstrap), run.stack.settings.partitions, progress=False)
        rp.prepare(chosen)
        stats = rp.replay(records, 60, from_s=from_s, to_s=to_s)
        run.stack.last_replay_id = stats.replay_id
        if rp._i != stats.published:
            raise RuntimeError(f"timed {rp._i} of {stats.published} published records")
        b.wait_drained(run.stack, b.args.drain_timeout)
        time.sleep(max(0.2, 3 * b.args.poll_interval))
        poller.stop()
        res["peak_mib"] = mon.stop()
        if poller.error:
            res["poller_error"] = poller.error
        lat: dict[str, list[float]] = defaultdict(list)
        lat_last: dict[str, list[float]] = defaultdict(list)
        unmatched = 0
        per_event: dict[int, list[float]] = defaultdict(list)  # event time -> appearance times of its rows
        for (table, _asset, _qh, known_at), seen_at in poller.seen.items():
            ms = round(known_at.timestamp() * 1000)
            if not (from_s * 1000 <= ms < to_s * 1000):
                continue
            pub = rp.first_pub.get(ms)
            if pub is None:
                unmatched += 1
                continue
            lat[table].append(seen_at - pub)
            lat_last[table].append(seen_at - rp.last_pub[ms])
            per_event[ms].append(seen_at)
        first_row = [min(v) - rp.first_pub[ms] for ms, v in per_event.items()]
        last_row = [max(v) - rp.first_pub[ms] for ms, v in per_event.items()]
        lat["all"] = lat["portfolio_qh"] + lat["asset_qh"] + lat["trading_qh"]
        lat["event: first row"] = first_row
        lat["event: last row"] = last_row
        lat_last["all"] = lat_last["portfolio_qh"] + lat_last["asset_qh"] + lat_last["trading_qh"]
        res["unmatched_rows"] = unmatched
        res["polls"] = poller.polls
        res["poll_query_ms_median"] = rnd(1000 * statistics.median(poller.poll_s), 2) if poller.poll_s else None
        res["latency_ms"] = {t: {"count": len(v), "p50": rnd(1000 * pct(v, .5)), "p95": rnd(1000 * pct(v, .95)),
                                 "p99": rnd(1000 * pct(v, .99)), "max": rnd(1000 * max(v)) if v else None}
                             for t, v in lat.items()}
        res["latency_from_last_publication_ms"] = {
            t: {"p50": rnd(1000 * pct(v, .5)), "p95": rnd(1000 * pct(v, .95)), "p99": rnd(1000 * pct(v, .99))}
            for t, v in lat_last.items()}
        log.info("[%s] latency publication -> row in the database (ms): %s", name,
                 {t: (v["count"], v["p50"], v["p95"], v["p99"]) for t, v in res["latency_ms"].items()})
        # the dashboard's data on top: its query set for a full day, on this database
        res["dashboard_queries_ms"] = dashboard_queries_timing(url, b.args.dash_runs)
        log.info("[%s] dashboard query set on top: median %.1f ms", name, res["dashboard_queries_ms"]["median"])
    finally:
        if mon._thread is not None and not mon._stop.is_set():
            mon.stop()
        b.stop_stack(run)
        b.dbs.drop(url)
    return res



def run_soak(b: Bench, assets: int, trades: int, speed: float) -> dict[str, Any]:
    """Replay delivery day DAY and then the next day (one event-time ordered stream, as a live
    system would see them) at ``speed``, sampling every process's memory, to see whether
    memory levels off or keeps growing. The processors' state retention is set to one day for
    this run, so that the first day's state is due for deletion while the second day runs: a
    process whose memory still grows by a day's worth on day two keeps something it should not.
    Tansu keeps every record in memory by design (no retention in its memory engine), so the
    broker's growth is expected and reported separately."""
    from intraday.core.qh import delivery_day_qhs, iso
    from intraday.ingest.day import parse_day
    from intraday.ingest.generate.day import generate_day

    days = [DAY, DAY + dt.timedelta(days=1)]
    parsed = []
    for d in days:
        path = b.tmp / "days" / f"soak-{size_name(assets, trades)}-{d}"
        if not path.exists():
            log.info("[soak] generating %s: %d assets, %d public trades", d, assets, trades)
            generate_day(path, d, assets=assets, public_trades=trades, seed=SEED)
        parsed.append(parse_day(path))
    records = sorted([r for p in parsed for r in p.records], key=lambda r: r.event_time_s)
    dense = [r.event_time_s for r in records if r.topic in (topics.FORECASTS, topics.PUBLIC_TRADES)]
    from_s = min(dense)
    end_s = max(r.event_time_s for r in records)
    day1_end = delivery_day_qhs(days[0])[-1] + 900
    res: dict[str, Any] = {"size": size_name(assets, trades), "days": [str(d) for d in days], "speed": speed,
                           "events": len(records), "from": iso(int(from_s)), "to": iso(int(end_s)),
                           "state_retention_days": 1, "expected_wall_s": round((end_s - from_s) / speed)}
    url = b.dbs.create("soak")
    old = os.environ.get("INTRADAY_STATE_RETENTION_DAYS")
    os.environ["INTRADAY_STATE_RETENTION_DAYS"] = "1"
    try:
        run = b.start_stack("soak", url)
    finally:
        if old is None:
            os.environ.pop("INTRADAY_STATE_RETENTION_DAYS", None)
        else:
            os.environ["INTRADAY_STATE_RETENTION_DAYS"] = old
    mon = b.monitor_for(run, series_every=2.0).start()
    t_replay: list[float] = []
    try:
        log.info("[soak] warm-up: the %d master-data events before %s at max speed",
                 sum(r.event_time_s < from_s for r in records), iso(int(from_s)))
        b.replay(run.stack, records, None, to_s=from_s)
        b.wait_drained(run.stack, b.args.drain_timeout)
        log.info("[soak] replaying %s .. %s (%d events) at %gx: ~%.0f min", iso(int(from_s)), iso(int(end_s)),
                 sum(r.event_time_s >= from_s for r in records), speed, (end_s - from_s) / speed / 60)
        t_replay.append(time.monotonic())
        stats = b.replay(run.stack, records, speed, from_s=from_s)
        res["published"] = stats.published
        try:  # the memory samples are the point: keep them even if the drain check cannot finish
            b.wait_drained(run.stack, min(b.args.drain_timeout, 300))
            res["drained"] = True
        except TimeoutError as exc:
            res["drained"] = False
            res["drain_error"] = str(exc)
            log.warning("[soak] not drained (%s); reporting the memory samples anyway", exc)
        res["wall_s"] = rnd(time.monotonic() - t_replay[0], 1)
        res["peak_mib"] = mon.stop()
        res["cpu_s"] = mon.cpu_seconds()
    finally:
        if mon._thread is not None and not mon._stop.is_set():
            mon.stop()
        b.stop_stack(run)
        b.dbs.drop(url)
    # memory at the end of day one's delivery (event time) and at the end; growth on day two
    series = [{"wall_s": round(t - t_replay[0], 1),
               "event_time": iso(int(min(end_s, from_s + (t - t_replay[0]) * speed))), **point}
              for t, point in mon.series if t_replay and t >= t_replay[0]]
    split = iso(int(day1_end))
    first = [r for r in series if r["event_time"] <= split]
    res["series"] = series[:: max(1, len(series) // 120)]  # ~120 points kept
    res["memory_mib"] = {}
    for name in mon.pids:
        a = [r[name] for r in first if name in r]
        z = [r[name] for r in series if name in r]
        if not a or not z:
            continue
        res["memory_mib"][name] = {"at_day1_end": a[-1], "max_day1": max(a), "at_end": z[-1], "max": max(z),
                                   "growth_day2": rnd(z[-1] - a[-1], 1)}
    log.info("[soak] memory MiB (day-one end -> end): %s",
             {n: (m["at_day1_end"], m["at_end"]) for n, m in res["memory_mib"].items()})
    return res


# ---------------------------------------------------------------------------------------------
# 4. the sink alone
