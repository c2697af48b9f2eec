"""The sink: consume derived and master-data topics, upsert into PostgreSQL, then commit offsets.

One loop: take up to ``batch_max`` records, turn them into rows, keep the last row per key
(PostgreSQL refuses to update one row twice in one statement), ``COPY`` each table's rows into a
temporary staging table and ``INSERT ... ON CONFLICT DO UPDATE`` from it, record the consumed
offsets in ``sink_progress`` -- all in one transaction -- and only after its COMMIT commit the
Kafka offsets. A redelivered batch rewrites the same rows with the same values. A lost database
connection is retried with backoff on the same batch, the partitions paused and the consumer
polled meanwhile (so that an outage of any length does not drop the sink from its group);
nothing is committed to Kafka before the database has it. A record the database refuses (a NUL
byte, a number out of range, a CHECK violation) is quarantined and the rest of its batch written.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from psycopg import sql

from intraday.contract import topics
from intraday.core.qh import to_dt
from intraday.platform.errors import first_line
from intraday.platform.kafka import client_conf
from intraday.sink.db import connect

log = logging.getLogger("intraday.sink")

def ts(epoch_s: float | None) -> dt.datetime | None:
    return None if epoch_s is None else to_dt(epoch_s)


def ts_iso(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    append_only: bool = False  # history: ON CONFLICT DO NOTHING


TABLES = {t.name: t for t in (
    TableSpec("asset_qh", ("asset_id", "delivery_start", "latest_version", "latest_kw", "tradeable_version",
                           "tradeable_kw", "best_kw", "best_source", "live_kw", "live_samples", "final_kw",
                           "redispatched", "in_scope", "known_at"), ("asset_id", "delivery_start")),
    TableSpec("trading_qh", ("delivery_start", "book", "trades", "sold_mwh", "bought_mwh", "net_mwh",
                             "revenue_eur", "vwap_eur_mwh", "idx_full_eur_mwh", "idx_3h_eur_mwh",
                             "idx_1h_eur_mwh", "known_at"), ("delivery_start", "book")),
    TableSpec("asset_imbalance_qh", ("asset_id", "delivery_start", "position_mwh", "actual_mwh",
                                     "imbalance_mwh", "price_eur_mwh", "price_source", "cost_eur",
                                     "known_at"), ("asset_id", "delivery_start")),
    TableSpec("portfolio_qh", ("delivery_start", "best_of_infeed_kw", "latest_forecast_kw",
                               "tradeable_forecast_kw", "net_sold_mwh", "imbalance_mwh",
                               "imbalance_price_eur_mwh", "imbalance_price_source", "imbalance_cost_eur",
                               "in_scope", "known_at", "balanced_mwh"), ("delivery_start",)),
    TableSpec("portfolio_qh_history", ("delivery_start", "known_at", "best_of_infeed_kw", "latest_forecast_kw",
                                       "tradeable_forecast_kw", "net_sold_mwh", "imbalance_mwh",
                                       "imbalance_price_eur_mwh", "imbalance_price_source",
                                       "imbalance_cost_eur", "balanced_mwh"), ("delivery_start", "known_at")),
    TableSpec("asset_qh_history", ("asset_id", "delivery_start", "known_at", "latest_kw", "tradeable_kw", "best_kw",
                                   "best_source", "live_kw", "final_kw", "redispatched"),
              ("asset_id", "delivery_start", "known_at")),
    TableSpec("trading_qh_history", ("delivery_start", "book", "known_at", "trades", "net_mwh", "revenue_eur",
                                     "vwap_eur_mwh", "idx_full_eur_mwh"), ("delivery_start", "book", "known_at")),
    TableSpec("alerts", ("alert_id", "delivery_start", "status", "kind", "severity", "subject", "detected_at",
                         "payload"), ("alert_id", "status", "delivery_start"), append_only=True),
    TableSpec("contracts", ("file_time", "contract_id", "asset_id", "metering_point_id", "capacity_mw",
                            "technology", "contract_begin", "contract_end", "price_model", "price_eur_mwh",
                            "fee_model", "fee", "fee_percent", "email", "errors"), ("file_time", "contract_id")),
    TableSpec("technical_data", ("asset_id", "published_at", "name", "asset_type", "capacity_kw", "status",
                                 "owner", "payload"), ("asset_id",)),
    TableSpec("imbalance_prices", ("delivery_start", "kind", "published_at", "price_eur_mwh",
                                   "unterdeckt_eur_mwh", "ueberdeckt_eur_mwh"),
              ("delivery_start", "kind", "published_at")),
    TableSpec("redispatch_compensation", ("delivery_start", "published_at", "price_eur_mwh"), ("delivery_start",)),
    TableSpec("forecast_versions", ("asset_id", "version", "delivery_start", "power_kw"), ("asset_id", "version")),
    TableSpec("replay_clock", ("clock", "now", "replay_id", "speed", "done"), ("clock",)),
    TableSpec("quarantine", ("topic", "source_file", "line", "reason", "raw", "stage"),
              ("topic", "source_file", "line", "reason")),
    TableSpec("drain_markers", ("replay_id", "topic", "partition", "origin"),
              ("replay_id", "topic", "partition", "origin"), append_only=True),
)}


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def rows_of(topic: str, value: dict[str, Any]) -> Iterable[tuple[str, tuple]]:
    """The (table, row) pairs a record becomes; rows are tuples in TableSpec column order."""
    if topic == topics.ASSET_QH:
        known = ts(value.get("known_at"))
        for s in value["assets"]:
            yield "asset_qh", (s["asset_id"], ts(s["qh"]), ts(s["latest_version"]), s["latest_kw"],
                               ts(s["tradeable_version"]), s["tradeable_kw"], s["best_kw"], s["best_source"],
                               s["live_kw"], s["live_samples"], s["final_kw"], s["redispatched"],
                               s["exists"], known)
            if known is not None and s["exists"]:
                yield "asset_qh_history", (s["asset_id"], ts(s["qh"]), known, s["latest_kw"], s["tradeable_kw"],
                                           s["best_kw"], s["best_source"], s["live_kw"], s["final_kw"],
                                           s["redispatched"])
    elif topic == topics.TRADING_QH:
        v = value
        yield "trading_qh", (ts(v["qh"]), v["book"], v["trades"], v["sold_mwh"], v["bought_mwh"], v["net_mwh"],
                             v["revenue_eur"], v["vwap_eur_mwh"], v["idx_full_eur_mwh"], v["idx_3h_eur_mwh"],
                             v["idx_1h_eur_mwh"], ts(v.get("known_at")))
        if v.get("known_at"):
            yield "trading_qh_history", (ts(v["qh"]), v["book"], ts(v["known_at"]), v["trades"], v["net_mwh"],
                                         v["revenue_eur"], v["vwap_eur_mwh"], v["idx_full_eur_mwh"])
    elif topic == topics.QH_RESULTS:
        known = ts(value.get("known_at"))
        p = value["portfolio"]
        qh = ts(value["qh"])
        yield "portfolio_qh", (qh, p["best_of_infeed_kw"], p["latest_forecast_kw"], p["tradeable_forecast_kw"],
                               p["net_sold_mwh"], p["imbalance_mwh"], p["imbalance_price_eur_mwh"],
                               p["imbalance_price_source"], p["imbalance_cost_eur"], p["in_scope"], known,
                               p.get("balanced_mwh"))
        if known is not None and p["in_scope"]:
            yield "portfolio_qh_history", (qh, known, p["best_of_infeed_kw"], p["latest_forecast_kw"],
                                           p["tradeable_forecast_kw"], p["net_sold_mwh"], p["imbalance_mwh"],
                                           p["imbalance_price_eur_mwh"], p["imbalance_price_source"],
                                           p["imbalance_cost_eur"], p.get("balanced_mwh"))
        for a in value["assets"]:
            yield "asset_imbalance_qh", (a["asset_id"], qh, a["position_mwh"], a["actual_mwh"], a["imbalance_mwh"],
                                         a["price_eur_mwh"], a["price_source"], a["cost_eur"], known)
    elif topic == topics.ALERTS:
        yield "alerts", (value["alert_id"], ts_iso(value["delivery_start"]), value["status"], value["kind"],
                         value["severity"], value["subject"], ts_iso(value["detected_at"]), orjson.dumps(value).decode())
    elif topic == topics.CRM_CONTRACTS:
        v = value
        yield "contracts", (ts_iso(v["file_time"]), v["contract_id"], v["asset_id"], v.get("metering_point_id"),
                            v.get("capacity_mw"), v.get("technology"), _date(v.get("contract_begin")),
                            _date(v.get("contract_end")), v.get("price_model"), v.get("price_eur_mwh"),
                            v.get("fee_model"), v.get("fee"), v.get("fee_percent"), v.get("email"),
                            orjson.dumps(v.get("errors") or []).decode())
    elif topic == topics.TECHNICAL_DATA:
        v = value
        yield "technical_data", (v["asset_id"], ts_iso(v["event_time"]), v.get("name"), v.get("asset_type"),
                                 v.get("capacity_kw"), v.get("status"), v.get("owner"), orjson.dumps(v).decode())
    elif topic == topics.IMBALANCE_PRICES:
        v = value
        yield "imbalance_prices", (ts_iso(v["delivery_start"]), v["kind"], ts_iso(v["published_at"]),
                                   v.get("price_eur_mwh"), v.get("unterdeckt_eur_mwh"), v.get("ueberdeckt_eur_mwh"))
    elif topic == topics.DSO_COMPENSATION:
        v = value
        yield "redispatch_compensation", (ts_iso(v["delivery_start"]), ts_iso(v["published_at"]), v["price_eur_mwh"])
    elif topic == topics.FORECASTS:
        v = value
        # array literals built here: psycopg's per-element list dumper cost the sink half its time
        starts = "{" + ",".join(x.replace("T", " ").replace("Z", "+00") for x in v["delivery_start"]) + "}"
        powers = "{" + ",".join(repr(float(x)) for x in v["power_kw"]) + "}"
        yield "forecast_versions", (v["asset_id"], ts_iso(v["version"]), starts, powers)
    elif topic == topics.CLOCK:
        yield "replay_clock", ("clock", ts_iso(value["now"]), value.get("replay_id"), str(value.get("speed")),
                               bool(value.get("done")))
    elif topic.endswith(".dlq"):
        yield "quarantine", (value.get("topic") or topic[:-4], value.get("source_file") or "?",
                             int(value.get("line") or 0), value.get("reason") or "?", printable(value.get("raw")),
                             value.get("stage") or "input")


def printable(text: str | None) -> str | None:
    """Text PostgreSQL can store: a NUL byte (a binary file dropped into a source folder) escaped."""
    return None if text is None else text.replace("\x00", "\\u0000")


def events_of(value: Any) -> list[dict[str, Any]]:
    """The events of a topic value: one (schema_version 1) or a batch (2, contract.md)."""
    if isinstance(value, dict) and value.get("type") == "batch" and value.get("schema_version") == 2:
        return [e for e in value.get("events") or [] if isinstance(e, dict)]
    if not isinstance(value, dict):
        raise ValueError("value is not a JSON object")
    return [value]




# Errors of one row, not of the database: a NUL byte or an untranslatable character in a text or
# JSON value, a number out of its column's range (DataError), a CHECK or NOT NULL violation
# (IntegrityError). Anything else (a trigger's exception, a missing table, a lost connection) is
# about every row and is not isolated.
ROW_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)

Origin = tuple[str, int, int]  # topic, partition, offset of the record a row came from


def _upsert(conn: psycopg.Connection, name: str, by_key: dict[tuple, tuple]) -> None:
    """COPY the rows into the table's temporary staging table, then INSERT ... ON CONFLICT."""
    spec = TABLES[name]
    stage = sql.Identifier(f"stage_{name}")
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                         "ON COMMIT DELETE ROWS").format(stage, sql.Identifier(name)))
    conn.execute(sql.SQL("TRUNCATE {}").format(stage))  # whatever a failed batch left
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as copy:
        for row in by_key.values():
            copy.write_row(row)
    keys = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    if spec.append_only:
        action = sql.SQL("DO NOTHING")
    else:
        updates = [c for c in spec.columns if c not in spec.key]
        action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
    conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
        sql.Identifier(name), cols, cols, stage, keys, action))


