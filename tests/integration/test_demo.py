"""`intraday demo`: everything embedded starts, a second command attaches, and Ctrl-C/SIGTERM
stops all of it -- no orphan process, no stale lock that breaks the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from intraday.app.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start_demo(state, port):
    env = dict(os.environ, INTRADAY_STATE_DIR=str(state), INTRADAY_DASHBOARD_PORT=str(port))
    for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        env.pop(k, None)
    state.mkdir(parents=True, exist_ok=True)
    with open(state.parent / "demo.stderr", "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "intraday.app.cli", "demo", "--speed", "max"], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)  # its own process group, as in a terminal


def _exit_order(procs: dict[str, psutil.Process], timeout: float) -> list[str]:
    """The names of ``procs`` in the order they exit (polled until all are gone or the deadline)."""
    order: list[str] = []
    deadline = time.monotonic() + timeout
    while len(order) < len(procs) and time.monotonic() < deadline:
        for name, p in procs.items():
            if name not in order and (not p.is_running() or p.status() == psutil.STATUS_ZOMBIE):
                order.append(name)
        time.sleep(0.02)
    return order


def _wait_for_line(proc, needle, timeout):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line.rstrip())
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} within {timeout}s; output: {seen}")


def _postmaster_pid(state):
    pidfile = state / "pg" / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM-to-the-command", "Ctrl-C-to-the-group"])
def test_demo_runs_end_to_end_then_a_signal_stops_everything(tmp_path, stop_signal):
    state = tmp_path / "state"
    port = free_port()
    proc = _start_demo(state, port)
    try:
        out = _wait_for_line(proc, "replay finished", 300)
        assert any(f"http://127.0.0.1:{port}" in line for line in out)
        assert any(line.startswith("login: user 'desk'") for line in out)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "worker" in names and "sink" in names and "dashboard" in names and "broker" in names
        postmaster = _postmaster_pid(state)
        assert postmaster and psutil.pid_exists(postmaster)
        # a second command while the demo runs attaches to its services
        env = dict(os.environ, INTRADAY_STATE_DIR=str(state))
        for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            env.pop(k, None)
        status = subprocess.run([sys.executable, "-m", "intraday.app.cli", "status"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0, status.stderr[-2000:]
        assert " ok" in status.stdout.splitlines()[0] and "quarantine" in status.stdout

        def role(p: psutil.Process) -> str | None:
            cmd = " ".join(p.cmdline())
            return next((r for r in ("broker", "worker", "sink") if r in cmd.split("intraday.app.cli")[-1].split()
                         or (r == "broker" and " broker " in f" {cmd} ")), None)

        watched = {r: p for p in children if (r := role(p))}
        assert sorted(watched) == ["broker", "sink", "worker"], [c.cmdline() for c in children]
        if stop_signal == signal.SIGINT:  # Ctrl-C in a terminal: the whole foreground process group
            os.killpg(os.getpgid(proc.pid), stop_signal)
        else:  # as make forwards a SIGTERM: to the command only
            proc.send_signal(stop_signal)
        order = _exit_order(watched, 90)
        assert proc.wait(90) == 0
        assert sorted(order) == ["broker", "sink", "worker"], order
        # the worker and the sink leave their consumer groups through a running broker: the
        # supervisor's own log says in which order it stopped them (polling the processes cannot:
        # the broker is stopped the instant the sink has gone)
        lines = (tmp_path / "demo.stderr").read_text(errors="replace").splitlines()
        stopped = [line for line in lines if " stopped " in line]
        names = [n for line in stopped for n in ("worker", "sink", "broker") if f"stopped {n} " in line
                 or (n == "broker" and "stopped the embedded broker" in line)]
        assert names[-1] == "broker" and {"worker", "sink"} <= set(names), stopped
        assert not [line for line in lines if "did not stop within" in line], lines[-20:]
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"orphans: {[p.cmdline() for p in alive]}"
        deadline = time.monotonic() + 30
        while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
        assert not (state / "services.json").exists()
        # a clean stop: no interpreter error on the way out, in the command or any child's log
        for log_file in [tmp_path / "demo.stderr", *sorted((state / "logs").glob("*.log"))]:
            text = log_file.read_text(errors="replace")
            assert "SystemError" not in text and "Fatal Python error" not in text, (log_file, text[-2000:])
    finally:
        if proc.poll() is None:
            proc.kill()
    # the next start finds no stale lock or pid file in its way
    proc = _start_demo(state, port)
    try:
        _wait_for_line(proc, "dashboard: http://127.0.0.1", 120)
        # the password was printed by the first run only: the second says how to set a new one
        login = _wait_for_line(proc, "login: users from", 30)[-1]
        assert "intraday users add desk desk" in login and "desk" in login
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0


def test_the_demo_at_its_default_speed_shows_the_delivery_day_at_once(tmp_path, fresh_db):
    """No five hours of empty event time: everything before 06:00 Berlin goes out at once, so the
    desk has positions of the day's open QHs right after the URL is printed (issue: the first
    event is the CRM file two weeks before the day)."""
    import datetime as dt

    import psycopg

    six_berlin = dt.datetime(2025, 6, 8, 4, 0, tzinfo=dt.UTC)
    env = dict(os.environ, INTRADAY_STATE_DIR=str(tmp_path / "state"), INTRADAY_DASHBOARD_PORT=str(free_port()),
               DATABASE_URL=fresh_db)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    proc = subprocess.Popen([sys.executable, "-m", "intraday.app.cli", "demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        out = _wait_for_line(proc, "dashboard: http://127.0.0.1", 180)
        printed = time.monotonic()
        out += _wait_for_line(proc, "replay: everything before 2025-06-08 04:00 UTC at once", 60)
        deadline = printed + 120  # a bound for a condition, not a speed claim (the README has the figure)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            while True:
                now, = conn.execute("SELECT max(now) FROM replay_clock").fetchone() or (None,)
                open_qhs = conn.execute(
                    "SELECT count(*) FROM portfolio_qh WHERE in_scope AND tradeable_forecast_kw IS NOT NULL"
                    " AND delivery_start >= '2025-06-08T04:15:00Z' AND delivery_start < '2025-06-08T22:00:00Z'"
                ).fetchone()[0]
                if now is not None and now >= six_berlin and open_qhs >= 40:
                    break
                assert time.monotonic() < deadline, f"no desk data: clock {now}, {open_qhs} open QHs; {out}"
                time.sleep(0.5)
        print(f"desk data {time.monotonic() - printed:.1f} s after the URL was printed")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
