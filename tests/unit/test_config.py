"""Settings: every variable is read in one place, once, with its default there."""

from __future__ import annotations

from pathlib import Path

import pytest

from intraday.platform.config import ConfigError, Settings


def test_the_worker_and_dashboard_variables_are_settings_with_their_defaults():
    s = Settings.from_env({})
    assert (s.embedded, s.worker_loglevel, s.worker_datadir, s.worker_web_port, s.secret_key) == (
        False, "info", None, 6066, None)
    s = Settings.from_env({"INTRADAY_EMBEDDED": "1", "INTRADAY_WORKER_LOGLEVEL": "debug",
                           "INTRADAY_WORKER_DATADIR": "/var/lib/w", "INTRADAY_WORKER_WEB_PORT": "7000",
                           "INTRADAY_SECRET_KEY": "k" * 32})
    assert (s.embedded, s.worker_loglevel, s.worker_datadir, s.worker_web_port) == (True, "debug", Path("/var/lib/w"), 7000)
    assert s.secret_key == "k" * 32 and "k" * 32 not in repr(s)  # a secret is never printed


def test_a_malformed_number_is_a_configuration_error_naming_the_variable():
    with pytest.raises(ConfigError, match="INTRADAY_WORKER_WEB_PORT"):
        Settings.from_env({"INTRADAY_WORKER_WEB_PORT": "web"})


def test_the_dashboard_signs_sessions_with_the_configured_key(tmp_path):
    from intraday.dashboard.auth import secret_key

    s = Settings.from_env({"INTRADAY_STATE_DIR": str(tmp_path), "INTRADAY_SECRET_KEY": "s" * 20})
    assert secret_key(s) == "s" * 20
    generated = secret_key(Settings.from_env({"INTRADAY_STATE_DIR": str(tmp_path)}))
    assert len(generated) == 64 and (tmp_path / "dashboard_secret_key").read_text().strip() == generated
