-- What a technician found when closing an order (issue 20, feedback): one outcome per
-- component looked at. These label the lives that orders end (asset_lives.outcome), so that
-- training knows a confirmed wear from a false alarm, and the model page compares the
-- predictions with what was found.
CREATE TABLE order_outcomes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      bigint NOT NULL REFERENCES customers (id),
    order_id         bigint NOT NULL REFERENCES maintenance_orders (id),
    asset_id         bigint NOT NULL REFERENCES assets (id),
    component        text NOT NULL,
    code             text NOT NULL CHECK (code IN ('confirmed_wear', 'false_alarm', 'other_fault')),
    order_status     text NOT NULL CHECK (order_status IN ('completed', 'cancelled')),
    measured_metric  text,
    measured_value   double precision,
    -- life units left when the work was done, estimated from the measurement
    remaining_life   double precision CHECK (remaining_life >= 0),
    usage_at_end     double precision,
    life_id          bigint REFERENCES asset_lives (id),
    notes            text NOT NULL DEFAULT '',
    recorded_at      timestamptz NOT NULL,
    UNIQUE (order_id, component),
    CHECK ((measured_metric IS NULL) = (measured_value IS NULL))
);
CREATE INDEX order_outcomes_customer ON order_outcomes (customer_id, recorded_at);
CREATE INDEX order_outcomes_asset ON order_outcomes (asset_id, component);

-- A life's label: how it ended as far as anyone found out. NULL for lives recorded before
-- outcomes existed (and replacements closed without one).
ALTER TABLE asset_lives ADD COLUMN outcome text
    CHECK (outcome IN ('failure', 'confirmed_wear', 'false_alarm', 'other_fault'));
-- life units the component still had when it was replaced (measured), else NULL
ALTER TABLE asset_lives ADD COLUMN remaining_at_end double precision
    CHECK (remaining_at_end >= 0);
UPDATE asset_lives SET outcome = 'failure' WHERE end_reason = 'failure';
-- every path that records a failure's life (reports, history imports) labels it so
CREATE FUNCTION fleetcare_label_failure_life() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome IS NULL AND NEW.end_reason = 'failure' THEN
        NEW.outcome := 'failure';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER asset_lives_label_failure BEFORE INSERT ON asset_lives
    FOR EACH ROW EXECUTE FUNCTION fleetcare_label_failure_life();

-- the tenant wall and the audit trail (migrations/0030_tenant_wall.sql, 0031_audit.sql)
SELECT fleetcare_tenant_policy('order_outcomes');
SELECT fleetcare_audit_table('order_outcomes');
