-- Scoring wakes on new telemetry instead of waiting for its poll: a statement that moves an
-- asset's last-seen time (ingest, once per batch) or renews it notifies `fleetcare_telemetry`.
-- One notification per statement, and PostgreSQL folds identical notifications of one
-- transaction into one, so a busy ingest costs one NOTIFY per committed batch; the scorer's
-- poll stays as the fallback (a listener that reconnects, a notification lost with it).

CREATE FUNCTION fleetcare_notify_telemetry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetcare_telemetry', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER assets_notify_telemetry
    AFTER UPDATE OF last_seen_at, renewed_at ON assets
    FOR EACH STATEMENT EXECUTE FUNCTION fleetcare_notify_telemetry();
