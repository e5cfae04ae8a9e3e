-- Carriers' positions from telemetry (issue 25, point 1): a carrier's devices (or a gateway on
-- it) report where it is over MQTT (<root>/<device>/position, or a payload profile that
-- carries positions); the API's PUT /v1/carriers/{id}/position is recorded the same way.
-- The carrier row keeps the latest (carriers.latitude, longitude, at_site_id, position_at);
-- this table keeps a bounded history, one row per (carrier, time): a position sent twice is
-- stored once.

CREATE TABLE carrier_positions (
    carrier_id   bigint NOT NULL,
    ts           timestamptz NOT NULL,
    customer_id  bigint NOT NULL,
    latitude     double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude    double precision CHECK (longitude BETWEEN -180 AND 180),
    -- the station (a site) it reported being at
    site_id      bigint,
    -- the device that reported it; NULL: the API
    device_id    bigint,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (carrier_id, ts),
    FOREIGN KEY (customer_id, carrier_id) REFERENCES carriers (customer_id, id),
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id),
    CHECK ((latitude IS NULL) = (longitude IS NULL)),
    CHECK (latitude IS NOT NULL OR site_id IS NOT NULL)
);

-- where the latest position came from: 'api' or 'telemetry' (a device)
ALTER TABLE carriers ADD COLUMN position_source text
    CHECK (position_source IN ('api', 'telemetry'));

-- a carrier's position moves all the time: not audited (as latitude, longitude, ... in 0081)
SELECT fleetcare_audit_table('carriers', 'customer_id',
    ARRAY['latitude', 'longitude', 'at_site_id', 'position_at', 'position_source']);

-- fleetcare: timescaledb
-- one chunk a week (positions are sparse next to telemetry: a few per carrier and minute);
-- the history is bounded by the retention policy (no compression: row-level security below)
SELECT create_hypertable('carrier_positions', by_range('ts', INTERVAL '7 days'));
SELECT add_retention_policy('carrier_positions', INTERVAL '180 days');

-- fleetcare: postgres
-- the ingest writer deletes a carrier's positions older than 180 days as it stores new ones
-- (ingest.position_repository.prune_positions), on both storages
CREATE INDEX carrier_positions_ts ON carrier_positions USING brin (ts);

-- fleetcare: all
SELECT fleetcare_tenant_policy('carrier_positions');
