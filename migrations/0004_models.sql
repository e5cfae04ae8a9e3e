-- Wear-model registry and predictions.

CREATE TABLE model_versions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL REFERENCES asset_kinds (name),
    algorithm      text NOT NULL,
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    metrics        jsonb NOT NULL DEFAULT '{}'::jsonb,
    trained_from   timestamptz,
    trained_to     timestamptz,
    training_assets integer NOT NULL DEFAULT 0,
    training_rows  bigint NOT NULL DEFAULT 0,
    artifact       bytea NOT NULL,
    artifact_format text NOT NULL DEFAULT 'skops',
    status         text NOT NULL DEFAULT 'candidate'
                   CHECK (status IN ('candidate', 'active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    promoted_at    timestamptz,
    retired_at     timestamptz
);
-- at most one active version per kind, enforced by the database
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (kind) WHERE status = 'active';

-- One row per scoring of an asset's component. RUL is in the kind's life unit; due dates
-- come from RUL and the asset's recent usage rate (life units per day).
CREATE TABLE predictions (
    time                 timestamptz NOT NULL,
    asset_id             bigint NOT NULL REFERENCES assets (id),
    component            text NOT NULL,
    model_version_id     bigint REFERENCES model_versions (id),
    rul                  double precision NOT NULL,
    rul_low              double precision NOT NULL,
    rul_high             double precision NOT NULL,
    coverage             real NOT NULL DEFAULT 0.8,
    failure_probability  double precision NOT NULL CHECK (failure_probability BETWEEN 0 AND 1),
    horizon              double precision NOT NULL,
    anomaly_score        double precision NOT NULL DEFAULT 0,
    usage_rate_per_day   double precision,
    due_at               timestamptz,
    due_at_conservative  timestamptz,
    data_until           timestamptz,
    PRIMARY KEY (asset_id, component, time),
    CHECK (rul_low <= rul AND rul <= rul_high)
);

-- The end of each recorded life: the training examples of the wear models.
CREATE TABLE asset_lives (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id     bigint NOT NULL REFERENCES assets (id),
    component    text NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    end_reason   text NOT NULL CHECK (end_reason IN ('failure', 'replacement')),
    usage_at_end double precision,
    source       text NOT NULL DEFAULT 'order',
    order_id     bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, component, ended_at),
    CHECK (started_at <= ended_at)
);
CREATE INDEX asset_lives_asset ON asset_lives (asset_id, ended_at);

CREATE FUNCTION fleetcare_notify_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetcare_predictions', NEW.asset_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER predictions_notify AFTER INSERT ON predictions
    FOR EACH ROW EXECUTE FUNCTION fleetcare_notify_prediction();

-- fleetcare: timescaledb
SELECT create_hypertable('predictions', by_range('time', INTERVAL '7 days'));
ALTER TABLE predictions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'asset_id',
    timescaledb.compress_orderby = 'component, time DESC'
);
SELECT add_compression_policy('predictions', INTERVAL '30 days');
SELECT add_retention_policy('predictions', INTERVAL '1825 days');

-- fleetcare: postgres
CREATE INDEX predictions_time ON predictions USING brin (time);
