-- When each asset was on an assets-scoped subscription: additions and removals with their
-- time, so that billing and the SaaS metrics of a past month use the list as it was then
-- (subscription_assets holds only today's list). docs/billing.md, "Asset-list history".
--
-- One row per stretch [listed_from, listed_to); an asset taken off and put back gets a new
-- row. At most one open row per subscription and asset.
CREATE TABLE subscription_asset_listings (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      bigint NOT NULL,
    subscription_id  bigint NOT NULL,
    asset_id         bigint NOT NULL,
    listed_from      timestamptz NOT NULL,
    listed_to        timestamptz,
    FOREIGN KEY (customer_id, subscription_id) REFERENCES subscriptions (customer_id, id),
    FOREIGN KEY (customer_id, asset_id) REFERENCES assets (customer_id, id),
    CHECK (listed_to IS NULL OR listed_to >= listed_from)
);
CREATE UNIQUE INDEX subscription_asset_listings_one_open
    ON subscription_asset_listings (subscription_id, asset_id) WHERE listed_to IS NULL;
CREATE INDEX subscription_asset_listings_asset ON subscription_asset_listings (asset_id);

-- The lists of today, as billing treated them until now: covered since the subscription
-- started (removals before this migration were not recorded).
INSERT INTO subscription_asset_listings (customer_id, subscription_id, asset_id, listed_from)
SELECT sa.customer_id, sa.subscription_id, sa.asset_id, least(s.starts_at, sa.added_at)
  FROM subscription_assets sa JOIN subscriptions s ON s.id = sa.subscription_id;

SELECT fleetcare_tenant_policy('subscription_asset_listings');
SELECT fleetcare_audit_table('subscription_asset_listings');
