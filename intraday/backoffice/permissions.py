"""Database logins and role-scoped sessions over the permission model of sql/005_permissions.sql.

The model (docs/permissions.md): four NOLOGIN group roles, ``intraday_desk``, ``intraday_ops``,
``intraday_back_office``, ``intraday_asset_owner`` (plus ``intraday_writer`` for the sink), and
the table ``asset_owners(owner_role, asset_id)``: an owner role reads the rows of the assets mapped
to it (or to a role it is a member of) in ``asset_qh``, ``asset_imbalance_qh``, ``contracts``,
``technical_data``, ``invoices`` / ``invoice_lines``, enforced by row-level security.

- :func:`create_owner_login`, :func:`create_staff_login`: a LOGIN role in the right group (and, for
  an owner, its assets). Identifiers go through ``psycopg.sql.Identifier``; ``CREATE ROLE ...
  PASSWORD`` takes no bind parameter, so the password is hashed here (SCRAM-SHA-256, libpq's
  ``PQencryptPasswordConn``, as psql's ``\\password`` does) and only the verifier is sent, as a
  ``psycopg.sql.Literal``: the clear text never reaches the server or its logs.
- :func:`owner_session` / :func:`user_session`: ``SET LOCAL ROLE`` inside a transaction, for a
  connection that logs in as a more privileged role (the dashboard's). Inside the block every
  query runs with the rights and the row policies of that role; the role ends with the
  transaction, so a pooled connection comes back unchanged.
- :func:`sync_dashboard_users`: the dashboard's users file -> one NOLOGIN role per dashboard
  asset owner (``owner:<username>``) with exactly the user's ``assets``, which the dashboard's
  login may ``SET ROLE`` to. An owner's session also puts :data:`OWNER_SCOPE` first on its
  search_path (sql/016_owner_scope.sql): the dashboard's statements then read, under the same
  names, views that hold nothing beyond the owner's assets and the public market.

Roles are cluster-wide, the mapping and GRANTs per database: run these in the database the
dashboard reads. They need a role that may create roles (CREATEROLE or superuser) and write
``asset_owners`` (the table owner / ``intraday_writer``).

Command line (``DATABASE_URL`` names the database; the password is asked, or taken from
``INTRADAY_NEW_PASSWORD``)::

    intraday permissions add-owner USERNAME ASSET [ASSET ...]
    intraday permissions add-staff USERNAME desk|ops|back_office
    intraday permissions sync-dashboard [USERS_FILE]
    intraday permissions show
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from intraday.platform.errors import first_line

__all__ = [
    "ASSET_OWNER", "GROUPS", "STAFF_ROLES", "WRITER", "create_owner_login", "create_staff_login",
    "dashboard_owner_role", "db_role_for", "drop_login", "ensure_service_logins", "owner_session", "permission_summary",
    "set_owner_assets", "sync_dashboard_users", "user_session", "can_manage_roles", "OWNER_SCOPE",
]

#: dashboard role -> database group role
GROUPS = {"desk": "intraday_desk", "ops": "intraday_ops", "back_office": "intraday_back_office",
          "asset_owner": "intraday_asset_owner"}
STAFF_ROLES = ("desk", "ops", "back_office")
ASSET_OWNER = GROUPS["asset_owner"]
WRITER = "intraday_writer"
DASHBOARD_OWNER_PREFIX = "owner:"
OWNER_SCOPE = "owner_scope"  # the schema of an asset owner's views (sql/016_owner_scope.sql)

#: The services' logins, one per duty (docs/deploy.md): login -> (its group, the environment
#: variable of its password). ``intraday migrate`` creates each whose password is set, none of
#: them a superuser. The schema's owner, which runs the migrations, is made by the database's
#: administrator once (deploy/timescaledb-init.sql).
WEB = "intraday_web"  # the dashboard's own table: its sessions (sql/014_dashboard_sessions.sql)
SERVICE_LOGINS = {
    "intraday_sink": ((WRITER,), "INTRADAY_SINK_DB_PASSWORD"),                    # writes every table
    "intraday_dashboard": ((GROUPS["ops"], WEB), "INTRADAY_DASHBOARD_DB_PASSWORD"),  # reads; acks alerts; sessions
    "intraday_replay": ((GROUPS["ops"],), "INTRADAY_REPLAY_DB_PASSWORD"),          # reads progress and quarantine
}


def ensure_service_logins(conn: psycopg.Connection, passwords: dict[str, str]) -> list[str]:
    """Create or update the :data:`SERVICE_LOGINS` whose password is in ``passwords`` (keyed by
    the environment variable's name): LOGIN, the SCRAM verifier of the password, member of its
    group, NOSUPERUSER NOBYPASSRLS NOCREATEROLE. Returns the logins made."""
    made = []
    with conn.transaction():
        for login, (groups, variable) in SERVICE_LOGINS.items():
            password = passwords.get(variable)
            if password:
                _ensure_role(conn, login, groups[0], password=password)
                for group in groups[1:]:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(login)))
                made.append(login)
    return made
MAX_ROLE_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by PostgreSQL


class PermissionSetupError(RuntimeError):
    """A login or a mapping cannot be set up; the message says why."""


# ---------------------------------------------------------------------------------------------
# roles


def _check_name(name: str, what: str = "role name") -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise PermissionSetupError(f"{what} {name!r}: empty or with surrounding blanks")
    if len(name.encode()) > MAX_ROLE_BYTES:
        raise PermissionSetupError(f"{what} {name!r}: longer than {MAX_ROLE_BYTES} bytes")
    if (name.lower().startswith("pg_") or name.lower() == "public" or name in GROUPS.values()
            or name in (WRITER, WEB)):
        raise PermissionSetupError(f"{what} {name!r} is reserved")
    return name


def _role_row(conn: psycopg.Connection, name: str) -> tuple[bool, bool, bool] | None:
    """(rolsuper, rolbypassrls, rolcanlogin) of a role, None if it does not exist."""
    return conn.execute("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
                        (name,)).fetchone()


def _verifier(conn: psycopg.Connection, username: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` (hashed on the client, server's algorithm)."""
    if not isinstance(password, str) or not password:
        raise PermissionSetupError(f"login {username!r}: empty password")
    return conn.pgconn.encrypt_password(password.encode(), username.encode(), None).decode()


def _ensure_role(conn: psycopg.Connection, name: str, group: str, *, password: str | None) -> None:
    """Create (or update) ``name`` as a member of ``group``; LOGIN with ``password``, else NOLOGIN.

    An existing role that is a superuser or BYPASSRLS is refused: row policies would not apply.
    """
    row = _role_row(conn, name)
    if row is not None and (row[0] or row[1]):
        raise PermissionSetupError(f"role {name!r} exists and is SUPERUSER or BYPASSRLS: policies would not "
                                   "apply to it; choose another name")
    login = (sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(_verifier(conn, name, password)))
             if password is not None else sql.SQL("NOLOGIN"))
    # A superuser states every attribute; a CREATEROLE login (the schema's owner in production)
    # may not name those it lacks itself, and its new roles have none of them anyway (the
    # defaults), which the check above keeps so on every later run.
    attrs = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
                    if _is_superuser(conn) else "NOCREATEROLE INHERIT")
    if row is None:
        conn.execute(sql.SQL("CREATE ROLE {} WITH {} {}").format(sql.Identifier(name), login, attrs))
    else:
        conn.execute(sql.SQL("ALTER ROLE {} WITH {} {}").format(sql.Identifier(name), login, attrs))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))


