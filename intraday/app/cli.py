"""The ``intraday`` command line (contract.md). Bad input gives one line and a non-zero exit."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from intraday.app.admin import add_commands as add_admin_commands
from intraday.app.admin import cmd_permissions, cmd_users  # noqa: F401 - handlers found by name
from intraday.app.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_QUARANTINED,
    EXIT_USAGE,
    STOP_REQUESTED,
    CliError,
    install_stop_signals,
    interrupted,
)
from intraday.core.qh import to_dt
from intraday.platform.alive import MAX_AGE_S, Heartbeat
from intraday.platform.alive import age_s as alive_age_s
from intraday.platform.config import ConfigError, Settings
from intraday.platform.errors import first_line

log = logging.getLogger("intraday")

ENV_HELP = """environment:
  KAFKA_BOOTSTRAP_SERVERS  Kafka to use (unset: start the embedded Tansu broker)
  DATABASE_URL             PostgreSQL/TimescaleDB to use (unset: start the embedded PostgreSQL)
  INTRADAY_STATE_DIR       state directory of the embedded services (default ./.intraday)
  INTRADAY_PARTITIONS      partitions of the keyed topics (default 4)
  INTRADAY_ALERT_IMBALANCE_MWH, INTRADAY_ALERT_COST_EUR  alert thresholds (default 1.0 MWh, 500 EUR)
  INTRADAY_DASHBOARD_PORT  dashboard port (default 8050); INTRADAY_AUTH=off disables the login (loopback only)
"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


def _day_dir(text: str) -> Path:
    p = Path(text)
    if not p.is_dir():
        raise CliError(f"delivery-day directory not found: {text}")
    return p


def _speed(text: str) -> float | None:
    from intraday.ingest.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _instant(text: str | None) -> float | None:
    if text is None:
        return None
    from intraday.core.qh import parse_iso

    try:
        return parse_iso(text if ("+" in text[10:] or text.endswith("Z")) else text + "Z")
    except ValueError:
        raise CliError(f"not an ISO 8601 instant: {text!r}", EXIT_USAGE) from None


def _jump_point(text: str | None, day: dt.date | None) -> float | None:
    """Where a replay stops skipping empty time: ``HH:MM`` (Europe/Berlin, on the delivery day),
    an ISO instant, or ``start`` (skip nothing)."""
    if text is None or text.strip().lower() in ("start", "none", "off"):
        return None
    text = text.strip()
    if len(text) == 5 and text[2] == ":":
        if day is None:
            raise CliError(f"--jump-to {text}: the directory name is no delivery date; give an ISO instant",
                           EXIT_USAGE)
        from intraday.core.qh import BERLIN

        try:
            t = dt.time.fromisoformat(text)
        except ValueError:
            raise CliError(f"not a time of day HH:MM: {text!r}", EXIT_USAGE) from None
        return dt.datetime.combine(day, t, tzinfo=BERLIN).timestamp()
    return _instant(text)


def _day_of(path: Path) -> dt.date | None:
    try:
        return dt.date.fromisoformat(path.name)
    except ValueError:
        return None


JUMP_HELP = ("skip empty event time: publish everything before this point at once, then replay at "
             "--speed; HH:MM (Europe/Berlin, on the delivery day), an ISO instant, or 'start'")


