-- Billing in advance or in arrears. In advance, a month's invoice also bills the next month's
-- fees as the contract stands at closing; the next invoice bills that month's real fees and
-- credits what was billed in advance (usage is always billed in arrears).
ALTER TABLE subscriptions
    ADD COLUMN billing_timing text NOT NULL DEFAULT 'arrears'
                              CHECK (billing_timing IN ('advance', 'arrears'));
