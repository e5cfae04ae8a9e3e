-- Webhooks: customer endpoints, one delivery per (event, endpoint), every attempt logged.
--
-- Fan-out is done by a trigger on the outbox, inside the business transaction that writes the
-- event: a delivery exists exactly when its event commits, and no reader cursor can skip an
-- event whose transaction committed late (identity ids are not handed out in commit order).

CREATE TABLE webhook_endpoints (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id                 bigint NOT NULL REFERENCES customers (id),
    url                         text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    description                 text NOT NULL DEFAULT '',
    -- empty: every event type; else exact types ('order.created') or families ('order.*')
    event_types                 text[] NOT NULL DEFAULT '{}',
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    disabled_at                 timestamptz,
    -- The signing secret ('whsec_' + base64). Kept usable (the sender signs with it), so it
    -- is never logged and the API shows it only once, at creation or rotation.
    secret                      text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    -- After a rotation the old secret also signs until it expires (both signatures are sent).
    previous_secret             text CHECK (previous_secret LIKE 'whsec\_%'),
    previous_secret_expires_at  timestamptz,
    -- Start of the current run of failed attempts; NULL after a success.
    failing_since               timestamptz,
    -- A receiver's Retry-After (429/503) holds the whole endpoint until then.
    paused_until                timestamptz,
    -- The sender's lease: one sender at a time works an endpoint, which keeps first
    -- attempts in event order; an expired lease (crashed sender) is taken over.
    locked_until                timestamptz,
    locked_by                   text,
    last_claimed_at             timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    retired_at                  timestamptz
);
CREATE INDEX webhook_endpoints_customer ON webhook_endpoints (customer_id, id);
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (customer_id)
    WHERE enabled AND retired_at IS NULL;

CREATE TABLE webhook_deliveries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id       bigint NOT NULL REFERENCES webhook_endpoints (id),
    event_id          bigint NOT NULL REFERENCES events (id),
    customer_id       bigint NOT NULL REFERENCES customers (id),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed')),
    -- attempts ever made (replays included); the first one is what event order is about
    attempt_count     integer NOT NULL DEFAULT 0,
    -- position in the retry schedule of the current run (a replay starts a new run)
    schedule_step     integer NOT NULL DEFAULT 0,
    -- NULL: due at once (a first attempt, or a replay)
    next_attempt_at   timestamptz,
    -- bumped by each replay, so that a result recorded for an older run cannot undo it
    generation        integer NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_error        text,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, event_id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (endpoint_id, coalesce(next_attempt_at, '-infinity'::timestamptz))
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, created_at)
    WHERE status = 'failed';

CREATE TABLE webhook_attempts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       bigint NOT NULL REFERENCES webhook_deliveries (id),
    endpoint_id       bigint NOT NULL REFERENCES webhook_endpoints (id),
    event_id          bigint NOT NULL REFERENCES events (id),
    customer_id       bigint NOT NULL REFERENCES customers (id),
    attempt_number    integer NOT NULL,
    attempted_at      timestamptz NOT NULL,
    webhook_timestamp bigint NOT NULL,
    outcome           text NOT NULL
                      CHECK (outcome IN ('delivered', 'failed', 'gone', 'throttled', 'refused')),
    status_code       integer,
    latency_ms        double precision,
    error             text,
    response_excerpt  text,
    sender            text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Fan-out: each new event gets a delivery for every live endpoint of its customer whose
-- filter matches. Test pings (webhook.ping) are addressed to one endpoint by the service.
CREATE FUNCTION fleetcare_webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id IS NULL OR NEW.type = 'webhook.ping' THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, event_id, customer_id)
    SELECT e.id, NEW.id, NEW.customer_id
      FROM webhook_endpoints e
     WHERE e.customer_id = NEW.customer_id
       AND e.enabled AND e.retired_at IS NULL
       AND (cardinality(e.event_types) = 0
            OR NEW.type = ANY (e.event_types)
            OR split_part(NEW.type, '.', 1) || '.*' = ANY (e.event_types))
     ORDER BY e.id
    ON CONFLICT (endpoint_id, event_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER events_webhook_fanout AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION fleetcare_webhook_fanout();
