-- asset_health is rewritten for every scored asset on every pass (fleetcare_track_predictions,
-- migration 0011). Its index on due_at_conservative made each of those updates non-HOT (a
-- new index entry in both of its indexes per asset and pass: 0 HOT updates of 120,000 on
-- bench.score's fleet), and no query uses it: the dashboard sorts and classes assets by the
-- due date it shows (api/dashboard/repository.py DUE_SHOWN, an expression over this column
-- and predicted_at, rul_low and the kind's typical rate) and reads the rows by asset id.
-- Without it, and with room on each page for the new version of a row (as
-- latest_predictions and asset_scoring_state have), the updates stay on their page.
DROP INDEX asset_health_due;
ALTER TABLE asset_health SET (fillfactor = 50);
-- the rows as they are now, packed at that fill (one row per asset: a short lock)
CLUSTER asset_health USING asset_health_pkey;
