-- Dashboard: the latest prediction of each asset component, and one health row per asset,
-- kept by a trigger on predictions so that the fleet overview of 10,000 assets reads 10,000
-- small rows instead of searching the predictions table.

CREATE TABLE latest_predictions (
    asset_id             bigint NOT NULL REFERENCES assets (id),
    component            text NOT NULL,
    time                 timestamptz NOT NULL,
    model_version_id     bigint,
    rul                  double precision NOT NULL,
    rul_low              double precision NOT NULL,
    rul_high             double precision NOT NULL,
    failure_probability  double precision NOT NULL,
    anomaly_score        double precision NOT NULL,
    due_at               timestamptz,
    due_at_conservative  timestamptz,
    PRIMARY KEY (asset_id, component)
);

-- The component that is due first speaks for the asset.
CREATE TABLE asset_health (
    asset_id             bigint PRIMARY KEY REFERENCES assets (id),
    component            text NOT NULL,
    predicted_at         timestamptz NOT NULL,
    model_version_id     bigint,
    rul                  double precision NOT NULL,
    rul_low              double precision NOT NULL,
    rul_high             double precision NOT NULL,
    failure_probability  double precision NOT NULL,
    anomaly_score        double precision NOT NULL,
    due_at               timestamptz,
    due_at_conservative  timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX asset_health_due ON asset_health (due_at_conservative);

CREATE FUNCTION fleetcare_track_latest_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO latest_predictions AS lp (asset_id, component, time, model_version_id, rul,
        rul_low, rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
    VALUES (NEW.asset_id, NEW.component, NEW.time, NEW.model_version_id, NEW.rul, NEW.rul_low,
        NEW.rul_high, NEW.failure_probability, NEW.anomaly_score, NEW.due_at,
        NEW.due_at_conservative)
    ON CONFLICT (asset_id, component) DO UPDATE SET
        time = EXCLUDED.time, model_version_id = EXCLUDED.model_version_id,
        rul = EXCLUDED.rul, rul_low = EXCLUDED.rul_low, rul_high = EXCLUDED.rul_high,
        failure_probability = EXCLUDED.failure_probability,
        anomaly_score = EXCLUDED.anomaly_score, due_at = EXCLUDED.due_at,
        due_at_conservative = EXCLUDED.due_at_conservative
    -- a late, older prediction does not replace a newer one
    WHERE lp.time <= EXCLUDED.time;

    INSERT INTO asset_health AS h (asset_id, component, predicted_at, model_version_id, rul,
        rul_low, rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
    SELECT asset_id, component, time, model_version_id, rul, rul_low, rul_high,
           failure_probability, anomaly_score, due_at, due_at_conservative
      FROM latest_predictions
     WHERE asset_id = NEW.asset_id
     ORDER BY due_at_conservative ASC NULLS LAST, failure_probability DESC, component
     LIMIT 1
    ON CONFLICT (asset_id) DO UPDATE SET
        component = EXCLUDED.component, predicted_at = EXCLUDED.predicted_at,
        model_version_id = EXCLUDED.model_version_id, rul = EXCLUDED.rul,
        rul_low = EXCLUDED.rul_low, rul_high = EXCLUDED.rul_high,
        failure_probability = EXCLUDED.failure_probability,
        anomaly_score = EXCLUDED.anomaly_score, due_at = EXCLUDED.due_at,
        due_at_conservative = EXCLUDED.due_at_conservative, updated_at = now();
    RETURN NULL;
END $$;

-- Row-level (TimescaleDB hypertables do not allow transition tables in triggers).
CREATE TRIGGER predictions_track_latest AFTER INSERT ON predictions
    FOR EACH ROW EXECUTE FUNCTION fleetcare_track_latest_prediction();

-- Predictions stored before this migration.
INSERT INTO latest_predictions (asset_id, component, time, model_version_id, rul, rul_low,
    rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
SELECT DISTINCT ON (asset_id, component) asset_id, component, time, model_version_id, rul,
       rul_low, rul_high, failure_probability, anomaly_score, due_at, due_at_conservative
  FROM predictions
 ORDER BY asset_id, component, time DESC;

INSERT INTO asset_health (asset_id, component, predicted_at, model_version_id, rul, rul_low,
    rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
SELECT DISTINCT ON (asset_id) asset_id, component, time, model_version_id, rul, rul_low,
       rul_high, failure_probability, anomaly_score, due_at, due_at_conservative
  FROM latest_predictions
 ORDER BY asset_id, due_at_conservative ASC NULLS LAST, failure_probability DESC, component;

-- fleetcare: postgres
-- The ingest page sums the last day of the rollup over all series; without TimescaleDB's
-- chunks that needs an index on the bucket (covering n: an index-only scan).
CREATE INDEX telemetry_hourly_bucket ON telemetry_hourly (bucket) INCLUDE (n);