def build_parser() -> Parser:
    p = Parser(prog="intraday", description="Streaming intraday monitoring of a wind and solar portfolio.",
               epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def cmd(name: str, help_: str) -> Parser:
        return sub.add_parser(name, help=help_, description=help_, epilog=ENV_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    s = cmd("demo", "embedded services, processors, sink and dashboard replaying the sample day")
    s.add_argument("--speed", default="60", help="replay speed factor or 'max' (default 60)")
    s.add_argument("--day", type=dt.date.fromisoformat, default=None, help="date of the generated sample day")
    s.add_argument("--from", dest="from_", default="06:00", metavar="WHEN",
                   help=JUMP_HELP + " (default 06:00: open positions, gate closures and alerts at once)")

    s = cmd("replay", "publish a delivery day's events onto the topics in event-time order")
    s.add_argument("day_dir")
    s.add_argument("--speed", required=True, help="N times real time, or 'max'")
    s.add_argument("--from", dest="from_", metavar="INSTANT", help="replay from this event time (ISO)")
    s.add_argument("--to", metavar="INSTANT", help="replay up to this event time (ISO, exclusive)")
    s.add_argument("--jump-to", metavar="WHEN", default=None, help=JUMP_HELP + " (default: skip nothing)")

    s = cmd("run", "one shot: start what is needed, replay, wait until the database reflects every event")
    s.add_argument("day_dir")
    s.add_argument("--speed", default="max", help="N times real time, or 'max' (default)")
    s.add_argument("--until-drained", action="store_true",
                   help="wait until the database holds every result (the replay's end-of-input barrier behind them); "
                        "exit 3 if any record was quarantined or refused, with the counts")
    s.add_argument("--from", dest="from_", metavar="INSTANT")
    s.add_argument("--to", metavar="INSTANT")
    s.add_argument("--workers", type=int, default=1, help="Faust workers to run (default 1)")
    s.add_argument("--timeout", type=float, default=3600, help="seconds to wait for draining (default 3600)")
    s.add_argument("--export", metavar="OUT_DIR", help="export the result files when drained")

    s = cmd("export", "write the result files (contract.md) from the database")
    s.add_argument("out_dir")

    s = cmd("generate-day", "write a synthetic delivery-day directory")
    s.add_argument("out_dir")
    s.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2025, 6, 8))
    s.add_argument("--assets", type=int, default=5)
    s.add_argument("--public-trades", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=1)

    s = cmd("invoices", "monthly invoices per contract (JSON and a document per invoice)")
    s.add_argument("--month", required=True, help="YYYY-MM (Europe/Berlin calendar month)")
    s.add_argument("--out", default="invoices", help="output directory (default ./invoices)")

    s = cmd("alerts", "print the imbalance alerts topic")
    s.add_argument("--follow", action="store_true", help="keep printing new alerts")

    s = cmd("report", "performance report per asset and for the portfolio (JSON, CSV, HTML)")
    s.add_argument("--from", dest="from_", required=True, help="first Berlin day YYYY-MM-DD or ISO instant")
    s.add_argument("--to", required=True, help="last Berlin day (inclusive) or ISO instant (exclusive)")
    s.add_argument("--asset", action="append", dest="assets", metavar="ASSET_ID", help="only this asset (repeatable)")
    s.add_argument("--out", default="report", help="output directory (default ./report)")

    cmd("status", "services, consumer lag, last event time per source, quarantined counts")
    cmd("worker", "run a Faust worker of the stream processors (production entry point)")
    cmd("sink", "run the database sink (production entry point)")
    s = cmd("dashboard", "run the dashboard (production entry point)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--server", choices=("auto", "gunicorn", "dev"), default="auto",
                   help="gunicorn: the production web server (worker timeouts); dev: Flask's own, loopback "
                        "only (the embedded demo); auto (default): dev on a loopback host, else gunicorn")
    s.add_argument("--workers", type=int, default=None, help="gunicorn worker processes (default 2)")
    s = cmd("alive", "exit 0 if a long-running process is alive (container healthchecks)")
    s.add_argument("name", choices=("sink", "worker", "dashboard"))
    s.add_argument("--max-age", type=float, default=MAX_AGE_S,
                   help=f"seconds since the last heartbeat (sink, worker; default {MAX_AGE_S:g})")
    s.add_argument("--port", type=int, default=None, help="the dashboard's port (default INTRADAY_DASHBOARD_PORT)")
    add_admin_commands(cmd)
    cmd("migrate", "apply the database migrations in sql/")
    cmd("topics", "create every topic with its declared partition count; check existing ones")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        if not args.verbose:
            logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        settings = Settings.from_env()
        from intraday.platform.kafka import use_security

        use_security(settings.kafka_security)
        handler = globals()[f"cmd_{args.command.replace('-', '_')}"]
        return handler(args, settings) or EXIT_OK
    except CliError as exc:
        print(f"intraday: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"intraday: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("intraday: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line; -v shows the traceback
        if STOP_REQUESTED.is_set():  # the stop signal surfaced as another exception
            print("intraday: interrupted", file=sys.stderr)
            return 130
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        from intraday.app.services import ServiceError
        from intraday.platform.kafka import BrokerError
        from intraday.sink.db import DatabaseError

        if isinstance(exc, BrokerError | ServiceError | DatabaseError | TimeoutError | FileNotFoundError):
            print(f"intraday: {exc}", file=sys.stderr)
        else:
            print(f"intraday: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return EXIT_ERROR


def _parse_day(day_dir: Path):
    from intraday.ingest.day import parse_day

    parsed = parse_day(day_dir)
    if not parsed.records and not parsed.rejections:
        ignored = f"; {len(parsed.ignored_files)} file(s) outside the layout ignored" if parsed.ignored_files else ""
        raise CliError(f"no input files in {day_dir} (expected the layout of data-formats.md: vpp/, exchange/, "
                       f"crm/, distribution_system_operator/, ...){ignored}")
    for r in parsed.rejections:
        print(f"quarantined: {r.message()}", file=sys.stderr)
    for m in parsed.missing_sources:
        log.info("missing: %s", m)
    log.info("parsed %d files of %s: %d events, %d quarantined", parsed.files_read, day_dir,
             len(parsed.records), len(parsed.rejections))
    return parsed


def _quarantine_exit(parsed) -> int:
    """Exit code 3 and one line when some input was quarantined (each was printed already)."""
    if parsed.rejections:
        print(f"intraday: completed with quarantined input ({len(parsed.rejections)} records)", file=sys.stderr)
        return EXIT_QUARANTINED
    return EXIT_OK


def cmd_run(args, settings: Settings) -> int:
    from intraday.app.stack import Stack, replay_until_drained

    day = _day_dir(args.day_dir)
    speed = _speed(args.speed)
    from_s, to_s = _instant(args.from_), _instant(args.to)
    if args.workers < 1:
        raise CliError("--workers must be at least 1", EXIT_USAGE)
    parsed = _parse_day(day)
    install_stop_signals()
    stack = Stack(settings)
    try:
        stack.start_services(fresh_broker=True)
        t0 = time.monotonic()
        stats = replay_until_drained(stack, parsed, speed, from_s=from_s, to_s=to_s,
                                     until_drained=args.until_drained, timeout=args.timeout,
                                     workers=args.workers)
        log.info("%d events in %.1fs end to end", stats.published, time.monotonic() - t0)
        refused = stack.refused() if args.until_drained else []
        if args.export:
            from intraday.backoffice.export import export

            counts = export(stack.services.database_url, Path(args.export))
            log.info("exported %s", ", ".join(f"{k}: {v} rows" for k, v in counts.items()))
    finally:
        stack.stop()
    code = _quarantine_exit(parsed)
    if refused:
        total = sum(n for *_, n in refused)
        for stage, topic, reason, n in refused:
            print(f"refused by the {stage}: {n} records of {topic}: {reason}", file=sys.stderr)
        print(f"intraday: {total} records were refused after parsing (see the quarantine table)", file=sys.stderr)
        return EXIT_QUARANTINED
    return code


def cmd_replay(args, settings: Settings) -> int:
    from intraday.app.stack import Stack, publish_day

    day = _day_dir(args.day_dir)
    speed = _speed(args.speed)
    from_s, to_s = _instant(args.from_), _instant(args.to)
    parsed = _parse_day(day)
    install_stop_signals()
    stack = Stack(settings)
    try:
        stack.start_services()
        if stack.services.broker is not None:
            log.warning("no running broker found: started one; its topics live only while this command runs")
        publish_day(stack, parsed, speed, from_s, to_s, jump_to_s=_jump_point(args.jump_to, _day_of(day)))
    finally:
        stack.stop()
    return _quarantine_exit(parsed)


def cmd_export(args, settings: Settings) -> int:
    from intraday.app.services import database
    from intraday.backoffice.export import export

    with database(settings) as url:
        counts = export(url, Path(args.out_dir))
    for name, n in counts.items():
        print(f"{args.out_dir}/{name}: {n} rows")
    return EXIT_OK


def cmd_generate_day(args, settings: Settings) -> int:
    from intraday.ingest.generate.day import generate_day

    if args.assets < 2:
        raise CliError("--assets must be at least 2", EXIT_USAGE)
    if args.public_trades < 0:
        raise CliError("--public-trades must not be negative", EXIT_USAGE)
    summary = generate_day(Path(args.out_dir), args.date, assets=args.assets, public_trades=args.public_trades,
                           seed=args.seed, progress=sys.stderr.isatty())
    print(f"generated {args.out_dir} for {args.date}: {summary}")
    return EXIT_OK


def cmd_demo(args, settings: Settings) -> int:
    from intraday.app.stack import Stack, publish_day
    from intraday.ingest.generate.day import generate_day

    speed = _speed(args.speed)
    day = args.day or dt.date(2025, 6, 8)
    jump_to_s = _jump_point(args.from_, day)
    day_dir = settings.state_dir / "sample_day" / day.isoformat()
    if not (day_dir / ".complete").exists():
        log.info("generating the sample day %s in %s", day, day_dir)
        generate_day(day_dir, day, assets=5, public_trades=20_000, seed=1)
        (day_dir / ".complete").write_text("ok\n")
    parsed = _parse_day(day_dir)
    install_stop_signals()
    stack = Stack(settings)
    try:
        stack.start_services()
        stack.start_sink()
        stack.start_worker()
        port = settings.dashboard_port
        from intraday.backoffice.users import ensure_demo_user

        creds = ensure_demo_user(settings)
        stack.spawn("dashboard", ["dashboard", "--port", str(port)])
        print(f"dashboard: http://127.0.0.1:{port}  (Ctrl-C stops everything)", flush=True)
        if creds:
            print(f"login: user {creds[0]!r}, password {creds[1]!r} (stored hashed in {settings.users_file})",
                  flush=True)
        elif settings.auth:
            print(f"login: users from {settings.users_file} (an earlier run printed the 'desk' password; to set a "
                  f"new one: intraday users add desk desk, or delete the file and "
                  "the next demo prints a new one)", flush=True)
        if jump_to_s is not None and speed is not None:
            print(f"replay: everything before {to_dt(jump_to_s):%Y-%m-%d %H:%M} UTC"
                  f" at once, then {speed:g}x real time (--from start: from the first event)", flush=True)
        publish_day(stack, parsed, speed, jump_to_s=jump_to_s)
        print("replay finished; the dashboard keeps running until Ctrl-C", flush=True)
        while True:
            stack.check_children()
            time.sleep(1)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        print("stopping ...", file=sys.stderr)
    finally:
        stack.stop()
    return EXIT_OK


def cmd_worker(args, settings: Settings) -> int:
    from intraday.app.stack import worker_main

    worker_main()
    return EXIT_OK


def cmd_sink(args, settings: Settings) -> int:
    from intraday.sink.db import migrate
    from intraday.sink.writer import run_sink

    if not settings.kafka_bootstrap or not settings.database_url:
        raise CliError("the sink needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (intraday run/demo set them)")
    from intraday.platform.kafka import ensure_topics

    ensure_topics(settings.kafka_bootstrap, settings.partitions)
    migrate(settings.database_url)

    run_sink(settings.kafka_bootstrap, settings.database_url, embedded=settings.embedded,
             fetch_wait_ms=settings.fetch_wait_ms, max_poll_interval_ms=settings.sink_max_poll_interval_ms,
             statement_timeout_ms=settings.sink_statement_timeout_ms,
             heartbeat=Heartbeat(settings.state_dir, "sink").beat)
    return EXIT_OK


def cmd_alive(args, settings: Settings) -> int:
    """Exit 0 if the process is alive: the sink or a worker beat within --max-age seconds; the
    dashboard answers /_alive. For container healthchecks; one line either way."""
    if args.name == "dashboard":
        import urllib.request

        url = f"http://127.0.0.1:{args.port or settings.dashboard_port}/_alive"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
                ok = resp.status == 200
        except OSError as exc:
            raise CliError(f"dashboard not answering at {url}: {exc}") from None
        if not ok:
            raise CliError(f"dashboard at {url} answered {resp.status}")
        print(f"dashboard alive at {url}")
        return EXIT_OK
    age = alive_age_s(settings.state_dir, args.name)
    if age is None:
        raise CliError(f"{args.name}: no heartbeat yet in {settings.state_dir / 'alive'}")
    if age > args.max_age:
        raise CliError(f"{args.name}: last heartbeat {age:.0f} s ago (more than {args.max_age:g} s)")
    print(f"{args.name} alive (heartbeat {age:.0f} s ago)")
    return EXIT_OK


def cmd_dashboard(args, settings: Settings) -> int:
    if not settings.database_url:
        raise CliError("the dashboard needs DATABASE_URL (intraday demo sets it)")
    from intraday.dashboard.serve import serve

    serve(settings, host=args.host, port=args.port or settings.dashboard_port, server=args.server,
          workers=args.workers)
    return EXIT_OK


def cmd_migrate(args, settings: Settings) -> int:
    from intraday.app.services import database
    from intraday.sink.db import migrate

    with database(settings, migrate=False) as url:
        applied = migrate(url)
        logins = []
        owners: dict[str, list[str]] = {}
        if settings.service_db_passwords:
            import psycopg

            from intraday.backoffice.permissions import PermissionSetupError, ensure_service_logins
            from intraday.sink.db import connect

            try:
                with connect(url, autocommit=True) as conn:
                    logins = ensure_service_logins(conn, settings.service_db_passwords)
            except (PermissionSetupError, psycopg.Error) as exc:
                raise CliError(f"service logins not made: {first_line(exc)}") from None
        users_path = Path(settings.users_file) if settings.users_file else None
        if users_path is not None and users_path.exists():  # the dashboard's asset owners get their roles
            owners = _sync_dashboard_owners(url, users_path)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    if logins:
        print("service logins: " + ", ".join(logins))
    if users_path is not None and users_path.exists():
        print("dashboard asset owners: " + (", ".join(f"{r} ({len(a)} assets)" for r, a in owners.items())
                                            or f"none in {users_path}"))
    return EXIT_OK


def _sync_dashboard_owners(url: str, path: Path) -> dict[str, list[str]]:
    """One database role per asset owner of the dashboard's users file, which the dashboard's
    login (``intraday_dashboard`` where it exists, else this one) may use (docs/permissions.md)."""
    import psycopg

    from intraday.backoffice.permissions import PermissionSetupError, sync_dashboard_users
    from intraday.backoffice.users import AuthConfigError, load_users
    from intraday.sink.db import connect

    try:
        users = load_users(path)
        with connect(url, autocommit=True) as conn:
            login = "intraday_dashboard" if conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = 'intraday_dashboard'").fetchone() else None
            return sync_dashboard_users(conn, users.values(), dashboard_login=login)
    except (AuthConfigError, PermissionSetupError, psycopg.Error) as exc:
        raise CliError(f"dashboard asset owners not set up: {first_line(exc)}") from None


def cmd_topics(args, settings: Settings) -> int:
    from intraday.platform.kafka import ensure_topics

    if not settings.kafka_bootstrap:
        raise CliError("set KAFKA_BOOTSTRAP_SERVERS: the embedded broker is created per command")
    counts = ensure_topics(settings.kafka_bootstrap, settings.partitions)
    print(f"{len(counts)} topics ready")
    return EXIT_OK


def cmd_invoices(args, settings: Settings) -> int:
    try:
        year, month = (int(x) for x in args.month.split("-"))
        dt.date(year, month, 1)
    except ValueError:
        raise CliError(f"--month must be YYYY-MM, not {args.month!r}", EXIT_USAGE) from None
    try:
        from intraday.backoffice.invoices import run_invoices
    except ImportError:
        raise CliError("invoices are not available in this build") from None
    from intraday.app.services import database

    with database(settings) as url:
        return run_invoices(url, year, month, Path(args.out))


def cmd_alerts(args, settings: Settings) -> int:
    import orjson
    from confluent_kafka import Consumer

    from intraday.contract import topics

    if not settings.kafka_bootstrap:
        import json

        info = settings.state_dir / "services.json"
        if not info.exists():
            raise CliError("no broker: set KAFKA_BOOTSTRAP_SERVERS or start `intraday demo` first")
        bootstrap = json.loads(info.read_text())["bootstrap"]
    else:
        bootstrap = settings.kafka_bootstrap
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    from intraday.platform.kafka import client_conf

    c = Consumer(client_conf(bootstrap, **{"group.id": f"intraday-alerts-cli-{time.time_ns()}",
                                           "enable.auto.commit": False, "enable.partition.eof": True,
                                           "fetch.wait.max.ms": 50}))
    seen: set[tuple[str, str]] = set()
    try:
        md = c.list_topics(topics.ALERTS, timeout=10).topics.get(topics.ALERTS)
        if md is None or md.error:
            raise CliError(f"topic {topics.ALERTS} does not exist on {bootstrap}")
        parts = list(md.partitions)
        c.assign([TopicPartition(topics.ALERTS, p, OFFSET_BEGINNING) for p in parts])
        at_end: set[int] = set()
        while args.follow or len(at_end) < len(parts):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                continue
            a = orjson.loads(m.value())
            if a.get("type") != "alert":
                continue  # a replay's end-of-input barrier
            ident = (a.get("alert_id"), a.get("status"))
            if ident in seen:
                continue  # at-least-once delivery: show each alert state once
            seen.add(ident)
            value = a.get("value")
            print(f"{a.get('detected_at')} {a.get('status'):8} {a.get('severity'):8} {a.get('subject')} "
                  f"QH {a.get('delivery_start')} {a.get('kind')} "
                  f"{value if value is None else round(value, 3)} {a.get('unit')} (threshold {a.get('threshold')}) "
                  f"{a.get('suggested_action')} [{a.get('alert_id')}]", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return EXIT_OK


def cmd_report(args, settings: Settings) -> int:
    from intraday.backoffice.report.compute import parse_period
    from intraday.backoffice.report.files import run_report

    try:
        start, end = parse_period(args.from_, args.to)
    except ValueError as exc:
        raise CliError(f"--from/--to: {exc}", EXIT_USAGE) from None
    from intraday.app.services import database

    with database(settings) as url:
        return run_report(url, start, end, Path(args.out), args.assets)


def cmd_status(args, settings: Settings) -> int:
    from intraday.app.status import status

    return status(settings)


if __name__ == "__main__":
    sys.exit(main())
