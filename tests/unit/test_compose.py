"""The container deployment (docker-compose.yml, Dockerfile, .dockerignore), checked as files.

No Docker engine is needed: the YAML is parsed, Compose's ``${VAR}`` interpolation is applied the
way Compose does it, and every command an ``intraday`` container runs is parsed by the real CLI
parser (``intraday.app.cli.build_parser``), so a renamed subcommand or option breaks this test rather
than a deployment.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import intraday.app.cli
from intraday.app.cli import build_parser
from intraday.app.errors import CliError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

APP_SERVICES = ("topics", "migrate", "processors", "sink", "dashboard", "replay")
INFRA_SERVICES = ("kafka", "kafka-format", "timescaledb")
ONE_SHOTS = ("kafka-format", "topics", "migrate")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY")
TEST_ENV = {"POSTGRES_PASSWORD": "pw-for-the-test", "INTRADAY_OWNER_DB_PASSWORD": "pw-owner",
            "INTRADAY_SINK_DB_PASSWORD": "pw-sink", "INTRADAY_DASHBOARD_DB_PASSWORD": "pw-dashboard",
            "INTRADAY_REPLAY_DB_PASSWORD": "pw-replay", "INTRADAY_KAFKA_PASSWORD": "pwkafka"}
# the database login of each app service that needs the database: one per duty (docs/deploy.md)
DB_LOGINS = {"migrate": ("intraday_owner", "INTRADAY_OWNER_DB_PASSWORD"),
             "sink": ("intraday_sink", "INTRADAY_SINK_DB_PASSWORD"),
             "dashboard": ("intraday_dashboard", "INTRADAY_DASHBOARD_DB_PASSWORD"),
             "replay": ("intraday_replay", "INTRADAY_REPLAY_DB_PASSWORD")}

# ---------------------------------------------------------------------------- helpers

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` whose variable is unset: Compose refuses to start."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
    ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}``."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        if op in (":-", "-"):
            return arg if (unset_or_empty if op == ":-" else value is None) else value
        if op in (":?", "?"):
            if unset_or_empty if op == ":?" else value is None:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in (":+", "+"):
            return arg if (not unset_or_empty if op == ":+" else value is not None) else ""
        return value or ""

    return _VAR.sub(sub, text)


def interpolate_all(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_all(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate_all(v, env) for k, v in node.items()}
    return node


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def as_argv(command) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_entrypoint() -> list[str]:
    entrypoints = [args for word, args in dockerfile_instructions() if word == "ENTRYPOINT"]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    return json.loads(entrypoints[-1])  # exec form; the last one wins, as in Docker


def dockerignore_patterns() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    return [ln.strip().lstrip("/") for ln in DOCKERIGNORE.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#") and not ln.strip().startswith("!")]


def ignored_by_dockerignore(rel_path: str) -> bool:
    """Whether .dockerignore drops the path (a pattern matching the path or one of its parents)."""
    parts = rel_path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.removeprefix("**/"))
               for pat in dockerignore_patterns() for p in prefixes)


def parse_intraday_command(argv: list[str]) -> argparse.Namespace:
    """Parse what a container runs after ENTRYPOINT ["intraday"]; raise CliError if the CLI
    would refuse it, fail if the subcommand has no handler in intraday.app.cli."""
    args = build_parser().parse_args(argv)
    assert args.command, f"{argv}: no subcommand"
    handler = f"cmd_{args.command.replace('-', '_')}"
    assert callable(getattr(intraday.app.cli, handler, None)), f"{argv}: no {handler} in intraday.app.cli"
    return args


def check_python_snippet(code: str) -> None:
    """A ``python -c`` program: it compiles and every name it imports exists."""
    tree = ast.parse(code)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom | ast.Import)]
    assert imports, "the snippet imports nothing from the project"
    for node in imports:
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
            continue
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The file as Compose sees it with only POSTGRES_PASSWORD set."""
    return interpolate_all(raw_compose, TEST_ENV)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def app_services(services) -> dict[str, dict]:
    return {name: s for name, s in services.items() if "build" in s}