def _upsert_isolating(conn: psycopg.Connection, name: str,
                      items: list[tuple[tuple, tuple]]) -> list[tuple[tuple, tuple, BaseException]]:
    """Upsert ``items`` (key, row) inside a savepoint; if the database refuses one of them, halve
    and retry each half, down to the single rows it refuses. Returns those (key, row, error): a few
    bad rows among n cost about 2 log2(n) statements each, and every other row is written."""
    try:
        with conn.transaction():  # a savepoint: a refusal rolls back this part only
            _upsert(conn, name, dict(items))
        return []
    except ROW_ERRORS as exc:
        if len(items) == 1:
            return [(items[0][0], items[0][1], exc)]
    mid = len(items) // 2
    return _upsert_isolating(conn, name, items[:mid]) + _upsert_isolating(conn, name, items[mid:])


def refused_row(name: str, row: tuple, exc: BaseException, origin: Origin | None) -> tuple:
    """The quarantine row of a row the database refused: where its record was, why, and the row
    itself as JSON (NUL and other control characters escaped, so that it can be stored)."""
    topic, partition, offset = origin or ("?", 0, 0)
    raw = orjson.dumps(list(row), default=str).decode()  # JSON escapes U+0000 as the text \u0000
    reason = printable(f"sink could not store a {name} row: {first_line(exc)}")[:300]
    return (topic, f"{topic}[{partition}]@{offset}", 0, reason, printable(raw)[:2000], "sink")


