-- Core schema: customers, API keys, sites, the kind and metric catalogue, assets,
-- devices, telemetry, its hourly rollup, and quarantine.

CREATE TABLE customers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency    char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- API keys are stored as SHA-256 of the whole key: keys are 32 random bytes, so a fast hash
-- is enough (no dictionary to guess from), and lookup by hash is one index probe.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    role         text NOT NULL CHECK (role IN ('operator', 'customer', 'technician')),
    customer_id  bigint REFERENCES customers (id),
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((role = 'operator') = (customer_id IS NULL))
);
CREATE INDEX api_keys_customer ON api_keys (customer_id);

CREATE TABLE sites (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    ref          text NOT NULL CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region       text NOT NULL DEFAULT '',
    latitude     double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude    double precision CHECK (longitude BETWEEN -180 AND 180),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    UNIQUE (customer_id, ref),
    UNIQUE (customer_id, id)
);

CREATE TABLE asset_kinds (
    name          text PRIMARY KEY,
    life_unit     text NOT NULL,
    usage_metric  text NOT NULL,
    failure       text NOT NULL,
    typical_life  double precision NOT NULL
);

-- Copied from fleetcare/kinds.py by the catalogue sync that runs after migrations.
CREATE TABLE metrics (
    id           smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL REFERENCES asset_kinds (name),
    name         text NOT NULL,
    unit         text NOT NULL,
    low          double precision NOT NULL,
    high         double precision NOT NULL,
    cumulative   boolean NOT NULL DEFAULT false,
    description  text NOT NULL DEFAULT '',
    UNIQUE (kind, name),
    CHECK (low <= high)
);

CREATE TABLE assets (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    bigint NOT NULL REFERENCES customers (id),
    site_id        bigint,
    kind           text NOT NULL REFERENCES asset_kinds (name),
    ref            text NOT NULL CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    installed_at   timestamptz NOT NULL DEFAULT now(),
    renewed_at     timestamptz NOT NULL DEFAULT now(),
    attributes     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    usage_counter  double precision,
    usage_at       timestamptz,
    last_seen_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    UNIQUE (customer_id, ref),
    -- a site of another customer cannot be referenced
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id)
);
CREATE INDEX assets_site ON assets (site_id);
CREATE INDEX assets_kind ON assets (kind);

CREATE TABLE devices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers (id),
    ref           text NOT NULL UNIQUE CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name          text NOT NULL DEFAULT '',
    -- PBKDF2-SHA256 of the device secret, in passlib/Mosquitto-compatible form
    secret_hash   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz,
    retired_at    timestamptz
);
CREATE INDEX devices_customer ON devices (customer_id);

CREATE TABLE telemetry (
    time       timestamptz NOT NULL,
    asset_id   bigint NOT NULL,
    metric_id  smallint NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (asset_id, metric_id, time)
);

CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    device_ref   text,
    customer_id  bigint,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL
);
CREATE INDEX quarantine_device_time ON quarantine (device_ref, received_at DESC);
CREATE INDEX quarantine_reason_time ON quarantine (reason, received_at DESC);

-- fleetcare: timescaledb
SELECT create_hypertable('telemetry', by_range('time', INTERVAL '1 day'));
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'asset_id',
    timescaledb.compress_orderby = 'metric_id, time DESC'
);
SELECT add_compression_policy('telemetry', INTERVAL '7 days');
SELECT add_retention_policy('telemetry', INTERVAL '1825 days');

-- fleetcare: postgres
-- Plain PostgreSQL: the hourly rollup is a table that the service keeps
-- (fleetcare_refresh_telemetry_hourly), with the same columns as the continuous aggregate.
CREATE INDEX telemetry_time ON telemetry USING brin (time);
CREATE TABLE telemetry_hourly (
    bucket     timestamptz NOT NULL,
    asset_id   bigint NOT NULL,
    metric_id  smallint NOT NULL,
    n          bigint NOT NULL,
    avg_value  double precision NOT NULL,
    min_value  double precision NOT NULL,
    max_value  double precision NOT NULL,
    PRIMARY KEY (asset_id, metric_id, bucket)
);
CREATE FUNCTION fleetcare_refresh_telemetry_hourly(start timestamptz, stop timestamptz)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM telemetry_hourly
     WHERE bucket >= date_trunc('hour', start) AND bucket < stop;
    INSERT INTO telemetry_hourly (bucket, asset_id, metric_id, n, avg_value, min_value, max_value)
    SELECT date_trunc('hour', time), asset_id, metric_id, count(*), avg(value), min(value),
           max(value)
      FROM telemetry
     WHERE time >= date_trunc('hour', start) AND time < stop
     GROUP BY 1, 2, 3;
$$;

-- fleetcare: timescaledb no-transaction
CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, asset_id, metric_id,
       count(*) AS n, avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value
  FROM telemetry
 GROUP BY bucket, asset_id, metric_id
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
