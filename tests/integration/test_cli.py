"""The command line: --help everywhere, one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from intraday.app.cli import build_parser

COMMANDS = ["demo", "replay", "run", "export", "generate-day", "invoices", "alerts", "status", "worker", "topics", "report",
            "sink", "dashboard", "migrate", "users", "permissions"]


def intraday(*args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "intraday.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


def test_every_contract_command_exists_with_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)
    for name in COMMANDS:
        r = intraday(name, "--help")
        assert r.returncode == 0, r.stderr
        assert "usage: intraday" in r.stdout and "KAFKA_BOOTSTRAP_SERVERS" in r.stdout


def _one_line_error(r):
    assert r.returncode != 0
    lines = [line for line in r.stderr.strip().splitlines() if "RuntimeDirWarning" not in line
             and "user_runtime_dir" not in line and " INFO " not in line]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_a_missing_day_directory_is_one_line_and_non_zero(tmp_path):
    line = _one_line_error(intraday("run", str(tmp_path / "nope"), "--speed", "max", "--until-drained"))
    assert "not found" in line and "nope" in line


def test_an_unknown_option_is_one_line_and_exit_2():
    r = intraday("run", "x", "--sped", "3")
    assert r.returncode == 2
    assert "--sped" in _one_line_error(r)


@pytest.mark.parametrize("speed", ["0", "-5", "fast"])
def test_a_bad_speed_is_refused(tmp_path, speed):
    line = _one_line_error(intraday("replay", str(tmp_path), "--speed", speed))
    assert "--speed" in line


def _one_file_day(day):
    (day / "crm").mkdir(parents=True)
    (day / "crm" / "asset_contracts_20250601_043000.csv").write_text(
        "contract_id,asset_id,metering_point_id,capacity,technology,contract_begin,contract_end,price_model,"
        "price,fee_model,fee,fee_percent,email\nC1,A1,MP1,2.0,wind,2025-01-01,,fixed,80,fixed_as_produced,1.5,,a@b.c\n")


def test_a_day_directory_without_input_files_is_an_error_not_a_silent_success(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a source file")
    for cmd in (["replay", str(tmp_path / "empty"), "--speed", "max"],
                ["run", str(tmp_path / "empty"), "--speed", "max", "--until-drained"]):
        r = intraday(*cmd, env={"INTRADAY_STATE_DIR": str(tmp_path / "state")})
        assert r.returncode == 1
        assert "no input files in" in _one_line_error(r)


def test_a_report_for_an_unknown_asset_is_an_error(tmp_path, fresh_db):
    r = intraday("report", "--from", "2025-06-08", "--to", "2025-06-08", "--asset", "NOPE",
                 "--out", str(tmp_path / "out"), env={"DATABASE_URL": fresh_db, "INTRADAY_STATE_DIR": str(tmp_path)})
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "NOPE" in line and "no data" in line
    assert not (tmp_path / "out").exists()


def test_an_unreachable_broker_is_one_line_and_non_zero(tmp_path, fresh_db):
    _one_file_day(tmp_path / "day")
    r = intraday("run", str(tmp_path / "day"), "--speed", "max", "--until-drained",
                 env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": fresh_db,
                      "INTRADAY_STATE_DIR": str(tmp_path / "state")})
    assert "not reachable" in _one_line_error(r)


def test_an_unreachable_database_is_one_line_and_non_zero(tmp_path):
    r = intraday("export", str(tmp_path / "out"),
                 env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert "not reachable" in _one_line_error(r)


def test_a_bad_setting_names_the_variable(tmp_path):
    r = intraday("status", env={"INTRADAY_PARTITIONS": "many"})
    assert "INTRADAY_PARTITIONS" in _one_line_error(r)


def test_a_bad_month_is_refused():
    assert "--month" in _one_line_error(intraday("invoices", "--month", "2025-13"))


def test_the_development_web_server_is_refused_off_loopback(tmp_path, fresh_db):
    r = intraday("dashboard", "--host", "0.0.0.0", "--server", "dev",
                 env={"DATABASE_URL": fresh_db, "INTRADAY_STATE_DIR": str(tmp_path)})
    assert r.returncode == 2  # a configuration error, as a wrong setting
    assert "development web server" in _one_line_error(r) and "gunicorn" in _one_line_error(r)


def test_alive_says_whether_a_process_beat_recently(tmp_path):
    env = {"INTRADAY_STATE_DIR": str(tmp_path)}
    r = intraday("alive", "sink", env=env)
    assert r.returncode == 1 and "no heartbeat yet" in _one_line_error(r)
    beat = tmp_path / "alive" / "sink"
    beat.parent.mkdir()
    beat.touch()
    r = intraday("alive", "sink", env=env)
    assert r.returncode == 0 and "sink alive" in r.stdout
    old = time.time() - 120
    os.utime(beat, (old, old))
    r = intraday("alive", "sink", "--max-age", "60", env=env)
    assert r.returncode == 1 and "120 s ago" in _one_line_error(r)
    r = intraday("alive", "dashboard", "--port", "1", env=env)
    assert r.returncode == 1 and "not answering" in _one_line_error(r)


def test_users_add_writes_a_hash_to_the_users_file_and_refuses_a_bad_role(tmp_path):
    from intraday.backoffice.users import load_users, verify_password

    env = {"INTRADAY_STATE_DIR": str(tmp_path / "state"), "INTRADAY_NEW_PASSWORD": "s3cret-pw"}
    r = intraday("users", "add", "wind", "asset_owner", "WND-1", "WND-2", env=env)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "state" / "users.json"  # the default users file
    user = load_users(path)["wind"]
    assert user.role == "asset_owner" and user.assets == ("WND-1", "WND-2")
    assert verify_password("s3cret-pw", user.password_hash) and "s3cret-pw" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    other = tmp_path / "other.json"
    assert intraday("users", "add", "desk", "desk", "--file", str(other), env=env).returncode == 0
    assert set(load_users(other)) == {"desk"}
    line = _one_line_error(intraday("users", "add", "x", "trader", env=env))
    assert "trader" in line and "invalid choice" in line
    line = _one_line_error(intraday("users", "add", "owner", "asset_owner", env=env))  # an owner needs assets
    assert "assets" in line
