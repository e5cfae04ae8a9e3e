-- Drift and retraining. Each model version keeps the distribution of every signal in its
-- training data (decile edges and shares, and how often a window of the signal was constant,
-- which the data-quality gate reads); a scheduled check compares the live fleet's readings
-- with it (population stability index per signal), and every retraining records what the
-- challenger and the champion scored on the same held-out lifetimes and what was decided.
ALTER TABLE model_versions ADD COLUMN reference jsonb;

CREATE TABLE model_drift_checks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL REFERENCES asset_kinds (name),
    model_version_id  bigint NOT NULL REFERENCES model_versions (id),
    checked_at        timestamptz NOT NULL,
    assets            integer NOT NULL,
    rows              integer NOT NULL,
    psi               jsonb NOT NULL,        -- signal -> population stability index
    max_psi           double precision,
    threshold         double precision NOT NULL,
    drifted           boolean NOT NULL,
    drifted_signals   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX model_drift_checks_kind ON model_drift_checks (kind, checked_at DESC);

CREATE TABLE model_retrain_decisions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                   text NOT NULL REFERENCES asset_kinds (name),
    trigger                text NOT NULL CHECK (trigger IN ('manual', 'schedule', 'drift')),
    drift_check_id         bigint REFERENCES model_drift_checks (id),
    champion_version_id    bigint REFERENCES model_versions (id),
    challenger_version_id  bigint REFERENCES model_versions (id),
    decision               text NOT NULL CHECK (decision IN ('promoted', 'refused', 'first')),
    champion_rmse          double precision,
    challenger_rmse        double precision,
    holdout_assets         integer NOT NULL DEFAULT 0,
    lives                  integer NOT NULL DEFAULT 0,
    reason                 text NOT NULL,
    decided_at             timestamptz NOT NULL
);
CREATE INDEX model_retrain_decisions_kind ON model_retrain_decisions (kind, decided_at DESC);