def effective_command(service: dict) -> list[str]:
    entrypoint = as_argv(service["entrypoint"]) if "entrypoint" in service else dockerfile_entrypoint()
    return entrypoint + as_argv(service.get("command"))


# ---------------------------------------------------------------------------- the stack


def test_compose_defines_the_broker_the_database_and_every_entry_point(services):
    missing = set(INFRA_SERVICES + APP_SERVICES) - set(services)
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_compose_starts_with_nothing_but_the_passwords_set(raw_compose):
    interpolate_all(raw_compose, TEST_ENV)  # raises MissingVariable for any other required one


@pytest.mark.parametrize("variable", sorted(TEST_ENV))
def test_compose_refuses_to_start_without_each_password(raw_compose, variable):
    with pytest.raises(MissingVariable, match=variable):
        interpolate_all(raw_compose, {k: v for k, v in TEST_ENV.items() if k != variable})


def test_kafka_is_apache_kafka_in_kraft_mode_without_zookeeper(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:"), kafka["image"]
    assert not kafka["image"].endswith(":latest"), "pin the broker version"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    controller_port = re.search(rf"{controller}://[^,]*:(\d+)", env["KAFKA_LISTENERS"]).group(1)
    controller_host = re.search(rf"{controller}://([^,:]*):", env["KAFKA_LISTENERS"]).group(1)
    assert controller_host == "127.0.0.1", "the unauthenticated controller listener must stay in the container"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@{controller_host}:{controller_port}"
    assert controller in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert not any("ZOOKEEPER" in k for k in env), "KRaft mode needs no ZooKeeper settings"
    assert not any("zookeeper" in name or "zookeeper" in str(s.get("image", ""))
                   for name, s in services.items()), "no ZooKeeper service in KRaft mode"
    assert "healthcheck" in kafka


def _listeners(value: str) -> dict[str, tuple[str, str]]:
    """NAME -> (host, port) of a Kafka listener list."""
    out = {}
    for entry in value.split(","):
        name, _, address = entry.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, port)
    return out


