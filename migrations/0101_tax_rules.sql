-- Tax rates with effective dates, and the common buyer countries outside the EU
-- (docs/billing.md, "Tax").
--
-- A rate applies from valid_from (inclusive) to valid_to (exclusive; NULL: until further
-- notice); the tax point of an invoice is the last moment of its period. regime 'vat': the
-- country has a VAT (or GST); 'none': it has no VAT on services (the United States: sales
-- taxes are levied by states and not charged by a seller outside them). A buyer country with
-- no row has no known rule: billing it is refused with an error naming the country.
ALTER TABLE tax_rates
    ADD COLUMN valid_from date NOT NULL DEFAULT DATE '2000-01-01',
    ADD COLUMN valid_to   date,
    ADD COLUMN regime     text NOT NULL DEFAULT 'vat' CHECK (regime IN ('vat', 'none')),
    ADD CONSTRAINT tax_rates_valid CHECK (valid_to IS NULL OR valid_to > valid_from),
    ADD CONSTRAINT tax_rates_no_vat CHECK (regime = 'vat' OR rate_bps = 0);
ALTER TABLE tax_rates DROP CONSTRAINT tax_rates_pkey;
ALTER TABLE tax_rates ADD PRIMARY KEY (country, customer_type, valid_from);

-- Standard rates that changed recently: the 2026 rows of 0050 start on the day of the change,
-- and the rate before it is kept for invoices of earlier periods.
UPDATE tax_rates SET valid_from = DATE '2024-09-01' WHERE country = 'FI';
UPDATE tax_rates SET valid_from = DATE '2025-07-01' WHERE country = 'EE';
UPDATE tax_rates SET valid_from = DATE '2025-01-01' WHERE country = 'SK';
UPDATE tax_rates SET valid_from = DATE '2025-08-01' WHERE country = 'RO';
INSERT INTO tax_rates (country, customer_type, rate_bps, eu, valid_from, valid_to)
SELECT c, t, r, true, f::date, u::date
  FROM (VALUES ('FI', 2400, '2013-01-01', '2024-09-01'),
               ('EE', 2200, '2024-01-01', '2025-07-01'),
               ('EE', 2000, '2009-07-01', '2024-01-01'),
               ('SK', 2000, '2011-01-01', '2025-01-01'),
               ('RO', 1900, '2017-01-01', '2025-08-01')) AS rates (c, r, f, u)
 CROSS JOIN (VALUES ('business'), ('consumer')) AS types (t);

-- Outside the EU: the United Kingdom (VAT 20 %), Switzerland and Liechtenstein (MWST 8.1 %
-- since 2024, 7.7 % before), Norway (MVA 25 %), Iceland (VSK 24 %), and the United States
-- (no VAT). From a seller in the EU they are exports of services (outside the scope of EU VAT,
-- 0 %); their own rate applies to a seller established there (a domestic sale).
INSERT INTO tax_rates (country, customer_type, rate_bps, eu, valid_from, valid_to, regime)
SELECT c, t, r, false, f::date, u::date, g
  FROM (VALUES ('GB', 2000, '2011-01-04', NULL, 'vat'),
               ('CH', 810, '2024-01-01', NULL, 'vat'),
               ('CH', 770, '2018-01-01', '2024-01-01', 'vat'),
               ('LI', 810, '2024-01-01', NULL, 'vat'),
               ('LI', 770, '2018-01-01', '2024-01-01', 'vat'),
               ('NO', 2500, '2005-01-01', NULL, 'vat'),
               ('IS', 2400, '2015-01-01', NULL, 'vat'),
               ('US', 0, '2000-01-01', NULL, 'none')) AS rates (c, r, f, u, g)
 CROSS JOIN (VALUES ('business'), ('consumer')) AS types (t);