def _refuse_staff(conn: psycopg.Connection, name: str) -> None:
    """An owner role must not also be staff (it would read every row)."""
    if _role_row(conn, name) is None:
        return
    staff = [g for g in (GROUPS[r] for r in STAFF_ROLES) if conn.execute(
        "SELECT pg_has_role(%s, %s, 'MEMBER')", (name, g)).fetchone()[0]]
    if staff:
        raise PermissionSetupError(f"role {name!r} is a member of {', '.join(staff)}: it cannot also be an "
                                   "asset owner (it would read every asset)")


def set_owner_assets(conn: psycopg.Connection, owner_role: str, assets: Iterable[str]) -> list[str]:
    """Make ``asset_owners`` map ``owner_role`` to exactly ``assets`` (in this database)."""
    wanted = sorted({str(a).strip() for a in assets if str(a).strip()})
    with conn.transaction():
        conn.execute("DELETE FROM asset_owners WHERE owner_role = %s AND NOT (asset_id = ANY(%s))",
                     (owner_role, wanted))
        for a in wanted:
            conn.execute("INSERT INTO asset_owners (owner_role, asset_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (owner_role, a))
    return wanted


def create_owner_login(conn: psycopg.Connection, username: str, password: str, assets: Iterable[str]) -> list[str]:
    """A LOGIN role ``username`` in ``intraday_asset_owner`` that reads exactly ``assets``' rows.

    Idempotent: an existing (non-privileged) role gets the new password and mapping. Returns the
    mapped asset ids. An empty ``assets`` is refused (the login would read nothing).
    """
    _check_name(username, "owner login")
    assets = [str(a) for a in assets]
    if not [a for a in assets if a.strip()]:
        raise PermissionSetupError(f"owner login {username!r}: no assets")
    with conn.transaction():
        _refuse_staff(conn, username)
        _ensure_role(conn, username, ASSET_OWNER, password=password)
        return set_owner_assets(conn, username, assets)


def create_staff_login(conn: psycopg.Connection, username: str, password: str, role: str) -> str:
    """A LOGIN role ``username`` in the group of ``role`` (``desk``, ``ops``, ``back_office`` or the
    group's own name). Returns the group role."""
    _check_name(username, "staff login")
    group = GROUPS.get(role, role)
    if group not in (GROUPS[r] for r in STAFF_ROLES):
        raise PermissionSetupError(f"staff role {role!r} is not one of {', '.join(STAFF_ROLES)}")
    with conn.transaction():
        _ensure_role(conn, username, group, password=password)
    return group


def drop_login(conn: psycopg.Connection, username: str) -> bool:
    """Remove a login created here: its mapping in this database, its privileges here, the role.

    ``DROP ROLE`` fails while another database still holds privileges or mappings of the role;
    the message says so. Returns False if the role did not exist.
    """
    _check_name(username, "login")
    with conn.transaction():
        conn.execute("DELETE FROM asset_owners WHERE owner_role = %s", (username,))
        if _role_row(conn, username) is None:
            return False
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(username)))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(username)))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise PermissionSetupError(f"role {username!r} still has privileges in another database: "
                                       f"{first_line(exc)}") from None
    return True


