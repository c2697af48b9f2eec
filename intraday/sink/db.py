"""Database access: connections and the versioned migrations in ``sql/``.

Migration files are applied in name order, each once (recorded in ``schema_migrations``), under
an advisory lock so that concurrent starters do not race. ``NNN_x.sql`` always applies,
``NNN_x.timescale.sql`` only where ``CREATE EXTENSION timescaledb`` succeeded, ``NNN_x.plain.sql``
only where it did not. The detection happens once per database and is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from intraday.platform.errors import first_line

log = logging.getLogger("intraday.db")

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
MIGRATION_LOCK = 740_512_001


# The portfolio is the newest CRM file (domain.md 5, data-formats.md): its contracts are the truth
# about every contract, also for earlier days of the month. Every query of the back office (export,
# invoices, report) reads them through these two fragments; the stream processors apply the same
# rule to the topic (intraday.processing.state.quarter_hours.step_membership).
NEWEST_CONTRACTS_SQL = "SELECT * FROM contracts WHERE file_time = (SELECT max(file_time) FROM contracts)"
PORTFOLIO_ASSETS_SQL = f"SELECT DISTINCT asset_id FROM ({NEWEST_CONTRACTS_SQL}) newest_contracts"


class DatabaseError(RuntimeError):
    """The database cannot be reached or migrated; the message says why, in one line."""


# On every connection: TCP keepalives, so that a half-open connection (a server or a NAT that
# vanished) fails within about a minute instead of hanging the process, and an upper bound on the
# time of any statement (a stuck lock wait, a runaway query). libpq ignores the keepalive settings
# on a Unix socket.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
              "tcp_user_timeout": 60_000}
STATEMENT_TIMEOUT_MS = 300_000


def connection_kwargs(statement_timeout_ms: int | None = STATEMENT_TIMEOUT_MS) -> dict:
    """libpq settings of every connection of ours: keepalives, UTC, the statement timeout
    (0 or None: none, for migrations)."""
    options = "-c TimeZone=UTC" + (f" -c statement_timeout={int(statement_timeout_ms)}" if statement_timeout_ms else "")
    return {"connect_timeout": 10, **KEEPALIVES, "options": options}


def connect(url: str, *, statement_timeout_ms: int | None = STATEMENT_TIMEOUT_MS, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(url, **{**connection_kwargs(statement_timeout_ms), **kwargs})
    except psycopg.OperationalError as exc:
        first = first_line(exc)
        raise DatabaseError(f"database {redact(url)} is not reachable: {first}") from None


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def detect_timescale(conn: psycopg.Connection) -> bool:
    """True if TimescaleDB is (or can be made) available in this database."""
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error as exc:
        log.info("TimescaleDB not available (%s): plain tables and views",
                 first_line(exc))
        return False


def migration_files(timescale: bool, sql_dir: Path = SQL_DIR) -> list[Path]:
    out = []
    for path in sorted(sql_dir.glob("*.sql")):
        if path.name.endswith(".timescale.sql") and not timescale:
            continue
        if path.name.endswith(".plain.sql") and timescale:
            continue
        out.append(path)
    return out


def pending_migrations(conn: psycopg.Connection) -> list[str] | None:
    """The migrations not yet applied, read without any DDL (so that a login without CREATE
    rights, the sink's or the dashboard's, can tell "up to date"); None on a database never
    migrated."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return None
    rows = conn.execute("SELECT name, timescale FROM schema_migrations").fetchall()
    if not rows:
        return None
    timescale = any(r[1] for r in rows)
    done = {r[0] for r in rows}
    return [p.name for p in migration_files(timescale) if p.name not in done]


def migrate(url: str, *, timescale: bool | None = None) -> list[str]:
    """Apply the pending migrations; returns the names applied now (empty when up to date).

    Up to date, it runs no DDL at all: every service may call it at start. With migrations
    pending it needs the schema's owner (``intraday migrate`` in production, docs/deploy.md)."""
    with connect(url, autocommit=True, statement_timeout_ms=None) as conn:
        if timescale is None and pending_migrations(conn) == []:
            return []
    applied_now = []
    with connect(url, autocommit=True, statement_timeout_ms=None) as conn:  # a migration may take its time
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),"
                         " timescale boolean NOT NULL)")
            if timescale is None:
                timescale = detect_timescale(conn)
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for path in migration_files(timescale):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (name, timescale) VALUES (%s, %s)",
                                 (path.name, timescale))
                applied_now.append(path.name)
                log.info("applied migration %s", path.name)
            if applied_now and conn.execute("SELECT to_regproc('intraday_secure_children')").fetchone()[0]:
                conn.execute("SELECT intraday_secure_children()")  # tables a migration partitioned
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now
