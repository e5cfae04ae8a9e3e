-- Every prediction explains itself: its top contributing signals with signed contributions,
-- the failure mode and a suggested action (models.explain), and whether its data passed the
-- data-quality gate (flat-lined or stuck sensors, gaps, values at the bounds). A prediction
-- with low confidence never raises an automatic order (maintenance.policy).
-- Nullable without a default: adding the columns rewrites no stored (compressed) chunk.
ALTER TABLE predictions ADD COLUMN explanation jsonb;
ALTER TABLE predictions ADD COLUMN low_confidence boolean;

-- Why an order was raised: the explanation of the prediction that raised it, kept with the
-- order (predictions are compressed and expire; the reason of an order must not).
ALTER TABLE maintenance_orders ADD COLUMN explanation jsonb;
