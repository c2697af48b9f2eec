"""A stop signal ends a long-running command through its cleanup, whatever it interrupted."""

from __future__ import annotations

import os
import signal

import pytest

from intraday.app import cli, errors


@pytest.fixture
def stop_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    errors.STOP_REQUESTED.clear()
    yield
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGINT, before[1])
    errors.STOP_REQUESTED.clear()


def test_a_sigterm_unwinds_as_an_interrupt_and_is_remembered(stop_handlers):
    assert not errors.interrupted(TypeError("expected configuration property name as type unicode string"))
    errors.install_stop_signals()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # let the handler run here, not later
    # what a C extension makes of the interrupt when the signal lands inside it is a stop too
    assert errors.interrupted(TypeError("expected configuration property name as type unicode string"))


def test_after_a_stop_signal_main_reports_an_interruption_not_a_crash(stop_handlers, monkeypatch, capsys):
    def landed_in_c_code(args, settings):
        errors.STOP_REQUESTED.set()
        raise TypeError("expected configuration property name as type unicode string")

    monkeypatch.setattr(cli, "cmd_topics", landed_in_c_code)
    assert cli.main(["topics"]) == 130
    assert capsys.readouterr().err.strip() == "intraday: interrupted"
