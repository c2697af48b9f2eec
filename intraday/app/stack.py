"""The composition root: services, topics, schema, and the worker / sink / dashboard processes.

``Stack`` starts what a command needs and stops it again (also on Ctrl-C / SIGTERM); child
processes die with their parent (``PR_SET_PDEATHSIG``), so a killed ``intraday`` leaves none.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from intraday.app.services import Services, _die_with_parent, free_port, start_services
from intraday.contract import topics
from intraday.platform.config import Settings
from intraday.platform.kafka import committed_offsets, ensure_topics, high_watermarks

log = logging.getLogger("intraday.app.stack")


class BrokerRestarted(RuntimeError):
    """The embedded broker went away: its topics (memory only) are lost."""



@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        how = "had exited"  # on its own, or by the same Ctrl-C as its supervisor
        if self.proc.poll() is None:
            how = "terminated"
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", self.name, timeout)
                self.proc.kill()
                self.proc.wait(5)
        log.info("stopped %s (pid %s %s, exit code %s)", self.name, self.proc.pid, how, self.proc.returncode)

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
    last_replay_id: str | None = None  # of the last replay published through this stack

    @property
    def embedded(self) -> bool:
        return self.settings.embedded_broker

    def start_services(self, *, fresh_broker: bool = False) -> Stack:
        from intraday.sink.db import migrate

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
            proc = subprocess.Popen([sys.executable, "-m", "intraday.app.cli", *args], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509
        child = Child(name, proc, log_path)
        self.children.append(child)
        log.info("started %s (pid %s, log %s)", name, proc.pid, log_path)
        return child

    def restart_broker(self) -> None:
        """Stop the processes, start the embedded broker again on its port, re-create topics."""
        from intraday.platform.kafka import ensure_topics

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

    def missing_barriers(self, replay_id: str, expected: frozenset | None = None) -> int:
        """How many end-of-input barriers of the replay the database does not hold yet: 0 means
        every result of every record published before them is in the database (they travel
        behind the results through every agent and are written in the sink's transaction)."""
        from intraday.sink.db import connect

        assert self.services is not None
        if expected is None:
            expected = topics.expected_barriers(topics.SINK_TOPICS, self.settings.partitions)
        with connect(self.services.database_url) as conn:
            have = set(conn.execute("SELECT topic, partition, origin FROM drain_markers WHERE replay_id = %s",
                                    (replay_id,)).fetchall())
        return len(expected - have)

    def processed_share(self, hw: dict[tuple[str, int], int]) -> float:
        """Share of the records on the processors' topics their group has committed."""
        assert self.services is not None
        committed = committed_offsets(self.services.bootstrap, topics.PROCESSOR_GROUP, list(hw))
        total = sum(hw.values())
        return sum(min(committed.get(tp, 0), n) for tp, n in hw.items()) / total if total else 1.0

    def _sources_committed(self) -> bool:
        try:
            return self.processed_fraction() >= 1.0
        except Exception as exc:  # noqa: BLE001 - the broker busy: look again
            log.info("commit check did not complete (%s); checking again", exc)
            return False

    def processed_fraction(self, names: list[str] | None = None) -> float:
        """Share of the records on ``names`` (default: the source topics the processors read)
        that the processors have committed: how far a replay has got."""
        assert self.services is not None
        return self.processed_share(high_watermarks(self.services.bootstrap, names or topics.PROCESSOR_SOURCES))

    def wait_drained(self, replay_id: str, timeout: float, interval: float = 0.2, on_wait=None) -> float:
        """Wait until the database holds every barrier of the replay (:meth:`missing_barriers`)
        and the processors have committed every source record; returns seconds waited. Raises if
        a process died or ``timeout`` passed.

        The commit is checked too because a barrier can overtake a hole: a worker restarted after
        a kill may process a partition's later records (the barrier among them) while earlier
        ones never reached it; it seeks back to them, but the barrier is already forwarded. The
        commit only advances over contiguous processed records (faust_fixes), so it stays below
        the hole until the seek has filled it."""

        t0 = time.monotonic()
        next_report = t0 + 5.0
        expected = topics.expected_barriers(topics.SINK_TOPICS, self.settings.partitions)
        missing = len(expected)
        while True:
            self.check_children()
            try:
                missing = self.missing_barriers(replay_id, expected)
            except Exception as exc:  # noqa: BLE001 - a database restart: look again (missing as it was)
                log.info("drain check did not complete (%s); checking again", exc)
            if missing == 0 and self._sources_committed():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not drained after {timeout:.0f}s: {missing} end-of-input barriers "
                                   "not in the database" if missing else
                                   f"not drained after {timeout:.0f}s: the processors have not committed every "
                                   "source record")
            if time.monotonic() >= next_report:  # say what is happening while the processors work
                next_report += 5.0
                try:
                    done = f"{self.processed_fraction() * 100:.0f}% of the source records processed"
                except Exception:  # noqa: BLE001 - progress is a courtesy
                    done = "progress unknown"
                log.info("waiting for the processors and the sink: %s, %d barriers to go, %.0fs so far",
                         done, missing, time.monotonic() - t0)
            if on_wait:
                on_wait()
            time.sleep(interval)

    def refused(self) -> list[tuple[str, str, str, int]]:
        """Records refused after parsing (by the processors or the sink): stage, topic, reason, count."""
        from intraday.sink.db import connect

        assert self.services is not None
        with connect(self.services.database_url) as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT stage, topic, split_part(reason, ':', 1), count(*) FROM quarantine "
                "WHERE stage <> 'input' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()]


