-- Results of domain.md, one row per natural key; timestamptz in UTC.
-- Applied on every database (plain PostgreSQL and TimescaleDB); 002 adds the TimescaleDB parts.

CREATE TABLE IF NOT EXISTS asset_qh (
    asset_id            text        NOT NULL,
    delivery_start      timestamptz NOT NULL,
    latest_version      timestamptz,
    latest_kw           double precision,
    tradeable_version   timestamptz,
    tradeable_kw        double precision,
    best_kw             double precision,
    best_source         text CHECK (best_source IN ('final', 'live', 'redispatch', 'forecast')),
    live_kw             double precision,
    live_samples        integer     NOT NULL DEFAULT 0,
    final_kw            double precision,
    redispatched        boolean     NOT NULL DEFAULT false,
    in_scope            boolean     NOT NULL DEFAULT true,
    known_at            timestamptz,
    PRIMARY KEY (asset_id, delivery_start)
);

CREATE TABLE IF NOT EXISTS trading_qh (
    delivery_start      timestamptz NOT NULL,
    book                text        NOT NULL CHECK (book IN ('private', 'public')),
    trades              integer     NOT NULL,
    sold_mwh            double precision NOT NULL,
    bought_mwh          double precision NOT NULL,
    net_mwh             double precision NOT NULL,
    revenue_eur         double precision,
    vwap_eur_mwh        double precision,
    idx_full_eur_mwh    double precision,
    idx_3h_eur_mwh      double precision,
    idx_1h_eur_mwh      double precision,
    known_at            timestamptz,
    PRIMARY KEY (delivery_start, book)
);

CREATE TABLE IF NOT EXISTS asset_imbalance_qh (
    asset_id            text        NOT NULL,
    delivery_start      timestamptz NOT NULL,
    position_mwh        double precision,
    actual_mwh          double precision,
    imbalance_mwh       double precision,
    price_eur_mwh       double precision,
    price_source        text NOT NULL CHECK (price_source IN ('final', 'estimate', 'missing')),
    cost_eur            double precision,
    known_at            timestamptz,
    PRIMARY KEY (asset_id, delivery_start)
);

CREATE TABLE IF NOT EXISTS portfolio_qh (
    delivery_start          timestamptz NOT NULL,
    best_of_infeed_kw       double precision,
    latest_forecast_kw      double precision,
    tradeable_forecast_kw   double precision,
    net_sold_mwh            double precision,
    imbalance_mwh           double precision,
    imbalance_price_eur_mwh double precision,
    imbalance_price_source  text NOT NULL CHECK (imbalance_price_source IN ('final', 'estimate', 'missing')),
    imbalance_cost_eur      double precision,
    in_scope                boolean NOT NULL DEFAULT true,
    known_at                timestamptz,
    PRIMARY KEY (delivery_start)
);

-- Every change of a portfolio result with the event-time instant it became known:
-- "what did the desk see at 11:40" is one query (DISTINCT ON ... WHERE known_at <= $1).
CREATE TABLE IF NOT EXISTS portfolio_qh_history (
    delivery_start          timestamptz NOT NULL,
    known_at                timestamptz NOT NULL,
    best_of_infeed_kw       double precision,
    latest_forecast_kw      double precision,
    tradeable_forecast_kw   double precision,
    net_sold_mwh            double precision,
    imbalance_mwh           double precision,
    imbalance_price_eur_mwh double precision,
    imbalance_price_source  text,
    imbalance_cost_eur      double precision,
    PRIMARY KEY (delivery_start, known_at)
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id            text        NOT NULL,
    delivery_start      timestamptz NOT NULL,
    status              text        NOT NULL,
    kind                text        NOT NULL,
    severity            text        NOT NULL,
    subject             text        NOT NULL,
    detected_at         timestamptz NOT NULL,
    payload             jsonb       NOT NULL,
    acknowledged_by     text,
    acknowledged_at     timestamptz,
    PRIMARY KEY (alert_id, status, delivery_start)
);

-- Master data and raw inputs the back office and the dashboard read.
CREATE TABLE IF NOT EXISTS contracts (
    file_time           timestamptz NOT NULL,
    contract_id         text        NOT NULL,
    asset_id            text        NOT NULL,
    metering_point_id   text,
    capacity_mw         double precision,
    technology          text,
    contract_begin      date,
    contract_end        date,
    price_model         text,
    price_eur_mwh       double precision,
    fee_model           text,
    fee                 double precision,
    fee_percent         double precision,
    email               text,
    errors              jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (file_time, contract_id)
);

CREATE TABLE IF NOT EXISTS technical_data (
    asset_id            text PRIMARY KEY,
    published_at        timestamptz NOT NULL,
    name                text,
    asset_type          text,
    capacity_kw         double precision,
    status              text,
    owner               text,
    payload             jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS imbalance_prices (
    delivery_start      timestamptz NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('estimate', 'final')),
    published_at        timestamptz NOT NULL,
    price_eur_mwh       double precision,
    unterdeckt_eur_mwh  double precision,
    ueberdeckt_eur_mwh  double precision,
    PRIMARY KEY (delivery_start, kind, published_at)
);

CREATE TABLE IF NOT EXISTS redispatch_compensation (
    delivery_start      timestamptz NOT NULL,
    published_at        timestamptz NOT NULL,
    price_eur_mwh       double precision NOT NULL,
    PRIMARY KEY (delivery_start)
);

-- Bad input: every record that failed to parse (producers) or to decode (processors).
CREATE TABLE IF NOT EXISTS quarantine (
    topic               text        NOT NULL,
    source_file         text        NOT NULL,
    line                integer     NOT NULL,
    reason              text        NOT NULL,
    raw                 text,
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, source_file, line, reason)
);

-- The sink's progress, written in the same transaction as the rows: what the database holds.
CREATE TABLE IF NOT EXISTS sink_progress (
    topic               text    NOT NULL,
    partition           integer NOT NULL,
    next_offset         bigint  NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
