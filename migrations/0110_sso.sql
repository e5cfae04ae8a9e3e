-- Single sign-on (issue 21, point 2): an organisation (the operator, a customer or a partner)
-- signs its people in through its own OpenID Connect provider. One provider per organisation:
-- its issuer (discovery at <issuer>/.well-known/openid-configuration), the client id and
-- secret the provider gave fleetcare, the role of a person created at first sign-in, and the
-- email domains it claims (the sign-in page sends an address of a claimed domain to it).
--
-- The client secret is write-only for the API and the dashboard (never returned); the audit
-- trail records that it changed as '[redacted]' (fleetcare_audit_redact: a column ending in
-- 'secret').

CREATE TABLE sso_providers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation  text NOT NULL CHECK (organisation IN ('operator', 'customer', 'partner')),
    customer_id   bigint REFERENCES customers (id),
    partner_id    bigint REFERENCES partners (id),
    issuer        text NOT NULL CHECK (length(issuer) BETWEEN 8 AND 500),
    client_id     text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 500),
    client_secret text NOT NULL CHECK (length(client_secret) BETWEEN 1 AND 1000),
    default_role  text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE organisation
        WHEN 'operator' THEN customer_id IS NULL AND partner_id IS NULL
                             AND default_role IN ('admin', 'dispatcher', 'billing')
        WHEN 'customer' THEN customer_id IS NOT NULL AND partner_id IS NULL
                             AND default_role IN ('admin', 'fleet_manager', 'viewer', 'technician')
        ELSE partner_id IS NOT NULL AND customer_id IS NULL AND default_role = 'technician'
    END),
    UNIQUE NULLS NOT DISTINCT (organisation, customer_id, partner_id)
);

-- A domain belongs to one organisation's provider: a second claim is refused (primary key).
CREATE TABLE sso_domains (
    domain       text PRIMARY KEY CHECK (domain = lower(domain) AND length(domain) <= 253
                                         AND domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'),
    provider_id  bigint NOT NULL REFERENCES sso_providers (id) ON DELETE CASCADE,
    -- the provider's customer (NULL for the operator's and partners'): its admin's audit trail
    customer_id  bigint REFERENCES customers (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sso_domains_provider ON sso_domains (provider_id);

-- The tenant wall, as for users (migration 0020): a transaction sees its own organisation's
-- provider, the operator every one. The sign-in page finds a domain's provider before anyone
-- is known, as sign-in finds an account (fleetcare.tenancy.operator_lookup).
ALTER TABLE sso_providers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON sso_providers
    USING ((SELECT fleetcare_is_operator())
           OR customer_id = (SELECT fleetcare_customer_id())
           OR partner_id = (SELECT fleetcare_partner_id()))
    WITH CHECK ((SELECT fleetcare_is_operator())
           OR customer_id = (SELECT fleetcare_customer_id())
           OR partner_id = (SELECT fleetcare_partner_id()));
SELECT fleetcare_tenant_policy('sso_domains', 'provider_id', 'sso_providers');

SELECT fleetcare_audit_table('sso_providers');
SELECT fleetcare_audit_table('sso_domains');