def write_batch(conn: psycopg.Connection, rows: dict[str, dict[tuple, tuple]],
                offsets: dict[tuple[str, int], int],
                origins: dict[str, dict[tuple, Origin]] | None = None) -> int:
    """Upsert the rows (already de-duplicated by key) and record the offsets, in one transaction.

    If the database refuses a row (:data:`ROW_ERRORS`), the batch is written again with each
    table's rows isolated (:func:`_upsert_isolating`): the record of a refused row goes to
    ``quarantine`` whole (stage ``sink``, its topic, partition and offset from ``origins``), every
    other record is written, and the offsets are recorded -- a poison record neither stops the
    sink nor holds back the records after it. Returns the number of rows written.

    ``conn`` must be in autocommit mode, so that the ``transaction()`` block is the transaction
    (not a savepoint inside an open one) and its end is the COMMIT the offsets wait for.
    """
    if not conn.autocommit:
        raise ValueError("write_batch needs an autocommit connection (its block must be the transaction)")
    try:
        with conn.transaction():
            n = 0
            for name, by_key in rows.items():
                if by_key:
                    _upsert(conn, name, by_key)
                    n += len(by_key)
            _record_offsets(conn, offsets)
        return n
    except ROW_ERRORS as exc:
        log.warning("the database refused a row of this batch (%s): isolating it, the rest is written",
                    first_line(exc))
    origins = origins or {}
    refused: dict[Any, tuple] = {}  # record (its origin) -> its quarantine row
    while True:
        try:
            return _write_isolating(conn, rows, offsets, origins, refused)
        except _RecordRefused:
            continue  # a record lost a row: written again without any of that record's rows


