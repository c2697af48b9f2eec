-- Monthly invoices per contract (domain.md section 5; rules and rounding: docs/invoices.md).
-- One row per issued version. A re-run over the same data finds the same content_hash and adds
-- nothing; changed data adds the next version. state: draft (status error, cannot be issued),
-- provisional, final, corrected (a later version of an invoice that had been final).

CREATE TABLE IF NOT EXISTS invoices (
    contract_id     text        NOT NULL,
    month           text        NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    version         integer     NOT NULL CHECK (version >= 1),
    state           text        NOT NULL CHECK (state IN ('draft', 'provisional', 'final', 'corrected')),
    status          text        NOT NULL CHECK (status IN ('ok', 'error')),
    content_hash    text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contract_id, month, version)
);

-- Traceability: every QH amount behind an invoice version (kind infeed / fee / redispatch).
-- price_eur_mwh is the price used (fixed price, public VWAP, fee, VWAP x fee_percent / 100, or the
-- DSO compensation price); NULL when the QH had none. source: best_source of the QH ('missing'
-- without a row), 'forecast' for redispatch lines, 'capacity' for a fixed_for_capacity fee.
CREATE TABLE IF NOT EXISTS invoice_lines (
    contract_id     text        NOT NULL,
    month           text        NOT NULL,
    version         integer     NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('infeed', 'fee', 'redispatch')),
    delivery_start  timestamptz NOT NULL,
    mwh             numeric,
    price_eur_mwh   numeric,
    amount_eur      numeric,
    source          text        NOT NULL,
    PRIMARY KEY (contract_id, month, version, kind, delivery_start),
    FOREIGN KEY (contract_id, month, version) REFERENCES invoices ON DELETE CASCADE
);

-- The newest version of every invoice.
CREATE OR REPLACE VIEW invoices_current AS
SELECT DISTINCT ON (contract_id, month) *
FROM invoices
ORDER BY contract_id, month, version DESC;
