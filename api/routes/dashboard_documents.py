"""Dashboard pages of invoice documents: PDF downloads, credit notes, service credits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.rendering import PageViewer, not_found_page, render, request_clock
from api.deps import ReadConn
from api.routes.documents import pdf_response
from fleet import service as fleet
from fleetcare.errors import FleetcareError, Forbidden, NotFound
from fleetcare.inputs import Id
from maintenance.billing.pricing import parse_period, period_of, shift
from maintenance.billing.schemas import PERIOD_REGEX
from maintenance.documents import files
from maintenance.documents import service as documents
from maintenance.value import service as value

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
PAGE = 200


def _pdf(request: Request, viewer: PageViewer, make: object, *args: object) -> Response:
    try:
        document = make(*args)  # type: ignore[operator]
    except (NotFound, Forbidden) as exc:
        return not_found_page(request, viewer, NotFound(exc.detail))
    return pdf_response(document)


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


@router.get("/value-report", response_class=HTMLResponse)
def value_report_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    period: Annotated[str | None, Query(pattern=PERIOD_REGEX)] = None,
    customer_id: Id | None = None,
) -> HTMLResponse:
    """A customer's value report of a month: by default this month so far (month to date:
    a new customer, or the demo, has nothing in last month yet); the page says which. The
    operator picks the customer from a list."""
    clock = request_clock(request)
    current = period_of(clock.now())
    month = period or current.name
    customer = viewer.scope or customer_id
    report = None
    problem = None
    choices = [] if viewer.scope is not None else _customer_choices(conn, viewer)
    if customer is None:
        problem = "choose a customer"
    else:
        try:
            report = value.value_report(conn, viewer, customer, month, clock)
        except NotFound as exc:
            return not_found_page(request, viewer, exc)
        except FleetcareError as exc:
            problem = exc.detail
    return render(
        request,
        "value.html",
        viewer,
        report=report,
        period=month,
        to_date=month == current.name,
        previous=shift(parse_period(month), -1).name,
        as_of=clock.now(),
        customer_id=customer,
        customers=choices,
        problem=problem,
    )


def _customer_choices(conn: ReadConn, viewer: PageViewer) -> list[tuple[int, str]]:
    """The customers the operator may pick (internal ones, such as the training fleet, left
    out), by name."""
    out: list[tuple[int, str]] = []
    after: int | None = None
    while True:
        page, after = fleet.list_customers(conn, viewer, after=after, limit=PAGE)
        out += [(c.id, c.name) for c in page if not c.internal]
        if after is None or len(out) >= PAGE:
            return sorted(out, key=lambda c: c[1].lower())


@router.get("/value-report/pdf")
def value_report_pdf(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    period: Annotated[str, Query(pattern=PERIOD_REGEX)],
    customer_id: Id | None = None,
) -> Response:
    """Download a customer's value report of a month as PDF."""
    customer = viewer.scope or customer_id
    if customer is None:
        return not_found_page(request, viewer, NotFound("choose a customer (customer_id)"))
    return _pdf(
        request, viewer, files.value_report_pdf, conn, viewer, customer, period,
        request_clock(request),
    )  # fmt: skip
