-- The replay's "now" in event time (replay.clock), as the sink last saw it: the dashboard's
-- clock. One row per clock key; live operation writes wall time there.
CREATE TABLE IF NOT EXISTS replay_clock (
    clock       text PRIMARY KEY,
    now         timestamptz NOT NULL,
    replay_id   text,
    speed       text,
    done        boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
