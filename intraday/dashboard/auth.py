"""Who may see the dashboard, and what: users, password hashes, login, the request guard.

Dash callbacks are an open HTTP API (reliability-notes.md 10): anyone who can reach the port can
POST any inputs to ``/_dash-update-component``. So:

- every request to every route (pages, ``/_dash-layout``, ``/_dash-dependencies``,
  ``/_dash-update-component``, component suites, assets, ``/health``, unknown paths) passes one
  ``before_request`` guard, registered *first*, before any Dash code runs; without a valid
  session it gets 401 (XHR / API / resources) or a redirect to ``/login`` (pages);
- callback POSTs must also carry the CSRF header the Dash renderer sends (``X-CSRFToken`` from
  the ``_csrf_token`` cookie set at login), on top of ``SameSite=Lax`` session cookies;
- callbacks re-check authorisation themselves (:func:`require_user`, ``User.asset_filter``).

Users, roles and password hashes: :mod:`intraday.backoffice.users`.

``INTRADAY_AUTH=off`` disables the login only on a loopback host (:func:`check_auth_host`);
the guard then also refuses any client that is not on loopback.

"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import quote, urlsplit

from intraday.backoffice.users import (
    _DUMMY_HASH,
    AuthConfigError,
    User,
    UserStore,
    _write_private,
    password_tag,
    verify_password,
)
from intraday.platform.config import ConfigError, Settings
from intraday.platform.errors import first_line

log = logging.getLogger("intraday.dashboard")

LOCAL_USER = User("local", "desk")  # INTRADAY_AUTH=off on loopback

SESSION_COOKIE = "intraday_session"
CSRF_COOKIE = "_csrf_token"  # the name the Dash renderer reads (Dash(csrf_token_name=...))
CSRF_HEADER = "X-CSRFToken"
SESSION_HOURS = 12
LOGIN_MAX_FAILURES = 10  # per user at one client address within LOGIN_WINDOW_S
LOGIN_MAX_FAILURES_USER = 30  # per user from all addresses (a guess spread over many addresses)
LOGIN_MAX_FAILURES_ADDR = 50  # per address over all user names (one address trying many users)
LOGIN_WINDOW_S = 300
THROTTLE_MAX_KEYS = 10_000  # the throttle's memory is bounded: the oldest keys go first
SESSION_CHECK_TTL_S = 5.0  # a worker re-reads a session's state from the database this often




def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_auth_host(settings: Settings, host: str) -> None:
    """Refuse ``INTRADAY_AUTH=off`` unless the dashboard listens on loopback only."""
    if not settings.auth and not is_loopback_host(host):
        raise ConfigError(f"INTRADAY_AUTH=off is accepted only on a loopback host (127.0.0.1, localhost, ::1), "
                          f"not on {host!r}: remove INTRADAY_AUTH=off or bind to 127.0.0.1")


def secret_key(settings: Settings, env: dict[str, str] | None = None) -> str:
    """The session-signing secret: ``INTRADAY_SECRET_KEY`` if set, else a random key created once
    in ``STATE_DIR/dashboard_secret_key`` (mode 0600), so sessions survive restarts."""
    given = settings.secret_key if env is None else env.get("INTRADAY_SECRET_KEY")
    if given:
        if len(given) < 16:
            raise AuthConfigError("INTRADAY_SECRET_KEY is shorter than 16 characters")
        return given
    path = settings.state_dir / "dashboard_secret_key"
    try:
        if not path.exists():
            try:
                _write_private(path, secrets.token_hex(32) + "\n", exclusive=True)
            except FileExistsError:
                pass
        return path.read_text().strip()
    except OSError as exc:  # e.g. a read-only container file system
        log.warning("cannot keep the session key in %s (%s): sessions end when the dashboard restarts; "
                    "set INTRADAY_SECRET_KEY", path, exc.strerror or exc)
        return secrets.token_hex(32)


# ---------------------------------------------------------------------------------------------
# Flask: login, logout, guard


class _Throttle:
    """Failed logins in a sliding window, counted per (user, address), per user and per address;
    a login is refused while any of the three is at its limit. Memory is bounded: at most
    ``max_keys`` keys, expired ones pruned first, then the oldest. Per process (a gunicorn worker
    counts its own; docs/deploy.md)."""

    def __init__(self, limit: int = LOGIN_MAX_FAILURES, window_s: float = LOGIN_WINDOW_S, *,
                 user_limit: int = LOGIN_MAX_FAILURES_USER, addr_limit: int = LOGIN_MAX_FAILURES_ADDR,
                 max_keys: int = THROTTLE_MAX_KEYS) -> None:
        self.window_s, self.max_keys = window_s, max_keys
        self.limits = {"pair": limit, "user": user_limit, "addr": addr_limit}
        self._fails: dict[tuple, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(user: str, addr: str) -> list[tuple]:
        user = user.strip().lower()[:200]
        return [("pair", user, addr), ("user", user), ("addr", addr)]

    def _count(self, key: tuple, now: float) -> int:
        q = self._fails.get(key)
        while q and now - q[0] > self.window_s:
            q.popleft()
        if q is not None and not q:
            del self._fails[key]
            return 0
        return len(q) if q else 0

    def blocked(self, user: str, addr: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(self._count(k, now) >= self.limits[k[0]] for k in self._keys(user, addr))

    def fail(self, user: str, addr: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in self._keys(user, addr):
                q = self._fails.pop(key, None) or deque()
                q.append(now)
                while len(q) > self.limits[key[0]]:
                    q.popleft()  # never more than the limit per key
                self._fails[key] = q  # re-inserted: the dict's order is the order of last use
            if len(self._fails) > self.max_keys:
                for key in [k for k, q in self._fails.items() if now - q[-1] > self.window_s]:
                    del self._fails[key]
                while len(self._fails) > self.max_keys:
                    del self._fails[next(iter(self._fails))]

    def clear(self, user: str, addr: str) -> None:
        with self._lock:
            self._fails.pop(self._keys(user, addr)[0], None)

    def __len__(self) -> int:
        return len(self._fails)


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionRegistry:
    """The dashboard's sessions on the server: a login starts one, a logout ends it, and a
    session cookie is honoured only while its session is open and unexpired. With a connection
    pool the registry is the table ``dashboard_sessions`` (shared by every worker and container;
    a session's state is re-read after :data:`SESSION_CHECK_TTL_S`); without one (tests, a
    one-process server) it lives in memory. Only a hash of the session id is stored. While the
    database is down a session keeps the state this process last saw (a page open before the
    outage says "database unavailable" instead of logging its user out); a new session cannot be
    opened then."""

    def __init__(self, pool=None, *, ttl_s: float = SESSION_CHECK_TTL_S) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._mem: dict[str, tuple[str, float]] = {}  # sid hash -> (username, expires, epoch s)
        self._cache: dict[str, tuple[bool, float]] = {}  # sid hash -> (open, checked at)
        self._lock = threading.Lock()

    def start(self, username: str, hours: float = SESSION_HOURS) -> str:
        sid = secrets.token_urlsafe(32)
        h = _sid_hash(sid)
        if self.pool is None:
            with self._lock:
                self._mem[h] = (username, time.time() + hours * 3600)
        else:
            with self.pool.connection() as conn:
                conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now() - interval '1 day'")
                conn.execute("INSERT INTO dashboard_sessions (sid_hash, username, expires_at) "
                             "VALUES (%s, %s, now() + %s * interval '1 hour')", (h, username, hours))
        with self._lock:
            self._cache[h] = (True, time.monotonic())
        return sid

    def is_open(self, sid: Any, username: str) -> bool:
        if not isinstance(sid, str) or not sid:
            return False
        h = _sid_hash(sid)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(h)
        if cached is not None and now - cached[1] < self.ttl_s:
            return cached[0]
        if self.pool is None:
            with self._lock:
                row = self._mem.get(h)
            ok = row is not None and row[0] == username and row[1] > time.time()
        else:
            try:
                with self.pool.connection() as conn:
                    ok = conn.execute("SELECT 1 FROM dashboard_sessions WHERE sid_hash = %s AND username = %s "
                                      "AND ended_at IS NULL AND expires_at > now()",
                                      (h, username)).fetchone() is not None
            except Exception:
                if cached is not None:  # the database is down: keep the state last known
                    return cached[0]
                raise
        with self._lock:
            if len(self._cache) > THROTTLE_MAX_KEYS:
                self._cache.clear()
            self._cache[h] = (ok, now)
        return ok

    def end(self, sid: Any) -> None:
        if not isinstance(sid, str) or not sid:
            return
        h = _sid_hash(sid)
        with self._lock:
            self._cache[h] = (False, time.monotonic())
            self._mem.pop(h, None)
        if self.pool is not None:
            with self.pool.connection() as conn:
                conn.execute("UPDATE dashboard_sessions SET ended_at = now() WHERE sid_hash = %s AND ended_at IS NULL",
                             (h,))


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Intraday desk: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;
margin-top:12vh}}form{{background:#fff;padding:2em 2.5em;border-radius:6px;box-shadow:0 1px 4px #0002;
min-width:18em}}h1{{font-size:1.2em;margin:0 0 1em}}label{{display:block;margin:.6em 0 .2em;font-size:.9em}}
input{{width:100%;padding:.45em;box-sizing:border-box}}button{{margin-top:1.2em;width:100%;padding:.55em;
background:#1f4e79;color:#fff;border:0;border-radius:4px;font-size:1em}}.err{{color:#b00020;font-size:.9em}}
</style></head><body><form method="post" action="{action}">
<h1>Intraday desk</h1>{error}
<label for="u">User</label><input id="u" name="username" autocomplete="username" required autofocus>
<label for="p">Password</label><input id="p" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}"><button type="submit">Log in</button></form></body></html>"""