class _RecordRefused(Exception):
    """A row of a record that had rows written elsewhere in this transaction was refused."""


def _write_isolating(conn, rows, offsets, origins, refused) -> int:
    """One attempt of :func:`write_batch` with each table's rows isolated. A record is stored
    whole or not at all: when one of its rows is refused, the transaction is rolled back
    (:class:`_RecordRefused`) and written again without all rows of that record."""
    with conn.transaction():
        n = 0
        quarantined = dict(rows.get("quarantine") or {})
        for name, by_key in rows.items():
            if not by_key or name == "quarantine":
                continue
            items = [(k, r) for k, r in by_key.items() if origins.get(name, {}).get(k, (name, k)) not in refused]
            new = False
            for key, row, exc in _upsert_isolating(conn, name, items):
                origin = origins.get(name, {}).get(key)
                log.warning("sink refused a %s row of %s: %s", name,
                            f"{origin[0]}[{origin[1]}]@{origin[2]}" if origin else "?", first_line(exc))
                refused[origin or (name, key)] = refused_row(name, row, exc, origin)
                new = True
            if new:
                raise _RecordRefused
            n += len(items)
        for q in refused.values():
            quarantined[q[:4]] = q
        if quarantined:
            # a quarantine row the database refuses too (say a NUL byte in its file name): its
            # columns escaped, so that it is kept
            for _key, row, exc in _upsert_isolating(conn, "quarantine", list(quarantined.items())):
                safe = refused_row("quarantine", row, exc, (str(printable(str(row[0]))), 0, 0))
                _upsert(conn, "quarantine", {safe[:4]: safe})
            n += len(quarantined)
        _record_offsets(conn, offsets)
    return n


def _record_offsets(conn: psycopg.Connection, offsets: dict[tuple[str, int], int]) -> None:
    # before the COMMIT: a TimescaleDB chunk this transaction created is closed to owners before
    # anyone can see it (sql/015_secure_children.sql)
    conn.execute("SELECT intraday_secure_children()")
    if offsets:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sink_progress (topic, partition, next_offset, updated_at) VALUES (%s, %s, %s, now()) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
                "updated_at = now()", [(t, p, o) for (t, p), o in offsets.items()])


