"""Serving the dashboard: Flask's own server on loopback for the embedded demo, gunicorn in production."""

from __future__ import annotations

import logging
import sys
from typing import Any

from intraday.backoffice.users import ensure_demo_user, users_file
from intraday.dashboard.app import close_app, create_app, log
from intraday.dashboard.auth import (
    check_auth_host,
    is_loopback_host,
)
from intraday.platform.config import ConfigError, Settings

GUNICORN_TIMEOUT_S = 30  # a worker stuck longer on one request is killed and replaced


def serve(settings: Settings, host: str = "127.0.0.1", port: int | None = None, *, server: str = "auto",
          workers: int | None = None) -> None:
    """Run the dashboard. ``server``: ``gunicorn`` (production: ``--workers`` processes of 4
    threads, each request bounded by :data:`GUNICORN_TIMEOUT_S`, graceful stop on SIGTERM) or
    ``dev`` (Flask's threaded server with ``debug=False``, never the debugger or the reloader,
    and on a loopback host only); ``auto``: dev on loopback, else gunicorn. ``INTRADAY_AUTH=off``
    is refused off loopback. With auth on and no users file, a ``desk`` user with a random
    password is created and its credentials printed once to stderr."""
    check_auth_host(settings, host)
    if server == "auto":
        server = "dev" if is_loopback_host(host) else "gunicorn"
    if server == "dev" and not is_loopback_host(host):
        raise ConfigError(f"the development web server is for a loopback host only, not {host!r}: "
                          "use --server gunicorn")
    if settings.auth:
        created = ensure_demo_user(settings)
        if created:
            print(f"dashboard: created user {created[0]!r} with password {created[1]!r} in {users_file(settings)}",
                  file=sys.stderr, flush=True)
    port = port or settings.dashboard_port
    if server == "gunicorn":
        _serve_gunicorn(settings, host, port, workers or 2)
        return
    app = create_app(settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per 2-second poll
    log.info("dashboard on http://%s:%s (development server, auth %s)", host, port,
             "on" if settings.auth else "off (loopback)")
    try:
        app.server.run(host=host, port=port, debug=False, use_reloader=False, use_debugger=False, threaded=True)
    finally:
        close_app(app)


def gunicorn_options(host: str, port: int, workers: int, trusted_proxies: str = "127.0.0.1") -> dict[str, Any]:
    """The production server's settings: threads for the 2-second polls of many pages, a worker
    timeout, bounded request lines and headers, the client's address from a trusted proxy only."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {"bind": bind, "workers": workers, "worker_class": "gthread", "threads": 4,
            "timeout": GUNICORN_TIMEOUT_S, "graceful_timeout": 10, "keepalive": 5,
            "limit_request_line": 8190, "limit_request_fields": 100, "limit_request_field_size": 8190,
            "max_requests": 5000, "max_requests_jitter": 500,  # recycle workers: no slow leak lives long
            "forwarded_allow_ips": trusted_proxies,
            "accesslog": None, "errorlog": "-", "loglevel": "info", "proc_name": "intraday-dashboard"}


def _serve_gunicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(host, port, workers, settings.trusted_proxies).items():
                self.cfg.set(key, value)

        def load(self):  # in each worker: its own app and connection pool
            return create_app(settings).server

    log.info("dashboard on http://%s:%s (gunicorn, %d workers, auth %s)", host, port, workers,
             "on" if settings.auth else "off (loopback)")
    _App().run()
