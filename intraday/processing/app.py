"""The Faust application: the agents of :mod:`intraday.processing.agents` on Faust streams and tables.

Flow (topology in ``intraday.contract.topics.AGENTS``)::

    vpp.forecasts, vpp.live-infeed,     --> assets    --> derived.asset-qh ---------+
    dso.final-production, dso.redispatch    (by asset)                               |
    exchange.private/public-trades      --> trading   --> derived.trading-partials --+--> qh --> derived.qh-results
                                            (by trade id)                            |   (by QH)  derived.trading-qh
    crm.contracts                       --> portfolio --> derived.portfolio --------+            imbalance.alerts
    imbalance.prices ---------------------------------------------------------------+
    replay.clock                        --> clock     --> derived.clock (every partition: "now" for alerts)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import faust
import faust.auth

from intraday.contract import topics
from intraday.core.alerts import AlertConfig
from intraday.platform.config import KafkaSecurity
from intraday.processing import faust_fixes
from intraday.processing.agents import RAW_TABLES, TABLES, build_processors
from intraday.processing.shell import Emitter, die

log = logging.getLogger("intraday.processors")

BATCH_MAX = 5000
BATCH_WITHIN_S = 0.1


def _patch_for_tansu(fetch_wait_ms: int) -> None:
    """Embedded-mode fixes of the aiokafka consumer Faust creates (Tansu, embedded-stack.md).

    - Faust's driver hard-codes ``fetch_max_wait_ms=1500`` and Tansu sleeps it out even when
      data is there: lowered to ``fetch_wait_ms``.
    - Tansu's ListOffsets(latest) is too low when the last record batch holds several records;
      Faust ends table recovery at that offset and would drop the rest of the batch. The end
      offsets are corrected by reading the partition's tail (:func:`true_end_offsets`).
    """
    import asyncio

    import aiokafka

    from intraday.platform.kafka import true_end_offsets

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "_intraday_patched", False):
        return

    class Consumer(base):  # type: ignore[misc, valid-type]
        _intraday_patched = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = fetch_wait_ms
            super().__init__(*args, **kwargs)

        async def end_offsets(self, partitions):  # type: ignore[no-untyped-def]
            reported = await super().end_offsets(partitions)
            servers = self._client._bootstrap_servers
            bootstrap = servers if isinstance(servers, str) else ",".join(servers)
            fixed = await asyncio.get_running_loop().run_in_executor(
                None, true_end_offsets, bootstrap, {(tp.topic, tp.partition): off for tp, off in reported.items()})
            return {tp: fixed[(tp.topic, tp.partition)] for tp in reported}

    aiokafka.AIOKafkaConsumer = Consumer


def create_app(bootstrap: str, partitions: int, *, embedded: bool, app_id: str = topics.PROCESSOR_GROUP,
               web_port: int = 6066, alert_config: AlertConfig | None = None,
               retention_days: float = 4.0, fetch_wait_ms: int = 50,
               security: KafkaSecurity | None = None) -> faust.App:
    """Build the Faust app and register its tables and agents. Nothing connects until it runs."""
    faust_fixes.install()
    conf: dict[str, Any] = {}
    if embedded:
        _patch_for_tansu(fetch_wait_ms)
        conf.update(broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=6,
                    broker_request_timeout=30)
    credentials = broker_credentials(security)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", store="memory://", topic_partitions=partitions,
        topic_allow_declare=True, topic_disable_leader=False, value_serializer="raw",
        key_serializer="raw", web_port=web_port, web_bind="127.0.0.1", web_enabled=True,
        broker_commit_interval=0.5, producer_linger_ms=5, table_cleanup_interval=3600,
        producer_compression_type="lz4",  # changelogs and derived topics are repetitive JSON
        broker_max_poll_records=5000, stream_buffer_maxsize=20000, **conf)
    tables = {name: app.Table(name, partitions=partitions, value_type=bytes) if name in RAW_TABLES
              else app.Table(name, partitions=partitions) for name in TABLES}
    topic_objects: dict[str, Any] = {}

    def send_soon(name: str, key: bytes, value: bytes, partition: int) -> Any:
        t = topic_objects.get(name)
        if t is None:
            t = topic_objects[name] = app.topic(name, key_serializer="raw", value_serializer="raw")
        return t.send_soon(key=key, value=value, partition=partition)

    emitter = Emitter(send_soon, partitions)
    processors = build_processors(tables, emitter, partitions, alert_config=alert_config,
                                  retention_days=retention_days)

    @app.on_partitions_revoked.connect
    async def _revoked(app_, revoked, **kwargs):  # type: ignore[no-untyped-def]
        processors.reset()  # another worker may now update those keys

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs):  # type: ignore[no-untyped-def]
        processors.reset()

    def register(spec: topics.AgentSpec) -> None:
        body = processors.bodies[spec.name]

        async def agent(stream):  # type: ignore[no-untyped-def]
            # an exception escaping a batch ends the worker before Faust acks the batch: its
            # take_events acks the whole buffer in a finally and would lose it
            async for evs in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                try:
                    await body([ev.message for ev in evs])
                except asyncio.CancelledError:
                    # a stop (SIGTERM) or Faust cancelling the agent mid-batch: take_events acks
                    # the whole buffer in its finally as the cancellation passes; a half-done batch
                    # must be read again, so its records must never count as acked
                    keep_unacked(evs)
                    log.warning("%s: cancelled in a batch of %d records; they are read again on restart",
                                spec.name, len(evs))
                    raise
                except Exception as exc:  # noqa: BLE001 - never ack a batch half done
                    log.exception("%s: batch failed", spec.name)
                    die(f"{spec.name}: a batch of {len(evs)} records failed ({exc!r})")

        app.agent(app.topic(*spec.inputs, key_serializer="raw", value_serializer="raw"), name=spec.name)(agent)

    for spec in topics.AGENTS:
        register(spec)
    app.intraday_tables = tables  # type: ignore[attr-defined]
    app.intraday_emitter = emitter  # type: ignore[attr-defined]
    return app


def broker_credentials(security: KafkaSecurity | None) -> faust.auth.Credentials | None:
    """The worker's Kafka login, from the same settings as every other client's."""
    if security is None or security.protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=security.ca_location) if security.tls else None
    if security.sasl:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     mechanism=security.mechanism, ssl_context=context)
    return faust.SSLCredentials(context)


def keep_unacked(events: list) -> None:
    """Make Faust's coming acks of ``events`` no-ops: ``Message.ack`` does nothing for a message
    marked acked, so the consumer never marks its offset committable (faust_fixes then keeps
    every later offset of the partition uncommitted too: the records are read again)."""
    for ev in events:
        ev.message.acked = True


def app_from_env() -> faust.App:
    """The worker's app, configured from the environment (``intraday worker`` sets it)."""
    from intraday.platform.config import Settings

    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS must be set for a worker (intraday run/demo set it)")
    return create_app(settings.kafka_bootstrap, settings.partitions,
                      embedded=settings.embedded, web_port=settings.worker_web_port,
                      alert_config=AlertConfig.from_settings(settings),
                      retention_days=settings.state_retention_days, fetch_wait_ms=settings.fetch_wait_ms,
                      security=settings.kafka_security)

