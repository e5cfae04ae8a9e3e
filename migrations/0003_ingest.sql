-- Ingest: each running ingestor's status (a heartbeat written with its batches), read by the
-- API's ingest health; and quarantine lookups per customer.

CREATE TABLE ingestors (
    client_id          text PRIMARY KEY,
    started_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    connected          boolean NOT NULL DEFAULT false,
    messages_total     bigint NOT NULL DEFAULT 0,
    stored_total       bigint NOT NULL DEFAULT 0,
    duplicates_total   bigint NOT NULL DEFAULT 0,
    quarantined_total  bigint NOT NULL DEFAULT 0,
    readings_per_s     double precision NOT NULL DEFAULT 0,
    lag_s              double precision NOT NULL DEFAULT 0,
    queue_depth        integer NOT NULL DEFAULT 0,
    -- the broker's $SYS/broker/publish/messages/dropped as this ingestor last saw it
    broker_dropped     bigint
);

CREATE INDEX quarantine_customer_time ON quarantine (customer_id, received_at DESC);
