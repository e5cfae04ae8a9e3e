"""Records of maintenance orders, failure reports and missed predictions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from fleet.causes import CAUSE_HELP, FailureCause
from fleet.schemas import Strict
from fleetcare.inputs import Id, Moment
from fleetcare.lifecycle import Lifecycle
from maintenance.logistics.schemas import Shipment
from maintenance.outcomes.schemas import MAX_FINDINGS, Finding, OrderOutcome
from models.schemas import Explanation


class OrderStatus(StrEnum):
    RAISED = "raised"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# An open order blocks another for the same asset and component (the partial unique index of
# maintenance_orders says the same).
OPEN_ORDER_STATUSES = (OrderStatus.RAISED, OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS)
# from -> what it may become (scheduling again moves the booking)
ORDER_LIFECYCLE = Lifecycle(
    "order",
    {
        OrderStatus.RAISED: {
            OrderStatus.SCHEDULED,
            OrderStatus.IN_PROGRESS,
            OrderStatus.COMPLETED,
            OrderStatus.CANCELLED,
        },
        OrderStatus.SCHEDULED: {
            OrderStatus.SCHEDULED,
            OrderStatus.IN_PROGRESS,
            OrderStatus.COMPLETED,
            OrderStatus.CANCELLED,
        },
        OrderStatus.IN_PROGRESS: {OrderStatus.COMPLETED, OrderStatus.CANCELLED},
        OrderStatus.COMPLETED: set(),
        OrderStatus.CANCELLED: set(),
    },
)
Priority = Literal["low", "normal", "high", "urgent"]
Reason = Literal["predicted", "anomaly", "manual", "failure"]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-11-26T10:00:00Z)")
    return value


class Order(BaseModel):
    id: int
    customer_id: int
    asset_id: Id
    component: str
    subscription_id: int | None
    plan_id: int | None
    status: OrderStatus
    priority: str
    reason: str
    due_at: Moment
    sla_deadline: datetime | None
    prediction_time: datetime | None
    at_risk: bool
    at_risk_reason: str | None
    parts_included: bool
    labour_included: bool
    partner_id: int | None
    scheduled_for: datetime | None
    notes: str
    cancel_reason: str | None
    raised_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime
    # why it was raised: the explanation of the prediction that raised it (policy orders)
    explanation: Explanation | None = None


class OrderPart(BaseModel):
    order_id: int
    part_id: int
    quantity: int
    price_minor: int
    currency: str
    billable: bool


class OrderDetail(Order):
    """An order with its shipments and, once completed, the parts used."""

    shipments: list[Shipment] = Field(default_factory=list)
    parts_used: list[OrderPart] = Field(default_factory=list)
    outcomes: list[OrderOutcome] = Field(default_factory=list)


class OrderCreate(Strict):
    """A manual order."""

    asset_id: Id
    component: str = Field(min_length=1, max_length=100)
    due_at: Moment
    priority: Priority = "normal"
    notes: str = Field(default="", max_length=4000)
    ship_parts: bool = Field(default=True, description="reserve and ship the part now")

    _due_aware = field_validator("due_at")(_aware)


class ScheduleRequest(Strict):
    scheduled_for: Moment
    notes: str | None = Field(default=None, max_length=4000)

    _aware = field_validator("scheduled_for")(_aware)


class PartUse(Strict):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, gt=0, le=1000)


class CompleteRequest(Strict):
    parts_used: list[PartUse] | None = Field(
        default=None, description="default: the parts shipped for the order"
    )
    usage_at_end: float | None = Field(
        default=None, ge=0, le=1e12, description="the usage counter at replacement, in life units"
    )
    notes: str | None = Field(default=None, max_length=4000)
    findings: list[Finding] | None = Field(
        default=None,
        max_length=MAX_FINDINGS,
        description="what was found, per component looked at (the order's own component "
        "labels the life the order ends)",
    )


class CancelOrder(Strict):
    reason: str = Field(default="", max_length=1000)
    findings: list[Finding] | None = Field(
        default=None,
        max_length=MAX_FINDINGS,
        description="what was found, per component looked at (the order's own component "
        "labels the life the order ends)",
    )


class FailureCreate(Strict):
    asset_id: Id
    component: str = Field(min_length=1, max_length=100)
    failed_at: Moment | None = Field(default=None, description="default: now")
    description: str = Field(default="", max_length=4000)
    cause: FailureCause = Field(default="unknown", description=CAUSE_HELP)

    _aware = field_validator("failed_at")(_aware)


class FailureReport(BaseModel):
    id: int
    customer_id: int
    asset_id: Id
    component: str
    failed_at: datetime
    description: str
    cause: FailureCause
    order_id: int | None
    missed: bool
    created_at: datetime


class MissedPrediction(BaseModel):
    id: int
    failure_report_id: int
    customer_id: int
    asset_id: Id
    component: str
    failed_at: datetime
    last_prediction_time: datetime | None
    last_due_at_conservative: datetime | None
    last_failure_probability: float | None
    created_at: datetime


class LastPrediction(BaseModel):
    time: datetime
    due_at_conservative: datetime | None
    failure_probability: float
