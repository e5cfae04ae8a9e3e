-- The audit trail for the people tables (migration 0020, when present): users are audited
-- (their password hash redacted, sign-in bookkeeping left out), and an API key's last use,
-- written on every authenticated request, is bookkeeping, not a change worth a row.
-- Written defensively: on a database without 0020 it only re-makes the api_keys trigger.

SELECT fleetcare_audit_table('api_keys', 'customer_id', ARRAY['last_used_at']);

DO $$
BEGIN
    IF to_regclass('users') IS NOT NULL THEN
        PERFORM fleetcare_audit_table('users', 'customer_id',
                                      ARRAY['failed_sign_ins', 'locked_until', 'last_sign_in_at']);
    END IF;
END
$$;
