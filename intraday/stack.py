"""The composition root: services, topics, schema, and the worker / sink / dashboard processes.

``Stack`` starts what a command needs and stops it again (also on Ctrl-C / SIGTERM); child
processes die with their parent (``PR_SET_PDEATHSIG``), so a killed ``intraday`` leaves none.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from intraday import topics
from intraday.config import Settings
from intraday.kafka import committed_offsets, ensure_topics, high_watermarks
from intraday.services import Services, _die_with_parent, free_port, start_services

log = logging.getLogger("intraday.stack")

PROCESSOR_GROUP = "intraday-processors"
PROCESSOR_TOPICS = [topics.FORECASTS, topics.LIVE_INFEED, topics.DSO_FINAL, topics.DSO_REDISPATCH,
                    topics.PRIVATE_TRADES, topics.PUBLIC_TRADES, topics.TRADE_SLICES, topics.CRM_CONTRACTS,
                    topics.ASSET_QH, topics.TRADING_QH, topics.IMBALANCE_PRICES, topics.PORTFOLIO,
                    topics.CLOCK, topics.CLOCK_BROADCAST]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    settings: Settings
    services: Services | None = None
    children: list[Child] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        return self.settings.embedded_broker

    def start_services(self, *, fresh_broker: bool = False) -> Stack:
        from sink.db import migrate

        self.services = start_services(self.settings, fresh_broker=fresh_broker)
        ensure_topics(self.services.bootstrap, self.settings.partitions)
        applied = migrate(self.services.database_url)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        return self

    def env(self) -> dict[str, str]:
        assert self.services is not None
        env = self.settings.child_env(self.services.bootstrap, self.services.database_url)
        env["INTRADAY_EMBEDDED"] = "1" if self.embedded else "0"
        return env

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Child:
        logs = self.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        env = self.env()
        env.update(extra_env or {})
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "intraday.cli", *args], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509
        child = Child(name, proc, log_path)
        self.children.append(child)
        log.info("started %s (pid %s, log %s)", name, proc.pid, log_path)
        return child

    def start_worker(self, name: str = "worker") -> Child:
        return self.spawn(name, ["worker"], {"INTRADAY_WORKER_WEB_PORT": str(free_port()),
                                             "INTRADAY_WORKER_DATADIR": str(self.settings.state_dir / name)})

    def start_sink(self) -> Child:
        return self.spawn("sink", ["sink"])

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.services is not None:
            self.services.close()
            self.services = None

    def check_children(self) -> None:
        for child in self.children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}; "
                                   f"last log lines:\n{child.tail()}")

    def drained(self) -> bool:
        """True when every consumer group has committed up to the end of every topic it reads
        and the database holds the sink's last batch."""
        from sink.db import connect
        from sink.sink import SINK_GROUP, SINK_TOPICS

        assert self.services is not None
        bs = self.services.bootstrap
        hw = high_watermarks(bs, sorted(set(PROCESSOR_TOPICS) | set(SINK_TOPICS)))
        proc_tps = [tp for tp in hw if tp[0] in PROCESSOR_TOPICS]
        sink_tps = [tp for tp in hw if tp[0] in SINK_TOPICS]
        pc = committed_offsets(bs, PROCESSOR_GROUP, proc_tps)
        if any(pc.get(tp, 0) < hw[tp] for tp in proc_tps):
            return False
        sc = committed_offsets(bs, SINK_GROUP, sink_tps)
        if any(sc.get(tp, 0) < hw[tp] for tp in sink_tps):
            return False
        with connect(self.services.database_url) as conn:
            progress = {(t, p): o for t, p, o in conn.execute(
                "SELECT topic, partition, next_offset FROM sink_progress")}
        return all(progress.get(tp, 0) >= hw[tp] for tp in sink_tps if hw[tp] > 0)

    def wait_drained(self, timeout: float, stable_checks: int = 3, interval: float = 0.3,
                     on_wait=None) -> float:
        """Wait until :meth:`drained` holds on ``stable_checks`` consecutive checks with no new
        records in between (the chain of derived topics is then quiet); returns seconds waited."""
        t0 = time.monotonic()
        ok = 0
        last_hw = None
        while True:
            self.check_children()
            assert self.services is not None
            hw = high_watermarks(self.services.bootstrap, PROCESSOR_TOPICS)
            if self.drained() and hw == last_hw:
                ok += 1
                if ok >= stable_checks:
                    return time.monotonic() - t0
            else:
                ok = 0
            last_hw = hw
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not drained after {timeout:.0f}s")
            if on_wait:
                on_wait()
            time.sleep(interval)


def worker_main() -> None:
    """Entry point of ``intraday worker``: the Faust worker of the stream processors."""
    from intraday.config import Settings
    from intraday.kafka import ensure_topics
    from stream_processors.app import app_from_env

    settings = Settings.from_env()
    if settings.kafka_bootstrap:  # topics exist with their declared counts before Faust touches one
        ensure_topics(settings.kafka_bootstrap, settings.partitions)
    app = app_from_env()
    level = os.environ.get("INTRADAY_WORKER_LOGLEVEL", "info")
    datadir = os.environ.get("INTRADAY_WORKER_DATADIR")
    if datadir:
        app.conf.datadir = datadir
    sys.argv = ["intraday-worker", "worker", "-l", level, "--web-port",
                os.environ.get("INTRADAY_WORKER_WEB_PORT", "6066")]
    app.main()
