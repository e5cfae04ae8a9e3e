-- The tenant wall and the audit trail for the tables of assets that move (0080, made before the
-- wall existed): every one holds a customer_id. docs/tenant-wall.md.
SELECT fleetcare_tenant_policy('carriers');
SELECT fleetcare_tenant_policy('carrier_mounts');
SELECT fleetcare_tenant_policy('stations');
SELECT fleetcare_tenant_policy('carrier_legs');
SELECT fleetcare_tenant_policy('lanes');
SELECT fleetcare_tenant_policy('order_visits');

-- what people and their systems change; a carrier's position moves all the time (not audited),
-- and order visits are written by the planner (they are themselves the record of each plan)
SELECT fleetcare_audit_table('carriers', 'customer_id',
                             ARRAY['latitude', 'longitude', 'at_site_id', 'position_at']);
SELECT fleetcare_audit_table('carrier_mounts');
SELECT fleetcare_audit_table('stations');
SELECT fleetcare_audit_table('carrier_legs');
SELECT fleetcare_audit_table('lanes');
