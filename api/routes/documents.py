"""Invoice documents: PDFs, credit notes, service credits, the parties' legal details, tax."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.inputs import Id
from maintenance.billing.schemas import PERIOD_REGEX
from maintenance.documents import files
from maintenance.documents import service as documents
from maintenance.documents.schemas import (
    BillingProfile,
    BillingProfileUpdate,
    CorrectionRequest,
    CreditNote,
    CreditNoteDetail,
    SellerProfile,
    SellerUpdate,
    ServiceCredit,
    TaxRate,
)

router = APIRouter(prefix="/v1")
PDF: dict[int | str, dict[str, Any]] = {200: {"content": {"application/pdf": {}}}}


def pdf_response(name_and_body: tuple[str, bytes]) -> Response:
    """A PDF document as a download (also used by the value report and the dashboard)."""
    name, body = name_and_body
    return Response(
        content=body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/invoices/{invoice_id}/pdf", tags=["billing"], response_class=Response, responses=PDF)
def invoice_pdf(invoice_id: Id, conn: ReadConn, caller: Caller) -> Response:
    """The invoice as a PDF document (a draft prints as a draft, without a number)."""
    return pdf_response(files.invoice_pdf(conn, caller, invoice_id))


@router.post("/invoices/{invoice_id}/credit-notes", tags=["billing"], status_code=201)
def correct_invoice(
    invoice_id: Id, body: CorrectionRequest, conn: Conn, caller: Caller, clock: AppClock
) -> CreditNoteDetail:
    """Credit part of an issued or paid invoice (operator): a correction credit note."""
    return documents.correct_invoice(conn, caller, invoice_id, body, clock)


@router.get("/credit-notes", tags=["billing"])
def list_credit_notes(
    conn: ReadConn,
    caller: Caller,
    invoice_id: Id | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[CreditNote]:
    """Credit notes: the caller's customer's, or all (operator)."""
    items, nxt = documents.list_credit_notes(
        conn, caller, invoice_id=invoice_id, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.get("/credit-notes/{note_id}", tags=["billing"])
def get_credit_note(note_id: Id, conn: ReadConn, caller: Caller) -> CreditNoteDetail:
    """One credit note with its lines."""
    return documents.get_credit_note(conn, caller, note_id)


@router.get("/credit-notes/{note_id}/pdf", tags=["billing"], response_class=Response, responses=PDF)
def credit_note_pdf(note_id: Id, conn: ReadConn, caller: Caller) -> Response:
    """The credit note as a PDF document."""
    return pdf_response(files.credit_note_pdf(conn, caller, note_id))


@router.get("/service-credits", tags=["billing"])
def list_service_credits(
    conn: ReadConn,
    caller: Caller,
    period: Annotated[
        str | None, Query(pattern=PERIOD_REGEX, description="month of the failure, YYYY-MM")
    ] = None,
    asset_id: Id | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[ServiceCredit]:
    """Service credits earned by failures, with the failure each came from and the invoice
    that applied it (null: the next one will)."""
    items, nxt = documents.list_service_credits(
        conn, caller, period=period, asset_id=asset_id, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.get("/billing/seller", tags=["billing"])
def get_seller(conn: ReadConn, caller: Caller) -> SellerProfile:
    """The seller's legal details printed on every document."""
    return documents.get_seller(conn, caller)


@router.put("/billing/seller", tags=["billing"])
def set_seller(body: SellerUpdate, conn: Conn, caller: Caller, clock: AppClock) -> SellerProfile:
    """Replace the seller's legal details (operator)."""
    return documents.set_seller(conn, caller, body, clock)


@router.get("/customers/{customer_id}/billing-profile", tags=["billing"])
def get_billing_profile(customer_id: Id, conn: ReadConn, caller: Caller) -> BillingProfile:
    """A customer's legal details for invoices: country, type, VAT id."""
    return documents.get_billing_profile(conn, caller, customer_id)


@router.put("/customers/{customer_id}/billing-profile", tags=["billing"])
def set_billing_profile(
    customer_id: Id, body: BillingProfileUpdate, conn: Conn, caller: Caller, clock: AppClock
) -> BillingProfile:
    """Create or replace a customer's legal details (its own key, or the operator)."""
    return documents.set_billing_profile(conn, caller, customer_id, body, clock)


@router.get("/tax-rates", tags=["billing"])
def list_tax_rates(conn: ReadConn, caller: Caller) -> list[TaxRate]:
    """Tax rates by customer country and type."""
    return documents.list_tax_rates(conn, caller)
