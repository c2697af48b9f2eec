"""The processors' real batch functions on an in-memory log: any interleaving across partitions,
any batch sizes, crashes between results and state and between state and commit, records
delivered twice, a day published twice -- the results equal the pandas reference every time.
Hypothesis chooses the schedule; no broker, no sleeps (the database only for the export)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import orjson
import psycopg
import pytest
from compare import assert_results_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memlog import MemLog, run_processors
from reference import compute_reference

from intraday.backoffice.export import export
from intraday.contract import topics
from intraday.core.qh import parse_iso
from intraday.ingest.day import parse_day
from intraday.ingest.generate.day import generate_day
from intraday.ingest.replay import Replayer
from intraday.sink.writer import TABLES, events_of, rows_of, write_batch

PARTITIONS = 3


@pytest.fixture(scope="module")
def small_day(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mem") / "2025-06-08"
    generate_day(d, dt.date(2025, 6, 8), assets=3, public_trades=600, seed=5)
    return d


@pytest.fixture(scope="module")
def parsed(small_day):
    return parse_day(small_day)


@pytest.fixture(scope="module")
def reference(small_day):
    return compute_reference(small_day)


def published(parsed, times: int = 1, batch_events: int | None = None) -> MemLog:
    """The day as the replay publishes it at --speed max (batch messages unless ``batch_events=1``)."""
    log = MemLog(PARTITIONS)
    for _ in range(times):  # a second replay of the same day: every record again
        rp = Replayer(log, PARTITIONS, progress=False)
        rp.publish_rejections(parsed.rejections)
        rp.replay(parsed.records, None, batch_events=batch_events)
    return log


def sink_into(log: MemLog, url: str) -> set[tuple[str, int, str]]:
    """What the sink writes: each sink topic partition in order, the last row per key; returns
    the barriers it saw (topic, partition, origin)."""
    rows: dict[str, dict] = {}
    barriers = set()
    for topic in topics.SINK_TOPICS:
        for p, recs in enumerate(log.partition_list(topic)):
            for _key, raw in recs:
                for value in events_of(orjson.loads(raw)):
                    if value.get("type") == "end_of_input":
                        barriers.add((topic, p, value["origin"]))
                        continue
                    for name, row in rows_of(topic, value):
                        spec = TABLES[name]
                        rows.setdefault(name, {})[tuple(row[spec.columns.index(k)] for k in spec.key)] = row
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, rows, {})
    return barriers


def check(log: MemLog, url: str, tmp: Path, reference) -> None:
    barriers = sink_into(log, url)
    expected = topics.expected_barriers(topics.SINK_TOPICS, PARTITIONS)
    assert expected <= barriers, f"barriers missing: {sorted(expected - barriers)[:5]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE quarantine")
    out = tmp / "out"
    export(url, out)
    assert_results_equal(out, reference)


def test_in_order_one_batch_at_a_time_equals_the_reference(parsed, reference, fresh_db, tmp_path):
    log = published(parsed, batch_events=1)
    run_processors(log, random.Random(0), max_batch=5000)
    check(log, fresh_db, tmp_path, reference)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), max_batch=st.sampled_from([5, 60, 800]),
       crash_rate=st.sampled_from([0.0, 0.02, 0.1]), duplicate_rate=st.sampled_from([0.0, 0.05]),
       replays=st.sampled_from([1, 2]), batch_events=st.sampled_from([1, 40, 500]))
def test_any_schedule_with_crashes_redeliveries_and_duplicates_equals_the_reference(
        parsed, reference, pg_base_url, tmp_path_factory, seed, max_batch, crash_rate, duplicate_rate, replays,
        batch_events):
    from conftest import _with_db

    from intraday.sink.db import migrate

    log = published(parsed, replays, batch_events)
    worker = run_processors(log, random.Random(seed), crash_rate=crash_rate, duplicate_rate=duplicate_rate,
                            max_batch=max_batch)
    assert crash_rate == 0 or worker.crashes > 0 or max_batch == 800
    name = f"h_{seed:x}_{max_batch}_{batch_events}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_base_url, name)
    try:
        migrate(url)
        check(log, url, tmp_path_factory.mktemp("h"), reference)
    finally:
        with psycopg.connect(pg_base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_each_agent_forgets_and_refuses_by_its_own_watermark(parsed):
    """Regression: the batch functions shared one closure variable for their watermark, so every
    agent judged lateness by the qh agent's: trades ten days on in every trade partition did not
    move the trading agent's retention, and a late trade for the day was counted."""
    log = published(parsed)
    worker = run_processors(log, random.Random(1), max_batch=5000)

    def trade(trade_id: str, start: str, executed: str) -> bytes:
        return orjson.dumps({"schema_version": 1, "type": "trade", "book": "private", "trade_id": trade_id,
                             "side": "SELL", "delivery_start": start, "delivery_end": start[:14] + "15:00Z",
                             "execution_time": executed, "price_eur_mwh": 99.0, "volume_mw": 50.0,
                             "event_time": executed, "source_file": "late", "source_line": 1})

    for t in (topics.PRIVATE_TRADES, topics.PUBLIC_TRADES):
        for p in range(PARTITIONS):
            value = trade(f"FUTURE-{p}", "2025-06-18T10:00:00Z", "2025-06-18T09:00:00Z")
            if t == topics.PUBLIC_TRADES:
                value = value.replace(b'"book":"private"', b'"book":"public"').replace(b'"SELL"', b"null")
            log.append(t, b"k", value, p)
    spec = topics.AGENT["trading"]
    while worker.step(spec, 5000):
        pass
    log.append(topics.PRIVATE_TRADES, b"k", trade("LATE-1", "2025-06-08T10:00:00Z", "2025-06-08T09:00:00Z"), 0)
    while worker.step(spec, 5000):
        pass
    refused = [orjson.loads(v) for _k, v in log.partition_list(topics.dlq(topics.PRIVATE_TRADES))[0]]
    refused = [r for r in refused if r.get("type") != "end_of_input"]
    assert [r["reason"] for r in refused] == [
        "older than the processors' state retention (INTRADAY_STATE_RETENTION_DAYS)"]
    assert b"LATE-1" in refused[0]["raw"].encode()
    # the day's trades are forgotten (retention), the trades ten days on are kept
    ends = [int(k.rsplit("|", 1)[1]) for k in worker.tables["trade-occurrences"].data]
    assert ends and min(ends) > parse_iso("2025-06-14T00:00:00Z")
    # the other agents' watermarks did not move: nothing of theirs refused
    for t in (topics.FORECASTS, topics.LIVE_INFEED, topics.IMBALANCE_PRICES):
        assert [v for _k, v in log.partition_list(topics.dlq(t))[0] if b'"end_of_input"' not in v] == []