def test_kafka_clients_must_log_in_with_scram_and_only_loopback_listeners_are_open(services):
    env = env_of(services["kafka"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(env["KAFKA_LISTENERS"])
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    for name, (host, _port) in listeners.items():
        if protocols[name] in ("PLAINTEXT", "SSL"):  # no login: only reachable inside the container
            assert host == "127.0.0.1", f"listener {name} takes clients without a login on {host or 'every address'}"
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    outside = {n: a for n, a in advertised.items() if a[0] != "127.0.0.1"}
    assert outside and all(protocols[n].startswith("SASL_") for n in outside), advertised
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # the image refuses SASL without KAFKA_OPTS; the JAAS file it names is mounted from deploy/
    jaas = re.search(r"-Djava\.security\.auth\.login\.config=(\S+)", env["KAFKA_OPTS"]).group(1)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["kafka"]["volumes"] if isinstance(v, str)}
    assert jaas in mounts, f"{jaas} is not mounted into the broker"
    text = (ROOT / mounts[jaas]).read_text()
    assert re.search(r"KafkaServer\s*\{\s*org\.apache\.kafka\.common\.security\.scram\.ScramLoginModule required;",
                     text), text
    # the healthcheck uses the loopback listener (it has no login)
    check = " ".join(as_argv(services["kafka"]["healthcheck"]["test"]))
    internal = [f"{h}:{p}" for n, (h, p) in listeners.items() if protocols[n] == "PLAINTEXT" and n in advertised]
    assert any(address in check for address in internal), check


def test_every_app_service_logs_in_to_kafka_as_the_user_the_format_step_creates(services):
    from intraday.platform.config import Settings

    fmt = services["kafka-format"]
    fmt_env = env_of(fmt)
    script = as_argv(fmt["command"])[-1]
    assert "kafka-storage.sh format" in script and "--ignore-formatted" in script
    assert '--cluster-id "$CLUSTER_ID"' in script and fmt_env["CLUSTER_ID"] == env_of(services["kafka"])["CLUSTER_ID"]
    scram = re.search(r'--add-scram "SCRAM-SHA-512=\[name=\$(\w+),password=\$(\w+)\]"', script)
    assert scram, script
    user, password = fmt_env[scram.group(1)], fmt_env[scram.group(2)]
    assert password == TEST_ENV["INTRADAY_KAFKA_PASSWORD"]
    # it formats the directory the broker uses, with the broker's own settings
    assert {v for v in fmt["volumes"] if isinstance(v, str)} & {v for v in services["kafka"]["volumes"]
                                                               if isinstance(v, str) and "kafka-data" in v}
    assert all(fmt_env.get(k) == v for k, v in env_of(services["kafka"]).items()), "format and broker disagree"
    assert (services["kafka"].get("depends_on") or {}).get("kafka-format", {}).get("condition") == \
        "service_completed_successfully"
    for name, service in app_services(services).items():
        sec = Settings.from_env(env_of(service)).kafka_security
        assert sec.sasl and sec.mechanism == "SCRAM-SHA-512", name
        assert (sec.username, sec.password) == (user, password), name


def test_the_format_step_renders_the_brokers_properties_the_way_the_image_does(services, tmp_path):
    """Run the step's script with the broker tool replaced by a recorder: the properties file holds
    each KAFKA_* setting under its Kafka name (KAFKA_OPTS is the JVM's), the arguments are right."""
    import subprocess

    fmt = services["kafka-format"]
    script = as_argv(fmt["command"])[-1]
    fake = tmp_path / "kafka-storage.sh"
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    fake.chmod(0o755)
    props = tmp_path / "format.properties"
    script = script.replace("/opt/kafka/bin/kafka-storage.sh", str(fake)).replace("/tmp/format.properties", str(props))
    env = {**env_of(fmt), "PATH": "/usr/bin:/bin", "ARGS_OUT": str(tmp_path / "args")}
    entry = as_argv(fmt["entrypoint"])
    subprocess.run([*entry, script], env=env, check=True, timeout=30)
    rendered = dict(line.split("=", 1) for line in props.read_text().splitlines())
    kafka_env = env_of(services["kafka"])
    assert rendered["listeners"] == kafka_env["KAFKA_LISTENERS"]
    assert rendered["listener.security.protocol.map"] == kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert rendered["process.roles"] == "broker,controller" and rendered["node.id"] == "1"
    assert rendered["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "opts" not in rendered and not any(k.startswith("intraday") for k in rendered)
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:2] == ["format", "--ignore-formatted"]
    assert args[args.index("--cluster-id") + 1] == kafka_env["CLUSTER_ID"]
    assert args[args.index("--add-scram") + 1] == f"SCRAM-SHA-512=[name=intraday,password={TEST_ENV['INTRADAY_KAFKA_PASSWORD']}]"


def test_kafka_creates_no_topic_on_its_own_and_keeps_internal_topics_on_one_replica(services):
    env = env_of(services["kafka"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_kafka_keeps_its_log_on_a_named_volume(compose):
    kafka = compose["services"]["kafka"]
    log_dir = env_of(kafka)["KAFKA_LOG_DIRS"]
    targets = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"] if isinstance(v, str)}
    assert log_dir in targets, "a recreated broker container would lose every topic and offset"
    assert targets[log_dir] in (compose.get("volumes") or {})


def test_timescaledb_is_timescales_image_with_the_intraday_database_and_a_volume(compose):
    db = compose["services"]["timescaledb"]
    assert db["image"].startswith("timescale/timescaledb:"), db["image"]
    assert env_of(db)["POSTGRES_DB"] == "intraday"
    volumes = [v.split(":") for v in db["volumes"] if isinstance(v, str)]
    assert any(target == "/var/lib/postgresql/data" and source in (compose.get("volumes") or {})
               for source, target, *_ in volumes)
    assert "pg_isready" in " ".join(as_argv(db["healthcheck"]["test"]))


def test_no_secret_is_written_in_the_compose_file(raw_compose):
    db_env = env_of(raw_compose["services"]["timescaledb"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD(:?\?[^}]*)?\}", db_env["POSTGRES_PASSWORD"]), \
        "POSTGRES_PASSWORD must come from the environment, required, without a default"
    for name, service in raw_compose["services"].items():
        for key, value in env_of(service).items():
            if any(word in key.upper() for word in SECRET_WORDS) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}", value), \
                    f"{name}: {key} is written in the file"
            if "://" in value and "@" in value:
                password = value.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2]
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}", password), \
                    f"{name}: {key} has a password written in the file"


