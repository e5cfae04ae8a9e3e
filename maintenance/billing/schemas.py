"""Records of billing: usage, invoices and their lines, partner statements, plan advice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, computed_field

from fleet.schemas import Strict
from fleetcare.inputs import Id
from fleetcare.lifecycle import Lifecycle


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


# from -> what it may become: a draft is issued (or voided); an issued invoice is paid or
# voided; paid and void are final.
INVOICE_LIFECYCLE = Lifecycle(
    "invoice",
    {
        InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
        InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
        InvoiceStatus.PAID: set(),
        InvoiceStatus.VOID: set(),
    },
)
LineKind = Literal["base_fee", "usage", "usage_adjustment", "parts", "labour", "service_credit"]
PERIOD_REGEX = r"^\d{4}-(0[1-9]|1[0-2])$"


class UsageRecord(BaseModel):
    id: UUID
    customer_id: int
    subscription_id: int
    asset_id: int
    period: str
    metric: str
    unit: str
    window_start: datetime
    window_end: datetime
    quantity: Decimal
    readings: int
    resets: int
    computed_at: datetime
    invoice_id: int | None
    billed_quantity: Decimal | None
    billed_amount_minor: int | None


class Invoice(BaseModel):
    id: int
    customer_id: int
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    status: InvoiceStatus
    total_minor: int
    line_count: int
    closed_at: datetime
    issued_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    created_at: datetime
    updated_at: datetime
    number: str | None = Field(default=None, description="gap-free, given when issued")
    tax_minor: int = Field(default=0, description="the sum of the lines' tax")
    seller: dict[str, Any] | None = Field(default=None, description="as of issue")
    buyer: dict[str, Any] | None = Field(default=None, description="as of issue")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gross_minor(self) -> int:
        """Net total plus tax: what the customer pays."""
        return self.total_minor + self.tax_minor

    payment_terms_days: int | None = None
    due_at: datetime | None = Field(default=None, description="issued_at + payment terms")
    paid_minor: int = Field(default=0, description="the sum of its payments")
    replaces_invoice_id: int | None = Field(
        default=None,
        description="the void invoice this one replaces, or (supplementary) the corrected one",
    )
    rebills_credit_note_id: int | None = Field(
        default=None, description="supplementary: the re-billing correction it answers"
    )


class InvoiceLine(BaseModel):
    id: int
    invoice_id: int
    line_no: int
    kind: str
    description: str
    subscription_id: int | None
    asset_id: int | None
    plan_id: int | None
    order_id: int | None
    part_id: int | None
    usage_record_id: UUID | None
    adjusts_period: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    quantity: Decimal
    unit: str
    unit_price_minor: int
    unit_quantity: int
    amount_minor: int
    service_credit_id: int | None = None
    tax_category: str = "untaxed"
    tax_rate_bps: int = 0
    tax_minor: int = 0
    contract_charge: str | None = Field(
        default=None,
        description="a contract's fee: commitment, early_termination, advance, advance_credit",
    )


class InvoiceDetail(Invoice):
    lines: list[InvoiceLine]


@dataclass(frozen=True)
class LineDraft:
    """A line computed by a close, before it is stored (compared field by field)."""

    kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price_minor: int
    amount_minor: int
    unit_quantity: int = 1
    subscription_id: int | None = None
    asset_id: int | None = None
    plan_id: int | None = None
    order_id: int | None = None
    part_id: int | None = None
    usage_record_id: UUID | None = None
    adjusts_period: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    service_credit_id: int | None = None
    tax_category: str = "untaxed"
    tax_rate_bps: int = 0
    tax_minor: int = 0
    contract_charge: str | None = None


# What a re-billing correction may credit: charges that a close recomputes from the data of
# their own period. Late usage, service credits and fees billed in advance (or credited for
# it) are settled by later invoices, so billing them again would count them twice.
REBILLABLE_KINDS = frozenset({"base_fee", "usage", "parts", "labour"})
NOT_REBILLABLE_CHARGES = frozenset({"advance", "advance_credit"})


def rebill_key(line: LineDraft | InvoiceLine) -> tuple[object, ...]:
    """What a line charges for, whatever its amount: a recomputed line with the same key
    replaces it on a supplementary invoice."""
    return (
        line.kind,
        line.subscription_id,
        line.asset_id,
        line.order_id,
        line.part_id,
        line.contract_charge,
    )


def rebillable(line: LineDraft | InvoiceLine) -> bool:
    """Whether a re-billing correction may credit the line."""
    return line.kind in REBILLABLE_KINDS and line.contract_charge not in NOT_REBILLABLE_CHARGES


@dataclass(frozen=True)
class OrderPartUse:
    """One part used by a completed order, as billing reads it."""

    order_id: int
    subscription_id: int | None
    asset_id: int
    asset_ref: str
    component: str
    completed_at: datetime
    parts_included: bool
    labour_included: bool
    part_id: int
    sku: str
    part_name: str
    quantity: int
    price_minor: int
    currency: str
    billable: bool
    labour_hours: float


class CloseRequest(Strict):
    period: str = Field(pattern=PERIOD_REGEX, description="the month, YYYY-MM (UTC)")
    customer_id: Id | None = Field(default=None, description="only this customer")
    issue: bool = Field(default=False, description="issue the drafts (the period must be over)")
    open_month: bool = Field(
        default=False,
        description="close a month that has not ended yet into drafts; without it such a month "
        "is refused (422 period_not_ended), as the CLI does without --open-month",
    )


class CloseFailure(BaseModel):
    customer_id: int
    error: str


class CloseResult(BaseModel):
    period: str
    invoices: list[Invoice]
    failures: list[CloseFailure] = Field(default_factory=list)


class VoidRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class AssetUsage(BaseModel):
    """Usage of one asset over a whole period, metered live from telemetry."""

    asset_id: int
    asset_ref: str
    kind: str
    metric: str
    unit: str
    period: str
    quantity: Decimal
    readings: int
    resets: int
    first_reading_at: datetime | None
    last_reading_at: datetime | None
    records: list[UsageRecord] = Field(
        default_factory=list, description="what billing recorded per subscription"
    )


class StatementLine(BaseModel):
    commission_id: int
    order_id: int
    customer_id: int
    asset_id: int
    component: str
    completed_at: datetime
    basis_minor: int
    rate_bps: int
    amount_minor: int
    currency: str


class StatementTotal(BaseModel):
    currency: str
    orders: int
    basis_minor: int
    amount_minor: int


class PartnerStatement(BaseModel):
    partner_id: int
    partner_code: str
    period: str
    lines: list[StatementLine]
    totals: list[StatementTotal]


class PlanOption(BaseModel):
    plan_id: int
    plan_code: str
    plan_name: str
    currency: str
    cost_minor: int
    fees_minor: int
    usage_minor: int
    parts_minor: int
    labour_minor: int
    by_period: dict[str, int]
    saving_minor: int = Field(description="current plan's cost minus this one's (> 0: cheaper)")


class SubscriptionAdvice(BaseModel):
    subscription_id: int
    current_plan_ids: list[int] = Field(description="plans in effect during the periods")
    current_cost_minor: int
    options: list[PlanOption] = Field(description="cheapest first")
    best_plan_id: int | None


class PlanAdvice(BaseModel):
    customer_id: int
    currency: str
    periods: list[str]
    subscriptions: list[SubscriptionAdvice]
