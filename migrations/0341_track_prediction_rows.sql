-- Prediction bookkeeping from the rows themselves. fleetcare_track_predictions (0011) takes
-- the keys of the predictions just inserted and joins back to predictions for their values:
-- 10,000 index probes a scoring pass (0.02-0.03 of the latest-predictions upsert's
-- 0.07-0.08 server CPU-s per 10,000). fleetcare_track_prediction_rows takes the values
-- instead: models.repository.insert_predictions hands it the rows its insert returned, in
-- the same statement. fleetcare_track_predictions stays for the other writers (keys only):
-- it reads the rows and calls the new function, so the bookkeeping is written once.
CREATE FUNCTION fleetcare_track_prediction_rows(
    asset_ids bigint[], components text[], times timestamptz[], model_version_ids bigint[],
    ruls float8[], rul_lows float8[], rul_highs float8[], failure_probabilities float8[],
    anomaly_scores float8[], due_ats timestamptz[], due_ats_conservative timestamptz[]
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
      FROM unnest(asset_ids, components, times, model_version_ids, ruls, rul_lows, rul_highs,
                  failure_probabilities, anomaly_scores, due_ats, due_ats_conservative)
        AS p(asset_id, component, time, model_version_id, rul, rul_low, rul_high,
             failure_probability, anomaly_score, due_at, due_at_conservative)
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

CREATE OR REPLACE FUNCTION fleetcare_track_predictions(
    asset_ids bigint[], components text[], times timestamptz[]
) RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT fleetcare_track_prediction_rows(
               array_agg(p.asset_id), array_agg(p.component), array_agg(p.time),
               array_agg(p.model_version_id), array_agg(p.rul), array_agg(p.rul_low),
               array_agg(p.rul_high), array_agg(p.failure_probability),
               array_agg(p.anomaly_score), array_agg(p.due_at), array_agg(p.due_at_conservative))
      FROM unnest(asset_ids, components, times) AS k(asset_id, component, time)
      JOIN predictions p
        ON p.asset_id = k.asset_id AND p.component = k.component AND p.time = k.time;
$$;
