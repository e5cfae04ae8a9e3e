"""The back office: payments and dunning of invoices, SaaS metrics."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AppClock, Caller, Conn, ReadConn
from fleetcare.inputs import Id
from maintenance.dunning import service as dunning
from maintenance.dunning.schemas import DunningStep, Payment, PaymentCreate

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