# ---------------------------------------------------------------------------- app services


def test_every_app_service_builds_from_the_dockerfile_of_this_repository(services):
    for name in APP_SERVICES:
        build = services[name].get("build")
        assert build, f"{name} is not built from the Dockerfile"
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, f"{name} builds {context}/{dockerfile}"
    assert DOCKERFILE.is_file()


def test_app_services_reach_kafka_and_timescaledb_by_their_compose_names(services):
    kafka_listeners = env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    db_env = env_of(services["timescaledb"])
    for name, service in app_services(services).items():
        env = env_of(service)
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        assert bootstrap, f"{name}: without KAFKA_BOOTSTRAP_SERVERS it would start an embedded broker"
        host, port = bootstrap.rsplit(":", 1)
        assert host in services and services[host]["image"].startswith("apache/kafka:"), f"{name}: {bootstrap}"
        assert f"//{host}:{port}" in kafka_listeners, f"{name}: {bootstrap} is not an advertised listener"

        url = env.get("DATABASE_URL")
        if name not in DB_LOGINS:  # the workers and the topic creator never touch the database
            assert not url, f"{name} needs no database login"
            continue
        assert url, f"{name}: without DATABASE_URL it would start an embedded PostgreSQL"
        parts = urlsplit(url)
        assert parts.scheme in ("postgresql", "postgres")
        assert parts.hostname in services and services[parts.hostname]["image"].startswith("timescale/")
        assert (parts.port or 5432) == 5432
        assert parts.path == "/" + db_env["POSTGRES_DB"]


def test_no_app_service_logs_in_as_the_database_superuser(services):
    """Each app service has its own login, by duty, with its own password; none is the
    superuser of the image (POSTGRES_USER) nor a role the init script or migrate makes a
    superuser (tests/integration/test_roles.py checks the logins on a real server)."""
    superuser = env_of(services["timescaledb"]).get("POSTGRES_USER", "postgres")
    seen = {}
    for name, (login, variable) in DB_LOGINS.items():
        parts = urlsplit(env_of(services[name])["DATABASE_URL"])
        assert parts.username == login and parts.username != superuser, (name, parts.username)
        assert parts.password == TEST_ENV[variable], name
        seen[login] = name
    assert len(seen) == len(DB_LOGINS), "every duty its own login"
    from intraday.backoffice.permissions import SERVICE_LOGINS

    assert set(SERVICE_LOGINS) == set(seen) - {"intraday_owner"}
    migrate_env = env_of(services["migrate"])
    assert all(migrate_env.get(var) == TEST_ENV[var] for _, var in SERVICE_LOGINS.values()), \
        "migrate makes the services' logins from their passwords"
    # the owner login is made on the database's first start, not a superuser
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["timescaledb"]["volumes"] if isinstance(v, str)}
    init = [src for dst, src in mounts.items() if dst.startswith("/docker-entrypoint-initdb.d/")]
    assert init and (ROOT / init[0]).is_file()
    sql_path = ROOT / mounts["/etc/intraday/init.sql"]
    text = sql_path.read_text()
    assert "CREATE ROLE intraday_owner LOGIN CREATEROLE NOSUPERUSER" in text and "BYPASSRLS" in text
    assert "/etc/intraday/init.sql" in (ROOT / init[0]).read_text()


def test_app_services_run_with_kafka_default_timeouts_not_the_embedded_ones(services):
    for name, service in app_services(services).items():
        assert env_of(service).get("INTRADAY_EMBEDDED", "0") != "1", name


