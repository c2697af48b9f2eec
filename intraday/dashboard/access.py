"""The database as each user may see it: an asset owner's queries in the owner-scoped session, owners' roles kept in step with the users file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from intraday.backoffice.permissions import (
    PermissionSetupError,
    can_manage_roles,
    sync_dashboard_users,
    user_session,
)
from intraday.platform.errors import first_line

DB_ERRORS = (psycopg.Error, PoolTimeout)

log = logging.getLogger("intraday.dashboard")


class AccessNotSetUp(psycopg.Error):
    """An asset owner's database role is missing, or the dashboard's login may not use it."""


@contextlib.contextmanager
def user_connection(pool, user) -> Iterator[psycopg.Connection]:
    """A pooled connection for ``user``'s queries: an asset owner's in their database role, with
    the owner views first on the search_path (docs/permissions.md); staff on the dashboard's login."""
    with pool.connection() as conn:
        if user.sees_portfolio:
            yield conn
            return
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(user_session(conn, user))
            except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege,
                    PermissionSetupError) as exc:
                raise AccessNotSetUp(f"the database access of {user.username!r} is not set up ({first_line(exc)}): "
                                     "an administrator runs `intraday migrate` with the users file "
                                     "(docs/permissions.md)") from None
            yield conn


def sync_owner_roles(pool, users: Iterable[Any]) -> dict[str, list[str]] | None:
    """Give the asset owners of the users file their database roles, where the dashboard's login
    may create roles (the embedded demo). In production ``intraday migrate`` does it; then this
    says so once and returns None."""
    try:
        with pool.connection() as conn:
            if not can_manage_roles(conn):
                log.info("asset owners' database roles: kept by `intraday migrate` (this login may not create roles)")
                return None
            synced = sync_dashboard_users(conn, users)
    except (PermissionSetupError, *DB_ERRORS) as exc:
        log.warning("asset owners' database roles not synced: %s",
                    first_line(exc))
        return None
    if synced:
        log.info("asset owners' database roles: %s", ", ".join(f"{r} ({len(a)} assets)" for r, a in synced.items()))
    return synced


def db_message(exc: BaseException) -> str:
    msg = first_line(exc)
    return msg if isinstance(exc, AccessNotSetUp) else f"database unavailable: {msg}"
