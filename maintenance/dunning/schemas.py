"""Records of dunning: payments, the steps taken on late invoices, a run's outcome."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleet.schemas import Strict
from fleetcare.inputs import Moment, Money


class PaymentCreate(Strict):
    amount_minor: Money = Field(
        gt=0, description="in the invoice's currency, minor units (of the total with tax)"
    )
    reference: str = Field(
        min_length=1, max_length=200, description="the bank's or payer's reference (unique)"
    )
    received_at: Moment | None = Field(default=None, description="default: now")


class Payment(BaseModel):
    id: int
    customer_id: int
    invoice_id: int
    amount_minor: int
    received_at: datetime
    reference: str
    recorded_at: datetime


class DunningStep(BaseModel):
    invoice_id: int
    customer_id: int
    step: str
    subscription_id: int | None
    days_overdue: int
    taken_at: datetime


class OverdueInvoice(BaseModel):
    """An issued invoice past its due date, with the plans and subscriptions on its lines."""

    id: int
    customer_id: int
    period: str
    currency: str
    gross_minor: int = Field(description="net total plus tax: what is due")
    paid_minor: int
    credited_minor: int = Field(description="taken off by correction credit notes")
    due_at: datetime
    plan_ids: list[int]
    subscription_ids: list[int]

    @property
    def due_minor(self) -> int:
        """What is left to pay: the total with tax, less payments and corrections."""
        return self.gross_minor - self.credited_minor - self.paid_minor


class DunningRun(BaseModel):
    """What one dunning run did."""

    reminders: int = 0
    past_due: int = 0
    orders_paused: int = 0
    steps: list[DunningStep] = Field(default_factory=list)