def test_every_intraday_command_is_accepted_by_the_real_cli_parser(services):
    assert dockerfile_entrypoint() == ["intraday"]
    for name, service in app_services(services).items():
        argv = effective_command(service)
        if argv[0] != "intraday":
            continue  # checked by the python -c test below
        try:
            parse_intraday_command(argv[1:])
        except CliError as exc:
            pytest.fail(f"{name}: `{shlex.join(argv)}` is refused by the CLI: {exc}")


@pytest.mark.parametrize(("service", "subcommand"), [
    ("migrate", "migrate"), ("processors", "worker"), ("sink", "sink"),
    ("dashboard", "dashboard"), ("replay", "replay"),
])
def test_each_service_runs_its_production_entry_point(services, service, subcommand):
    argv = effective_command(services[service])
    assert argv[0] == "intraday"
    assert parse_intraday_command(argv[1:]).command == subcommand


def test_non_intraday_commands_are_python_snippets_over_names_that_exist(services):
    for name, service in app_services(services).items():
        argv = effective_command(service)
        if argv[0] == "intraday":
            continue
        assert argv[:2] == ["python", "-c"] and len(argv) == 3, f"{name}: unknown entry point {argv[:2]}"
        check_python_snippet(argv[2])


def test_the_command_check_refuses_an_unknown_subcommand(services):
    argv = effective_command(services["processors"])[1:]
    misspelt = ["wrker" if a == "worker" else a for a in argv]
    assert misspelt != argv
    with pytest.raises(CliError, match=r"invalid choice.*wrker"):
        parse_intraday_command(misspelt)


def test_the_command_check_refuses_an_unknown_option(services):
    argv = effective_command(services["dashboard"])[1:] + ["--debug"]
    with pytest.raises(CliError, match="unrecognized arguments: --debug"):
        parse_intraday_command(argv)


def test_intraday_is_a_console_script_of_the_package():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("intraday") == "intraday.app.cli:main"
    module, func = scripts["intraday"].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_the_dashboard_listens_on_all_interfaces_at_its_published_port_with_login_on(services):
    dash = services["dashboard"]
    args = parse_intraday_command(effective_command(dash)[1:])
    assert args.host == "0.0.0.0"
    published = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in dash["ports"]}
    assert str(args.port) in published
    assert env_of(dash).get("INTRADAY_AUTH", "on") == "on", "INTRADAY_AUTH=off only on loopback"


def test_the_dashboard_is_served_by_the_production_web_server(services):
    """gunicorn, not Flask's development server (which the CLI refuses off loopback anyway)."""
    args = parse_intraday_command(effective_command(services["dashboard"])[1:])
    assert args.server == "gunicorn" and (args.workers or 2) >= 1
    from intraday.dashboard.serve import gunicorn_options

    opts = gunicorn_options(args.host, args.port, args.workers or 2)
    assert opts["timeout"] > 0 and opts["worker_class"] == "gthread" and opts["bind"] == f"0.0.0.0:{args.port}"


def test_replay_reads_a_mounted_day_directory_and_runs_only_in_its_profile(services):
    replay = services["replay"]
    assert replay.get("profiles") == ["replay"]
    args = parse_intraday_command(effective_command(replay)[1:])
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in replay.get("volumes", [])]
    assert args.day_dir in targets, f"{args.day_dir} is not mounted into the replay container"


def test_one_shot_services_are_not_restarted(services):
    for name in ONE_SHOTS:
        assert str(services[name].get("restart", "no")) == "no", name


def test_processors_can_be_scaled_up_to_the_partition_count(services):
    processors = services["processors"]
    replicas = int(processors.get("deploy", {}).get("replicas", 1))
    partitions = int(env_of(processors).get("INTRADAY_PARTITIONS", "4"))
    assert 1 <= replicas <= partitions
    assert "container_name" not in processors, "a fixed container name prevents --scale"
    published = [p for p in processors.get("ports", []) if ":" in str(p)]
    assert not published, "a fixed host port prevents --scale"


def test_published_ports_are_valid_and_distinct(services):
    seen: set[int] = set()
    for name, service in services.items():
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                host, container = entry.get("published"), entry["target"]
            else:
                fields = str(entry).split("/")[0].split(":")
                host, container = (fields[-2] if len(fields) > 1 else None), fields[-1]
            for port in (host, container):
                if port is not None:
                    assert str(port).isdigit() and 1 <= int(port) <= 65535, f"{name}: port {port}"
            if host is not None:
                assert int(host) not in seen, f"{name}: host port {host} published twice"
                seen.add(int(host))


