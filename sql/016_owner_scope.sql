-- What an asset owner's dashboard session reads (docs/permissions.md). The dashboard runs every
-- query of an asset owner as the owner's database role with this schema first on the search_path
-- (sink.permissions.user_session): the views below carry the names of the tables the dashboard
-- queries, so the same statements run for an owner, and a wrong filter in one of them still
-- returns no foreign row. Nothing else of the schema is reachable for an owner: the tables
-- behind these views grant an owner nothing.
--
--   trading_qh                     the public book only (the private book is the portfolio's)
--   portfolio_qh, portfolio_qh_history
--                                  no rows (portfolio-wide); same columns
--   alerts, forecast_versions      the rows of the owner's assets
--   replay_clock, imbalance_prices as they are: the event-time clock, the TSO's public prices
--
-- asset_qh, asset_imbalance_qh and technical_data are not shadowed: an owner reads them through
-- their own row-level security (005). The views read with their owner's rights (the migrator),
-- security_barrier so that their WHERE runs before any function of the caller's query;
-- current_user inside them is still the owner's role. A later migration that adds a column to
-- a table named here re-creates its view.

CREATE SCHEMA IF NOT EXISTS owner_scope;
REVOKE ALL ON SCHEMA owner_scope FROM PUBLIC;

DO $$
DECLARE
    s constant text := quote_ident(current_schema());
    owned constant text :=
        '(SELECT o.asset_id FROM ' || quote_ident(current_schema()) || '.asset_owners o WHERE o.owner_role IN '
        '(SELECT r.rolname FROM pg_roles r WHERE pg_has_role(current_user, r.oid, ''MEMBER'')))';
BEGIN
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.trading_qh WITH (security_barrier = true) AS '
                   'SELECT * FROM %s.trading_qh WHERE book = ''public''', s);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.portfolio_qh WITH (security_barrier = true) AS '
                   'SELECT * FROM %s.portfolio_qh WHERE false', s);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.portfolio_qh_history WITH (security_barrier = true) AS '
                   'SELECT * FROM %s.portfolio_qh_history WHERE false', s);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.alerts WITH (security_barrier = true) AS '
                   'SELECT * FROM %s.alerts WHERE subject IN %s', s, owned);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.forecast_versions WITH (security_barrier = true) AS '
                   'SELECT * FROM %s.forecast_versions WHERE asset_id IN %s', s, owned);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.replay_clock AS SELECT * FROM %s.replay_clock', s);
    EXECUTE format('CREATE OR REPLACE VIEW owner_scope.imbalance_prices AS SELECT * FROM %s.imbalance_prices', s);
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA owner_scope FROM PUBLIC;
GRANT USAGE ON SCHEMA owner_scope TO intraday_asset_owner;
GRANT SELECT ON ALL TABLES IN SCHEMA owner_scope TO intraday_asset_owner;
