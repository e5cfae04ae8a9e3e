-- Customers that are fleetcare's own (the training fleets `fleetcare up` simulates for its first
-- models): the operator's overview leaves them out unless asked for by name.
ALTER TABLE customers ADD COLUMN internal boolean NOT NULL DEFAULT false;
