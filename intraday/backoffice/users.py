"""The users file: who may log in to the dashboard, with which role and assets, and their
password hashes.

Users file (``settings.users_file``, default ``STATE_DIR/users.json``, mode 0600)::

    {"users": [
      {"username": "desk", "password_hash": "scrypt$16384$8$1$<salt>$<hash>", "role": "desk"},
      {"username": "wind-owner", "password_hash": "...", "role": "asset_owner",
       "assets": ["WND-DE-001"]}]}

Roles: ``desk`` (everything, acknowledges alerts), ``ops`` (everything, acknowledges alerts),
``back_office`` (everything, read only), ``asset_owner`` (only their ``assets``, everywhere; no
portfolio-wide numbers, no /health). Hashes: scrypt (n=2^14, r=8, p=1) with a 16-byte random
salt; passwords are never stored. The file is re-read when it changes: a removed user or a
changed password ends existing sessions at their next request.

Add a user: ``intraday users add USERS_FILE USERNAME ROLE [ASSET ...]`` (asks for the password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intraday.platform.config import ConfigError, Settings

ROLES = ("desk", "ops", "asset_owner", "back_office")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AuthConfigError(ConfigError):
    """The users file or the auth settings cannot be used; the message names the problem."""


# ---------------------------------------------------------------------------------------------
# users and passwords


@dataclass(frozen=True)
class User:
    username: str
    role: str
    assets: tuple[str, ...] = ()
    password_hash: str = field(default="", repr=False)

    @property
    def asset_filter(self) -> tuple[str, ...] | None:
        """``None``: the whole portfolio; else the only assets this user may read."""
        return self.assets if self.role == "asset_owner" else None

    @property
    def can_acknowledge(self) -> bool:
        return self.role in ("desk", "ops")

    @property
    def sees_portfolio(self) -> bool:
        return self.role != "asset_owner"

    def may_read_asset(self, asset_id: str) -> bool:
        return self.asset_filter is None or asset_id in self.asset_filter


def hash_password(password: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of a password with a random 16-byte salt."""
    if not password:
        raise ValueError("empty password")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


_DUMMY_HASH = hash_password("not a password", salt=b"0" * 16)


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; constant-time; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def parse_users(doc: Any, source: str = "users file") -> dict[str, User]:
    """Validate a users document; errors name the user and the field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), list):
        raise AuthConfigError(f"{source}: expected {{\"users\": [...]}}")
    users: dict[str, User] = {}
    for i, u in enumerate(doc["users"]):
        where = f"{source}: users[{i}]"
        if not isinstance(u, dict):
            raise AuthConfigError(f"{where} is not an object")
        name, role, pw = u.get("username"), u.get("role"), u.get("password_hash")
        if not isinstance(name, str) or not name.strip():
            raise AuthConfigError(f"{where}: username missing")
        if role not in ROLES:
            raise AuthConfigError(f"{where} ({name}): role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
            raise AuthConfigError(f"{where} ({name}): password_hash must be a scrypt hash, not plaintext")
        assets = u.get("assets", [])
        if not isinstance(assets, list) or not all(isinstance(a, str) for a in assets):
            raise AuthConfigError(f"{where} ({name}): assets must be a list of asset ids")
        if role == "asset_owner" and not assets:
            raise AuthConfigError(f"{where} ({name}): an asset_owner needs a non-empty assets list")
        if name in users:
            raise AuthConfigError(f"{where}: duplicate username {name!r}")
        users[name] = User(name, role, tuple(assets) if role == "asset_owner" else (), pw)
    return users


def load_users(path: Path) -> dict[str, User]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AuthConfigError(f"users file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise AuthConfigError(f"users file {path} is not readable JSON: {exc}") from None
    return parse_users(doc, str(path))


def _write_private(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write a file readable by its owner only; atomically (rename) unless ``exclusive``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def users_file(settings: Settings) -> Path:
    return Path(settings.users_file) if settings.users_file else settings.state_dir / "users.json"


def add_user(path: Path, username: str, password: str, role: str, assets: list[str] | None = None) -> None:
    """Add or replace a user in the users file (created if missing)."""
    path = Path(path)
    doc = json.loads(path.read_text()) if path.exists() else {"users": []}
    entry: dict[str, Any] = {"username": username, "password_hash": hash_password(password), "role": role}
    if role == "asset_owner":
        entry["assets"] = list(assets or [])
    doc["users"] = [u for u in doc.get("users", []) if u.get("username") != username] + [entry]
    parse_users(doc, str(path))  # refuse to write something we would not load
    _write_private(path, json.dumps(doc, indent=2) + "\n")


def ensure_demo_user(settings: Settings) -> tuple[str, str] | None:
    """If the users file does not exist, create it with one ``desk`` user and a random password
    and return ``("desk", password)`` (for the demo to print); ``None`` if the file exists (its
    passwords are unknown to us)."""
    path = users_file(settings)
    if path.exists():
        return None
    password = secrets.token_urlsafe(12)
    doc = {"users": [{"username": "desk", "password_hash": hash_password(password), "role": "desk"}]}
    try:
        _write_private(path, json.dumps(doc, indent=2) + "\n", exclusive=True)
    except FileExistsError:  # another process created it meanwhile
        return None
    return "desk", password


class UserStore:
    """The users file, re-read when its modification time or size changes (thread-safe).

    ``on_reload(users)``, if set, runs after every re-read (the dashboard gives new asset owners
    their database roles there)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self.on_reload: Callable[[dict[str, User]], Any] | None = None
        self.reload()

    def users(self) -> dict[str, User]:
        with self._lock:
            return dict(self._users)

    def reload(self) -> None:
        st = self.path.stat()
        users = load_users(self.path)
        with self._lock:
            self._users, self._stamp = users, (st.st_mtime_ns, st.st_size)
        if self.on_reload is not None:
            self.on_reload(dict(users))

    def get(self, username: Any) -> User | None:
        if not isinstance(username, str):
            return None
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self.reload()
        except (OSError, AuthConfigError):
            return None  # a broken or removed users file lets nobody in
        return self._users.get(username)


def password_tag(user: User) -> str:
    """A short tag of the user's hash kept in the session: a changed password ends sessions."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# hosts and secrets
