-- Replacement and supplementary invoices (docs/billing.md, "Voids, corrections and
-- re-billing").
--
-- A void (with its credit note) lets the period be billed again: closing it once more makes
-- a new invoice under a new gap-free number; the void one stays void. A correction that asks
-- for re-billing (credit_notes.rebill) credits some lines in full, and the next close bills
-- those lines again, recomputed, on a supplementary invoice of the same period.
--
-- So a customer has at most one live (not void) regular invoice per period, and at most one
-- live supplementary invoice per re-billing correction.
ALTER TABLE invoices DROP CONSTRAINT invoices_customer_id_period_key;
ALTER TABLE invoices
    -- the void invoice of the same period this one replaces (regular invoices), or the
    -- corrected invoice whose lines it bills again (supplementary invoices)
    ADD COLUMN replaces_invoice_id bigint REFERENCES invoices (id),
    -- a supplementary invoice: the re-billing correction it answers
    ADD COLUMN rebills_credit_note_id bigint REFERENCES credit_notes (id),
    ADD CONSTRAINT invoices_replaces_other CHECK (replaces_invoice_id <> id),
    ADD CONSTRAINT invoices_rebill_replaces
        CHECK (rebills_credit_note_id IS NULL OR replaces_invoice_id IS NOT NULL);
CREATE UNIQUE INDEX invoices_live_per_period
    ON invoices (customer_id, period, (coalesce(rebills_credit_note_id, 0)))
    WHERE status <> 'void';
CREATE INDEX invoices_customer_period ON invoices (customer_id, period);
CREATE INDEX invoices_rebills ON invoices (rebills_credit_note_id)
    WHERE rebills_credit_note_id IS NOT NULL;

-- A correction that asks for its lines to be billed again (a void always may be).
ALTER TABLE credit_notes
    ADD COLUMN rebill boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT credit_notes_rebill_correction CHECK (NOT rebill OR kind = 'correction');

