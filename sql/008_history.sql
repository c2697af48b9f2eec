-- "As known at" for the asset and trading results, beside portfolio_qh_history: every change
-- of a result with the event-time instant it became known. "What did the desk see at 11:40":
--   SELECT DISTINCT ON (asset_id, delivery_start) * FROM asset_qh_history
--   WHERE known_at <= '...11:40Z' ORDER BY asset_id, delivery_start, known_at DESC;
-- Volume: one row per changed (asset, QH) per processor batch (measured in bench/results.md).
CREATE TABLE IF NOT EXISTS asset_qh_history (
    asset_id            text        NOT NULL,
    delivery_start      timestamptz NOT NULL,
    known_at            timestamptz NOT NULL,
    latest_kw           double precision,
    tradeable_kw        double precision,
    best_kw             double precision,
    best_source         text,
    live_kw             double precision,
    final_kw            double precision,
    redispatched        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (asset_id, delivery_start, known_at)
);

CREATE TABLE IF NOT EXISTS trading_qh_history (
    delivery_start      timestamptz NOT NULL,
    book                text        NOT NULL,
    known_at            timestamptz NOT NULL,
    trades              integer     NOT NULL,
    net_mwh             double precision NOT NULL,
    revenue_eur         double precision,
    vwap_eur_mwh        double precision,
    idx_full_eur_mwh    double precision,
    PRIMARY KEY (delivery_start, book, known_at)
);
