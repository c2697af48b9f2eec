-- End-of-input barriers the sink has written, per replay and topic partition (see
-- intraday/topics.py expected_origins): a replay is in the database once every expected
-- origin is here. Written in the same transaction as the rows before them.
CREATE TABLE IF NOT EXISTS drain_markers (
    replay_id   text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    origin      text        NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replay_id, topic, partition, origin)
);

-- Where a quarantined record was refused: 'input' (a file did not parse), 'processors' (a
-- record on a topic the stream processors refused), 'sink' (a record the sink could not store).
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS stage text NOT NULL DEFAULT 'input';
