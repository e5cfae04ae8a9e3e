-- People: users of the operator, of each customer and of each partner (the organisations are
-- the operator, the customers and partners tables: see fleet/people/__init__.py); their
-- sign-in sessions, invitation and password-reset tokens; API keys get scopes, an optional
-- expiry and the time they were last used.

CREATE TABLE users (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation     text NOT NULL CHECK (organisation IN ('operator', 'customer', 'partner')),
    customer_id      bigint REFERENCES customers (id),
    partner_id       bigint REFERENCES partners (id),
    email            text NOT NULL CHECK (length(email) BETWEEN 3 AND 254
                                          AND email ~ '^[^@\s]+@[^@\s]+$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role             text NOT NULL,
    status           text NOT NULL DEFAULT 'invited'
                          CHECK (status IN ('active', 'invited', 'disabled')),
    -- argon2id (PHC string); NULL until the invitation is accepted, or for single sign-on
    password_hash    text,
    sign_in_method   text NOT NULL DEFAULT 'password'
                          CHECK (sign_in_method IN ('password', 'oidc')),
    -- single sign-on (OpenID Connect): the provider and the user's subject there
    external_issuer  text,
    external_subject text,
    failed_sign_ins  integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at  timestamptz,
    disabled_at      timestamptz,
    CHECK (CASE organisation
        WHEN 'operator' THEN customer_id IS NULL AND partner_id IS NULL
                             AND role IN ('admin', 'dispatcher', 'billing')
        WHEN 'customer' THEN customer_id IS NOT NULL AND partner_id IS NULL
                             AND role IN ('admin', 'fleet_manager', 'viewer', 'technician')
        ELSE partner_id IS NOT NULL AND customer_id IS NULL AND role = 'technician'
    END),
    CHECK ((external_issuer IS NULL) = (external_subject IS NULL)),
    UNIQUE (external_issuer, external_subject)
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_customer ON users (customer_id, id) WHERE customer_id IS NOT NULL;
CREATE INDEX users_partner ON users (partner_id, id) WHERE partner_id IS NOT NULL;

-- The tenant wall (as migrations/0030_tenant_wall.sql's fleetcare_tenant_policy, which comes
-- later): a transaction sees the users of its customer or partner, the operator every one.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON users
    USING (coalesce(current_setting('fleetcare.operator', true), '') = 'on'
           OR customer_id = nullif(current_setting('fleetcare.customer_id', true), '')::bigint
           OR partner_id = nullif(current_setting('fleetcare.partner_id', true), '')::bigint)
    WITH CHECK (coalesce(current_setting('fleetcare.operator', true), '') = 'on'
           OR customer_id = nullif(current_setting('fleetcare.customer_id', true), '')::bigint
           OR partner_id = nullif(current_setting('fleetcare.partner_id', true), '')::bigint);

-- A signed-in browser: the cookie carries a random id, the table its SHA-256 (a stolen
-- database copy signs nobody in). Signing in makes a new row (the id rotates); signing out,
-- disabling the user or revoking the key ends it.
CREATE TABLE web_sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      bigint REFERENCES users (id),
    key_id       bigint REFERENCES api_keys (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK ((user_id IS NULL) <> (key_id IS NULL))
);
CREATE INDEX web_sessions_user ON web_sessions (user_id) WHERE ended_at IS NULL;

-- Invitation and password-reset tokens: single use, expiring; stored as SHA-256.
CREATE TABLE user_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     bigint NOT NULL REFERENCES users (id),
    purpose     text NOT NULL CHECK (purpose IN ('invitation', 'password_reset')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose) WHERE used_at IS NULL;

ALTER TABLE api_keys
    ADD COLUMN scopes text[],
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN created_by_user_id bigint REFERENCES users (id);
