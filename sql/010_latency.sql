-- End-to-end latency as the sink sees it, one row per written batch: from the publication of
-- the oldest source record behind a result (its Kafka timestamp, carried as src_ms through the
-- processors) to the COMMIT of the row. intraday status and the dashboard's /health read it.
CREATE TABLE IF NOT EXISTS sink_latency (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    records     integer NOT NULL,
    p50_ms      double precision NOT NULL,
    p95_ms      double precision NOT NULL,
    p99_ms      double precision NOT NULL,
    max_ms      double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS sink_latency_at ON sink_latency (at);
