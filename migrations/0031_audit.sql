-- The audit trail (issue 21, point 4): every change of an audited table writes one row of
-- audit_log in the same transaction, by trigger, so that every route, dashboard action, CLI
-- command and worker is covered without code of its own. Who, from where and through what come
-- from transaction-local settings the caller's connection sets (fleetcare.tenancy):
--     fleetcare.actor        'key:12', 'user:7', 'cli:alice', 'system:dispatch'
--     fleetcare.actor_role   the caller's role
--     fleetcare.source       the client's address, 'cli', 'worker'
--     fleetcare.channel      'api', 'dashboard', 'cli', 'worker'
--     fleetcare.request      'PATCH /v1/assets/{asset_id}'
-- A change made outside fleetcare (psql) is recorded as 'db:<user>'.
--
-- Append-only: the application role may only read it (through its tenant policy); the trigger
-- function writes as its owner; a trigger refuses UPDATE, DELETE and TRUNCATE for everyone.
-- Later migrations audit their tables with SELECT fleetcare_audit_table('table').

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    customer_id  bigint,
    actor        text NOT NULL,
    actor_role   text,
    source       text NOT NULL,
    channel      text NOT NULL,
    request      text,
    resource     text NOT NULL,
    resource_id  text,
    action       text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    before       jsonb,
    after        jsonb
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, id);
CREATE INDEX audit_log_resource ON audit_log (resource, resource_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at);

REVOKE ALL ON audit_log FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_log FROM fleetcare_app;
GRANT SELECT ON audit_log TO fleetcare_app;
SELECT fleetcare_tenant_policy('audit_log');

CREATE FUNCTION fleetcare_audit_refuse() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION fleetcare_audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION fleetcare_audit_refuse();

-- A column whose value must never be copied into the trail (secrets, hashes): recorded as
-- '[redacted]' so that the trail still says it changed.
CREATE FUNCTION fleetcare_audit_redact(doc jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_object_agg(key, CASE
               WHEN key ~ '(secret|hash|password|token)$' AND value <> 'null'::jsonb
               THEN '"[redacted]"'::jsonb ELSE value END)
      FROM jsonb_each(doc)
$$;

-- Row trigger: TG_ARGV[0] names the column that holds the customer ('-' for none),
-- TG_ARGV[1..] columns left out of the trail (bookkeeping, large values): a change of only
-- those writes no row.
CREATE FUNCTION fleetcare_audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    left_out text[] := TG_ARGV[1:] || ARRAY['updated_at'];
    old_doc jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - left_out END;
    new_doc jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - left_out END;
    row_doc jsonb := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    before_doc jsonb := old_doc;
    after_doc jsonb := new_doc;
    row_key text;
    actor text := nullif(current_setting('fleetcare.actor', true), '');
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, new_doc -> o.key)
          INTO before_doc, after_doc
          FROM jsonb_each(old_doc) o
         WHERE o.value IS DISTINCT FROM new_doc -> o.key;
        IF before_doc IS NULL THEN
            RETURN NULL;  -- nothing recorded changed
        END IF;
    END IF;
    SELECT string_agg(row_doc ->> a.attname, ':' ORDER BY array_position(i.indkey, a.attnum))
      INTO row_key
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = TG_RELID AND i.indisprimary;
    INSERT INTO audit_log (customer_id, actor, actor_role, source, channel, request, resource,
                           resource_id, action, before, after)
    VALUES (
        CASE WHEN TG_ARGV[0] <> '-' THEN (row_doc ->> TG_ARGV[0])::bigint END,
        coalesce(actor, 'db:' || session_user),
        nullif(current_setting('fleetcare.actor_role', true), ''),
        coalesce(nullif(current_setting('fleetcare.source', true), ''),
                 CASE WHEN actor IS NULL THEN 'database' ELSE 'unknown' END),
        coalesce(nullif(current_setting('fleetcare.channel', true), ''), 'database'),
        nullif(current_setting('fleetcare.request', true), ''),
        TG_TABLE_NAME,
        row_key,
        lower(TG_OP),
        fleetcare_audit_redact(before_doc),
        fleetcare_audit_redact(after_doc)
    );
    RETURN NULL;
END
$$;

-- Audit ``tbl`` (idempotent). customer_column: the column that holds the row's customer (NULL
-- for the operator's catalogue); ignored: columns left out of the trail.
CREATE FUNCTION fleetcare_audit_table(
    tbl regclass, customer_column name DEFAULT 'customer_id', ignored text[] DEFAULT '{}'
) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    args text := array_to_string(
        ARRAY(SELECT quote_literal(a) FROM unnest(coalesce(customer_column, '-') || ignored) a),
        ', ');
    left_out text := quote_literal(ignored || ARRAY['updated_at']);
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS audit_row ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS audit_row_update ON %s', tbl);
    EXECUTE format('CREATE TRIGGER audit_row AFTER INSERT OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION fleetcare_audit_row(%s)', tbl, args);
    -- the WHEN clause skips, without a function call, an update of left-out columns only
    -- (ingest moves assets' usage counters on every batch)
    EXECUTE format('CREATE TRIGGER audit_row_update AFTER UPDATE ON %s FOR EACH ROW'
                   ' WHEN ((to_jsonb(OLD.*) - %s::text[]) IS DISTINCT FROM'
                   ' (to_jsonb(NEW.*) - %s::text[]))'
                   ' EXECUTE FUNCTION fleetcare_audit_row(%s)', tbl, left_out, left_out, args);
END
$$;

-- what people and their keys change (workers' changes to these tables are recorded too, as
-- 'system:<worker>'); machine-written tables (telemetry, predictions, events, deliveries) are
-- not audited: they are themselves records
SELECT fleetcare_audit_table('customers', 'id');
SELECT fleetcare_audit_table('sites');
SELECT fleetcare_audit_table('assets', 'customer_id',
                             ARRAY['usage_counter', 'usage_at', 'last_seen_at']);
SELECT fleetcare_audit_table('devices', 'customer_id', ARRAY['last_seen_at']);
SELECT fleetcare_audit_table('api_keys');
SELECT fleetcare_audit_table('subscriptions');
SELECT fleetcare_audit_table('subscription_assets');
SELECT fleetcare_audit_table('maintenance_orders');
SELECT fleetcare_audit_table('failure_reports');
SELECT fleetcare_audit_table('shipments');
SELECT fleetcare_audit_table('invoices');
SELECT fleetcare_audit_table('webhook_endpoints', 'customer_id',
                             ARRAY['failing_since', 'paused_until', 'locked_until', 'locked_by',
                                   'last_claimed_at']);
SELECT fleetcare_audit_table('plans', NULL);
SELECT fleetcare_audit_table('partners', NULL);
SELECT fleetcare_audit_table('partner_sites', NULL);
SELECT fleetcare_audit_table('depots', NULL);
SELECT fleetcare_audit_table('inventory', NULL, ARRAY['reserved']);
SELECT fleetcare_audit_table('parts', NULL);
SELECT fleetcare_audit_table('asset_kinds', NULL);
SELECT fleetcare_audit_table('payload_profiles', NULL);
SELECT fleetcare_audit_table('model_versions', NULL, ARRAY['artifact']);
