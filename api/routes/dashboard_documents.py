"""Dashboard pages of invoice documents: PDF downloads, credit notes, service credits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.rendering import PageViewer, not_found_page, render
from api.deps import ReadConn
from fleetcare.errors import Forbidden, NotFound
from fleetcare.inputs import Id
from maintenance.documents import files
from maintenance.documents import service as documents

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
PAGE = 200


def _pdf(request: Request, viewer: PageViewer, make: object, *args: object) -> Response:
    try:
        name, body = make(*args)  # type: ignore[operator]
    except (NotFound, Forbidden) as exc:
        return not_found_page(request, viewer, NotFound(exc.detail))
    return Response(
        content=body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/invoices/{invoice_id}/pdf")
def invoice_pdf(request: Request, invoice_id: Id, conn: ReadConn, viewer: PageViewer) -> Response:
    """Download an invoice as PDF."""
    return _pdf(request, viewer, files.invoice_pdf, conn, viewer, invoice_id)


@router.get("/credit-notes/{note_id}/pdf")
def credit_note_pdf(request: Request, note_id: Id, conn: ReadConn, viewer: PageViewer) -> Response:
    """Download a credit note as PDF."""
    return _pdf(request, viewer, files.credit_note_pdf, conn, viewer, note_id)


@router.get("/service-credits", response_class=HTMLResponse)
def service_credits_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Service credits earned by failures, and the credit notes, of the caller's scope."""
    try:
        credits, _ = documents.list_service_credits(
            conn, viewer, period=None, asset_id=None, after=None, limit=PAGE
        )
        notes, _ = documents.list_credit_notes(
            conn, viewer, invoice_id=None, after=None, limit=PAGE
        )
    except Forbidden:
        credits, notes = [], []  # technician and partner keys see no money
    return render(request, "credits.html", viewer, credits=credits, notes=notes)
