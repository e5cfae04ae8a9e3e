-- Prediction bookkeeping, set-based: the policy queue, the latest prediction per asset
-- component, the asset's health row and the live notification, once per batch instead of
-- once per row.
--
-- The row triggers of 0004, 0005 and 0009 cost ~60 µs a row when healthy, and the health
-- recomputation inside them ran on a plan cached while latest_predictions was empty: a
-- sequential scan per inserted row, so a 10,000-asset scoring pass took 10 s instead of 1
-- (measured with bench/score.py). Hypertables refuse transition tables, so a statement
-- trigger cannot see the new rows; instead every writer of predictions calls
-- fleetcare_track_predictions with the keys it inserted, in the same transaction
-- (models.repository.insert_predictions does). A SQL-language function plans each of its
-- statements at every call, with the statistics of the moment.

-- Like telemetry, the predictions hypertable carries no foreign keys: the check cost 15 µs a
-- row (a row lock on the asset and on the model version per prediction), and the one writer
-- reads both in the same transaction; assets and versions are retired, never deleted.
ALTER TABLE predictions DROP CONSTRAINT predictions_asset_id_fkey;
ALTER TABLE predictions DROP CONSTRAINT predictions_model_version_id_fkey;

-- Rewritten for every scored asset on every pass: room on each page for the new version of
-- the row, so that updates which change no indexed column stay on the page (HOT).
ALTER TABLE latest_predictions SET (fillfactor = 50);
ALTER TABLE asset_scoring_state SET (fillfactor = 50);

DROP TRIGGER predictions_notify ON predictions;
DROP TRIGGER predictions_queue ON predictions;
DROP TRIGGER predictions_track_latest ON predictions;
DROP FUNCTION fleetcare_notify_prediction();
DROP FUNCTION fleetcare_queue_prediction();
DROP FUNCTION fleetcare_track_latest_prediction();

CREATE FUNCTION fleetcare_track_predictions(
    asset_ids bigint[], components text[], times timestamptz[]
) RETURNS void LANGUAGE sql VOLATILE AS $$
    -- the policy dispatchers act on each new prediction
    INSERT INTO policy_queue (asset_id, component, prediction_time)
    SELECT k.asset_id, k.component, k.time
      FROM unnest(asset_ids, components, times) AS k(asset_id, component, time)
    ON CONFLICT (asset_id, component, prediction_time) DO NOTHING;

    -- the newest prediction of each asset component (a late, older one replaces nothing)
    INSERT INTO latest_predictions AS lp (asset_id, component, time, model_version_id, rul,
        rul_low, rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
    SELECT DISTINCT ON (p.asset_id, p.component) p.asset_id, p.component, p.time,
           p.model_version_id, p.rul, p.rul_low, p.rul_high, p.failure_probability,
           p.anomaly_score, p.due_at, p.due_at_conservative
      FROM unnest(asset_ids, components, times) AS k(asset_id, component, time)
      JOIN predictions p
        ON p.asset_id = k.asset_id AND p.component = k.component AND p.time = k.time
     ORDER BY p.asset_id, p.component, p.time DESC
    ON CONFLICT (asset_id, component) DO UPDATE SET
        time = EXCLUDED.time, model_version_id = EXCLUDED.model_version_id,
        rul = EXCLUDED.rul, rul_low = EXCLUDED.rul_low, rul_high = EXCLUDED.rul_high,
        failure_probability = EXCLUDED.failure_probability,
        anomaly_score = EXCLUDED.anomaly_score, due_at = EXCLUDED.due_at,
        due_at_conservative = EXCLUDED.due_at_conservative
    WHERE lp.time <= EXCLUDED.time;

    -- the component that is due first speaks for the asset
    INSERT INTO asset_health AS h (asset_id, component, predicted_at, model_version_id, rul,
        rul_low, rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)
    SELECT DISTINCT ON (lp.asset_id) lp.asset_id, lp.component, lp.time, lp.model_version_id,
           lp.rul, lp.rul_low, lp.rul_high, lp.failure_probability, lp.anomaly_score,
           lp.due_at, lp.due_at_conservative
      FROM latest_predictions lp
     WHERE lp.asset_id = ANY (asset_ids)
     ORDER BY lp.asset_id, lp.due_at_conservative ASC NULLS LAST, lp.failure_probability DESC,
              lp.component
    ON CONFLICT (asset_id) DO UPDATE SET
        component = EXCLUDED.component, predicted_at = EXCLUDED.predicted_at,
        model_version_id = EXCLUDED.model_version_id, rul = EXCLUDED.rul,
        rul_low = EXCLUDED.rul_low, rul_high = EXCLUDED.rul_high,
        failure_probability = EXCLUDED.failure_probability,
        anomaly_score = EXCLUDED.anomaly_score, due_at = EXCLUDED.due_at,
        due_at_conservative = EXCLUDED.due_at_conservative, updated_at = now();

    -- the dashboard and the policy workers wake up (payload: asset id; sent at commit)
    SELECT count(pg_notify('fleetcare_predictions', a::text))
      FROM (SELECT DISTINCT a FROM unnest(asset_ids) AS u(a)) AS d;
$$;
