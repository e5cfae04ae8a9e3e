-- The outbox: every state change a customer cares about is an event, written in the same
-- transaction as the change. The webhook sender (and the dashboard's live feed) read it.

CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the public id (webhook-id): stable across retries and replays
    public_id    text NOT NULL UNIQUE DEFAULT ('evt_' || replace(gen_random_uuid()::text, '-', '')),
    customer_id  bigint REFERENCES customers (id),
    type         text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_.]+$'),
    version      smallint NOT NULL DEFAULT 1,
    subject      text NOT NULL DEFAULT '',
    payload      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_customer ON events (customer_id, id);
CREATE INDEX events_type ON events (type, id);

-- Wake listeners (webhook sender, dashboard) as soon as the transaction commits.
CREATE FUNCTION fleetcare_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetcare_events', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION fleetcare_notify_event();
