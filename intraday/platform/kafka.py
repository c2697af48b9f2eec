"""Kafka plumbing shared by the producers, the sink and the CLI (confluent-kafka)."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from intraday.contract import topics
from intraday.platform.config import KafkaSecurity

log = logging.getLogger("intraday.platform.kafka")
# librdkafka's own connection chatter goes through Python logging (quiet unless -v), so a user
# with an unreachable broker reads one line from us, not a hundred from the client library.
RDKAFKA_LOG = logging.getLogger("librdkafka")


# How the clients of this process authenticate: set once at the process's edge from its
# Settings (use_security), the same for the producers, the sink, the CLI and the worker.
_security = KafkaSecurity()


def use_security(security: KafkaSecurity) -> None:
    global _security
    _security = security
    if security.protocol != "PLAINTEXT":
        log.info("Kafka clients use %s%s", security.protocol,
                 f" ({security.mechanism} as {security.username})" if security.sasl else "")


def security() -> KafkaSecurity:
    return _security


def client_conf(bootstrap: str, **extra) -> dict:
    conf = {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOG, **_security.client_conf()}
    conf.update(extra)
    return conf


class BrokerError(RuntimeError):
    """The broker cannot be reached or its topics do not match the declaration."""


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(client_conf(bootstrap, **{"socket.timeout.ms": 5000}))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _refused_login(messages: list[str]) -> str | None:
    """librdkafka's reason for a refused login, from its log ("... SASL authentication error: R (after ...")."""
    for m in messages:
        if "authentication" in m.lower():
            reason = m.split("authentication error: ", 1)[-1]
            return reason.split(" (after ", 1)[0]
    return None


def check_reachable(bootstrap: str, timeout: float = 8.0) -> None:
    """Raise :class:`BrokerError` naming the cause (unreachable, or the login refused)."""
    probe_log = logging.getLogger("librdkafka.check")
    probe_log.propagate = False
    probe_log.setLevel(logging.DEBUG)
    collect = _Collect()
    probe_log.addHandler(collect)
    client = AdminClient(client_conf(bootstrap, **{"socket.timeout.ms": 5000, "logger": probe_log}))
    try:
        client.list_topics(timeout=timeout)
    except KafkaException as exc:
        client.poll(0)  # serves the client's log: the reason a login was refused is only there
        refused = _refused_login(collect.messages)
        if refused:
            sec = _security
            raise BrokerError(f"Kafka broker {bootstrap} refused the login {sec.username!r} "
                              f"({sec.protocol}, {sec.mechanism}): {refused}") from None
        raise BrokerError(f"Kafka broker {bootstrap} is not reachable: {exc.args[0].str()}") from None
    finally:
        probe_log.removeHandler(collect)


def partition_counts(bootstrap: str) -> dict[str, int]:
    md = admin(bootstrap).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items() if not t.error}


def ensure_topics(bootstrap: str, partitions: int) -> dict[str, int]:
    """Create every declared topic with its partition count; check the counts of existing ones.

    Must run before any producer or agent touches a topic (a broker auto-creates an unknown
    topic with its own default count). Raises :class:`BrokerError` on a mismatch.
    """
    check_reachable(bootstrap)
    specs = topics.all_topics(partitions)
    existing = partition_counts(bootstrap)
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1,
                    config={"retention.ms": str(s.retention_ms), "cleanup.policy": s.cleanup_policy})
           for s in specs if s.name not in existing]
    if new:
        client = admin(bootstrap)  # keep a reference: the futures die with the client
        for name, fut in client.create_topics(new, operation_timeout=10).items():
            try:
                fut.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerError(f"cannot create topic {name}: {exc}") from None
        log.info("created %d topics", len(new))
    deadline = time.monotonic() + 15
    while True:
        counts = partition_counts(bootstrap)
        wrong = {s.name: (counts.get(s.name), s.partitions) for s in specs
                 if counts.get(s.name) != s.partitions}
        if not wrong:
            return counts
        if time.monotonic() > deadline:
            detail = ", ".join(f"{n} has {a} partitions, declared {b}" for n, (a, b) in wrong.items())
            raise BrokerError(f"topic partition counts do not match: {detail}")
        time.sleep(0.1)


def producer(bootstrap: str, **extra) -> Producer:
    """An idempotent producer (acks=all): a retried send is not written twice."""
    conf = {**client_conf(bootstrap), "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 500000,
            "compression.type": "lz4"}
    conf.update(extra)
    return Producer(conf)


def true_end_offsets(bootstrap: str, reported: dict[tuple[str, int], int],
                     timeout: float = 30.0) -> dict[tuple[str, int], int]:
    """The real end offset (next offset to be written) of each partition.

    Tansu (the embedded broker) answers ListOffsets(latest) with the base offset of the last
    record *batch* plus one, which is too low when that batch holds several records (probed: 3
    records in one batch -> "latest" 1). A fetch response's high watermark is right, so this
    reads from one below the reported end to the end of each partition and takes the larger
    of the two. On Apache Kafka the probe finds nothing beyond the reported end.
    """
    todo = {tp: off for tp, off in reported.items() if off > 0}
    out = dict(reported)
    if not todo:
        return out
    c = Consumer(client_conf(bootstrap, **{"group.id": "intraday-end-probe", "enable.auto.commit": False,
                                           "enable.partition.eof": True, "fetch.wait.max.ms": 10}))
    try:
        c.assign([TopicPartition(t, p, off - 1) for (t, p), off in todo.items()])
        pending = set(todo)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in c.consume(10000, timeout=0.2):
                tp = (m.topic(), m.partition())
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                    continue
                out[tp] = max(out[tp], m.offset() + 1)
        if pending:
            raise BrokerError(f"could not read the end of {len(pending)} partitions within {timeout:.0f}s")
        return out
    finally:
        c.close()


def high_watermarks(bootstrap: str, names: list[str]) -> dict[tuple[str, int], int]:
    """End offset per partition of the named topics (see :func:`true_end_offsets`)."""
    c = Consumer(client_conf(bootstrap, **{"group.id": "intraday-watermarks", "enable.auto.commit": False}))
    try:
        md = c.list_topics(timeout=10)
        out = {}
        for name in names:
            t = md.topics.get(name)
            if t is None or t.error:
                continue
            for p in t.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                out[(name, p)] = hi
    finally:
        c.close()
    return true_end_offsets(bootstrap, out)


def committed_offsets(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    c = Consumer(client_conf(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        res = c.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return {(r.topic, r.partition): (r.offset if r.offset >= 0 else 0) for r in res}
    finally:
        c.close()


def lag(bootstrap: str, group: str, names: list[str]) -> dict[tuple[str, int], int]:
    """Per partition: high watermark minus the group's committed offset."""
    hw = high_watermarks(bootstrap, names)
    committed = committed_offsets(bootstrap, group, list(hw))
    return {tp: hw[tp] - committed.get(tp, 0) for tp in hw}
