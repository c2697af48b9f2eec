-- Every forecast version as issued (one row per asset and version, the 48 h profile as arrays):
-- the dashboard overlays a few versions to show them converging. ~100 rows per asset and day.
CREATE TABLE IF NOT EXISTS forecast_versions (
    asset_id        text        NOT NULL,
    version         timestamptz NOT NULL,
    delivery_start  timestamptz[] NOT NULL,
    power_kw        double precision[] NOT NULL,
    PRIMARY KEY (asset_id, version)
);
CREATE INDEX IF NOT EXISTS forecast_versions_version ON forecast_versions (version);
