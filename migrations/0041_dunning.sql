-- Dunning: payment terms and due dates, payments, and the steps taken when an invoice is late
-- (reminders, past due, automatic orders paused), each once.

-- Stated in the plan: days to pay an issued invoice, the days after the due date on which a
-- reminder goes out, and after how many days overdue the subscription becomes past_due and its
-- automatic orders pause.
ALTER TABLE plans
    ADD COLUMN payment_terms_days      integer NOT NULL DEFAULT 30
                                       CHECK (payment_terms_days BETWEEN 0 AND 365),
    ADD COLUMN dunning_reminder_days   integer[] NOT NULL DEFAULT '{3,10,20}'
                                       CHECK (cardinality(dunning_reminder_days) <= 10
                                              AND 1 <= ALL (dunning_reminder_days)
                                              AND 365 >= ALL (dunning_reminder_days)),
    ADD COLUMN past_due_after_days     integer NOT NULL DEFAULT 15
                                       CHECK (past_due_after_days BETWEEN 1 AND 365),
    ADD COLUMN orders_pause_after_days integer NOT NULL DEFAULT 30
                                       CHECK (orders_pause_after_days BETWEEN 1 AND 365);

-- Set when an invoice is issued: issued_at + payment_terms_days. paid_minor is the sum of its
-- payments; the invoice becomes 'paid' when it reaches total_minor.
ALTER TABLE invoices
    ADD COLUMN payment_terms_days integer CHECK (payment_terms_days BETWEEN 0 AND 365),
    ADD COLUMN due_at             timestamptz,
    ADD COLUMN paid_minor         bigint NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    ADD CONSTRAINT invoices_due_when_issued
        CHECK (due_at IS NULL OR issued_at IS NOT NULL);
CREATE INDEX invoices_overdue ON invoices (due_at) WHERE status = 'issued';

-- Dunning paused the subscription's automatic orders at this moment (the policy alerts
-- instead); payment clears it.
ALTER TABLE subscriptions ADD COLUMN orders_paused_at timestamptz;

CREATE TABLE invoice_payments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   bigint NOT NULL,
    invoice_id    bigint NOT NULL,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    received_at   timestamptz NOT NULL,
    -- the payer's or bank's reference: recording the same payment twice is refused
    reference     text NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),
    recorded_at   timestamptz NOT NULL,
    FOREIGN KEY (customer_id, invoice_id) REFERENCES invoices (customer_id, id),
    UNIQUE (invoice_id, reference)
);
CREATE INDEX invoice_payments_customer ON invoice_payments (customer_id, received_at);

-- Each dunning step of an invoice is taken once: 'reminder:3', 'past_due:<subscription>',
-- 'orders_paused:<subscription>'. Workers insert ON CONFLICT DO NOTHING and act only on the
-- row they inserted, so two workers never send the same reminder.
CREATE TABLE dunning_steps (
    invoice_id       bigint NOT NULL,
    customer_id      bigint NOT NULL,
    step             text NOT NULL CHECK (length(step) BETWEEN 1 AND 100),
    subscription_id  bigint,
    days_overdue     integer NOT NULL CHECK (days_overdue >= 0),
    taken_at         timestamptz NOT NULL,
    PRIMARY KEY (invoice_id, step),
    FOREIGN KEY (customer_id, invoice_id) REFERENCES invoices (customer_id, id)
);
CREATE INDEX dunning_steps_customer ON dunning_steps (customer_id, taken_at);

-- the tenant wall (0030) and the audit trail (0031): payments are people's changes
SELECT fleetcare_tenant_policy('invoice_payments');
SELECT fleetcare_tenant_policy('dunning_steps');
SELECT fleetcare_audit_table('invoice_payments');
