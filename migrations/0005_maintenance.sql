-- The subscription layer: plans, subscriptions, the policy's state and queue, maintenance
-- orders, parts and logistics (depots, inventory, reservations, shipments, replenishment),
-- service partners, failure reports and missed predictions.
--
-- Money is always an integer amount of minor units (cents) with its currency.

-- --- plans ---------------------------------------------------------------------------------

CREATE TABLE plans (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description         text NOT NULL DEFAULT '',
    -- asset kinds the plan can cover (kind names; checked by the service)
    kinds               text[] NOT NULL CHECK (cardinality(kinds) > 0),
    includes_alerts     boolean NOT NULL DEFAULT true,
    includes_orders     boolean NOT NULL DEFAULT false,
    includes_parts      boolean NOT NULL DEFAULT false,
    includes_labour     boolean NOT NULL DEFAULT false,
    -- days an order needs before the due date (scheduling a technician, downtime window)
    order_lead_days     integer NOT NULL DEFAULT 14 CHECK (order_lead_days BETWEEN 0 AND 365),
    response_sla_hours  integer NOT NULL DEFAULT 48 CHECK (response_sla_hours BETWEEN 1 AND 8760),
    -- failure probability (within the prediction's horizon) that triggers on its own
    risk_threshold      double precision NOT NULL DEFAULT 0.5
                        CHECK (risk_threshold > 0 AND risk_threshold <= 1),
    -- anomaly score that triggers an 'anomaly' order or alert; NULL: anomalies never trigger
    anomaly_threshold   double precision CHECK (anomaly_threshold > 0),
    currency            char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    fee_per_asset_month_minor  bigint CHECK (fee_per_asset_month_minor >= 0),
    -- usage_price_minor per usage_price_quantity life units (e.g. 450 cents per 1000 km)
    usage_price_minor   bigint CHECK (usage_price_minor >= 0),
    usage_price_quantity integer NOT NULL DEFAULT 1 CHECK (usage_price_quantity > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    retired_at          timestamptz,
    CHECK (includes_alerts OR includes_orders),
    CHECK (includes_orders OR NOT (includes_parts OR includes_labour)),
    CHECK (fee_per_asset_month_minor IS NOT NULL OR usage_price_minor IS NOT NULL)
);

-- --- subscriptions -------------------------------------------------------------------------

-- lets other tables reference an asset together with its customer (no cross-customer rows)
ALTER TABLE assets ADD CONSTRAINT assets_customer_id_id UNIQUE (customer_id, id);

CREATE TABLE subscriptions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          bigint NOT NULL REFERENCES customers (id),
    scope                text NOT NULL CHECK (scope IN ('assets', 'site')),
    site_id              bigint,
    status               text NOT NULL DEFAULT 'trialing'
                         CHECK (status IN ('trialing', 'active', 'past_due', 'paused',
                                           'cancelled')),
    starts_at            timestamptz NOT NULL,
    -- end of the current term; renewal moves it forward by term_months
    current_term_ends_at timestamptz NOT NULL,
    term_months          integer NOT NULL DEFAULT 12 CHECK (term_months BETWEEN 1 AND 120),
    auto_renew           boolean NOT NULL DEFAULT true,
    trial_ends_at        timestamptz,
    -- set when service stops (cancellation takes effect, or the term ends without renewal)
    ends_at              timestamptz,
    cancel_at_term_end   boolean NOT NULL DEFAULT false,
    cancelled_at         timestamptz,
    -- per-subscription changes to what the plan includes (keys of the entitlements record)
    entitlement_overrides jsonb NOT NULL DEFAULT '{}'::jsonb
                         CHECK (jsonb_typeof(entitlement_overrides) = 'object'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'site') = (site_id IS NOT NULL)),
    CHECK (starts_at < current_term_ends_at),
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id),
    UNIQUE (customer_id, id)
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id, id);
CREATE INDEX subscriptions_site ON subscriptions (site_id) WHERE site_id IS NOT NULL;

-- Which plan applies when: a plan change closes the open period and opens the next one at a
-- defined moment (now, or the end of the current term).
CREATE TABLE subscription_plan_periods (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES subscriptions (id),
    plan_id          bigint NOT NULL REFERENCES plans (id),
    effective_from   timestamptz NOT NULL,
    effective_to     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (effective_to IS NULL OR effective_from < effective_to),
    UNIQUE (subscription_id, effective_from)
);
CREATE UNIQUE INDEX subscription_plan_periods_one_open
    ON subscription_plan_periods (subscription_id) WHERE effective_to IS NULL;

CREATE TABLE subscription_assets (
    subscription_id  bigint NOT NULL,
    customer_id      bigint NOT NULL,
    asset_id         bigint NOT NULL,
    added_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, asset_id),
    FOREIGN KEY (customer_id, subscription_id) REFERENCES subscriptions (customer_id, id),
    FOREIGN KEY (customer_id, asset_id) REFERENCES assets (customer_id, id)
);
CREATE INDEX subscription_assets_asset ON subscription_assets (asset_id);

