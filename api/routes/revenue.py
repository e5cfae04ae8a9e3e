"""Revenue recognition: the month's report, journal entries, an invoice's schedule."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import AppClock, Caller, Conn, ReadConn
from fleetcare.inputs import Id
from maintenance.billing.schemas import PERIOD_REGEX
from maintenance.revenue import service as revenue
from maintenance.revenue.journal import Accounts, journal_csv
from maintenance.revenue.schemas import LineSchedule, RevenueReport

router = APIRouter(prefix="/v1")
Month = Annotated[str, Query(pattern=PERIOD_REGEX, description="the month, YYYY-MM (UTC)")]
Account = Annotated[str, Query(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z._ -]+$")]


@router.get("/revenue", tags=["billing"])
def revenue_report(month: Month, conn: Conn, caller: Caller, clock: AppClock) -> RevenueReport:
    """Recognised, deferred and unbilled revenue per customer and plan (operator), with the
    checks that reconcile it to the invoices and credit notes. On the primary: unbilled
    revenue drafts the months not yet invoiced in a savepoint it rolls back."""
    return revenue.revenue_report(conn, caller, month, clock)


@router.get(
    "/revenue/journal.csv",
    tags=["billing"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def revenue_journal(
    month: Month,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    receivable: Account = Accounts.receivable,
    unbilled: Account = Accounts.unbilled,
    deferred: Account = Accounts.deferred,
    tax: Account = Accounts.tax,
    revenue_account: Annotated[
        str, Query(alias="revenue", min_length=1, max_length=40, pattern=r"^[0-9A-Za-z._ -]+$")
    ] = Accounts.revenue,
) -> Response:
    """The month as balanced journal entries, CSV, with the account codes given (operator)."""
    caller.require("revenue:read")
    report = revenue.revenue_report(conn, caller, month, clock)
    accounts = Accounts(receivable, unbilled, deferred, tax, revenue_account)
    return Response(
        content=journal_csv(report, accounts),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="journal-{month}.csv"'},
    )


@router.get("/invoices/{invoice_id}/revenue-schedule", tags=["billing"])
def invoice_schedule(invoice_id: Id, conn: ReadConn, caller: Caller) -> list[LineSchedule]:
    """When each line of an invoice is recognised as revenue, and the credit notes' reversals."""
    return revenue.invoice_schedule(conn, caller, invoice_id)