# ---------------------------------------------------------------------------------------------
# the dashboard's users


def dashboard_owner_role(username: str) -> str:
    """The database role of a dashboard asset owner: ``owner:<username>`` (NOLOGIN)."""
    return _check_name(DASHBOARD_OWNER_PREFIX + str(username), "dashboard owner role")


def db_role_for(user: Any) -> str:
    """The database role a dashboard user's queries run as (``user`` has ``role`` and ``username``,
    like ``intraday.dashboard.auth.User``): the group role for staff, ``owner:<username>`` for an owner."""
    role = getattr(user, "role", None)
    if role == "asset_owner":
        return dashboard_owner_role(user.username)
    if role in STAFF_ROLES:
        return GROUPS[role]
    raise PermissionSetupError(f"dashboard role {role!r} has no database role")


def _is_superuser(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = session_user").fetchone()[0])


def _let_login_set(conn: psycopg.Connection, role: str, login: str | None = None) -> None:
    """Allow ``login`` (default: the connecting login) to ``SET ROLE role`` (a superuser may already)."""
    login = login or conn.execute("SELECT session_user").fetchone()[0]
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
    if superuser is None:
        raise PermissionSetupError(f"the dashboard's login {login!r} does not exist")
    if superuser[0]:
        return
    option = "SET" if conn.info.server_version >= 160000 else "MEMBER"
    if conn.execute("SELECT pg_has_role(%s, %s, %s)", (login, role, option)).fetchone()[0]:
        return
    who = sql.Identifier(login)
    options = sql.SQL(" WITH INHERIT FALSE, SET TRUE") if conn.info.server_version >= 160000 else sql.SQL("")
    try:
        with conn.transaction():
            conn.execute(sql.SQL("GRANT {} TO {}{}").format(sql.Identifier(role), who, options))
    except psycopg.errors.InsufficientPrivilege:
        raise PermissionSetupError(f"the dashboard's login cannot SET ROLE {role!r}: as an administrator run "
                                   f'GRANT "{role}" TO <dashboard login>') from None


def can_manage_roles(conn: psycopg.Connection) -> bool:
    """Whether the connecting login may create roles (superuser or CREATEROLE)."""
    return bool(conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = session_user"
                             ).fetchone()[0])


