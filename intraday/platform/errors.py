"""Errors told in one line: the first line of an exception's message, or its type's name."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``str(exc)`` (server errors carry details and hints below it); the type's
    name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
