"""Settings, read once from the environment at the edge and passed down as a frozen object.

| variable | default | meaning |
| --- | --- | --- |
| KAFKA_BOOTSTRAP_SERVERS | (unset: embedded Tansu) | Kafka cluster to use; nothing is started |
| KAFKA_SECURITY_PROTOCOL | PLAINTEXT | `SASL_PLAINTEXT`, `SASL_SSL` or `SSL` for a secured cluster (docs/deploy.md) |
| KAFKA_SASL_MECHANISM | SCRAM-SHA-512 | `SCRAM-SHA-512` or `SCRAM-SHA-256` |
| KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD | (unset) | the services' Kafka login (required with SASL_*); never printed |
| KAFKA_SSL_CA_LOCATION | (system CAs) | CA file that signed the brokers' certificates (SSL, SASL_SSL) |
| DATABASE_URL | (unset: embedded PostgreSQL) | PostgreSQL/TimescaleDB to use; nothing is started |
| INTRADAY_STATE_DIR | ./.intraday | embedded services' data, logs, sample day |
| INTRADAY_PARTITIONS | 4 | partitions of the keyed topics |
| INTRADAY_ALERT_IMBALANCE_MWH | 1.0 | alert when a QH's projected portfolio imbalance exceeds this |
| INTRADAY_ALERT_COST_EUR | 500 | alert when a QH's projected imbalance cost exceeds this |
| INTRADAY_ALERT_OPEN_POSITION_MIN | 30 | alert when a position is not flat this many minutes before gate closure |
| INTRADAY_ALERT_STALE_FEED_MIN | 15 | alert when a live feed has been silent this long (event time) |
| INTRADAY_STATE_RETENTION_DAYS | 4 | processors forget QHs this many days of event time behind the replay clock |
| INTRADAY_FETCH_WAIT_MS | 50 | embedded broker: longest a worker's or the sink's fetch waits (Tansu always waits it out) |
| INTRADAY_SINK_MAX_POLL_INTERVAL_MS | 300000 | the sink's `max.poll.interval.ms` (it polls on through a database outage, paused) |
| INTRADAY_SINK_STATEMENT_TIMEOUT_MS | 60000 | longest statement of the sink's; a stuck one is cancelled and the batch retried |
| INTRADAY_SINK_DB_PASSWORD, INTRADAY_DASHBOARD_DB_PASSWORD, INTRADAY_REPLAY_DB_PASSWORD | (unset) | `intraday migrate` creates the login of each duty whose password is set (docs/deploy.md) |
| INTRADAY_DASHBOARD_PORT | 8050 | dashboard port (127.0.0.1) |
| INTRADAY_AUTH | on | `off` disables the dashboard login (accepted on loopback only) |
| INTRADAY_COOKIE_SECURE | off | `on`: the session and CSRF cookies are `Secure` (the dashboard is served over HTTPS behind a TLS terminator) |
| INTRADAY_TRUSTED_PROXIES | 127.0.0.1 | addresses whose X-Forwarded-* headers the dashboard's gunicorn believes (`*`: any) |
| INTRADAY_USERS_FILE | STATE_DIR/users.json | dashboard users (hashed passwords) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable and the value."""