-- --- partners ------------------------------------------------------------------------------

CREATE TABLE partners (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- regions (sites.region) the partner serves; explicit sites come first
    regions         text[] NOT NULL DEFAULT '{}',
    commission_bps  integer NOT NULL DEFAULT 1000 CHECK (commission_bps BETWEEN 0 AND 10000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz
);

CREATE TABLE partner_sites (
    partner_id  bigint NOT NULL REFERENCES partners (id),
    site_id     bigint NOT NULL REFERENCES sites (id),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, site_id)
);
CREATE INDEX partner_sites_site ON partner_sites (site_id);

-- Partner keys: a fourth role that belongs to a partner, not to a customer.
ALTER TABLE api_keys ADD COLUMN partner_id bigint REFERENCES partners (id);
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('operator', 'customer', 'technician', 'partner'));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_owner_check CHECK (
    CASE role
        WHEN 'operator' THEN customer_id IS NULL AND partner_id IS NULL
        WHEN 'partner' THEN customer_id IS NULL AND partner_id IS NOT NULL
        ELSE customer_id IS NOT NULL AND partner_id IS NULL
    END
);
CREATE INDEX api_keys_partner ON api_keys (partner_id) WHERE partner_id IS NOT NULL;

-- --- parts and logistics -------------------------------------------------------------------

-- The parts of each kind's definition, written when the kind is applied.
CREATE TABLE parts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku           text NOT NULL UNIQUE,
    name          text NOT NULL,
    kind          text NOT NULL,
    component     text NOT NULL,
    price_minor   bigint NOT NULL CHECK (price_minor >= 0),
    currency      char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    labour_hours  double precision NOT NULL DEFAULT 1 CHECK (labour_hours >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE INDEX parts_kind_component ON parts (kind, component);

CREATE TABLE depots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region      text NOT NULL DEFAULT '',
    latitude    double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- Stock of one part at one depot. Never negative, never more reserved than on hand: the
-- database refuses it, whatever the code does.
CREATE TABLE inventory (
    depot_id          bigint NOT NULL REFERENCES depots (id),
    part_id           bigint NOT NULL REFERENCES parts (id),
    on_hand           integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved          integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    reorder_point     integer NOT NULL DEFAULT 0 CHECK (reorder_point >= 0),
    reorder_quantity  integer NOT NULL DEFAULT 1 CHECK (reorder_quantity > 0),
    shipping_days     integer NOT NULL DEFAULT 2 CHECK (shipping_days BETWEEN 0 AND 365),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (depot_id, part_id),
    CONSTRAINT inventory_reserved_within_on_hand CHECK (reserved <= on_hand)
);
CREATE INDEX inventory_part ON inventory (part_id);

CREATE TABLE replenishments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    depot_id     bigint NOT NULL REFERENCES depots (id),
    part_id      bigint NOT NULL REFERENCES parts (id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    status       text NOT NULL DEFAULT 'requested'
                 CHECK (status IN ('requested', 'received', 'cancelled')),
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    received_at  timestamptz
);
-- one open request per depot and part
CREATE UNIQUE INDEX replenishments_one_open ON replenishments (depot_id, part_id)
    WHERE status = 'requested';

-- --- maintenance orders --------------------------------------------------------------------

CREATE TABLE maintenance_orders (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       bigint NOT NULL REFERENCES customers (id),
    asset_id          bigint NOT NULL,
    component         text NOT NULL,
    subscription_id   bigint REFERENCES subscriptions (id),
    plan_id           bigint REFERENCES plans (id),
    status            text NOT NULL DEFAULT 'raised'
                      CHECK (status IN ('raised', 'scheduled', 'in_progress', 'completed',
                                        'cancelled')),
    priority          text NOT NULL DEFAULT 'normal'
                      CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    reason            text NOT NULL CHECK (reason IN ('predicted', 'anomaly', 'manual', 'failure')),
    due_at            timestamptz NOT NULL,
    sla_deadline      timestamptz,
    -- the prediction that caused the order: predictions (asset_id, component, time)
    prediction_time   timestamptz,
    at_risk           boolean NOT NULL DEFAULT false,
    at_risk_reason    text,
    parts_included    boolean NOT NULL DEFAULT false,
    labour_included   boolean NOT NULL DEFAULT false,
    partner_id        bigint REFERENCES partners (id),
    scheduled_for     timestamptz,
    notes             text NOT NULL DEFAULT '',
    cancel_reason     text,
    raised_at         timestamptz NOT NULL,
    scheduled_at      timestamptz,
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, asset_id) REFERENCES assets (customer_id, id),
    CHECK (at_risk = (at_risk_reason IS NOT NULL)),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
-- At most one open order per asset and component, enforced by the database (the policy
-- inserts with ON CONFLICT DO NOTHING on this index, so concurrent dispatchers cannot race).
CREATE UNIQUE INDEX maintenance_orders_one_open ON maintenance_orders (asset_id, component)
    WHERE status IN ('raised', 'scheduled', 'in_progress');
CREATE INDEX maintenance_orders_customer ON maintenance_orders (customer_id, id);
CREATE INDEX maintenance_orders_partner ON maintenance_orders (partner_id, id)
    WHERE partner_id IS NOT NULL;
CREATE INDEX maintenance_orders_asset ON maintenance_orders (asset_id, component, id);

ALTER TABLE asset_lives ADD CONSTRAINT asset_lives_order
    FOREIGN KEY (order_id) REFERENCES maintenance_orders (id);

CREATE TABLE reservations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES maintenance_orders (id),
    depot_id     bigint NOT NULL REFERENCES depots (id),
    part_id      bigint NOT NULL REFERENCES parts (id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    -- held: counted in inventory.reserved; shipped: left the depot; released: given back
    status       text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'shipped', 'released')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz
);
CREATE INDEX reservations_order ON reservations (order_id);

