"""The sink and the SQL: migrations, the TimescaleDB/plain fallback, idempotent upserts, and
offsets committed only after the database has the rows -- on the real broker and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import psycopg
import pytest
from pipeline import wait_for

from intraday.contract import topics
from intraday.core.qh import iso
from intraday.platform.kafka import committed_offsets, producer
from intraday.sink import db
from intraday.sink.writer import Sink, write_batch

pytestmark = pytest.mark.integration

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "timescale_migrations.sql"
T = 1_749_384_000


def test_migrations_apply_from_empty_once_and_are_safe_to_rerun(pg_base_url):
    import uuid

    from conftest import _with_db

    name = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_base_url, name)
    try:
        first = db.migrate(url)
        with psycopg.connect(url) as conn:
            timescale = _has_timescale(conn)
        assert first == [p.name for p in db.migration_files(timescale=timescale)]
        assert db.migrate(url) == []
        with psycopg.connect(url) as conn:
            applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
            assert applied == first
            assert any(n.endswith(".timescale.sql") for n in applied) == timescale
            assert not any(n.endswith(".plain.sql") for n in applied) == timescale
            kinds = dict(conn.execute("SELECT table_name, table_type FROM information_schema.tables "
                                      "WHERE table_schema = 'public'").fetchall())
        assert kinds["portfolio_qh"] == "BASE TABLE" and kinds["portfolio_hourly"] == "VIEW"
    finally:
        with psycopg.connect(pg_base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _has_timescale(conn) -> bool:
    """Whether this server can run TimescaleDB, asked of the server itself (not of our code)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
                       " current_setting('shared_preload_libraries') LIKE '%timescaledb%'").fetchone()
    return bool(row[0] and row[1])


