-- The second tenant wall (issue 21, point 5): PostgreSQL row-level security keyed on the
-- organisation set per transaction, and the role the API and the workers act as.
--
-- fleetcare_app is a NOLOGIN role without SUPERUSER or BYPASSRLS (superusers and BYPASSRLS
-- roles skip every policy). Every fleetcare process connects with its usual URL and switches to
-- it with SET ROLE (fleetcare.tenancy); the connecting user must be a superuser or a member of
-- fleetcare_app (granted below to the user that migrates). A transaction then says whose rows it
-- may touch with transaction-local settings:
--     fleetcare.customer_id   the customer the caller is confined to
--     fleetcare.partner_id    a service partner (sees the customers it serves)
--     fleetcare.operator      'on': the operator, or a worker acting for every customer
-- No setting: no tenant row at all (fail closed).
--
-- A table that holds tenant rows gets its policy from fleetcare_tenant_policy(table, column,
-- parent); later migrations call it for their own tables (tests/test_tenant_wall.py fails for
-- a table with a tenant column and no policy).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fleetcare_app') THEN
        BEGIN
            CREATE ROLE fleetcare_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this server created it at the same moment
        END;
    END IF;
    -- a replica's lag check reads pg_stat_wal_receiver, whose status only these roles see
    IF NOT pg_has_role('fleetcare_app', 'pg_read_all_stats', 'MEMBER') THEN
        BEGIN
            GRANT pg_read_all_stats TO fleetcare_app;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'grant pg_read_all_stats to fleetcare_app for the replica lag check';
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'fleetcare_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT fleetcare_app TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'grant fleetcare_app to the users fleetcare connects as';
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO fleetcare_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO fleetcare_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO fleetcare_app;
-- tables and sequences of later migrations (made by the same migrating user) get the same
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fleetcare_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO fleetcare_app;
-- the bookkeeping of the migration runner is not the application's
REVOKE INSERT, UPDATE, DELETE ON schema_migrations, schema_storage FROM fleetcare_app;

-- The caller, as the policies read it. Wrapped in (SELECT ...) by the policies so that each is
-- evaluated once per statement (an InitPlan), not once per row.
CREATE FUNCTION fleetcare_is_operator() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('fleetcare.operator', true), '') = 'on' $$;

CREATE FUNCTION fleetcare_customer_id() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('fleetcare.customer_id', true), '')::bigint $$;

CREATE FUNCTION fleetcare_partner_id() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('fleetcare.partner_id', true), '')::bigint $$;

-- The customers a service partner serves: those of the orders assigned to it and of its
-- sites. SECURITY DEFINER: it reads maintenance_orders, whose own policy calls it.
CREATE FUNCTION fleetcare_partner_customers() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    partner bigint := fleetcare_partner_id();
BEGIN
    IF partner IS NULL THEN
        RETURN '{}'::bigint[];
    END IF;
    RETURN ARRAY(
        SELECT customer_id FROM maintenance_orders WHERE partner_id = partner
        UNION
        SELECT s.customer_id FROM partner_sites ps JOIN sites s ON s.id = ps.site_id
         WHERE ps.partner_id = partner
    );
END
$$;

-- Give ``tbl`` row-level security and its one policy, tenant_wall (idempotent):
--   column holds a customer id (the default, 'customer_id'; 'id' for customers itself);
--   column 'partner_id' with no parent: the partner's own rows;
--   parent given: column holds the id of a row of parent, visible when that row is.
-- shared_rows: a row whose column is NULL is an operator-level record that a customer's action
-- may raise (an event about stock, a plan, a partner); any context may write and read it back
-- (INSERT ... RETURNING needs both), the API's own filters keep it from customers' lists.
CREATE FUNCTION fleetcare_tenant_policy(
    tbl regclass, tenant_column name DEFAULT 'customer_id', parent regclass DEFAULT NULL,
    shared_rows boolean DEFAULT false
) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    operator text := '(SELECT fleetcare_is_operator())';
    predicate text;
    compressed boolean := false;
BEGIN
    -- TimescaleDB refuses row-level security on a hypertable with compression (columnstore)
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables'
                ' WHERE format(''%I.%I'', hypertable_schema, hypertable_name)::regclass = $1'
                ' AND compression_enabled)'
           INTO compressed USING tbl;
    END IF;
    IF compressed THEN
        RAISE NOTICE '% is a compressed hypertable: no row-level security (TimescaleDB)', tbl;
        RETURN;
    END IF;
    IF parent IS NOT NULL THEN
        predicate := format('%s OR %I IN (SELECT id FROM %s)', operator, tenant_column, parent);
    ELSIF tenant_column = 'partner_id' THEN
        predicate := format('%s OR %I = (SELECT fleetcare_partner_id())', operator, tenant_column);
    ELSE
        predicate := format(
            '%s OR %I = (SELECT fleetcare_customer_id())'
            ' OR %I = ANY ((SELECT fleetcare_partner_customers())::bigint[])',
            operator, tenant_column, tenant_column);
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_wall ON %s', tbl);
    IF shared_rows THEN
        predicate := format('%I IS NULL OR %s', tenant_column, predicate);
    END IF;
    EXECUTE format('CREATE POLICY tenant_wall ON %s USING (%s) WITH CHECK (%s)',
                   tbl, predicate, predicate);
END
$$;

SELECT fleetcare_tenant_policy('customers', 'id');
SELECT fleetcare_tenant_policy(t)
  FROM unnest(ARRAY[
      'api_keys', 'sites', 'assets', 'devices', 'quarantine', 'subscriptions',
      'subscription_assets', 'maintenance_orders', 'shipments', 'failure_reports',
      'missed_predictions', 'webhook_endpoints', 'webhook_deliveries', 'webhook_attempts',
      'usage_records', 'invoices'
  ]::regclass[]) AS t;
-- rows of one asset: visible with the asset
SELECT fleetcare_tenant_policy(t, 'asset_id', 'assets')
  FROM unnest(ARRAY[
      'predictions', 'asset_lives', 'policy_queue', 'policy_states', 'sim_ground_truth',
      'sim_lives', 'latest_predictions', 'asset_health', 'asset_scoring_state'
  ]::regclass[]) AS t;
SELECT fleetcare_tenant_policy('events', 'customer_id', NULL, shared_rows => true);
SELECT fleetcare_tenant_policy('invoice_lines', 'invoice_id', 'invoices');
SELECT fleetcare_tenant_policy('subscription_plan_periods', 'subscription_id', 'subscriptions');
SELECT fleetcare_tenant_policy('reservations', 'order_id', 'maintenance_orders');
SELECT fleetcare_tenant_policy('order_parts', 'order_id', 'maintenance_orders');
SELECT fleetcare_tenant_policy('partner_sites', 'partner_id');
SELECT fleetcare_tenant_policy('partner_commissions', 'partner_id');
-- Not walled (tests/test_tenant_wall.py lists them with the reason): telemetry, whose batch
-- writer loads with COPY, which PostgreSQL refuses on a table under row-level security, and
-- telemetry_hourly, its rollup (a continuous aggregate on TimescaleDB); on TimescaleDB also
-- predictions, a compressed hypertable (TimescaleDB refuses row-level security there; the
-- API and dashboard read a customer's predictions through latest_predictions and
-- asset_health, which are walled, or by asset id after the asset was found in scope).