def _num(env: Mapping[str, str], name: str, default: float, kind: type = float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of ours authenticates to the cluster (the same for all services)."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_location: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SASL_SSL", "SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of {', '.join(PROTOCOLS)}")
        mechanism = (env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
        if mechanism not in MECHANISMS:
            raise ConfigError(f"KAFKA_SASL_MECHANISM={mechanism!r} must be one of {', '.join(MECHANISMS)}")
        sec = cls(protocol, mechanism, env.get("KAFKA_SASL_USERNAME") or None,
                  env.get("KAFKA_SASL_PASSWORD") or None, env.get("KAFKA_SSL_CA_LOCATION") or None)
        if sec.sasl and not (sec.username and sec.password):
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if sec.ca_location and not Path(sec.ca_location).is_file():
            raise ConfigError(f"KAFKA_SSL_CA_LOCATION={sec.ca_location!r} is not a file")
        return sec

    def client_conf(self) -> dict[str, str]:
        """The librdkafka (confluent-kafka) properties."""
        conf = {"security.protocol": self.protocol}
        if self.sasl:
            conf.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username or "",
                         "sasl.password": self.password or ""})
        if self.tls and self.ca_location:
            conf["ssl.ca.location"] = self.ca_location
        return conf


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None
    database_url: str | None
    state_dir: Path
    partitions: int = 4
    alert_imbalance_mwh: float = 1.0
    alert_cost_eur: float = 500.0
    alert_open_position_min: float = 30.0
    alert_stale_feed_min: float = 15.0
    alert_horizon_h: float = 6.0
    state_retention_days: float = 4.0
    fetch_wait_ms: int = 50
    sink_max_poll_interval_ms: int = 300_000
    sink_statement_timeout_ms: int = 60_000
    dashboard_port: int = 8050
    auth: bool = True
    cookie_secure: bool = False
    trusted_proxies: str = "127.0.0.1"
    users_file: Path | None = None
    embedded: bool = False  # INTRADAY_EMBEDDED=1: the services are the embedded ones (set by the supervisor)
    worker_loglevel: str = "info"
    worker_datadir: Path | None = None
    worker_web_port: int = 6066
    secret_key: str | None = field(default=None, repr=False)  # the dashboard's session-signing key
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # the services' database passwords, by variable (INTRADAY_*_DB_PASSWORD): `intraday migrate`
    # creates their logins (intraday.backoffice.permissions.SERVICE_LOGINS); never printed
    service_db_passwords: dict[str, str] = field(default_factory=dict, repr=False)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state_dir = Path(env.get("INTRADAY_STATE_DIR") or "./.intraday").resolve()
        partitions = int(_num(env, "INTRADAY_PARTITIONS", 4, int))
        if partitions < 1:
            raise ConfigError(f"INTRADAY_PARTITIONS={partitions} must be at least 1")
        auth_raw = (env.get("INTRADAY_AUTH") or "on").lower()
        if auth_raw not in ("on", "off", "1", "0", "true", "false"):
            raise ConfigError(f"INTRADAY_AUTH={auth_raw!r} must be on or off")
        secure_raw = (env.get("INTRADAY_COOKIE_SECURE") or "off").lower()
        if secure_raw not in ("on", "off", "1", "0", "true", "false"):
            raise ConfigError(f"INTRADAY_COOKIE_SECURE={secure_raw!r} must be on or off")
        users = env.get("INTRADAY_USERS_FILE")
        return cls(
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            database_url=env.get("DATABASE_URL") or None,
            state_dir=state_dir,
            partitions=partitions,
            alert_imbalance_mwh=_num(env, "INTRADAY_ALERT_IMBALANCE_MWH", 1.0),
            alert_cost_eur=_num(env, "INTRADAY_ALERT_COST_EUR", 500.0),
            alert_open_position_min=_num(env, "INTRADAY_ALERT_OPEN_POSITION_MIN", 30.0),
            alert_stale_feed_min=_num(env, "INTRADAY_ALERT_STALE_FEED_MIN", 15.0),
            alert_horizon_h=_num(env, "INTRADAY_ALERT_HORIZON_H", 6.0),
            state_retention_days=_num(env, "INTRADAY_STATE_RETENTION_DAYS", 4.0),
            fetch_wait_ms=int(_num(env, "INTRADAY_FETCH_WAIT_MS", 50, int)),
            sink_max_poll_interval_ms=int(_num(env, "INTRADAY_SINK_MAX_POLL_INTERVAL_MS", 300_000, int)),
            sink_statement_timeout_ms=int(_num(env, "INTRADAY_SINK_STATEMENT_TIMEOUT_MS", 60_000, int)),
            dashboard_port=int(_num(env, "INTRADAY_DASHBOARD_PORT", 8050, int)),
            auth=auth_raw in ("on", "1", "true"),
            cookie_secure=secure_raw in ("on", "1", "true"),
            trusted_proxies=env.get("INTRADAY_TRUSTED_PROXIES") or "127.0.0.1",
            users_file=Path(users) if users else state_dir / "users.json",
            embedded=env.get("INTRADAY_EMBEDDED") == "1",
            worker_loglevel=env.get("INTRADAY_WORKER_LOGLEVEL") or "info",
            worker_datadir=Path(env["INTRADAY_WORKER_DATADIR"]) if env.get("INTRADAY_WORKER_DATADIR") else None,
            worker_web_port=int(_num(env, "INTRADAY_WORKER_WEB_PORT", 6066, int)),
            secret_key=env.get("INTRADAY_SECRET_KEY") or None,
            kafka_security=KafkaSecurity.from_env(env),
            service_db_passwords={k: v for k, v in env.items()
                                  if k.startswith("INTRADAY_") and k.endswith("_DB_PASSWORD") and v},
        )

    def child_env(self, bootstrap: str, database_url: str) -> dict[str, str]:
        """Environment for a child process (worker, sink, dashboard) using resolved services."""
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        env["DATABASE_URL"] = database_url
        env["INTRADAY_STATE_DIR"] = str(self.state_dir)
        env["INTRADAY_PARTITIONS"] = str(self.partitions)
        env["INTRADAY_SINK_MAX_POLL_INTERVAL_MS"] = str(self.sink_max_poll_interval_ms)
        env["INTRADAY_SINK_STATEMENT_TIMEOUT_MS"] = str(self.sink_statement_timeout_ms)
        return env
