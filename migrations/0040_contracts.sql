-- Contracts: renewal notice and reminders, committed minimums, yearly price escalation, the
-- rule for the remainder of a term cancelled early, trials on a limited number of assets, the
-- plan's pause rule, and the status history that billing and the SaaS metrics read.

-- What a paused stretch costs: 'free' (nothing), 'reduced' (pause_fee_bps of the fee) or
-- 'full' (billed like active time).
ALTER TABLE plans
    ADD COLUMN pause_rule    text NOT NULL DEFAULT 'free'
                             CHECK (pause_rule IN ('free', 'reduced', 'full')),
    ADD COLUMN pause_fee_bps integer NOT NULL DEFAULT 0 CHECK (pause_fee_bps BETWEEN 0 AND 10000),
    ADD CONSTRAINT plans_pause_fee CHECK ((pause_rule = 'reduced') = (pause_fee_bps > 0));

ALTER TABLE subscriptions
    -- a non-renewal (or a cancellation at term end) must come this many days before the term
    -- ends; a later one takes effect at the end of the following term
    ADD COLUMN notice_days           integer NOT NULL DEFAULT 30
                                     CHECK (notice_days BETWEEN 0 AND 365),
    -- subscription.renewal_upcoming is sent this many days before the term ends, once per term
    ADD COLUMN renewal_reminder_days integer NOT NULL DEFAULT 60
                                     CHECK (renewal_reminder_days BETWEEN 1 AND 365),
    ADD COLUMN renewal_reminded_for  timestamptz,
    -- when a scheduled cancellation (cancel_at_term_end) takes effect
    ADD COLUMN cancel_effective_at   timestamptz,
    -- committed minimum per month: assets billed at least, and usage units billed at least
    ADD COLUMN committed_assets      integer CHECK (committed_assets BETWEEN 1 AND 1000000),
    ADD COLUMN committed_usage       numeric(20, 3) CHECK (committed_usage > 0),
    -- yearly price escalation in basis points, applied at each anniversary of starts_at
    ADD COLUMN escalation_bps        integer NOT NULL DEFAULT 0
                                     CHECK (escalation_bps BETWEEN 0 AND 5000),
    -- what an immediate cancellation before the term ends owes: nothing, the fees of the rest
    -- of the term, or the fees of the notice period
    ADD COLUMN cancellation_rule     text NOT NULL DEFAULT 'none'
                                     CHECK (cancellation_rule IN ('none', 'remainder', 'notice')),
    -- a trial (pilot) covers at most this many assets; at its end it converts or ends
    ADD COLUMN trial_asset_limit     integer CHECK (trial_asset_limit BETWEEN 1 AND 1000000),
    ADD COLUMN trial_converts        boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT subscriptions_cancel_effective
        CHECK (cancel_effective_at IS NULL OR cancel_at_term_end);

-- The charges of a contract on an invoice are fees (kind 'base_fee'); this says which: the
-- shortfall to a committed minimum, what an early cancellation owes for the rest of its term,
-- next month's fees billed in advance, and the credit of what was billed in advance.
ALTER TABLE invoice_lines
    ADD COLUMN contract_charge text
        CHECK (contract_charge IN ('commitment', 'early_termination', 'advance',
                                   'advance_credit')),
    ADD CONSTRAINT invoice_lines_contract_charge_fee
        CHECK (contract_charge IS NULL OR kind = 'base_fee');

-- Every status a subscription had, and when: [valid_from, valid_to). One open row per
-- subscription. A renewal closes the row and opens the next with the same status and
-- reason 'renewal', so renewals are counted from here too. Billing bills paused stretches by
-- the plan's pause rule; the SaaS metrics read MRR from these rows.
CREATE TABLE subscription_status_history (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      bigint NOT NULL,
    subscription_id  bigint NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('trialing', 'active', 'past_due', 'paused', 'cancelled')),
    valid_from       timestamptz NOT NULL,
    valid_to         timestamptz,
    reason           text NOT NULL DEFAULT '' CHECK (length(reason) <= 200),
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, subscription_id) REFERENCES subscriptions (customer_id, id),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
CREATE UNIQUE INDEX subscription_status_history_one_open
    ON subscription_status_history (subscription_id) WHERE valid_to IS NULL;
CREATE INDEX subscription_status_history_sub
    ON subscription_status_history (subscription_id, valid_from);
CREATE INDEX subscription_status_history_customer
    ON subscription_status_history (customer_id, valid_from);

-- Subscriptions made before this migration: their trial, then their current status (a
-- cancelled one was active until it ended). Earlier pauses were not recorded.
INSERT INTO subscription_status_history (customer_id, subscription_id, status, valid_from,
                                         valid_to, reason)
SELECT customer_id, id, 'trialing', starts_at, trial_ends_at, 'backfill'
  FROM subscriptions
 WHERE trial_ends_at IS NOT NULL AND status <> 'trialing' AND trial_ends_at > starts_at;
INSERT INTO subscription_status_history (customer_id, subscription_id, status, valid_from,
                                         valid_to, reason)
SELECT customer_id, id,
       CASE WHEN status = 'cancelled' THEN 'active' ELSE status END,
       CASE WHEN status <> 'trialing' AND trial_ends_at > starts_at THEN trial_ends_at
            ELSE starts_at END,
       CASE WHEN status = 'cancelled'
            THEN greatest(coalesce(ends_at, cancelled_at, starts_at),
                          CASE WHEN trial_ends_at > starts_at THEN trial_ends_at
                               ELSE starts_at END) END,
       'backfill'
  FROM subscriptions;
INSERT INTO subscription_status_history (customer_id, subscription_id, status, valid_from,
                                         reason)
SELECT s.customer_id, s.id, 'cancelled', h.valid_to, 'backfill'
  FROM subscriptions s
  JOIN subscription_status_history h ON h.subscription_id = s.id AND h.valid_to IS NOT NULL
       AND h.status = 'active'
 WHERE s.status = 'cancelled';

-- the tenant wall (0030): a customer's transactions see only its own history rows
SELECT fleetcare_tenant_policy('subscription_status_history');
