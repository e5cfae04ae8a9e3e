-- Retention of the audit trail: rows older than the operator's retention are purged by
-- `fleetcare audit purge` (FLEETCARE_AUDIT_RETENTION_DAYS), and the purge is itself recorded.
--
-- The trail stays append-only for the application role: fleetcare_app has no DELETE on
-- audit_log (migration 0031) and no EXECUTE on the purge function below; only the table's owner
-- (the role that migrates, which the CLI connects as) may call it. The append-only trigger lets
-- a DELETE through only inside that function (a transaction-local flag it sets) and only for a
-- member of the owner role, and never a row younger than one day; UPDATE and TRUNCATE stay
-- refused for everyone.

CREATE OR REPLACE FUNCTION fleetcare_audit_refuse() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    owner name := (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
                    WHERE c.oid = TG_RELID);
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
       AND current_setting('fleetcare.audit_purge', true) = 'on'
       AND pg_has_role(current_user, owner, 'MEMBER')
       AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;  -- fleetcare_audit_purge, run by the owner: an expired row
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Delete at most max_rows rows older than cutoff (oldest first); record, per customer whose
-- rows went (and once for the operator's), how many, the time span and the cutoff, as a row of
-- the trail by the caller (fleetcare.actor: 'cli:alice'). Returns how many rows went.
CREATE FUNCTION fleetcare_audit_purge(cutoff timestamptz, max_rows integer DEFAULT 10000)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
    AS $$
DECLARE
    purged bigint;
    actor text := nullif(current_setting('fleetcare.actor', true), '');
BEGIN
    IF cutoff IS NULL OR cutoff > now() - interval '1 day' THEN
        RAISE EXCEPTION 'the audit trail keeps at least one day: a cutoff of % is too recent',
            cutoff USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 1000000 THEN
        RAISE EXCEPTION 'max_rows is 1 to 1000000, not %', max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('fleetcare.audit_purge', 'on', true);
    WITH gone AS (
        DELETE FROM audit_log
         WHERE id IN (SELECT id FROM audit_log WHERE at < cutoff ORDER BY id LIMIT max_rows)
        RETURNING customer_id, at
    ), per_customer AS (
        SELECT customer_id, count(*) AS n, min(at) AS oldest, max(at) AS newest
          FROM gone GROUP BY customer_id
    ), recorded AS (
        INSERT INTO audit_log (customer_id, actor, actor_role, source, channel, request,
                               resource, resource_id, action, before, after)
        SELECT customer_id,
               coalesce(actor, 'db:' || session_user),
               nullif(current_setting('fleetcare.actor_role', true), ''),
               coalesce(nullif(current_setting('fleetcare.source', true), ''), 'database'),
               coalesce(nullif(current_setting('fleetcare.channel', true), ''), 'database'),
               'purge audit_log',
               'audit_log', NULL, 'delete',
               jsonb_build_object('rows', n, 'oldest', oldest, 'newest', newest,
                                  'older_than', cutoff),
               NULL
          FROM per_customer
        RETURNING 1
    )
    SELECT coalesce(sum(n), 0) INTO purged FROM per_customer;
    PERFORM set_config('fleetcare.audit_purge', '', true);
    RETURN purged;
END
$$;
REVOKE ALL ON FUNCTION fleetcare_audit_purge(timestamptz, integer) FROM PUBLIC;