def test_the_extension_is_detected_and_its_path_taken(fresh_db):
    """On a server with TimescaleDB the hypertables, the compression and retention policies and the
    continuous aggregate exist; without, plain tables and a view with the same names and keys."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        timescale = _has_timescale(conn)
        assert db.detect_timescale(conn) is timescale
        flags = {r[0] for r in conn.execute("SELECT DISTINCT timescale FROM schema_migrations")}
        assert flags == {timescale}
        if not timescale:
            assert conn.execute("SELECT to_regclass('timescaledb_information.hypertables')").fetchone() == (None,)
            return
        hyper = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"asset_qh", "trading_qh", "asset_imbalance_qh", "portfolio_qh", "portfolio_qh_history",
                "asset_qh_history", "trading_qh_history"} <= hyper
        jobs = {(r[0], r[1]) for r in conn.execute("SELECT proc_name, hypertable_name FROM timescaledb_information.jobs")}
        assert ("policy_compression", "portfolio_qh_history") in jobs
        assert any(p == "policy_retention" for p, _ in jobs)
        caggs = {r[0] for r in conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        assert "portfolio_hourly" in caggs


def test_with_timescaledb_present_the_hypertable_ddl_is_chosen_and_matches_the_reviewed_snapshot():
    """Faked at the detection boundary only: which files the migration would run."""
    files = db.migration_files(timescale=True)
    assert any(f.name.endswith(".timescale.sql") for f in files)
    assert not any(f.name.endswith(".plain.sql") for f in files)
    ddl = "".join(f"-- {f.name}\n{f.read_text()}" for f in files if f.name.endswith(".timescale.sql"))
    for table in ("asset_qh", "trading_qh", "asset_imbalance_qh", "portfolio_qh", "portfolio_qh_history",
                  "asset_qh_history", "trading_qh_history"):
        assert f"create_hypertable('{table}', by_range('delivery_start'" in ddl
    assert "materialized_only = false" in ddl and "add_compression_policy" in ddl
    assert "add_retention_policy" in ddl
    assert SNAPSHOT.read_text() == ddl, "TimescaleDB DDL changed: review it and update the snapshot"


def test_every_unique_key_of_a_hypertable_includes_its_time_column(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        for table in ("asset_qh", "trading_qh", "asset_imbalance_qh", "portfolio_qh", "portfolio_qh_history",
                      "asset_qh_history", "trading_qh_history"):
            cols = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisunique",
                (table,)).fetchall()
            assert ("delivery_start",) in cols, table


def _portfolio_row(qh, imbalance):
    import datetime as dt

    t = dt.datetime.fromtimestamp(qh, dt.UTC)
    return (t, 1000.0, 900.0, 800.0, 0.2, imbalance, 50.0, "estimate", -imbalance * 50.0, True, t, 0.0)


def test_upserts_are_idempotent_and_the_newest_value_wins(fresh_db):
    rows = {"portfolio_qh": {(i,): _portfolio_row(T + i * 900, 0.05 * i) for i in range(10)}}
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(ValueError):
            write_batch(conn, rows, {})  # a savepoint inside an open transaction would not commit
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, rows, {("derived.qh-results", 0): 10})
        first = conn.execute("SELECT * FROM portfolio_qh ORDER BY delivery_start").fetchall()
        write_batch(conn, rows, {("derived.qh-results", 0): 10})  # a redelivered batch
        assert conn.execute("SELECT * FROM portfolio_qh ORDER BY delivery_start").fetchall() == first
        write_batch(conn, {"portfolio_qh": {(0,): _portfolio_row(T, 9.0)}}, {("derived.qh-results", 0): 11})
        assert conn.execute("SELECT count(*), max(imbalance_mwh) FROM portfolio_qh").fetchone() == (10, 9.0)
        assert conn.execute("SELECT next_offset FROM sink_progress").fetchone() == (11,)


def _publish_results(bootstrap, n):
    p = producer(bootstrap)
    for i in range(n):
        qh = T + i * 900
        value = {"schema_version": 1, "type": "qh_result", "qh": qh, "known_at": T - 3600 + i,
                 "portfolio": {"best_of_infeed_kw": 100.0 + i, "latest_forecast_kw": 90.0, "tradeable_forecast_kw": 80.0,
                               "net_sold_mwh": 0.0, "imbalance_mwh": 0.025, "imbalance_price_eur_mwh": 40.0,
                               "imbalance_price_source": "estimate", "imbalance_cost_eur": -1.0, "in_scope": True},
                 "assets": []}
        p.produce(topics.QH_RESULTS, key=iso(qh).encode(), value=orjson.dumps(value),
                  partition=topics.partition_for(iso(qh), 4))
    assert p.flush(10) == 0


def _run_sink(sink):
    errors = []

    def target():
        try:
            sink.run()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, errors


def test_offsets_are_not_committed_when_the_database_write_fails(fresh_broker, fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON portfolio_qh FOR EACH ROW EXECUTE FUNCTION refuse()")
    _publish_results(fresh_broker, 20)
    sink = Sink(fresh_broker, fresh_db, group="t-sink-fail", embedded=True)
    th, errors = _run_sink(sink)
    th.join(60)
    assert errors and "disk on fire" in str(errors[0])
    tps = [(topics.QH_RESULTS, p) for p in range(4)]
    assert sum(committed_offsets(fresh_broker, "t-sink-fail", tps).values()) == 0
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sink_progress").fetchone() == (0,)
        conn.execute("DROP TRIGGER refuse ON portfolio_qh")
    # a restarted sink gets every record again and writes them
    sink2 = Sink(fresh_broker, fresh_db, group="t-sink-fail", embedded=True)
    th2, errors2 = _run_sink(sink2)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM portfolio_qh").fetchone()[0] == 20, 60,
                 "the restarted sink to write all 20 rows")
    wait_for(lambda: sum(committed_offsets(fresh_broker, "t-sink-fail", tps).values()) == 20, 30,
             "the offsets to be committed after the write")
    sink2.stop()
    th2.join(30)
    assert not errors2


def test_a_terminated_database_connection_is_retried_without_losing_the_batch(fresh_broker, fresh_db):
    _publish_results(fresh_broker, 10)
    sink = Sink(fresh_broker, fresh_db, group="t-sink-retry", embedded=True)
    th, errors = _run_sink(sink)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM portfolio_qh").fetchone()[0] == 10, 60, "10 rows")
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert killed >= 1
    import time

    start = time.monotonic()
    _publish_results_from(fresh_broker, 10, 30)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM portfolio_qh").fetchone()[0] == 30, 60,
                 "the sink to reconnect and write the next 20 rows")
    recovery_s = time.monotonic() - start
    sink.stop()
    th.join(30)
    assert not errors, errors
    assert recovery_s < 60


def _publish_results_from(bootstrap, first, last):
    p = producer(bootstrap)
    for i in range(first, last):
        qh = T + i * 900
        value = {"schema_version": 1, "type": "qh_result", "qh": qh, "known_at": T, "assets": [],
                 "portfolio": {"best_of_infeed_kw": 1.0, "latest_forecast_kw": 1.0, "tradeable_forecast_kw": 1.0,
                               "net_sold_mwh": 0.0, "imbalance_mwh": 0.0, "imbalance_price_eur_mwh": None,
                               "imbalance_price_source": "missing", "imbalance_cost_eur": None, "in_scope": True}}
        p.produce(topics.QH_RESULTS, key=iso(qh).encode(), value=orjson.dumps(value),
                  partition=topics.partition_for(iso(qh), 4))
    assert p.flush(10) == 0


def test_bad_rows_are_quarantined_and_the_rest_of_the_batch_is_written(fresh_broker, fresh_db):
    """One batch: a quarantined input line with NUL bytes in its text and its file name (a UTF-16
    file dropped into a source folder), a technical-data record with ``\\u0000`` in its name
    (PostgreSQL text and jsonb refuse it), a trading row out of range and one that breaks a CHECK,
    and normal result rows. The sink stays up, the normal rows land, every bad record is in
    ``quarantine`` with its bytes escaped and where it came from, and the offsets are committed."""
    p = producer(fresh_broker)
    utf16 = "Zeit;Wert\n".encode("utf-16").decode("latin-1")  # NUL bytes between the characters
    p.produce(topics.dlq(topics.LIVE_INFEED), key=b"f", value=orjson.dumps(
        {"schema_version": 1, "source_file": "dso/live\x00.csv", "line": 1, "reason": "not UTF-8",
         "raw": utf16, "topic": topics.LIVE_INFEED}), partition=0)
    p.produce(topics.TECHNICAL_DATA, key=b"WND-X", value=orjson.dumps(
        {"schema_version": 1, "asset_id": "WND-X", "event_time": "2025-06-08T00:00:00Z", "name": "Park\u0000 Nord",
         "asset_type": "wind", "capacity_kw": 2000.0, "status": "active", "owner": "o"}), partition=0)
    for book, trades in (("private", 10**12), ("nobody", 1)):  # integer overflow; CHECK (book IN ...)
        p.produce(topics.TRADING_QH, key=iso(T).encode(), value=orjson.dumps(
            {"schema_version": 1, "type": "trading_qh", "qh": T, "book": book, "trades": trades, "sold_mwh": 1.0,
             "bought_mwh": 0.0, "net_mwh": 1.0, "revenue_eur": 50.0, "vwap_eur_mwh": 50.0, "idx_full_eur_mwh": None,
             "idx_3h_eur_mwh": None, "idx_1h_eur_mwh": None, "known_at": T}),
            partition=topics.partition_for(iso(T), 4))
    assert p.flush(10) == 0
    _publish_results(fresh_broker, 5)
    sink = Sink(fresh_broker, fresh_db, group="t-sink-poison", embedded=True)
    th, errors = _run_sink(sink)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM portfolio_qh").fetchone()[0] == 5
                 and conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 4, 60,
                 "the normal rows and the four bad records")
        rows = conn.execute("SELECT topic, source_file, stage, reason, raw FROM quarantine ORDER BY topic, reason"
                            ).fetchall()
        assert conn.execute("SELECT count(*) FROM technical_data").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM trading_qh").fetchone() == (0,)
        # a record is stored whole or not at all: the overflow's history row went with it
        assert conn.execute("SELECT count(*) FROM trading_qh_history").fetchone() == (0,)
    assert th.is_alive() and not errors, errors
    by_topic = {}
    for topic, source_file, stage, reason, raw in rows:
        by_topic.setdefault(topic, []).append((source_file, stage, reason, raw))
        assert "\x00" not in (source_file + reason + (raw or ""))
    # the input line: its file name and text kept, the NUL bytes escaped
    [(source_file, stage, _, raw)] = by_topic[topics.LIVE_INFEED]
    assert "live" in source_file and "\\u0000" in (source_file + raw)
    # the records the database refused: each with where it was, why, and the row escaped
    [(source_file, stage, reason, raw)] = by_topic[topics.TECHNICAL_DATA]
    assert stage == "sink" and source_file.startswith(f"{topics.TECHNICAL_DATA}[0]@")
    assert "technical_data row" in reason and "Park\\u0000 Nord" in raw
    trading = by_topic[topics.TRADING_QH]
    assert len(trading) == 2 and {s for _, s, _, _ in trading} == {"sink"}
    assert any("out of range" in r for _, _, r, _ in trading) and any("check" in r.lower() for _, _, r, _ in trading)
    # every record consumed and committed: none comes again
    wait_for(lambda: sum(committed_offsets(fresh_broker, "t-sink-poison",
                                           [(topics.TRADING_QH, i) for i in range(4)]).values()) > 0, 30,
             "the offsets of the batch to be committed")
    sink.stop()
    th.join(30)
    assert not errors, errors
