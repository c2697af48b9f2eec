"""``intraday users`` and ``intraday permissions``: the dashboard's users file and the database
logins of the permission model (docs/permissions.md). A new password comes from
``INTRADAY_NEW_PASSWORD`` or is asked for; it is never an argument."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from intraday.app.errors import CliError
from intraday.platform.config import Settings
from intraday.platform.errors import first_line


def add_commands(cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The two command groups, on the parser of :mod:`intraday.app.cli`."""
    s = cmd("users", "the dashboard's users file: add or replace a user (scrypt hash, mode 0600)")
    sub = s.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(s))
    a = sub.add_parser("add", help="add or replace a user", description="add or replace a user")
    a.add_argument("username")
    a.add_argument("role", choices=("desk", "ops", "asset_owner", "back_office"))
    a.add_argument("assets", nargs="*", metavar="ASSET", help="an asset_owner's assets")
    a.add_argument("--file", default=None, help="the users file (default INTRADAY_USERS_FILE or STATE_DIR/users.json)")

    s = cmd("permissions", "database logins of asset owners and staff, and the dashboard owners' roles")
    sub = s.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(s))
    a = sub.add_parser("add-owner", help="a login that reads only its assets' rows")
    a.add_argument("username")
    a.add_argument("assets", nargs="+", metavar="ASSET")
    a = sub.add_parser("add-staff", help="a login in the desk, ops or back_office group")
    a.add_argument("username")
    a.add_argument("group", metavar="GROUP", help="desk | ops | back_office")
    a = sub.add_parser("sync-dashboard", help="the database roles of the users file's asset owners")
    a.add_argument("users_file", nargs="?", default=None,
                   help="default INTRADAY_USERS_FILE or STATE_DIR/users.json")
    sub.add_parser("show", help="every member of an intraday group, with its assets")


def _new_password(username: str) -> str:
    import getpass

    return os.environ.get("INTRADAY_NEW_PASSWORD") or getpass.getpass(f"password for {username}: ")


def cmd_users(args, settings: Settings) -> int:
    from intraday.backoffice.users import AuthConfigError, add_user, users_file

    path = Path(args.file) if args.file else users_file(settings)
    try:
        add_user(path, args.username, _new_password(args.username), args.role, args.assets)
    except (AuthConfigError, ValueError) as exc:
        raise CliError(f"users: {exc}") from None
    print(f"{args.username} ({args.role}) written to {path}")
    return 0


def cmd_permissions(args, settings: Settings) -> int:
    import psycopg

    from intraday.app.services import database
    from intraday.backoffice import permissions as P
    from intraday.backoffice.users import AuthConfigError, load_users, users_file

    try:
        with database(settings, migrate=False) as url, psycopg.connect(url, autocommit=True) as conn:
            if args.action == "show":
                for r in P.permission_summary(conn):
                    print(f"{r['role']:<32} {'login' if r['login'] else 'nologin':<8} {','.join(r['groups'])}"
                          f"  {' '.join(r['assets'])}")
            elif args.action == "sync-dashboard":
                path = Path(args.users_file) if args.users_file else users_file(settings)
                for role, assets in P.sync_dashboard_users(conn, load_users(path).values()).items():
                    print(f"{role}: {' '.join(assets)}")
            elif args.action == "add-owner":
                assets = P.create_owner_login(conn, args.username, _new_password(args.username), args.assets)
                print(f"{args.username}: asset owner of {' '.join(assets)}")
            else:
                group = P.create_staff_login(conn, args.username, _new_password(args.username), args.group)
                print(f"{args.username}: member of {group}")
    except (P.PermissionSetupError, AuthConfigError, psycopg.Error) as exc:
        raise CliError(f"permissions: {first_line(exc)}") from None
    return 0
