"""The drain is declared only when the database holds every barrier *and* the processors have
committed every source record: a barrier that overtook a hole (records a restarted worker never
got, then sought back to) must not end the run early. The broker and database answers are
scripted here; tests/faults checks the same end to end."""

from __future__ import annotations

import pytest

from intraday.app.stack import Stack
from intraday.platform.config import Settings


class ScriptedStack(Stack):
    """A stack whose drain probes answer from a script (no services started)."""

    def __init__(self, tmp_path, fractions):
        super().__init__(Settings.from_env({"INTRADAY_STATE_DIR": str(tmp_path)}))
        self.fractions = list(fractions)
        self.asked = 0

    def missing_barriers(self, replay_id, expected=None):
        return 0  # every barrier is in the database from the start

    def processed_fraction(self, names=None):
        self.asked += 1
        return self.fractions.pop(0) if len(self.fractions) > 1 else self.fractions[0]


def test_barriers_in_the_database_are_not_enough_while_a_hole_holds_the_commit(tmp_path):
    stack = ScriptedStack(tmp_path, [0.97, 0.97, 0.99, 1.0])
    stack.wait_drained("r1", timeout=10, interval=0.01)
    assert stack.asked == 4  # waited for the commit to reach the end


def test_a_commit_that_never_reaches_the_end_is_a_timeout_that_says_so(tmp_path):
    stack = ScriptedStack(tmp_path, [0.99])
    with pytest.raises(TimeoutError, match="not committed every source record"):
        stack.wait_drained("r1", timeout=0.3, interval=0.01)
