-- Simulator ground truth: what the simulators know about each asset's hidden health.
--
-- Evaluation reads these tables to score predictions against the truth. Wear models and
-- their features must NEVER read them: features come from telemetry only (the product
-- sees what a real fleet would send). Nothing here exists for a real fleet.

-- Snapshots of each component's hidden state. usage is counted from the start of the
-- component's life, in the kind's life unit. rul_expected is the remaining life at the
-- component's own wear rate so far (what the simulator expects); rul_actual is filled when
-- the life ends in a failure (life length minus usage): the exact remaining life.
CREATE TABLE sim_ground_truth (
    asset_id         bigint NOT NULL REFERENCES assets (id),
    component        text NOT NULL,
    time             timestamptz NOT NULL,
    life_started_at  timestamptz NOT NULL,
    usage            double precision NOT NULL,
    wear             double precision NOT NULL,
    rul_expected     double precision NOT NULL,
    rul_actual       double precision,
    PRIMARY KEY (asset_id, component, time)
);
CREATE INDEX sim_ground_truth_life ON sim_ground_truth (asset_id, component, life_started_at);

-- Every life the simulators ended, with the hidden cause (asset_lives has the product's
-- view of the same ends, without the failure mode).
CREATE TABLE sim_lives (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id        bigint NOT NULL REFERENCES assets (id),
    component       text NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    end_reason      text NOT NULL CHECK (end_reason IN ('failure', 'replacement')),
    failure_mode    text,
    usage_at_start  double precision NOT NULL,
    usage_at_end    double precision NOT NULL,
    source          text NOT NULL CHECK (source IN ('live', 'history', 'replay')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, component, ended_at),
    CHECK (started_at <= ended_at),
    CHECK ((end_reason = 'failure') = (failure_mode IS NOT NULL))
);
CREATE INDEX sim_lives_asset ON sim_lives (asset_id, ended_at);