def sync_dashboard_users(conn: psycopg.Connection, users: Iterable[Any], *,
                         dashboard_login: str | None = None) -> dict[str, list[str]]:
    """Mirror the dashboard's asset owners into the database (in this database).

    For every ``asset_owner`` user: a NOLOGIN role ``owner:<username>`` in
    ``intraday_asset_owner``, mapped to exactly the user's ``assets``. Mappings of ``owner:*``
    roles whose user is gone are deleted (the role remains, reading nothing). The dashboard's
    login (``dashboard_login``, default: the connecting login) is allowed to ``SET ROLE`` every
    role the dashboard uses (``intraday migrate`` runs this for the dashboard's login; the
    embedded demo's dashboard for itself). Returns ``{role: assets}``.
    """
    users = list(users)
    out: dict[str, list[str]] = {}
    with conn.transaction():
        for u in users:
            if getattr(u, "role", None) != "asset_owner":
                continue
            role = dashboard_owner_role(u.username)
            _refuse_staff(conn, role)
            _ensure_role(conn, role, ASSET_OWNER, password=None)
            out[role] = set_owner_assets(conn, role, getattr(u, "assets", ()) or ())
        conn.execute("DELETE FROM asset_owners WHERE starts_with(owner_role, %s) AND NOT (owner_role = ANY(%s))",
                     (DASHBOARD_OWNER_PREFIX, list(out)))
        for role in [*(GROUPS[r] for r in STAFF_ROLES), *out]:
            _let_login_set(conn, role, dashboard_login)
    return out


# ---------------------------------------------------------------------------------------------
# sessions


@contextlib.contextmanager
def owner_session(conn: psycopg.Connection, role: str, *, scope: str | None = None) -> Iterator[psycopg.Connection]:
    """Run the block's queries as ``role`` (``SET LOCAL ROLE`` in a new transaction).

    The connection must be idle (no open transaction): the role then ends with this block's
    transaction whatever happens inside (commit, rollback, exception). Row-level security is
    forced on (``row_security = on``): a query that a policy would filter can never run unfiltered.
    ``scope``: a schema put first on the search_path for the block (:data:`OWNER_SCOPE`).
    Note: this scopes the queries *we* send; it is not a sandbox for SQL from elsewhere (a
    ``RESET ROLE`` inside the block would return to the login's rights).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise PermissionSetupError("owner_session needs an idle connection (no open transaction)")
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SET LOCAL row_security = on")
        if scope is not None:
            conn.execute("SELECT set_config('search_path', quote_ident(%s) || ', ' || current_setting('search_path'),"
                         " true)", (scope,))
        now = conn.execute("SELECT current_user").fetchone()[0]
        if now != role:  # pragma: no cover - SET ROLE either works or raises
            raise PermissionSetupError(f"SET ROLE {role!r} left current_user {now!r}")
        yield conn


def user_session(conn: psycopg.Connection, user: Any) -> contextlib.AbstractContextManager[psycopg.Connection]:
    """:func:`owner_session` for a dashboard user (``db_role_for(user)``); an asset owner's with
    the :data:`OWNER_SCOPE` views first on the search_path."""
    scope = OWNER_SCOPE if getattr(user, "role", None) == "asset_owner" else None
    return owner_session(conn, db_role_for(user), scope=scope)


# ---------------------------------------------------------------------------------------------
# overview


def permission_summary(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every role that is a member of an intraday group, with its groups and mapped assets."""
    rows = conn.execute(
        "SELECT m.rolname, m.rolcanlogin, array_agg(DISTINCT g.rolname ORDER BY g.rolname),"
        " coalesce((SELECT array_agg(o.asset_id ORDER BY o.asset_id) FROM asset_owners o"
        "           WHERE o.owner_role = m.rolname), '{}')"
        " FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member"
        " WHERE g.rolname = ANY(%s) GROUP BY m.rolname, m.rolcanlogin ORDER BY m.rolname",
        ([*GROUPS.values(), WRITER],)).fetchall()
    return [{"role": r, "login": login, "groups": list(groups), "assets": list(assets)}
            for r, login, groups, assets in rows]
