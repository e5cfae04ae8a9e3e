"""Downloadable documents: invoices, credit notes and value reports as PDF files. No SQL
text, no HTTP."""

from __future__ import annotations

from fleet.schemas import Principal
from fleetcare.clock import Clock
from maintenance.billing import service as billing
from maintenance.common import Conn
from maintenance.documents import pdf, printing
from maintenance.documents import service as documents
from maintenance.value import service as value
from maintenance.value.document import value_document


def invoice_pdf(conn: Conn, principal: Principal, invoice_id: int) -> tuple[str, bytes]:
    """An invoice as a PDF (file name, bytes); a draft prints as a draft with today's parties."""
    invoice = billing.get_invoice(conn, principal, invoice_id)
    draft_parties: tuple[dict[str, object], ...] = ({}, {})
    if invoice.seller is None:
        seller, buyer, decision = documents.parties(
            conn, invoice.customer_id, documents.tax_date(invoice.period_end)
        )
        draft_parties = (documents.party_json(seller), documents.party_json(buyer, decision))
    name = invoice.number or f"draft-{invoice.customer_id}-{invoice.period}"
    replaces = None
    if invoice.replaces_invoice_id is not None:
        replaces = billing.get_invoice(conn, principal, invoice.replaces_invoice_id).number
    document = printing.invoice_document(invoice, draft_parties, replaces)
    return f"{name}.pdf", pdf.render(document)


def credit_note_pdf(conn: Conn, principal: Principal, note_id: int) -> tuple[str, bytes]:
    """A credit note as a PDF (file name, bytes)."""
    note = documents.get_credit_note(conn, principal, note_id)
    invoice = billing.get_invoice(conn, principal, note.invoice_id)
    return f"{note.number}.pdf", pdf.render(printing.credit_note_document(note, invoice.number))


def value_report_pdf(
    conn: Conn, principal: Principal, customer_id: int, period: str, clock: Clock
) -> tuple[str, bytes]:
    """A customer's value report of a month as a PDF (file name, bytes)."""
    report = value.value_report(conn, principal, customer_id, period, clock)
    seller = documents.seller_party(documents.get_seller(conn, principal))
    document = value_document(report, printing.party_lines(documents.party_json(seller)))
    return f"value-report-{customer_id}-{period}.pdf", pdf.render(document)
