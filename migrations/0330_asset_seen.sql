-- Assets' last-seen time and usage counter in a narrow table of their own (issue 19, point 4).
--
-- Ingest moves them once per batch for every asset the batch touched. On `assets` that update
-- wrote a new version of a wide row with five indexes and an audit trigger's WHEN, and while
-- any open transaction of the cluster holds pruning back the versions pile up and each update
-- gets slower (2.0 ms per 100 assets with pruning working, up to 12.8 ms held back; measured in
-- docs/scaling.md). Here a row is four columns, one key, no trigger but the scoring wake-up,
-- and half of each page free so that an update stays on its page (HOT).
--
-- Keyed by the asset alone: a row is visible when its asset is (the tenant policy through
-- `assets`, like the other per-asset tables). Readers join it to `assets` (LEFT JOIN: an asset
-- that never reported has no row, and reads NULLs as before).

CREATE TABLE asset_seen (
    asset_id       bigint PRIMARY KEY REFERENCES assets (id) ON DELETE CASCADE,
    -- when the last reading of the asset was received
    last_seen_at   timestamptz,
    -- the latest value of its kind's usage counter (km, trips, cycles) and that reading's time
    usage_counter  double precision,
    usage_at       timestamptz
) WITH (fillfactor = 50);

INSERT INTO asset_seen (asset_id, last_seen_at, usage_counter, usage_at)
SELECT id, last_seen_at, usage_counter, usage_at
  FROM assets
 WHERE last_seen_at IS NOT NULL OR usage_counter IS NOT NULL OR usage_at IS NOT NULL;

-- scoring wakes on a moved last-seen time (as in 0160) or a renewal
DROP TRIGGER assets_notify_telemetry ON assets;
CREATE TRIGGER assets_notify_telemetry
    AFTER UPDATE OF renewed_at ON assets
    FOR EACH STATEMENT EXECUTE FUNCTION fleetcare_notify_telemetry();
CREATE TRIGGER asset_seen_notify_telemetry
    AFTER INSERT OR UPDATE OF last_seen_at ON asset_seen
    FOR EACH STATEMENT EXECUTE FUNCTION fleetcare_notify_telemetry();

ALTER TABLE assets DROP COLUMN last_seen_at, DROP COLUMN usage_counter, DROP COLUMN usage_at;
-- the audit trail of assets no longer has columns to leave out
SELECT fleetcare_audit_table('assets', 'customer_id');

SELECT fleetcare_tenant_policy('asset_seen', 'asset_id', 'assets');
