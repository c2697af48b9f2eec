"""How a command ends: its exit codes, the one-line error of a problem the user can fix, and
the stop signals that unwind it to its cleanup."""

from __future__ import annotations

import signal
import threading

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_QUARANTINED = 3


class CliError(Exception):
    """A problem the user can fix; printed as one line."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


STOP_REQUESTED = threading.Event()


def install_stop_signals() -> None:
    """SIGTERM (and Ctrl-C) stop a long-running command the same way: the stop is recorded, then
    KeyboardInterrupt unwinds to the command's cleanup."""
    def _stop(*_):
        STOP_REQUESTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def interrupted(exc: BaseException) -> bool:
    """Did a stop signal end this? KeyboardInterrupt, or what a C extension made of it when the
    signal landed inside its call (confluent-kafka then reports a TypeError about its config)."""
    return isinstance(exc, KeyboardInterrupt) or STOP_REQUESTED.is_set()
