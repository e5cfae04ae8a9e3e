-- Ingestors report their subscription mode and what the broker did to it (issue 24):
-- sessions the broker did not keep, broker restarts, the window a shared subscription was
-- missing after one, and the last such alert.
ALTER TABLE ingestors
    ADD COLUMN subscription    text NOT NULL DEFAULT 'session',
    ADD COLUMN sessions_lost   bigint NOT NULL DEFAULT 0,
    ADD COLUMN broker_restarts bigint NOT NULL DEFAULT 0,
    ADD COLUMN unsubscribed_s  double precision NOT NULL DEFAULT 0,
    ADD COLUMN alert           text,
    ADD COLUMN alert_at        timestamptz;
