"""Billing a period again: after a void, and after a correction that asks for it.

- A **void** of an issued invoice (its credit note reverses every line) lets the period be
  billed again: the next explicit close of the period (``billing close``, ``POST
  /v1/billing/close``) makes a *replacement* invoice, under a new gap-free number, computed
  from the data as it is then; the void one stays void. The usage it charged is unbilled again
  and the service credits it applied are pending again, so the replacement (or the next
  invoice) charges and credits each exactly once. The billing worker does not re-bill a voided
  period on its own: a void that is not followed by a close waives the period.
- A **re-billing correction** (``rebill: true``) credits some lines in full; the next close of
  the period (worker or explicit) bills those charges again, recomputed, on a *supplementary*
  invoice of the same period, and the corrected invoice stays as it is.

An invoice that later live invoices depend on (late usage of its period charged by them, fees
it billed in advance credited by them, a supplementary invoice of it) cannot be voided until
they are. No SQL text, no HTTP. See docs/billing.md.
"""

from __future__ import annotations

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, NotFound
from maintenance.billing import repository as repo
from maintenance.billing.lines import compute_lines, open_draft, store_lines
from maintenance.billing.pricing import Period
from maintenance.billing.schemas import Invoice, InvoiceStatus, rebill_key
from maintenance.common import Conn
from maintenance.documents import repository as documents_repo
from maintenance.documents import service as documents


def check_voidable(conn: Conn, invoice: Invoice) -> None:
    """Refuse (409) to void an issued invoice that later live invoices depend on."""
    blockers = documents_repo.void_blockers(conn, invoice.id)
    if blockers:
        raise Conflict(
            f"invoice {invoice.id} cannot be voided while later invoices depend on it: "
            + "; ".join(blockers)
            + " (void or correct those first)",
            code="invoice_has_dependants",
        )


def release(conn: Conn, invoice: Invoice) -> None:
    """After a void: unbill its usage, make its service credits pending again, and drop the
    drafts that would bill again lines of its corrections (the replacement bills all)."""
    if invoice.rebills_credit_note_id is not None:
        mark_supplementary_billed(conn, invoice, undo=True)
    else:
        documents_repo.unbill_usage(conn, invoice.id)
    documents_repo.release_credits(conn, invoice.id)
    for draft in documents_repo.supplementary_drafts(conn, invoice.id):
        repo.delete_draft(conn, draft)


def close_supplementary(
    conn: Conn, customer_id: int, period: Period, note_id: int, corrected_id: int, clock: Clock
) -> Invoice | None:
    """Create or refresh the supplementary draft answering re-billing correction ``note_id``:
    the lines a close of the period computes now for the charges the correction credited.
    An issued one is returned as is; None: nothing to bill again."""
    now = clock.now()
    currency = repo.customer_currency(conn, customer_id)
    if currency is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    invoice = open_draft(
        conn, customer_id, period, currency, now, replaces=corrected_id, rebills=note_id
    )
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice
    keys = {rebill_key(line) for line, _ in documents_repo.credited_lines_of(conn, note_id)}
    computed, _ = compute_lines(conn, customer_id, period, currency, now)
    lines = documents.with_tax(
        [line for line in computed if rebill_key(line) in keys],
        documents.parties(conn, customer_id, documents.tax_date(period.end))[2],
    )
    return store_lines(conn, invoice, lines, now)


def close_supplementaries(
    conn: Conn, customer_id: int, period: Period, clock: Clock
) -> list[Invoice]:
    """The supplementary invoices of a customer's period (drafts refreshed, issued as is)."""
    found = []
    for note_id, corrected_id in documents_repo.open_rebills(conn, customer_id, period.name):
        invoice = close_supplementary(conn, customer_id, period, note_id, corrected_id, clock)
        if invoice is not None:
            found.append(invoice)
    return found


def mark_supplementary_billed(conn: Conn, invoice: Invoice, *, undo: bool = False) -> None:
    """On issuing a supplementary invoice: its usage lines replace, in what the usage records
    say is billed, the usage lines its correction credited (``undo``: its void, the other way
    round)."""
    assert invoice.rebills_credit_note_id is not None
    sign = -1 if undo else 1
    credited = documents_repo.credited_lines_of(conn, invoice.rebills_credit_note_id)
    documents_repo.shift_billed_usage(conn, [(line.id, amount) for line, amount in credited], -sign)
    documents_repo.shift_billed_usage(
        conn,
        [(line.id, line.amount_minor) for line in repo.invoice_lines(conn, invoice.id)],
        sign,
    )
