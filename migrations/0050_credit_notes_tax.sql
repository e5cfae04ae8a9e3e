-- Invoice documents: gap-free numbers, tax per line, credit notes, service credits.
--
-- An issued invoice is never edited: voiding or correcting it issues a credit note (its own
-- gap-free series). A plan's promise turns a failure of a covered asset into a service credit
-- that the next invoice carries as a negative line. Tax is computed per line from the seller's
-- and the buyer's legal details (reverse charge for B2B within the EU). docs/billing.md.

-- Gap-free numbering: one row per series and year, incremented in the issuing transaction.
-- The row lock serialises concurrent issuers; a rollback gives the number back.
CREATE TABLE document_sequences (
    series      text NOT NULL CHECK (series IN ('invoice', 'credit_note')),
    year        integer NOT NULL CHECK (year BETWEEN 2000 AND 2999),
    last_value  bigint NOT NULL CHECK (last_value > 0),
    PRIMARY KEY (series, year)
);

-- The seller (the operator): one row, edited with PUT /v1/billing/seller. Its country decides
-- what is domestic and what is cross-border.
CREATE TABLE seller_profile (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    legal_name  text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 200),
    address     text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    country     char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    vat_id      text CHECK (vat_id ~ '^[A-Z]{2}[0-9A-Z+*]{2,13}$'),
    email       text NOT NULL DEFAULT '' CHECK (length(email) <= 200),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO seller_profile (legal_name, address, country)
VALUES ('Fleetcare operator (set with PUT /v1/billing/seller)', '', 'DE');

-- A customer's legal details for invoices. A customer without one is invoiced as a consumer
-- in the seller's country (domestic rate).
CREATE TABLE customer_billing_profiles (
    customer_id    bigint PRIMARY KEY REFERENCES customers (id),
    legal_name     text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 200),
    address        text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    country        char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    customer_type  text NOT NULL CHECK (customer_type IN ('business', 'consumer')),
    vat_id         text CHECK (vat_id ~ '^[A-Z]{2}[0-9A-Z+*]{2,13}$'),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Tax rates by the buyer's country and type, in basis points (1900 = 19 %). eu: the country
-- is an EU member state (reverse charge applies between two of them).
CREATE TABLE tax_rates (
    country        char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    customer_type  text NOT NULL CHECK (customer_type IN ('business', 'consumer')),
    rate_bps       integer NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    eu             boolean NOT NULL,
    PRIMARY KEY (country, customer_type)
);
-- EU standard VAT rates (1 January 2026), the same for businesses and consumers.
INSERT INTO tax_rates (country, customer_type, rate_bps, eu)
SELECT c, t, r, true
  FROM (VALUES ('AT', 2000), ('BE', 2100), ('BG', 2000), ('CY', 1900), ('CZ', 2100),
               ('DE', 1900), ('DK', 2500), ('EE', 2400), ('ES', 2100), ('FI', 2550),
               ('FR', 2000), ('GR', 2400), ('HR', 2500), ('HU', 2700), ('IE', 2300),
               ('IT', 2200), ('LT', 2100), ('LU', 1700), ('LV', 2100), ('MT', 1800),
               ('NL', 2100), ('PL', 2300), ('PT', 2300), ('RO', 2100), ('SE', 2500),
               ('SI', 2200), ('SK', 2300)) AS rates (c, r)
 CROSS JOIN (VALUES ('business'), ('consumer')) AS types (t);

-- Plans state their promise: a covered component that fails before its predicted due date
-- earns failure_credit_bps of the asset's charges of that month, and/or a free repair.
ALTER TABLE plans
    ADD COLUMN failure_credit_bps integer CHECK (failure_credit_bps BETWEEN 1 AND 10000),
    ADD COLUMN failure_repair_free boolean NOT NULL DEFAULT false;