def publish_day(stack: Stack, parsed, speed, from_s=None, to_s=None, batch_events=None, jump_to_s=None):
    """Publish a parsed day's rejections (to the DLQs) and records (in event-time order);
    ``batch_events``, ``jump_to_s``: see :meth:`intraday.ingest.replay.Replayer.replay`."""
    from intraday.ingest.replay import Replayer
    from intraday.platform.kafka import producer

    rp = Replayer(producer(stack.services.bootstrap), stack.settings.partitions)
    rp.publish_rejections(parsed.rejections)
    stats = rp.replay(parsed.records, speed, from_s=from_s, to_s=to_s, batch_events=batch_events,
                      jump_to_s=jump_to_s)
    stack.last_replay_id = stats.replay_id
    log.info("replayed %d events in %.1fs (%.0f events/s)", stats.published, stats.wall_s,
             stats.published / stats.wall_s if stats.wall_s else 0)
    return stats


def replay_until_drained(stack: Stack, parsed, speed, *, from_s=None, to_s=None, until_drained: bool = True,
                         timeout: float = 3600, workers: int = 1, during=None, max_rebuilds: int = 3,
                         batch_events: int | None = None):
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
            stats = publish_day(stack, parsed, speed, from_s, to_s, batch_events)
            if during is not None:
                during(stack)
                during = None
            if until_drained:
                waited = stack.wait_drained(stats.replay_id, timeout)
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
    from intraday.platform.alive import BEAT_EVERY_S, Heartbeat
    from intraday.platform.config import Settings
    from intraday.platform.kafka import ensure_topics, use_security
    from intraday.processing.app import app_from_env

    settings = Settings.from_env()
    use_security(settings.kafka_security)
    if settings.kafka_bootstrap:  # topics exist with their declared counts before Faust touches one
        ensure_topics(settings.kafka_bootstrap, settings.partitions)
    app = app_from_env()
    heartbeat = Heartbeat(settings.state_dir, "worker")

    @app.timer(BEAT_EVERY_S)
    async def _alive() -> None:  # from the event loop: a blocked loop stops the beat
        heartbeat.beat()

    if settings.worker_datadir:
        app.conf.datadir = str(settings.worker_datadir)
    sys.argv = ["intraday-worker", "worker", "-l", settings.worker_loglevel, "--web-port", str(settings.worker_web_port)]
    app.main()
