"""One stack under measurement: a fresh embedded broker, a worker, the sink and a database per run, cleaned up on exit."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DAY, SEED, Databases, MemoryMonitor, Timer, log, size_name
from bench.profiling import JOINED, summarise_profile
from intraday.app.stack import Stack
from intraday.contract import topics
from intraday.platform.config import Settings
from intraday.platform.kafka import high_watermarks, producer


@dataclass
class Running:
    stack: Stack
    workers: list[Any]
    sink: Any
    startup_s: float


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="intraday-bench-"))
        self.dbs: Databases | None = None
        self.stacks: list[Stack] = []
        self.subprocs: list[subprocess.Popen] = []
        self.results: dict[str, Any] = {"notes": [], "skipped": []}
        self.days: dict[tuple[int, int], Path] = {}
        self.probe_errors: list[str] = []  # drain checks that failed (BrokerError), per run
        self.sources_consumed_at: float | None = None  # when the processors had committed every source record
        self.parsed_cache: dict[tuple[int, int], Any] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def cleanup(self) -> None:
        for p in self.subprocs:
            if p.poll() is None:
                with contextlib.suppress(Exception):
                    p.terminate()
                    p.wait(5)
        for s in self.stacks:
            with contextlib.suppress(Exception):
                s.stop()
        self.stacks.clear()
        if self.dbs is not None:
            self.dbs.close()
        if self.args.keep_temp:
            log.info("kept the temporary directory %s", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- days -----------------------------------------------------------------------------------

    def day(self, assets: int, trades: int) -> tuple[Path, float]:
        from intraday.ingest.generate.day import generate_day

        key = (assets, trades)
        if key in self.days:
            return self.days[key], 0.0
        d = self.tmp / "days" / size_name(assets, trades)
        log.info("generating a day: %d assets, %d public trades -> %s", assets, trades, d)
        with Timer() as t:
            generate_day(d, DAY, assets=assets, public_trades=trades, seed=SEED)
        self.days[key] = d
        return d, t.s

    def parsed(self, assets: int, trades: int):
        from intraday.ingest.day import parse_day

        key = (assets, trades)
        d, _ = self.day(assets, trades)
        if key not in self.parsed_cache:
            with Timer() as t:
                p = parse_day(d)
            log.info("parsed %s: %d events, %d quarantined, %.1fs", d.name, len(p.records), len(p.rejections), t.s)
            self.parsed_cache.clear()  # keep one parsed day in memory at a time
            self.parsed_cache[key] = (p, t.s)
        return self.parsed_cache[key]

    # -- stacks ---------------------------------------------------------------------------------

    def start_stack(self, label: str, database_url: str, workers: int = 1) -> Running:
        state = self.tmp / "state" / f"{label}-{uuid.uuid4().hex[:6]}"
        settings = Settings.from_env({"INTRADAY_STATE_DIR": str(state), "DATABASE_URL": database_url,
                                      "INTRADAY_PARTITIONS": str(self.args.partitions)})
        stack = Stack(settings)
        self.stacks.append(stack)
        t0 = time.monotonic()
        stack.start_services(fresh_broker=True)
        sink = stack.start_sink()
        ws = [stack.start_worker(f"worker-{i}" if workers > 1 else "worker") for i in range(workers)]
        self._wait_ready(stack, ws)
        startup = time.monotonic() - t0
        log.info("stack %s ready in %.1fs (%d worker%s)", label, startup, workers, "s" if workers > 1 else "")
        return Running(stack, ws, sink, startup)

    def _wait_ready(self, stack: Stack, workers: list, timeout: float = 120) -> None:
        """Until every worker logged Faust's "Ready" and, with several workers, all of them joined
        the same generation of the consumer group (the group is then settled: a replay does not
        start into a rebalance)."""
        deadline = time.monotonic() + timeout
        gens: list[str | None] = []
        while True:
            stack.check_children()
            texts = [w.log_path.read_text(errors="replace") if w.log_path.exists() else "" for w in workers]
            gens = [(JOINED.findall(t) or [None])[-1] for t in texts]
            ready = all("[^Worker]: Ready" in t for t in texts)
            settled = len(workers) == 1 or (None not in gens and len(set(gens)) == 1 and all(
                t.rfind("Revoking previously assigned") < t.rfind("Joined group") for t in texts))
            if ready and settled:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout:.0f}s (generations {gens})")
            time.sleep(0.2)
        if len(workers) > 1:
            log.info("consumer group %s settled: %d workers in generation %s", topics.PROCESSOR_GROUP, len(workers), gens[0])

    def stop_stack(self, run: Running) -> None:
        run.stack.stop()
        with contextlib.suppress(ValueError):
            self.stacks.remove(run.stack)

    def monitor_for(self, run: Running, series_every: float | None = None) -> MemoryMonitor:
        m = MemoryMonitor(self.args.rss_interval, series_every)
        for w in run.workers:
            m.watch(w.name, w.proc.pid)
        m.watch("sink", run.sink.proc.pid)
        broker = run.stack.services.broker
        m.watch("broker", broker.proc.pid if broker and broker.proc else None)
        m.watch("postgres", self.dbs.postmaster_pid(), tree=True)
        m.watch("orchestrator", os.getpid())
        return m

    def wait_drained(self, stack: Stack, timeout: float, interval: float = 0.3, stable: int = 3) -> float:
        """Like Stack.wait_drained, but returns the monotonic time at which the drained state was
        first seen (the start of the final stable streak), not the end of the confirmation."""
        from intraday.platform.kafka import BrokerError

        t0 = time.monotonic()
        ok, last_hw, first_ok = 0, None, None
        last_log = last_src = t0
        self.sources_consumed_at = None
        while True:
            stack.check_children()
            if self.sources_consumed_at is None and time.monotonic() - last_src >= 2:
                last_src = time.monotonic()
                with contextlib.suppress(BrokerError):
                    if stack.processed_fraction() >= 1.0:
                        self.sources_consumed_at = time.monotonic()
            try:
                hw = high_watermarks(stack.services.bootstrap, topics.PROCESSOR_TOPICS)
                # every end-of-input barrier of the last replay in the database (Stack.missing_barriers)
                drained = stack.last_replay_id is not None and stack.missing_barriers(stack.last_replay_id) == 0
            except BrokerError as exc:
                # intraday.platform.kafka.true_end_offsets gives up after 30 s when the broker is saturated;
                # and the check is repeated (as Stack.wait_drained does), recorded for the results
                self.probe_errors.append(str(exc))
                # the barriers alone decide (the sink writes each in the transaction of the rows
                # before it): a saturated broker that cannot say its ends does not hold the drain
                if stack.last_replay_id is not None and stack.missing_barriers(stack.last_replay_id) == 0:
                    log.info("  ... every end-of-input barrier is in the database (broker probe failed)")
                    return time.monotonic()
                log.warning("  ... drain check failed (%s); retrying", exc)
                ok, last_hw = 0, None
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"not drained after {timeout:.0f}s (the drain check kept failing)") from None
                time.sleep(interval)
                continue
            now = time.monotonic()
            if drained and hw == last_hw:
                if ok == 0:
                    first_ok = now
                ok += 1
                if ok >= stable:
                    if self.sources_consumed_at is None or self.sources_consumed_at > first_ok:
                        self.sources_consumed_at = first_ok  # drained implies consumed (checks are 2 s apart)
                    return first_ok
            else:
                ok = 0
            last_hw = hw
            if now - last_log > 10:
                last_log = now
                with contextlib.suppress(BrokerError):
                    log.info("  ... waiting for drain: %.0f%% of the source records processed (%.0fs)",
                             100 * stack.processed_fraction(), now - t0)
            if now - t0 > timeout:
                raise TimeoutError(f"not drained after {timeout:.0f}s")
            time.sleep(interval)

    def replay(self, stack: Stack, records, speed, from_s=None, to_s=None, replayer_cls=None):
        from intraday.ingest.replay import Replayer

        cls = replayer_cls or Replayer
        rp = cls(producer(stack.services.bootstrap), stack.settings.partitions, progress=False)
        stats = rp.replay(records, speed, from_s=from_s, to_s=to_s)
        stack.last_replay_id = stats.replay_id  # what the drain waits for
        return stats

    # -- profile --------------------------------------------------------------------------------

    def start_profile(self, name: str, pid: int, seconds: float) -> tuple[subprocess.Popen | None, Path, str | None]:
        exe = Path(sys.executable).parent / "py-spy"
        out = self.tmp / f"pyspy-{name}.txt"
        if not exe.exists():
            found = shutil.which("py-spy")
            if not found:
                return None, out, "py-spy not installed"
            exe = Path(found)
        cmd = [str(exe), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(self.args.profile_rate),
               "-f", "raw", "-o", str(out), "--nonblocking"]
        errf = open(self.tmp / f"pyspy-{name}.log", "wb")  # noqa: SIM115 - closed when the process ends
        p = subprocess.Popen(cmd, stdout=errf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        errf.close()
        self.subprocs.append(p)
        log.info("py-spy recording %s (pid %d) for %ds at %d Hz", name, pid, int(seconds), self.args.profile_rate)
        return p, out, None

    def finish_profile(self, name: str, proc, out: Path, error: str | None, seconds: float) -> dict[str, Any]:
        if proc is None:
            return {"ok": False, "error": error}
        try:
            proc.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        logtext = (self.tmp / f"pyspy-{name}.log").read_text(errors="replace")
        if proc.returncode != 0 or not out.exists():
            return {"ok": False, "error": f"py-spy exited {proc.returncode}: {logtext.strip()[-500:]}"}
        return summarise_profile(out.read_text(errors="replace"), seconds, self.args.profile_rate, logtext)
