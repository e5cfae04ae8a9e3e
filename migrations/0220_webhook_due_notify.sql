-- The webhook sender wakes on `fleetcare_webhooks`, whose payload is the endpoint that has a
-- delivery due now: a new delivery (the outbox fan-out, a test ping) or one made due again (a
-- replay). A sender process that already holds that endpoint does not wake another of its
-- loops for it (the holder takes the new delivery in its next batch), so a live stream to one
-- endpoint costs no empty claims. PostgreSQL folds a transaction's identical notifications, so
-- a transaction that addresses many events to one endpoint sends one. Retries that come due
-- later are not notified: the sender's poll finds them (they are seconds to hours away).

CREATE FUNCTION fleetcare_notify_webhook_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetcare_webhooks', NEW.endpoint_id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_deliveries_notify_due
    AFTER INSERT OR UPDATE OF status, next_attempt_at ON webhook_deliveries
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.next_attempt_at IS NULL)
    EXECUTE FUNCTION fleetcare_notify_webhook_due();
