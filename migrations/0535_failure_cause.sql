-- What ended a failed component, as the technician reporting it found (issue 20): in the
-- words of the order outcomes (0070_order_outcomes.sql) — confirmed_wear, the part's own
-- wear; other_fault, a sudden external or other fault that the wear did not cause (a
-- vandalised door, a foreign object). unknown: not said, and every report made before.
ALTER TABLE failure_reports ADD COLUMN cause text NOT NULL DEFAULT 'unknown'
    CHECK (cause IN ('confirmed_wear', 'other_fault', 'unknown'));

-- The life such a failure ends is labelled other_fault (asset_lives.outcome, as an order
-- closed with that outcome labels its life: fleet.causes.life_outcome). Lives recorded before
-- keep their label ('failure': a wear end, as before).
