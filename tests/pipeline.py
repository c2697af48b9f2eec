"""Test harness: run the real pipeline (embedded broker, Faust worker, sink, PostgreSQL) on a day."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from intraday.app.stack import Stack, replay_until_drained
from intraday.backoffice.export import export
from intraday.ingest.day import parse_day
from intraday.platform.config import Settings


def run_pipeline(day_dir: Path, settings: Settings, out_dir: Path, *,
                 transform: Callable[[list], list] | None = None,
                 during: Callable[[Stack], None] | None = None, timeout: float = 300,
                 batch_events: int | None = None) -> dict:
    """Replay ``day_dir`` (records optionally re-ordered by ``transform``) through a fresh stack,
    call ``during(stack)`` after publishing (fault injection), wait until drained, export.
    ``batch_events=1``: one event per message, for faults that must hit a replay mid-way."""
    parsed = parse_day(day_dir)
    if transform is not None:
        parsed.records = transform(list(parsed.records))  # at max speed they go out in this order
    stack = Stack(settings)
    try:
        stack.start_services(fresh_broker=True)
        stats = replay_until_drained(stack, parsed, None, timeout=timeout, during=during, batch_events=batch_events)
        counts = export(stack.services.database_url, out_dir)
        return {"published": stats.published, "counts": counts, "rejections": parsed.rejections}
    finally:
        stack.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- fault report
# Each fault test records what it did and how long the pipeline took to get past the point
# where the fault hit it; conftest prints the table at the end of the run (and CI shows it).
FAULTS: list[dict] = []


def record_fault(name: str, fault: str, at_fraction: float, recovery_s: float | None, **extra) -> None:
    FAULTS.append({"test": name, "fault": fault, "at": f"{at_fraction:.0%}",
                   "recovery_s": None if recovery_s is None else round(recovery_s, 2), **extra})


def recovery_time(since: float, progress: Callable[[], float], before: float, timeout: float, what: str,
                  complete: float | None = None) -> float | None:
    """Seconds from ``since`` (a monotonic time) until ``progress()`` exceeds ``before``: the
    pipeline has got past the point where the fault hit it. ``progress`` may raise while the
    failed part is down; that counts as no progress. None if the fault hit when ``progress``
    was already ``complete`` (nothing left to recover; the test's result check still holds)."""
    if complete is not None and before >= complete:
        return None

    def past() -> bool:
        try:
            return progress() > before
        except Exception:  # noqa: BLE001 - e.g. the database still down
            return False

    wait_for(past, timeout, what, interval=0.05)
    return time.monotonic() - since


def sink_position(database_url: str) -> int:
    """Records the sink has committed to the database (its offsets in sink_progress)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=2) as conn:
        return int(conn.execute("SELECT coalesce(sum(next_offset), 0) FROM sink_progress").fetchone()[0])
