"""Liveness of the long-running processes, for container healthchecks (docker-compose.yml).

The sink and each worker touch ``STATE_DIR/alive/<name>`` from their main loop (the sink between
polls, also while it waits out a database outage; a worker from a timer of its event loop, so a
blocked loop shows); ``intraday alive NAME`` says whether that happened within ``--max-age``
seconds. The dashboard answers ``GET /_alive`` without a session and without any data.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

BEAT_EVERY_S = 5.0
MAX_AGE_S = 60.0


def alive_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "alive" / name


class Heartbeat:
    """Touch the process's liveness file, at most once per ``every_s`` seconds."""

    def __init__(self, state_dir: Path, name: str, every_s: float = BEAT_EVERY_S) -> None:
        self.path = alive_path(state_dir, name)
        self.every_s = every_s
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError:  # a read-only state directory: the healthcheck then says so
            pass


def age_s(state_dir: Path, name: str) -> float | None:
    """Seconds since the process last beat; None if it never did."""
    try:
        return max(0.0, time.time() - os.stat(alive_path(state_dir, name)).st_mtime)
    except OSError:
        return None
