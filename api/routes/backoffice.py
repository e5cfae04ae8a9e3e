"""The back office: payments and dunning of invoices, SaaS metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import AppClock, Caller, Conn, ReadConn
from fleetcare.inputs import Id
from maintenance.billing.schemas import PERIOD_REGEX
from maintenance.dunning import service as dunning
from maintenance.dunning.schemas import DunningStep, Payment, PaymentCreate
from maintenance.metrics.schemas import MetricsSeries
from maintenance.metrics.service import MAX_MONTHS, metrics_series

router = APIRouter(prefix="/v1")


@router.post(
    "/invoices/{invoice_id}/payments", status_code=status.HTTP_201_CREATED, tags=["billing"]
)
def record_payment(
    invoice_id: Id, body: PaymentCreate, conn: Conn, caller: Caller, clock: AppClock
) -> dunning.PaymentResult:
    """Record a payment of an issued invoice (operator); paid in full, it restores the
    customer's subscriptions (past due → active, automatic orders resumed)."""
    return dunning.record_payment(conn, caller, invoice_id, body, clock)


@router.get("/invoices/{invoice_id}/payments", tags=["billing"])
def list_payments(invoice_id: Id, conn: ReadConn, caller: Caller) -> list[Payment]:
    """The payments recorded on an invoice."""
    return dunning.list_payments(conn, caller, invoice_id)


@router.get("/invoices/{invoice_id}/dunning", tags=["billing"])
def dunning_steps(invoice_id: Id, conn: ReadConn, caller: Caller) -> list[DunningStep]:
    """The dunning steps taken on a late invoice (reminders, past due, orders paused)."""
    return dunning.list_steps(conn, caller, invoice_id)


@router.get("/billing/metrics", tags=["billing"])
def saas_metrics(
    conn: ReadConn,
    caller: Caller,
    clock: AppClock,
    month: Annotated[str, Query(pattern=PERIOD_REGEX, description="the last month, YYYY-MM")],
    months: Annotated[int, Query(ge=1, le=MAX_MONTHS, description="months ending with it")] = 1,
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "EUR",
) -> MetricsSeries:
    """SaaS metrics (operator): MRR, ARR, new/expansion/contraction/churned MRR, retention,
    logo churn and renewal rate per month, by plan and kind, from the subscription history."""
    return metrics_series(conn, caller, month, clock, months=months, currency=currency)