CREATE TABLE shipments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    order_id        bigint NOT NULL REFERENCES maintenance_orders (id),
    reservation_id  bigint NOT NULL UNIQUE REFERENCES reservations (id),
    depot_id        bigint NOT NULL REFERENCES depots (id),
    part_id         bigint NOT NULL REFERENCES parts (id),
    quantity        integer NOT NULL CHECK (quantity > 0),
    site_id         bigint REFERENCES sites (id),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled')),
    eta             timestamptz NOT NULL,
    carrier         text NOT NULL DEFAULT '',
    tracking_ref    text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    cancelled_at    timestamptz
);
CREATE INDEX shipments_customer ON shipments (customer_id, id);
CREATE INDEX shipments_order ON shipments (order_id);

-- Parts used by a completed order; billable when the plan does not include parts.
CREATE TABLE order_parts (
    order_id     bigint NOT NULL REFERENCES maintenance_orders (id),
    part_id      bigint NOT NULL REFERENCES parts (id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    currency     char(3) NOT NULL,
    billable     boolean NOT NULL,
    PRIMARY KEY (order_id, part_id)
);

-- The partner's commission on a completed order (read by billing).
CREATE TABLE partner_commissions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id    bigint NOT NULL REFERENCES partners (id),
    order_id      bigint NOT NULL UNIQUE REFERENCES maintenance_orders (id),
    customer_id   bigint NOT NULL REFERENCES customers (id),
    basis_minor   bigint NOT NULL CHECK (basis_minor >= 0),
    rate_bps      integer NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    amount_minor  bigint NOT NULL CHECK (amount_minor >= 0),
    currency      char(3) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_commissions_partner ON partner_commissions (partner_id, id);

-- --- failures and missed predictions -------------------------------------------------------

CREATE TABLE failure_reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    asset_id     bigint NOT NULL,
    component    text NOT NULL,
    failed_at    timestamptz NOT NULL,
    description  text NOT NULL DEFAULT '',
    -- the order that was open when it failed, or the failure order raised for it
    order_id     bigint REFERENCES maintenance_orders (id),
    missed       boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, asset_id) REFERENCES assets (customer_id, id),
    UNIQUE (asset_id, component, failed_at)
);

-- A failure that no open order anticipated: the policy's (or the model's) miss.
CREATE TABLE missed_predictions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    failure_report_id    bigint NOT NULL UNIQUE REFERENCES failure_reports (id),
    customer_id          bigint NOT NULL REFERENCES customers (id),
    asset_id             bigint NOT NULL REFERENCES assets (id),
    component            text NOT NULL,
    failed_at            timestamptz NOT NULL,
    last_prediction_time timestamptz,
    last_due_at_conservative timestamptz,
    last_failure_probability double precision,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX missed_predictions_customer ON missed_predictions (customer_id, id);

-- --- the policy: its queue and its hysteresis state ----------------------------------------

-- Every new prediction is queued here by a trigger; dispatchers take rows with
-- FOR UPDATE SKIP LOCKED and delete them in the transaction that acts on them.
CREATE TABLE policy_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id         bigint NOT NULL,
    component        text NOT NULL,
    prediction_time  timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    -- set after a failed attempt: retry not before then (NULL: ready now)
    not_before       timestamptz,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, component, prediction_time)
);

CREATE FUNCTION fleetcare_queue_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO policy_queue (asset_id, component, prediction_time)
    VALUES (NEW.asset_id, NEW.component, NEW.time)
    ON CONFLICT (asset_id, component, prediction_time) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER predictions_queue AFTER INSERT ON predictions
    FOR EACH ROW EXECUTE FUNCTION fleetcare_queue_prediction();

-- Per asset and component: is it currently "due" (entered above the enter threshold, not yet
-- below the exit threshold)? Alerts and orders happen on entering, so a prediction wobbling
-- around the threshold does not flap.
CREATE TABLE policy_states (
    asset_id              bigint NOT NULL REFERENCES assets (id),
    component             text NOT NULL,
    state                 text NOT NULL DEFAULT 'clear' CHECK (state IN ('clear', 'due')),
    entered_at            timestamptz,
    alerted_at            timestamptz,
    order_id              bigint REFERENCES maintenance_orders (id),
    last_prediction_time  timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, component)
);
