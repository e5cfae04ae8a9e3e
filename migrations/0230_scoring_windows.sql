-- The scoring worker's readings window of each asset (the rows its cache holds: the first
-- rows since renewal, the last ones, and each metric's latest value at the last row),
-- persisted with the pass that read it, so that a fresh worker (restart, another shard)
-- reads one row per asset instead of ~23 index probes into telemetry per asset
-- (models.readings_cache). It is a cache: window_key names its format and the model's
-- metric layout and history length, and a window of another key or of another life
-- (window_renewed_at) is ignored and read again from telemetry.
ALTER TABLE asset_scoring_state
    ADD COLUMN window_key        text,
    ADD COLUMN window_renewed_at timestamptz,
    -- when its rows were last read in full from telemetry: the periodic rebuild that picks
    -- up late readings (older than the rows already cached) keeps its schedule across workers
    ADD COLUMN window_built_at   timestamptz,
    ADD COLUMN window_rows       bytea;
