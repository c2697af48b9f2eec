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


class BrokerRestarted(RuntimeError):
    """The embedded broker went away: its topics (memory only) are lost."""

PROCESSOR_GROUP = "intraday-processors"
PROCESSOR_TOPICS = [topics.FORECASTS, topics.LIVE_INFEED, topics.DSO_FINAL, topics.DSO_REDISPATCH,
                    topics.PRIVATE_TRADES, topics.PUBLIC_TRADES, topics.TRADE_SLICES, topics.CRM_CONTRACTS,
                    topics.ASSET_QH, topics.TRADING_QH, topics.IMBALANCE_PRICES, topics.PORTFOLIO,
                    topics.CLOCK, topics.CLOCK_BROADCAST]
PROCESSOR_SOURCES = [t for t in PROCESSOR_TOPICS if t in topics.SOURCE_TOPICS]  # what the replay publishes


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

    def restart_broker(self) -> None:
        """Stop the processes, start the embedded broker again on its port, re-create topics."""
        from intraday.kafka import ensure_topics

        for child in reversed(self.children):
            child.kill()
        self.children.clear()
        broker = self.services.broker
        broker.stop()
        broker.start()
        ensure_topics(self.services.bootstrap, self.settings.partitions)

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

    def broker_lost(self, wait_s: float = 0.0) -> bool:
        """True if this stack's embedded broker has exited (waiting up to ``wait_s`` for it)."""
        b = self.services.broker if self.services else None
        if b is None:
            return False
        if b.proc is None:
            return True
        try:
            b.proc.wait(wait_s) if wait_s else None
        except subprocess.TimeoutExpired:
            return False
        return b.proc.poll() is not None

    def check_children(self) -> None:
        if self.broker_lost():
            raise BrokerRestarted("the embedded broker exited; its topics are gone")
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

    def processed_share(self, hw: dict[tuple[str, int], int]) -> float:
        """Share of the records on the processors' topics their group has committed."""
        assert self.services is not None
        committed = committed_offsets(self.services.bootstrap, PROCESSOR_GROUP, list(hw))
        total = sum(hw.values())
        return sum(min(committed.get(tp, 0), n) for tp, n in hw.items()) / total if total else 1.0

    def processed_fraction(self, names: list[str] | None = None) -> float:
        """Share of the records on ``names`` (default: the source topics the processors read)
        that the processors have committed: how far a replay has got."""
        assert self.services is not None
        return self.processed_share(high_watermarks(self.services.bootstrap, names or PROCESSOR_SOURCES))

    def wait_drained(self, timeout: float, stable_checks: int = 3, interval: float = 0.3,
                     on_wait=None) -> float:
        """Wait until :meth:`drained` holds on ``stable_checks`` consecutive checks with no new
        records in between (the chain of derived topics is then quiet); returns seconds waited."""
        t0 = time.monotonic()
        ok = 0
        last_hw = None
        next_report = t0 + 5.0
        while True:
            self.check_children()
            assert self.services is not None
            try:
                hw = high_watermarks(self.services.bootstrap, PROCESSOR_TOPICS)
                drained = self.drained()
            except Exception as exc:  # noqa: BLE001 - a broker that went away is told apart below
                if self.broker_lost(wait_s=2.0):
                    raise BrokerRestarted("the embedded broker exited; its topics are gone") from None
                # a saturated broker can miss a probe's deadline: not drained yet, look again
                log.info("drain check did not complete (%s); checking again", exc)
                ok, last_hw = 0, None
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"not drained after {timeout:.0f}s") from None
                time.sleep(interval)
                continue
            if drained and hw == last_hw:
                ok += 1
                if ok >= stable_checks:
                    return time.monotonic() - t0
            else:
                ok = 0
            last_hw = hw
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not drained after {timeout:.0f}s")
            if time.monotonic() >= next_report:  # say what is happening while the processors work
                next_report += 5.0
                done = self.processed_share(hw)
                log.info("waiting for the processors and the sink: %.0f%% of the source records processed, "
                         "%.0fs so far", done * 100, time.monotonic() - t0)
            if on_wait:
                on_wait()
            time.sleep(interval)


def publish_day(stack: Stack, parsed, speed, from_s=None, to_s=None):
    """Publish a parsed day's rejections (to the DLQs) and records (in event-time order)."""
    from intraday.kafka import producer
    from producers.replay import Replayer

    rp = Replayer(producer(stack.services.bootstrap), stack.settings.partitions)
    rp.publish_rejections(parsed.rejections)
    stats = rp.replay(parsed.records, speed, from_s=from_s, to_s=to_s)
    log.info("replayed %d events in %.1fs (%.0f events/s)", stats.published, stats.wall_s,
             stats.published / stats.wall_s if stats.wall_s else 0)
    return stats


def replay_until_drained(stack: Stack, parsed, speed, *, from_s=None, to_s=None, until_drained: bool = True,
                         timeout: float = 3600, workers: int = 1, during=None, max_rebuilds: int = 3):
    """Replay a parsed day (and wait until the database holds it), rebuilding from the files
    when the embedded broker is lost: Tansu keeps topics in memory only, so after a broker
    restart the topics are re-created with their declared counts, the processors and the sink
    start over, and the whole day is replayed again. The database is the durable record;
    idempotent upserts make the second pass land on the same rows (reliability-notes 5)."""
    rebuilds = 0
    while True:
        try:
            if not stack.children:
                stack.start_sink()
                for i in range(workers):
                    stack.start_worker(f"worker-{i}" if workers > 1 else "worker")
            stats = publish_day(stack, parsed, speed, from_s, to_s)
            if during is not None:
                during(stack)
                during = None
            if until_drained:
                waited = stack.wait_drained(timeout)
                log.info("drained %.1fs after the replay", waited)
            if stack.broker_lost():
                raise BrokerRestarted("the embedded broker exited")
            return stats
        except Exception as exc:
            if not stack.broker_lost(wait_s=2.0) or rebuilds >= max_rebuilds:
                raise
            rebuilds += 1
            log.warning("%s: restarting it and rebuilding by replaying %d events from the files (%d/%d)",
                        exc, len(parsed.records), rebuilds, max_rebuilds)
            stack.restart_broker()


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
