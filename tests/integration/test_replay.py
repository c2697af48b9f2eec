"""The replay: event-time order, speed factor (with an injected clock), DLQ for bad records."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from intraday.contract import topics
from intraday.ingest.day import parse_day
from intraday.ingest.generate.day import generate_day
from intraday.ingest.replay import Replayer, parse_speed, schedule
from intraday.platform.kafka import client_conf, ensure_topics, high_watermarks, producer


class FakeClock:
    """Advances only when the replay sleeps: nothing waits for real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingProducer:
    """Collects what would be produced (a stand-in for the broker only where timing is tested;
    the real broker is used in the tests below)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, str, bytes]] = []

    def produce(self, topic, key=None, value=None, partition=None, on_delivery=None):
        if b'"end_of_input"' in value:
            return  # the replay's barrier, tested in test_recovery
        self.sent.append((self.clock.monotonic(), topic, value))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        return 0


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay") / "day"
    generate_day(d, dt.date(2025, 6, 8), assets=3, public_trades=2000, seed=2)
    return parse_day(d)


def test_speed_parsing():
    assert parse_speed("max") is None and parse_speed("60") == 60.0
    for bad in ("0", "-1", "x", "nan"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_the_schedule_is_event_time_divided_by_the_speed():
    assert schedule([100.0, 160.0, 400.0], 60) == [0.0, 1.0, 5.0]
    assert schedule([100.0, 160.0], None) == [0.0, 0.0]


def test_parsed_records_are_in_event_time_order(day):
    times = [r.event_time_s for r in day.records]
    assert times == sorted(times) and len(times) > 1000


def test_at_60x_every_event_goes_out_at_its_due_time_on_the_injected_clock(day):
    clock = FakeClock()
    prod = RecordingProducer(clock)
    window = [r for r in day.records if r.event_time_s < day.records[0].event_time_s + 6 * 3600]
    stats = Replayer(prod, 4, clock=clock, progress=False).replay(window, 60)
    data = [(t, v) for t, topic, v in prod.sent if topic != topics.CLOCK]
    t0 = window[0].event_time_s
    assert len(data) == len(window) == stats.published
    for (sent_at, value), r in zip(data, window, strict=True):
        assert sent_at == pytest.approx((r.event_time_s - t0) / 60, abs=1e-9)
        assert orjson.loads(value) == r.event
    assert clock.now == pytest.approx((window[-1].event_time_s - t0) / 60)


def test_a_jump_publishes_everything_before_it_at_once_then_replays_at_the_speed_from_there(day):
    """The demo's "skip empty time": the CRM file of two weeks before and the forecasts of the
    night go out at once; from 06:00 Berlin on, every event is due at (t - 06:00) / speed."""
    clock = FakeClock()
    prod = RecordingProducer(clock)
    jump = dt.datetime(2025, 6, 8, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))).timestamp()
    window = [r for r in day.records if r.event_time_s < jump + 2 * 3600]
    before = [r for r in window if r.event_time_s < jump]
    after = [r for r in window if r.event_time_s >= jump]
    assert before and after and before[0].event_time_s < jump - 7 * 86400  # there is empty time to skip

    stats = Replayer(prod, 4, clock=clock, progress=False).replay(window, 60, jump_to_s=jump)

    events = []
    for sent_at, topic, v in prod.sent:
        if topic == topics.CLOCK:
            continue
        doc = orjson.loads(v)
        events += [(sent_at, e) for e in (doc["events"] if doc.get("type") == "batch" else [doc])]
    assert stats.published == len(window) and len(events) == len(window)
    assert all(sent_at == 0.0 for sent_at, _ in events[:len(before)])  # no waiting before the jump
    # packed as at --speed max (grouped by topic and key): the same events, in another order
    assert sorted(orjson.dumps(e) for _, e in events[:len(before)]) == sorted(orjson.dumps(r.event) for r in before)
    for (sent_at, e), r in zip(events[len(before):], after, strict=True):
        assert e == r.event
        assert sent_at == pytest.approx((r.event_time_s - jump) / 60, abs=1e-9)
    ticks = [orjson.loads(v)["now"] for _, topic, v in prod.sent if topic == topics.CLOCK]
    assert "2025-06-08T04:00:00Z" in ticks  # the page's replay clock stands at 06:00 Berlin at once


def test_the_replay_clock_topic_says_now_in_event_time_every_minute(day):
    clock = FakeClock()
    prod = RecordingProducer(clock)
    window = day.records[:3000]
    Replayer(prod, 4, clock=clock, progress=False).replay(window, None)
    ticks = [orjson.loads(v) for _, topic, v in prod.sent if topic == topics.CLOCK]
    nows = [t["now"] for t in ticks]
    assert nows == sorted(nows) and ticks[-1]["done"] is True
    span_min = (window[-1].event_time_s - window[0].event_time_s) / 60
    assert len(ticks) <= span_min + 2


@pytest.mark.integration
def test_at_3600x_the_wall_time_matches_the_speed_factor_within_the_measured_overhead(day, bootstrap):
    """Real clock, real broker. The tolerance is measured in the same run: the time the same
    records take at max speed (publishing cost) plus the worst oversleep of time.sleep here."""
    ensure_topics(bootstrap, 4)
    mid = day.records[len(day.records) // 2].event_time_s  # the thick of the day: 2 h of events
    window = [r for r in day.records if mid <= r.event_time_s < mid + 2 * 3600]
    span_s = window[-1].event_time_s - window[0].event_time_s
    assert span_s > 3600 and len(window) > 100
    baseline = 0.0  # publishing cost of the same records, worst of two runs at max speed
    for _ in range(2):
        t = time.perf_counter()
        Replayer(producer(bootstrap), 4, progress=False).replay(window, None)
        baseline = max(baseline, time.perf_counter() - t)
    oversleep = 0.0
    for _ in range(20):
        s = time.perf_counter()
        time.sleep(0.001)
        oversleep = max(oversleep, time.perf_counter() - s - 0.001)
    t = time.perf_counter()
    stats = Replayer(producer(bootstrap), 4, progress=False).replay(window, 3600)
    wall = time.perf_counter() - t
    expected = span_s / 3600
    assert stats.published == len(window)
    assert wall >= expected - 0.01, "the replay ran ahead of its clock"
    assert wall <= expected + 2 * baseline + 20 * oversleep, (wall, expected, baseline, oversleep)


@pytest.mark.integration
def test_rejected_records_reach_the_dead_letter_topic_with_file_and_line(tmp_path, bootstrap):
    d = tmp_path / "day"
    generate_day(d, dt.date(2025, 6, 8), assets=3, public_trades=100, seed=2)
    trades = sorted((d / "exchange").glob("Private_Trades-*.csv"))[0]
    lines = trades.read_text().splitlines()
    lines.insert(3, "X1;SELL;2025-06-08 10:00:00+00:00;2025-06-08 10:15:00+00:00;"
                    "2025-06-08 09:00:00+00:00;61,9;EUR;1.0;MWH")
    trades.write_text("\n".join(lines) + "\n")
    parsed = parse_day(d)
    bad = [r for r in parsed.rejections if r.topic == topics.PRIVATE_TRADES]
    assert len(bad) == 1 and bad[0].line == 4 and "61,9" in bad[0].message()
    ensure_topics(bootstrap, 4)
    before = high_watermarks(bootstrap, [topics.dlq(topics.PRIVATE_TRADES)])[(topics.dlq(topics.PRIVATE_TRADES), 0)]
    rp = Replayer(producer(bootstrap), 4, progress=False)
    assert rp.publish_rejections(parsed.rejections) == len(parsed.rejections)
    rp.producer.flush(10)
    c = Consumer(client_conf(bootstrap, **{"group.id": "t-dlq", "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topics.dlq(topics.PRIVATE_TRADES), 0, before)])
        msgs = [m for m in c.consume(10, timeout=5) if not m.error()]
    finally:
        c.close()
    rec = orjson.loads(msgs[0].value())
    assert rec["source_file"].endswith(trades.name) and rec["line"] == 4 and "61,9" in rec["reason"]
