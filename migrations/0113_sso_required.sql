-- Single sign-on, second step: an organisation may require it, and decides whether a person
-- whose address the provider has not verified may still be created at first sign-in.
--
-- required: its people sign in through the provider only (no password sign-in, no password
-- reset); API keys are unaffected. Only with the provider on (a required, switched-off
-- provider would shut everyone out).
-- trust_unverified_email: create a user just in time from an ID token whose email_verified is
-- not true, when the address is of a claimed domain (some providers never send the claim).
ALTER TABLE sso_providers
    ADD COLUMN required boolean NOT NULL DEFAULT false,
    ADD COLUMN trust_unverified_email boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT sso_required_needs_enabled CHECK (enabled OR NOT required);