def test_depends_on_names_existing_services_with_conditions_they_can_meet(services):
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOTS, f"{name} waits for {dep} to exit, but it keeps running"


def test_start_order_follows_what_each_entry_point_needs(services):
    def waits_for(name: str, dep: str, condition: str) -> bool:
        return (services[name].get("depends_on") or {}).get(dep, {}).get("condition") == condition

    for name in ("topics", "processors", "sink", "replay"):
        assert waits_for(name, "kafka", "service_healthy"), name
    for name in ("processors", "sink", "replay"):
        assert waits_for(name, "topics", "service_completed_successfully"), \
            f"{name} would touch topics before they exist with their declared partition counts"
    for name in ("migrate", "sink", "dashboard", "replay"):
        assert waits_for(name, "timescaledb", "service_healthy"), name
    for name in ("sink", "dashboard", "replay"):
        assert waits_for(name, "migrate", "service_completed_successfully"), name


# ---------------------------------------------------------------------------- image


def test_dockerfile_builds_on_python_3_11_slim_and_runs_intraday_as_a_non_root_user():
    instructions = dockerfile_instructions()
    assert [args for word, args in instructions if word == "FROM"][0] == "python:3.11-slim"
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as root"
    assert dockerfile_entrypoint() == ["intraday"]


def test_the_image_keeps_sql_next_to_the_packages_and_installs_them_editable():
    instructions = dockerfile_instructions()
    copies = [args.split() for word, args in instructions if word in ("COPY", "ADD")]
    copies = [[a for a in c if not a.startswith("--")] for c in copies]
    dest = next((c[-1] for c in copies if "." in c[:-1] or "sql" in c[:-1] or "sql/" in c[:-1]), None)
    assert dest, "the Dockerfile copies neither the source tree nor sql/"
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert re.search(rf"pip install\b[^&]*-e {re.escape(dest.rstrip('/'))}/?(\s|$)", runs), \
        "a non-editable install would leave sql/ (read from next to the packages) behind"
    for path in ["sql", *(f"sql/{p.name}" for p in (ROOT / "sql").glob("*.sql")), "pyproject.toml",
                 "intraday/app/cli.py", "intraday/sink/db.py"]:
        assert not ignored_by_dockerignore(path), f".dockerignore drops {path}"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    for path in [".venv", ".git", ".intraday", ".env", "users.json", "intraday/__pycache__"]:
        assert ignored_by_dockerignore(path), f".dockerignore lets {path} into the build context"


LONG_RUNNING = ("kafka", "timescaledb", "processors", "sink", "dashboard")


def test_every_long_running_service_has_a_healthcheck_the_real_cli_accepts(services):
    """The workers and the sink report their heartbeat, the dashboard answers /_alive; one-shot
    services (topics, migrate, replay) end instead."""
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        argv = as_argv(check["test"])
        assert argv[0] in ("CMD", "CMD-SHELL"), (name, argv)
        if name in APP_SERVICES:
            assert argv[:3] == ["CMD", "intraday", "alive"], (name, argv)
            args = parse_intraday_command(argv[2:])
            assert args.command == "alive"
            expected = {"processors": "worker", "sink": "sink", "dashboard": "dashboard"}[name]
            assert args.name == expected, (name, args.name)
            if name == "dashboard":
                assert str(args.port) in {str(p).rsplit(":", 1)[-1] for p in services[name]["ports"]}
        assert services[name].get("restart") == "unless-stopped", name


def test_the_dashboard_sets_secure_cookies_behind_its_tls_terminator(services):
    from intraday.platform.config import Settings

    env = env_of(services["dashboard"])
    assert Settings.from_env(env).cookie_secure, "INTRADAY_COOKIE_SECURE must be on in production"
    assert env.get("INTRADAY_TRUSTED_PROXIES"), "the throttle must see the client's address, not the proxy's"