-- Invoices: a number from the 'invoice' series when issued, the tax total, and the seller's
-- and buyer's details as they were when it was issued (the document never changes after).
ALTER TABLE invoices
    ADD COLUMN number     text UNIQUE,
    ADD COLUMN tax_minor  bigint NOT NULL DEFAULT 0,
    ADD COLUMN seller     jsonb,
    ADD COLUMN buyer      jsonb;

-- Invoices issued before numbering get numbers in the order they were issued.
WITH numbered AS (
    SELECT id, extract(year FROM issued_at)::int AS y,
           row_number() OVER (PARTITION BY extract(year FROM issued_at) ORDER BY issued_at, id) AS n
      FROM invoices WHERE issued_at IS NOT NULL
)
UPDATE invoices i SET number = format('INV-%s-%s', n.y, lpad(n.n::text, 6, '0'))
  FROM numbered n WHERE n.id = i.id;
INSERT INTO document_sequences (series, year, last_value)
SELECT 'invoice', extract(year FROM issued_at)::int, count(*)
  FROM invoices WHERE issued_at IS NOT NULL GROUP BY 2;
ALTER TABLE invoices ADD CONSTRAINT invoices_numbered CHECK ((issued_at IS NULL) = (number IS NULL));

CREATE TABLE service_credits (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id        bigint NOT NULL REFERENCES customers (id),
    subscription_id    bigint NOT NULL REFERENCES subscriptions (id),
    plan_id            bigint NOT NULL REFERENCES plans (id),
    asset_id           bigint NOT NULL REFERENCES assets (id),
    component          text NOT NULL,
    -- the recorded end of life (reported failures and detected ones both end a life)
    life_id            bigint NOT NULL REFERENCES asset_lives (id),
    failure_report_id  bigint REFERENCES failure_reports (id),
    failed_at          timestamptz NOT NULL,
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    -- 'percent': failure_credit_bps of the asset's charges of the failure's month;
    -- 'free_repair': the billable parts and labour of the repair order
    kind               text NOT NULL CHECK (kind IN ('percent', 'free_repair')),
    rate_bps           integer CHECK (rate_bps BETWEEN 1 AND 10000),
    order_id           bigint REFERENCES maintenance_orders (id),
    reason             text NOT NULL,
    currency           char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- what the invoice that applied it credited (positive); NULL until then
    amount_minor       bigint CHECK (amount_minor >= 0),
    invoice_id         bigint REFERENCES invoices (id),
    earned_at          timestamptz NOT NULL,
    UNIQUE (life_id, kind),
    CHECK ((kind = 'percent') = (rate_bps IS NOT NULL)),
    CHECK ((invoice_id IS NULL) = (amount_minor IS NULL))
);
CREATE INDEX service_credits_customer ON service_credits (customer_id, failed_at);

ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines
    ADD CONSTRAINT invoice_lines_kind_check CHECK (kind IN (
        'base_fee', 'usage', 'usage_adjustment', 'parts', 'labour', 'service_credit')),
    ADD COLUMN service_credit_id bigint REFERENCES service_credits (id),
    -- 'untaxed': lines written before tax existed
    ADD COLUMN tax_category text NOT NULL DEFAULT 'untaxed'
        CHECK (tax_category IN ('standard', 'reverse_charge', 'outside_scope', 'untaxed')),
    ADD COLUMN tax_rate_bps integer NOT NULL DEFAULT 0 CHECK (tax_rate_bps BETWEEN 0 AND 10000),
    ADD COLUMN tax_minor bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT invoice_lines_credit CHECK (
        (kind = 'service_credit') = (service_credit_id IS NOT NULL));

-- The invoice's tax equals the sum of its lines' tax (checked at commit, like the total).
CREATE FUNCTION fleetcare_check_invoice_tax() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target bigint;
    lines_tax bigint;
    stored bigint;
