"""End to end on generated days at --speed max: events/s, drain time, memory, the ratio to the pandas reference and equality of the results."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from bench.common import Timer, compare, log, reference, rnd, size_name
from bench.harness import Bench
from intraday.platform.kafka import high_watermarks


def run_e2e(b: Bench, assets: int, trades: int, *, workers: int = 1, profile_s: float = 0,
            keep_db: bool = False, label: str | None = None, drain_timeout: float | None = None) -> dict[str, Any]:
    name = label or size_name(assets, trades)
    day_dir, gen_s = b.day(assets, trades)
    parsed, parse_s = b.parsed(assets, trades)
    url = b.dbs.create(name.replace("x", "_"))
    res: dict[str, Any] = {"size": size_name(assets, trades), "assets": assets, "public_trades": trades,
                           "events": len(parsed.records), "workers": workers,
                           "partitions": b.args.partitions, "generate_s": rnd(gen_s, 2), "parse_s": rnd(parse_s, 2)}
    log.info("[%s] end to end: %d events, %d worker(s)", name, len(parsed.records), workers)
    run = b.start_stack(name, url, workers)
    b.probe_errors.clear()
    res["startup_s"] = rnd(run.startup_s, 2)
    mon = b.monitor_for(run).start()
    load_before = os.getloadavg()[0]
    profiles = []
    try:
        t0 = time.monotonic()
        if profile_s:  # start py-spy once the worker is busy, in a thread so the replay is not delayed
            def prof():
                time.sleep(b.args.profile_delay)
                for ch in (run.workers[0], run.sink):
                    profiles.append((ch.name, *b.start_profile(ch.name, ch.proc.pid, profile_s)))
            pt = threading.Thread(target=prof, daemon=True)
            pt.start()
        stats = b.replay(run.stack, parsed.records, None)
        log.info("[%s] replayed %d events in %.1fs (%.0f events/s into the broker); waiting for drain",
                 name, stats.published, stats.wall_s, stats.published / max(stats.wall_s, 1e-9))
        try:
            drained_at = b.wait_drained(run.stack, drain_timeout or b.args.drain_timeout)
        except TimeoutError:
            b.dbs.drop(url)
            raise
        wall = drained_at - t0
        res["peak_mib"] = mem = mon.stop()
        res["cpu_s"] = mon.cpu_seconds()
        res["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        res["sources_consumed_s"] = rnd(b.sources_consumed_at - t0, 2) if b.sources_consumed_at else None
        res["drain_check_errors"] = list(b.probe_errors)
        res.update({"published": stats.published, "replay_s": rnd(stats.wall_s, 2), "wall_s": rnd(wall, 2),
                    "events_per_s": round(stats.published / wall), "drain_after_replay_s": rnd(wall - stats.wall_s, 2)})
        log.info("[%s] drained: %d events in %.1fs = %.0f events/s end to end (source topics consumed after "
                 "%ss); peak MiB %s; CPU s %s", name, stats.published, wall, stats.published / wall,
                 res["sources_consumed_s"], mem, res["cpu_s"])
        res["topic_records"] = topic_records(run.stack)
        if profile_s:
            pt.join()
            res["profile"] = {n: b.finish_profile(n, p, out, err, profile_s) for n, p, out, err in profiles}
        from intraday.backoffice.export import export

        out = b.tmp / "exports" / f"{name}-{uuid.uuid4().hex[:4]}"
        with Timer() as t:
            counts = export(url, out)
        res["export_s"] = rnd(t.s, 2)
        res["rows"] = counts
    finally:
        if mon._thread is not None and not mon._stop.is_set():
            mon.stop()
        b.stop_stack(run)
    log.info("[%s] batch reference (tests/reference.py compute_reference) on the same day", name)
    with Timer() as t:
        ref = reference.compute_reference(day_dir)
    res["reference_s"] = rnd(t.s, 2)
    res["ratio_wall_to_reference"] = rnd(res["wall_s"] / t.s, 1)
    mismatches = compare.compare_results(out, ref)
    res["equal"] = not mismatches
    res["mismatches"] = mismatches[:20]
    log.info("[%s] reference %.1fs; pipeline/reference = %.1fx; equal to the reference: %s", name, t.s,
             res["ratio_wall_to_reference"], res["equal"])
    for line in mismatches[:10]:
        log.warning("[%s] mismatch: %s", name, line)
    shutil.rmtree(out, ignore_errors=True)
    if keep_db:
        res["_db"] = url
    else:
        b.dbs.drop(url)
    return res


def topic_records(stack) -> dict[str, int]:
    """Records written to each topic during a run (sources, derived topics, changelogs): the
    broker's work per source event, and what a change in fan-out saves."""
    from intraday.platform.kafka import admin

    names = sorted(t for t in admin(stack.services.bootstrap).list_topics(timeout=10).topics if not t.startswith("__"))
    counts: dict[str, int] = defaultdict(int)
    for (name, _p), end in high_watermarks(stack.services.bootstrap, names).items():
        counts[name] += end
    return {k: v for k, v in sorted(counts.items()) if v}


def estimate_events(known: list[dict], assets: int, trades: int) -> float | None:
    """Events of a day from two measured days: events = base + per_asset x assets + public trades."""
    pts = sorted({(r["assets"], r["events"] - r["public_trades"]) for r in known})
    if len(pts) < 2:
        if len(pts) == 1:
            return pts[0][1] / pts[0][0] * assets + trades
        return None
    (a1, e1), (a2, e2) = pts[0], pts[-1]
    per = (e2 - e1) / (a2 - a1)
    return e1 + per * (assets - a1) + trades


def projected_minutes(known: list[dict], assets: int, events: float) -> float:
    """Minutes a size would take (generate, parse, start, replay + drain, export, reference).

    Per-event time is extrapolated linearly in the number of assets from the two measured sizes
    furthest apart (the qh agent re-emits every asset of a QH, so it can grow with the portfolio),
    and never taken below the biggest measured size's."""
    def per_event(e):
        return (e["wall_s"] + e["reference_s"] + e["parse_s"] + e["generate_s"] + e["startup_s"]
                + e.get("export_s", 0)) / e["events"]

    pts = sorted(known, key=lambda e: e["assets"])
    hi = pts[-1]
    t = per_event(hi)
    if len(pts) >= 2 and pts[0]["assets"] != hi["assets"]:
        lo = pts[0]
        slope = (per_event(hi) - per_event(lo)) / (hi["assets"] - lo["assets"])
        t = max(t, per_event(hi) + slope * (assets - hi["assets"]))
    return events * t / 60


