-- The tenant wall and the audit trail for the invoice documents of 0050 (which came before
-- the wall existed): credit notes and their lines, customers' billing profiles, service
-- credits. docs/tenant-wall.md.
SELECT fleetcare_tenant_policy('credit_notes');
SELECT fleetcare_tenant_policy('credit_note_lines', 'credit_note_id', 'credit_notes');
SELECT fleetcare_tenant_policy('customer_billing_profiles');
SELECT fleetcare_tenant_policy('service_credits');

SELECT fleetcare_audit_table('credit_notes');
SELECT fleetcare_audit_table('customer_billing_profiles');
SELECT fleetcare_audit_table('service_credits');
SELECT fleetcare_audit_table('seller_profile', NULL);
