-- Billing: usage metered from telemetry, invoices with their lines.
--
-- Money is an integer amount of minor units (cents) in the invoice's currency; quantities
-- (km, trips, cycles, days) are numeric, never floating point. A period is a calendar month
-- in UTC, written 'YYYY-MM'.

-- Usage of one asset under one subscription in one period, metered from the telemetry of the
-- kind's cumulative usage metric. The id is uuid5(subscription, asset, period): recomputing
-- writes the same row. billed_* is what invoices have charged for it so far (the issued
-- invoice of its period plus later adjustment lines); NULL until its period's invoice issues.
CREATE TABLE usage_records (
    id                   uuid PRIMARY KEY,
    customer_id          bigint NOT NULL REFERENCES customers (id),
    subscription_id      bigint NOT NULL REFERENCES subscriptions (id),
    asset_id             bigint NOT NULL REFERENCES assets (id),
    period               text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    metric               text NOT NULL,
    unit                 text NOT NULL,
    -- the part of the period the subscription covered the asset (billable time)
    window_start         timestamptz NOT NULL,
    window_end           timestamptz NOT NULL,
    quantity             numeric(20, 3) NOT NULL CHECK (quantity >= 0),
    readings             integer NOT NULL CHECK (readings >= 0),
    resets               integer NOT NULL CHECK (resets >= 0),
    computed_at          timestamptz NOT NULL,
    invoice_id           bigint,
    billed_quantity      numeric(20, 3),
    billed_amount_minor  bigint,
    UNIQUE (subscription_id, asset_id, period),
    CHECK (window_start <= window_end),
    CHECK ((billed_quantity IS NULL) = (billed_amount_minor IS NULL))
);
CREATE INDEX usage_records_customer_period ON usage_records (customer_id, period);
CREATE INDEX usage_records_asset_period ON usage_records (asset_id, period);

CREATE TABLE invoices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers (id),
    period        text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    -- always the sum of the lines (checked at commit by invoice_total_matches_lines)
    total_minor   bigint NOT NULL DEFAULT 0,
    line_count    integer NOT NULL DEFAULT 0 CHECK (line_count >= 0),
    closed_at     timestamptz NOT NULL,
    issued_at     timestamptz,
    paid_at       timestamptz,
    voided_at     timestamptz,
    void_reason   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- closing a period twice (or concurrently) finds this row instead of making a second one
    UNIQUE (customer_id, period),
    UNIQUE (customer_id, id),
    CHECK (period_start < period_end),
    CHECK ((status IN ('issued', 'paid')) <= (issued_at IS NOT NULL)),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
    CHECK ((status = 'void') = (voided_at IS NOT NULL))
);
CREATE INDEX invoices_period ON invoices (period, id);

ALTER TABLE usage_records ADD CONSTRAINT usage_records_invoice
    FOREIGN KEY (invoice_id) REFERENCES invoices (id);

CREATE TABLE invoice_lines (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id        bigint NOT NULL REFERENCES invoices (id),
    line_no           integer NOT NULL CHECK (line_no > 0),
    kind              text NOT NULL
                      CHECK (kind IN ('base_fee', 'usage', 'usage_adjustment', 'parts',
                                      'labour')),
    description       text NOT NULL,
    subscription_id   bigint REFERENCES subscriptions (id),
    asset_id          bigint REFERENCES assets (id),
    plan_id           bigint REFERENCES plans (id),
    order_id          bigint REFERENCES maintenance_orders (id),
    part_id           bigint REFERENCES parts (id),
    usage_record_id   uuid REFERENCES usage_records (id),
    -- for usage_adjustment lines: the earlier period whose usage arrived late
    adjusts_period    text CHECK (adjusts_period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    starts_at         timestamptz,
    ends_at           timestamptz,
    quantity          numeric(20, 4) NOT NULL,
    unit              text NOT NULL,
    -- unit_price_minor per unit_quantity units (e.g. 400 cents per 1000 km)
    unit_price_minor  bigint NOT NULL,
    unit_quantity     integer NOT NULL DEFAULT 1 CHECK (unit_quantity > 0),
    amount_minor      bigint NOT NULL,
    UNIQUE (invoice_id, line_no),
    CHECK ((kind = 'usage_adjustment') = (adjusts_period IS NOT NULL))
);
CREATE INDEX invoice_lines_usage_record ON invoice_lines (usage_record_id)
    WHERE usage_record_id IS NOT NULL;

-- Totals equal the sum of the lines: checked when the transaction commits (deferred), so the
-- service can replace lines and set the total in any order within one transaction.
CREATE FUNCTION fleetcare_check_invoice_total() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target bigint;
    lines_total bigint;
    lines integer;
    stored_total bigint;
    stored_count integer;
BEGIN
    IF TG_TABLE_NAME = 'invoices' THEN
        target := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        target := OLD.invoice_id;
    ELSE
        target := NEW.invoice_id;
    END IF;
    SELECT total_minor, line_count INTO stored_total, stored_count
      FROM invoices WHERE id = target;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount_minor), 0), count(*) INTO lines_total, lines
      FROM invoice_lines WHERE invoice_id = target;
    IF lines_total <> stored_total OR lines <> stored_count THEN
        RAISE EXCEPTION 'invoice % total % (% lines) differs from its lines: % (% lines)',
            target, stored_total, stored_count, lines_total, lines
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_total_matches_lines';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER invoice_total_matches_lines
    AFTER INSERT OR UPDATE ON invoices DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fleetcare_check_invoice_total();
CREATE CONSTRAINT TRIGGER invoice_lines_match_total
    AFTER INSERT OR UPDATE OR DELETE ON invoice_lines DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fleetcare_check_invoice_total();

-- An invoice that has left draft is never changed: its lines are frozen, its amounts too, and
-- its status only moves draft -> issued -> paid | void (draft -> void as well).
CREATE FUNCTION fleetcare_freeze_issued_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target bigint;
    current_status text;
BEGIN
    target := CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
    SELECT status INTO current_status FROM invoices WHERE id = target;
    IF current_status IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'invoice % is %; its lines cannot change', target, current_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_lines_frozen';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.invoice_id <> NEW.invoice_id THEN
        RAISE EXCEPTION 'a line cannot move to another invoice'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_lines_frozen';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER invoice_lines_frozen BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION fleetcare_freeze_issued_lines();

CREATE FUNCTION fleetcare_guard_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is %; it cannot be deleted', OLD.id, OLD.status
                USING ERRCODE = 'check_violation', CONSTRAINT = 'invoices_frozen';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (
        NEW.total_minor <> OLD.total_minor OR NEW.line_count <> OLD.line_count
        OR NEW.currency <> OLD.currency OR NEW.customer_id <> OLD.customer_id
        OR NEW.period <> OLD.period OR NEW.closed_at <> OLD.closed_at) THEN
        RAISE EXCEPTION 'invoice % is %; its amounts cannot change', OLD.id, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoices_frozen';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
        (OLD.status = 'draft' AND NEW.status IN ('issued', 'void'))
        OR (OLD.status = 'issued' AND NEW.status IN ('paid', 'void'))) THEN
        RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoices_status_flow';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION fleetcare_guard_invoice();

-- Partner statements and the billing reads of orders look up commissions by period.
CREATE INDEX maintenance_orders_completed ON maintenance_orders (completed_at)
    WHERE status = 'completed';
