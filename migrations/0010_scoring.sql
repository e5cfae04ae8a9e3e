-- Scoring bookkeeping: per asset, what the scoring worker last consumed, so that finding the
-- assets with new telemetry is one join over assets (10,000 rows), not a scan of predictions.

CREATE TABLE asset_scoring_state (
    asset_id     bigint PRIMARY KEY REFERENCES assets (id),
    -- assets.last_seen_at as the worker read it when it last scored the asset
    seen_at      timestamptz NOT NULL,
    -- the time of the last reading that entered the asset's last prediction
    data_until   timestamptz,
    renewed_at   timestamptz NOT NULL,
    scored_at    timestamptz NOT NULL
);

-- Predictions of one asset, newest first (the API's per-asset list and the latest prediction).
CREATE INDEX predictions_asset_time ON predictions (asset_id, time DESC);

-- The version that was active when this one was promoted: what a rollback returns to.
ALTER TABLE model_versions ADD COLUMN replaced_version_id bigint REFERENCES model_versions (id);
