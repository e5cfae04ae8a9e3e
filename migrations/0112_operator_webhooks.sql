-- The operator's own webhook endpoints (customer_id NULL): they receive the events that have no
-- customer — the operator's and partners' people (user.invited, user.password_reset_requested),
-- stock and replenishments, model drift, ... — which no customer's endpoint may receive.
-- A customer's endpoints keep receiving only their customer's events; the tenant wall (0030)
-- already shows rows with a NULL customer to the operator only.

ALTER TABLE webhook_endpoints ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE webhook_deliveries ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE webhook_attempts ALTER COLUMN customer_id DROP NOT NULL;

CREATE OR REPLACE FUNCTION fleetcare_webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.type = 'webhook.ping' THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, event_id, customer_id)
    SELECT e.id, NEW.id, NEW.customer_id
      FROM webhook_endpoints e
     WHERE e.customer_id IS NOT DISTINCT FROM NEW.customer_id
       AND e.enabled AND e.retired_at IS NULL
       AND (cardinality(e.event_types) = 0
            OR NEW.type = ANY (e.event_types)
            OR split_part(NEW.type, '.', 1) || '.*' = ANY (e.event_types))
     ORDER BY e.id
    ON CONFLICT (endpoint_id, event_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE INDEX webhook_endpoints_operator_live ON webhook_endpoints (id)
    WHERE customer_id IS NULL AND enabled AND retired_at IS NULL;