_API_PREFIXES = ("/_dash", "/_reload", "/_favicon", "/assets", "/health", "/_alive")


def safe_next(target: str | None) -> str:
    """A local path to return to after login; anything else (other hosts, schemes) is ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def install_auth(server, settings: Settings, store: UserStore | None, *, env: dict[str, str] | None = None,
                 sessions: SessionRegistry | None = None) -> None:
    """Configure sessions and register /login, /logout and the guard on the Flask ``server``.

    ``store`` is None exactly when auth is off (``settings.auth`` False). ``sessions``: where
    sessions are opened and ended (default: in this process's memory). Cookies are ``Secure``
    when ``settings.cookie_secure`` (served over HTTPS, behind the TLS terminator).
    """
    import flask
    from markupsafe import escape

    server.config.update(
        SECRET_KEY=secret_key(settings, env),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=SESSION_HOURS * 3600,
    )
    throttle = _Throttle()
    sessions = sessions if sessions is not None else SessionRegistry()

    def session_user() -> User | None:
        if store is None:
            return LOCAL_USER
        user = store.get(flask.session.get("u"))
        if user is None or flask.session.get("v") != password_tag(user):
            return None
        if not sessions.is_open(flask.session.get("sid"), user.username):
            return None  # logged out (here or in another worker), or expired
        return user

    def deny():
        path = flask.request.path
        wants_page = (flask.request.method == "GET" and not path.startswith(_API_PREFIXES)
                      and "text/html" in (flask.request.headers.get("Accept") or ""))
        if wants_page:
            return flask.redirect("/login?next=" + quote(flask.request.full_path.rstrip("?"), safe="/"), 302)
        resp = flask.jsonify({"error": "authentication required", "login": "/login"})
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Session realm="intraday", login="/login"'
        return resp

    def guard():
        flask.g.intraday_user = None
        if store is None:  # auth off: loopback clients only
            if not is_loopback_host(flask.request.remote_addr):
                return flask.jsonify({"error": "INTRADAY_AUTH=off: loopback clients only"}), 403
            flask.g.intraday_user = LOCAL_USER
            return None
        if flask.request.path in ("/login", "/logout", "/_alive"):  # /_alive: liveness, no data
            return None
        try:
            user = session_user()
        except Exception as exc:  # noqa: BLE001 - the session registry's database: refuse, say why
            log.warning("sessions cannot be checked: %s", first_line(exc))
            return flask.jsonify({"error": "sessions cannot be checked: the database is unavailable"}), 503
        if user is None:
            return deny()
        if flask.request.method not in ("GET", "HEAD", "OPTIONS"):
            token = flask.session.get("csrf")
            sent = flask.request.headers.get(CSRF_HEADER, "")
            if not token or not hmac.compare_digest(str(token), sent):
                return flask.jsonify({"error": "missing or wrong CSRF token"}), 403
        flask.g.intraday_user = user
        return None

    # First in line: no Dash code (layout validation, callbacks, resources) runs before it.
    server.before_request_funcs.setdefault(None, []).insert(0, guard)

    @server.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if flask.request.path.startswith(("/_dash-update-component", "/_dash-layout", "/health", "/login")):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    def login_page(error: str = "", status: int = 200):
        nxt = safe_next(flask.request.values.get("next"))
        html = _LOGIN_PAGE.format(action="/login", next=escape(nxt),
                                  error=f'<p class="err">{escape(error)}</p>' if error else "")
        return flask.Response(html, status=status, mimetype="text/html")

    @server.route("/login", methods=["GET", "POST"])
    def login():
        if store is None:
            return flask.redirect("/")
        if flask.request.method == "GET":
            return login_page()
        addr = flask.request.remote_addr or "?"
        username = flask.request.form.get("username", "")
        password = flask.request.form.get("password", "")
        if throttle.blocked(username, addr):
            return login_page("Too many failed attempts; try again in a few minutes.", 429)
        user = store.get(username)
        ok = verify_password(password, user.password_hash if user else _DUMMY_HASH) and user is not None
        if not ok:
            throttle.fail(username, addr)
            log.warning("failed login for %r from %s", username[:64], addr)
            return login_page("Unknown user or wrong password.", 401)
        throttle.clear(username, addr)
        flask.session.clear()  # no fixation: a fresh session per login
        flask.session.permanent = True
        flask.session["u"] = user.username
        flask.session["v"] = password_tag(user)
        try:
            flask.session["sid"] = sessions.start(user.username)
        except Exception as exc:  # noqa: BLE001 - the session registry's database
            log.warning("no session opened for %r: %s", user.username, exc)
            flask.session.clear()
            return login_page("Sessions cannot be opened: the database is unavailable. Try again shortly.", 503)
        csrf = secrets.token_urlsafe(24)
        flask.session["csrf"] = csrf
        resp = flask.redirect(safe_next(flask.request.form.get("next")), 303)
        # Readable by the page's script (the Dash renderer copies it into X-CSRFToken).
        resp.set_cookie(CSRF_COOKIE, csrf, samesite="Lax", httponly=False, max_age=SESSION_HOURS * 3600,
                        secure=settings.cookie_secure)
        return resp

    @server.route("/logout", methods=["GET", "POST"])
    def logout():
        sessions.end(flask.session.get("sid"))  # a copy of the cookie is worth nothing from now on
        flask.session.clear()
        resp = flask.redirect("/login", 303)
        resp.delete_cookie(CSRF_COOKIE, secure=settings.cookie_secure, samesite="Lax")
        return resp


def current_user() -> User | None:
    """The user the guard admitted for this request (None outside a request or when denied)."""
    import flask

    if not flask.has_request_context():
        return None
    return getattr(flask.g, "intraday_user", None)


def require_user() -> User:
    """The admitted user, or a 401 response (a callback reached without the guard's blessing)."""
    import flask

    user = current_user()
    if user is None:
        flask.abort(401)
    return user