class Sink:
    """The consume-upsert-commit loop. ``stop()`` (or SIGTERM) ends it after the current batch.

    While the database is unreachable the sink pauses its partitions and keeps polling (so that
    it stays in its consumer group however long the outage lasts, ``max.poll.interval.ms`` being
    a limit between polls), retries the same batch with backoff, and resumes by itself.
    """

    def __init__(self, bootstrap: str, database_url: str, *, group: str = topics.SINK_GROUP, batch_max: int = 20000,
                 poll_timeout_s: float = 0.2, embedded: bool = True, fetch_wait_ms: int = 50,
                 max_poll_interval_ms: int | None = None, statement_timeout_ms: int = 60_000,
                 on_batch: Callable[[int, int], None] | None = None,
                 heartbeat: Callable[[], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.group = group
        self.batch_max = batch_max
        self.poll_timeout_s = poll_timeout_s
        self.embedded = embedded
        self.fetch_wait_ms = fetch_wait_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.on_batch = on_batch
        self._beat = heartbeat or (lambda: None)  # liveness for the container's healthcheck
        self._stop = threading.Event()
        self._consumer_obj: Consumer | None = None
        self._paused_since: float | None = None
        self._held: list[Any] = []  # records polled while paused (a partition assigned meanwhile)
        self.rows_written = 0
        self.batches = 0
        self.outages = 0

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def _consumer(self) -> Consumer:
        conf = client_conf(self.bootstrap, **{"group.id": self.group, "enable.auto.commit": False,
                                              "auto.offset.reset": "earliest", "enable.partition.eof": False})
        if self.embedded:
            conf.update({"fetch.wait.max.ms": self.fetch_wait_ms, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
        if self.max_poll_interval_ms:
            conf["max.poll.interval.ms"] = self.max_poll_interval_ms
        c = Consumer(conf)
        c.subscribe(topics.SINK_TOPICS)
        return c

    # -- waiting out an outage, in the group -------------------------------------------------

    def _pause(self) -> None:
        c = self._consumer_obj
        if c is None or self._paused_since is not None:
            return
        self._paused_since = time.monotonic()
        self.outages += 1
        try:
            parts = c.assignment()
            c.pause(parts)
            log.warning("database unavailable: %d partitions paused; polling on to stay in the group", len(parts))
        except Exception as exc:  # noqa: BLE001 - the wait below still polls
            log.warning("could not pause the partitions (%s)", exc)

    def _resume(self) -> None:
        c = self._consumer_obj
        if c is None or self._paused_since is None:
            return
        down = time.monotonic() - self._paused_since
        self._paused_since = None
        try:
            c.resume(c.assignment())
        except Exception as exc:  # noqa: BLE001 - reported; the next poll shows what is assigned
            log.warning("could not resume the partitions (%s)", exc)
        log.info("database back after %.1fs: partitions resumed", down)

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, polling the (paused) consumer meanwhile: a record it still hands out
        (a partition assigned during the outage) is held for the next batch, and its partition
        paused too."""
        c = self._consumer_obj
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            self._beat()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if c is None:
                time.sleep(min(left, 0.5))
                continue
            m = c.poll(min(left, 0.5))
            if m is not None and not m.error():
                self._held.append(m)
                try:
                    c.pause([TopicPartition(m.topic(), m.partition())])
                except Exception:  # noqa: BLE001 - held either way
                    pass

    def _connect(self) -> psycopg.Connection:
        delay = 0.2
        while not self._stop.is_set():
            try:
                conn = connect(self.database_url, autocommit=True, statement_timeout_ms=self.statement_timeout_ms)
                conn.execute("SET synchronous_commit = on")
                return conn
            except Exception as exc:  # noqa: BLE001 - retried with backoff, reported
                log.warning("database not reachable (%s); retrying in %.1fs", exc, delay)
                self._pause()
                self._wait(delay)
                delay = min(delay * 2, 5.0)
        raise SystemExit(0)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        consumer = self._consumer_obj = self._consumer()
        conn = self._connect()
        self._resume()
        log.info("sink consuming %d topics into %s", len(topics.SINK_TOPICS), "the database")
        try:
            while not self._stop.is_set():
                self._beat()
                if self._held:
                    msgs, self._held = self._held, []
                else:
                    msgs = consumer.consume(self.batch_max, timeout=self.poll_timeout_s)
                if not msgs:
                    continue
                rows, origins, offsets, sources_ms = self._rows_of(msgs)
                n = self._write_with_retry(conn_ref := [conn], rows, offsets, origins)
                conn = conn_ref[0]
                if n is None:
                    break
                self._resume()
                # Only now, with the rows committed in the database, commit the offsets.
                self._commit(consumer, offsets)
                self.rows_written += n
                self.batches += 1
                if sources_ms:
                    self._record_latency(conn, sources_ms)
                if self.on_batch:
                    self.on_batch(len(msgs), n)
        finally:
            consumer.close()
            conn.close()

    @staticmethod
    def _rows_of(msgs):
        """The batch's rows (last per key), where each came from, the offsets to commit and the
        source times of its results."""
        rows: dict[str, dict[tuple, tuple]] = {}
        origins: dict[str, dict[tuple, Origin]] = {}
        offsets: dict[tuple[str, int], int] = {}
        sources_ms: list[int] = []
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", m.error())
                continue
            offsets[(m.topic(), m.partition())] = m.offset() + 1
            try:
                found = []
                for value in events_of(orjson.loads(m.value())):
                    if value.get("type") == "end_of_input":
                        found.append(("drain_markers", (str(value["replay_id"]), m.topic(), m.partition(),
                                                        str(value.get("origin") or "source"))))
                        continue
                    if value.get("src_ms"):
                        sources_ms.append(value["src_ms"])
                    found.extend(rows_of(m.topic(), value))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                # refused, not skipped: quarantined with where it was, and counted by the run
                log.warning("sink refused a record %s[%s]@%s: %s", m.topic(), m.partition(), m.offset(), exc)
                raw = printable((m.value() or b"").decode("utf-8", "replace"))
                found = [("quarantine", (m.topic(), f"{m.topic()}[{m.partition()}]@{m.offset()}", 0,
                                         printable(f"sink could not store the record: {exc!r}")[:300], raw[:2000],
                                         "sink"))]
            for name, row in found:
                spec = TABLES[name]
                key = tuple(row[spec.columns.index(k)] for k in spec.key)
                rows.setdefault(name, {})[key] = row
                origins.setdefault(name, {})[key] = (m.topic(), m.partition(), m.offset())
        return rows, origins, offsets, sources_ms

    def _commit(self, consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the offsets the database has recorded. A commit the group refuses (a rebalance
        meanwhile) is not a loss: the records come again and rewrite the same rows."""
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                            asynchronous=False)
        except KafkaException as exc:
            log.warning("offsets not committed (%s): those records come again and rewrite the same rows", exc)

    def _record_latency(self, conn: psycopg.Connection, sources_ms: list[int]) -> None:
        """Latency of the batch's results: committed now, published at each source's time."""
        now_ms = time.time() * 1000
        lat = sorted(max(0.0, now_ms - s) for s in sources_ms)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))]

        try:
            conn.execute("INSERT INTO sink_latency (records, p50_ms, p95_ms, p99_ms, max_ms) VALUES "
                         "(%s, %s, %s, %s, %s)", (len(lat), q(0.5), q(0.95), q(0.99), lat[-1]))
        except psycopg.Error as exc:  # observability must not stop the sink
            log.warning("latency not recorded: %s", first_line(exc))

    def _write_with_retry(self, conn_ref: list, rows, offsets, origins=None) -> int | None:
        delay = 0.2
        while True:
            try:
                return write_batch(conn_ref[0], rows, offsets, origins)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("database write failed (%s); retrying the same batch in %.1fs", first_line(exc), delay)
                if self._stop.is_set():
                    return None
                self._pause()
                self._wait(delay)
                delay = min(delay * 2, 5.0)
                try:
                    conn_ref[0].close()
                except Exception:  # noqa: BLE001
                    pass
                conn_ref[0] = self._connect()


def run_sink(bootstrap: str, database_url: str, embedded: bool, fetch_wait_ms: int = 50, *,
             max_poll_interval_ms: int | None = None, statement_timeout_ms: int = 60_000,
             heartbeat: Callable[[], None] | None = None) -> None:
    sink = Sink(bootstrap, database_url, embedded=embedded, fetch_wait_ms=fetch_wait_ms,
                max_poll_interval_ms=max_poll_interval_ms, statement_timeout_ms=statement_timeout_ms,
                heartbeat=heartbeat)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    sink.run()
