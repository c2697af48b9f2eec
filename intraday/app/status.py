"""``intraday status``: services, consumer lag, changelog sizes, last event time per source,
quarantine, latency."""

from __future__ import annotations

import json
import sys

from intraday.platform.config import Settings
from intraday.readmodels.health import broker_health, recent_latency_ms


def _bootstrap(settings: Settings) -> str | None:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    info = settings.state_dir / "services.json"
    if info.exists():
        return json.loads(info.read_text()).get("bootstrap")
    return None


def collect(settings: Settings, database_url: str | None) -> dict:
    """The status as a dict (the dashboard's /health shows the database part of it)."""
    from confluent_kafka import KafkaException

    from intraday.platform.kafka import BrokerError, check_reachable

    out: dict = {"broker": None, "database": None, "lag": {}, "changelog_records": {}, "last_event_time": {},
                 "quarantined": {}, "latency_s": None}
    bs = _bootstrap(settings)
    if bs:
        try:
            check_reachable(bs, timeout=3)
            out["broker"] = {"bootstrap": bs, "reachable": True}
            out.update(broker_health(bs))
        except (BrokerError, KafkaException) as exc:
            out["broker"] = {"bootstrap": bs, "reachable": False, "error": str(exc)}
    if database_url:
        from intraday.sink.db import DatabaseError, connect

        try:
            with connect(database_url) as conn:
                out["database"] = {"reachable": True}
                for table in ("asset_qh", "trading_qh", "portfolio_qh", "imbalance_prices", "alerts"):
                    col = "published_at" if table == "imbalance_prices" else (
                        "detected_at" if table == "alerts" else "known_at")
                    v = conn.execute(f"SELECT max({col}) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
                    out["last_event_time"][table] = v.isoformat() if v else None
                out["quarantined"] = dict(conn.execute(
                    "SELECT topic, count(*) FROM quarantine GROUP BY topic ORDER BY topic").fetchall())
                row = conn.execute("SELECT max(updated_at) FROM sink_progress").fetchone()
                out["sink_last_write"] = row[0].isoformat() if row and row[0] else None
                lat = recent_latency_ms(conn)
                if lat:
                    out["latency_s"] = {"batches": lat["batches"], "p50": lat["p50"] / 1000,
                                        "p99": lat["p99"] / 1000, "max": lat["max"] / 1000}
        except DatabaseError as exc:
            out["database"] = {"reachable": False, "error": str(exc)}
    return out


def status(settings: Settings) -> int:
    db = settings.database_url
    server = None
    if not db and (settings.state_dir / "pg" / "PG_VERSION").exists():
        from intraday.app.services import start_embedded_postgres

        server, db = start_embedded_postgres(settings.state_dir)
    try:
        s = collect(settings, db)
    finally:
        if server is not None:
            server.cleanup()
    b = s["broker"]
    print(f"broker:    {'not running' if not b else (b['bootstrap'] + (' ok' if b['reachable'] else ' UNREACHABLE'))}")
    d = s["database"]
    print(f"database:  {'not started' if not d else ('ok' if d['reachable'] else 'UNREACHABLE: ' + d['error'])}")
    for group, n in s["lag"].items():
        print(f"lag:       {group}: {n} records")
    if s["changelog_records"]:
        print("changelog: " + ", ".join(f"{t} {n}" for t, n in s["changelog_records"].items()) + " records")
    for table, t in s["last_event_time"].items():
        print(f"last:      {table}: {t or '-'}")
    if s.get("sink_last_write"):
        print(f"sink:      last write {s['sink_last_write']}")
    if s.get("latency_s"):
        lt = s["latency_s"]
        print(f"latency:   publication -> database, last 5 min of sink batches ({lt['batches']}): "
              f"p50 {lt['p50']:.3f}s, p99 {lt['p99']:.3f}s, max {lt['max']:.3f}s")
    total_q = sum(s["quarantined"].values())
    print(f"quarantine: {total_q} records" + "".join(f"\n  {t}: {n}" for t, n in s["quarantined"].items()))
    return 0 if (not b or b["reachable"]) and (not d or d["reachable"]) else 1


if __name__ == "__main__":
    from intraday.platform.kafka import use_security

    _settings = Settings.from_env()
    use_security(_settings.kafka_security)
    sys.exit(status(_settings))
