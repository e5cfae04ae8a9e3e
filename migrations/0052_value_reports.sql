-- The monthly value report of each customer is announced once (value_report.ready): this
-- table remembers which (customer, month) was sent, so the billing worker can run any number
-- of times, on any number of machines.
CREATE TABLE value_reports_sent (
    customer_id  bigint NOT NULL REFERENCES customers (id),
    period       text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, period)
);
SELECT fleetcare_tenant_policy('value_reports_sent');
