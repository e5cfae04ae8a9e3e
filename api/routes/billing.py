"""Billing: invoices and their lines (JSON and CSV), usage, plan advice, partner statements."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.schemas import CursorPage, Page
from fleetcare.inputs import Id
from maintenance.billing import advice
from maintenance.billing import service as billing
from maintenance.billing.schemas import (
    PERIOD_REGEX,
    AssetUsage,
    CloseRequest,
    CloseResult,
    Invoice,
    InvoiceDetail,
    InvoiceLine,
    InvoiceStatus,
    PartnerStatement,
    PlanAdvice,
    UsageRecord,
    VoidRequest,
)

router = APIRouter(prefix="/v1")

PeriodQuery = Annotated[str, Query(pattern=PERIOD_REGEX, description="the month, YYYY-MM (UTC)")]
OptionalPeriod = Annotated[
    str | None, Query(pattern=PERIOD_REGEX, description="the month, YYYY-MM (UTC)")
]


@router.post("/billing/close", tags=["billing"])
def close_period(body: CloseRequest, conn: Conn, caller: Caller, clock: AppClock) -> CloseResult:
    """Close a period into draft invoices (operator); ``issue`` issues them too. A month that
    has not ended is refused (422 ``period_not_ended``) unless ``open_month`` is true."""
    caller.require("billing:write")
    return billing.close_period(
        conn,
        body.period,
        clock,
        customer_id=body.customer_id,
        issue=body.issue,
        open_month=body.open_month,
    )


@router.get("/invoices", tags=["billing"])
def list_invoices(
    conn: ReadConn,
    caller: Caller,
    customer_id: Id | None = None,
    period: OptionalPeriod = None,
    status: InvoiceStatus | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Invoice]:
    """Invoices: the caller's customer's, or all (operator)."""
    items, nxt = billing.list_invoices(
        conn,
        caller,
        customer_id=customer_id,
        period=period,
        status=status,
        after=after,
        limit=limit,
    )
    return Page(items=items, next_after=nxt)


@router.get(
    "/invoices.csv",
    tags=["billing"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def period_lines_csv(period: PeriodQuery, conn: ReadConn, caller: Caller) -> Response:
    """The lines of every invoice of a period (the caller's own, or all for the operator)."""
    body = billing.period_lines_csv(conn, caller, period)
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="invoices-{period}.csv"'},
    )


@router.get("/invoices/{invoice_id}", tags=["billing"])
def get_invoice(invoice_id: Id, conn: ReadConn, caller: Caller) -> InvoiceDetail:
    """One invoice with its lines."""
    return billing.get_invoice(conn, caller, invoice_id)


@router.get("/invoices/{invoice_id}/lines", tags=["billing"])
def invoice_lines(invoice_id: Id, conn: ReadConn, caller: Caller) -> list[InvoiceLine]:
    """The lines of an invoice."""
    return billing.get_invoice(conn, caller, invoice_id).lines


@router.get(
    "/invoices/{invoice_id}/lines.csv",
    tags=["billing"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def invoice_lines_csv(invoice_id: Id, conn: ReadConn, caller: Caller) -> Response:
    """The lines of an invoice as CSV."""
    body = billing.invoice_lines_csv(conn, caller, invoice_id)
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="invoice-{invoice_id}.csv"'},
    )


@router.post("/invoices/{invoice_id}/issue", tags=["billing"])
def issue_invoice(invoice_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> Invoice:
    """draft → issued (operator): refreshed from the latest data first; emits invoice.issued."""
    return billing.issue_invoice(conn, caller, invoice_id, clock)


@router.post("/invoices/{invoice_id}/pay", tags=["billing"])
def pay_invoice(invoice_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> Invoice:
    """Record the payment of what is left; issued → paid (operator)."""
    return billing.pay_invoice(conn, caller, invoice_id, clock)


@router.post("/invoices/{invoice_id}/void", tags=["billing"])
def void_invoice(
    invoice_id: Id, body: VoidRequest, conn: Conn, caller: Caller, clock: AppClock
) -> Invoice:
    """draft | issued → void (operator)."""
    return billing.void_invoice(conn, caller, invoice_id, body.reason, clock)


@router.get("/usage", tags=["billing"])
def list_usage(
    conn: ReadConn,
    caller: Caller,
    asset_id: Id | None = None,
    period: OptionalPeriod = None,
    after: Annotated[
        str | None, Query(max_length=1000, description="the next_after of the previous page")
    ] = None,
    limit: Limit = 100,
) -> CursorPage[UsageRecord]:
    """Usage records billing wrote (per subscription, asset and period), newest period
    first, a keyset page at a time (``next_after`` is opaque: pass it back as ``after``)."""
    items, nxt = billing.list_usage(
        conn, caller, asset_id=asset_id, period=period, after=after, limit=limit
    )
    return CursorPage(items=items, next_after=nxt)


@router.get("/assets/{asset_id}/usage", tags=["billing"])
def asset_usage(asset_id: Id, period: PeriodQuery, conn: ReadConn, caller: Caller) -> AssetUsage:
    """An asset's usage over a period, metered now from its telemetry."""
    return billing.asset_usage(conn, caller, asset_id, period)


@router.get("/customers/{customer_id}/plan-advice", tags=["billing"])
def plan_advice(
    customer_id: Id,
    conn: ReadConn,
    caller: Caller,
    clock: AppClock,
    months: Annotated[int, Query(ge=1, le=24, description="full months to look back")] = 3,
) -> PlanAdvice:
    """What the last months would have cost on each plan, from real usage and orders."""
    return advice.plan_advice(conn, caller, customer_id, months, clock)


@router.get("/partners/{partner_id}/statement", tags=["billing", "partners"])
def partner_statement(
    partner_id: Id, period: PeriodQuery, conn: ReadConn, caller: Caller
) -> PartnerStatement:
    """A partner's commissions for a period (operator, or the partner's own key)."""
    return billing.partner_statement(conn, caller, partner_id, period)