BEGIN
    IF TG_TABLE_NAME = 'invoices' THEN
        target := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        target := OLD.invoice_id;
    ELSE
        target := NEW.invoice_id;
    END IF;
    SELECT tax_minor INTO stored FROM invoices WHERE id = target;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(tax_minor), 0) INTO lines_tax FROM invoice_lines WHERE invoice_id = target;
    IF lines_tax <> stored THEN
        RAISE EXCEPTION 'invoice % tax % differs from its lines: %', target, stored, lines_tax
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_tax_matches_lines';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER invoice_tax_matches_lines
    AFTER INSERT OR UPDATE ON invoices DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fleetcare_check_invoice_tax();
CREATE CONSTRAINT TRIGGER invoice_lines_match_tax
    AFTER INSERT OR UPDATE OR DELETE ON invoice_lines DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fleetcare_check_invoice_tax();

-- Once issued, the number, the tax and the parties of an invoice never change.
CREATE FUNCTION fleetcare_freeze_invoice_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'draft' AND (
        NEW.number IS DISTINCT FROM OLD.number OR NEW.tax_minor <> OLD.tax_minor
        OR NEW.seller IS DISTINCT FROM OLD.seller OR NEW.buyer IS DISTINCT FROM OLD.buyer) THEN
        RAISE EXCEPTION 'invoice % is %; its document cannot change', OLD.id, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoices_frozen';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_document_frozen BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION fleetcare_freeze_invoice_document();

-- A credit note reverses all (a void) or part (a correction) of an issued invoice's lines.
-- Amounts have the sign of the invoice line they credit; a line is never credited beyond its
-- amount. Credit notes are never changed or deleted.
CREATE TABLE credit_notes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    invoice_id   bigint NOT NULL,
    number       text NOT NULL UNIQUE,
    kind         text NOT NULL CHECK (kind IN ('void', 'correction')),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    currency     char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor  bigint NOT NULL,
    tax_minor    bigint NOT NULL,
    line_count   integer NOT NULL CHECK (line_count > 0),
    seller       jsonb NOT NULL,
    buyer        jsonb NOT NULL,
    issued_at    timestamptz NOT NULL,
    UNIQUE (customer_id, id),
    FOREIGN KEY (customer_id, invoice_id) REFERENCES invoices (customer_id, id)
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);
CREATE INDEX credit_notes_issued ON credit_notes (issued_at, id);

CREATE TABLE credit_note_lines (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    credit_note_id   bigint NOT NULL REFERENCES credit_notes (id),
    line_no          integer NOT NULL CHECK (line_no > 0),
    invoice_line_id  bigint NOT NULL REFERENCES invoice_lines (id),
    description      text NOT NULL,
    amount_minor     bigint NOT NULL,
    tax_category     text NOT NULL,
    tax_rate_bps     integer NOT NULL,
    tax_minor        bigint NOT NULL,
    UNIQUE (credit_note_id, line_no)
);
CREATE INDEX credit_note_lines_invoice_line ON credit_note_lines (invoice_line_id);

CREATE FUNCTION fleetcare_check_credit_note_line() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    line_amount bigint;
    credited bigint;
BEGIN
    SELECT amount_minor INTO line_amount FROM invoice_lines WHERE id = NEW.invoice_line_id;
    SELECT coalesce(sum(amount_minor), 0) INTO credited
      FROM credit_note_lines WHERE invoice_line_id = NEW.invoice_line_id;
    IF sign(NEW.amount_minor) * sign(line_amount) < 0 OR abs(credited) > abs(line_amount) THEN
        RAISE EXCEPTION 'invoice line % (%) would be credited % in all', NEW.invoice_line_id,
            line_amount, credited
            USING ERRCODE = 'check_violation', CONSTRAINT = 'credit_within_line';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER credit_note_lines_within AFTER INSERT ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION fleetcare_check_credit_note_line();

CREATE FUNCTION fleetcare_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never changed or deleted', TG_TABLE_NAME
        USING ERRCODE = 'check_violation', CONSTRAINT = 'documents_immutable';
END $$;
CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION fleetcare_refuse_change();
CREATE TRIGGER credit_note_lines_immutable BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION fleetcare_refuse_change();
