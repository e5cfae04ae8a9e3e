"""Records of invoice documents: parties, tax, credit notes, service credits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet.schemas import Strict
from maintenance.documents.tax import check_vat_id

CustomerType = Literal["business", "consumer"]
COUNTRY_PATTERN = r"^[A-Z]{2}$"


class Party(BaseModel):
    """A seller's or buyer's legal details, as printed on a document (the buyer's copy on a
    document also carries its tax note)."""

    model_config = ConfigDict(extra="allow")

    legal_name: str
    address: str = ""
    country: str
    vat_id: str | None = None
    customer_type: CustomerType | None = None
    email: str = ""


class _PartyUpdate(Strict):
    legal_name: str = Field(min_length=1, max_length=200)
    address: str = Field(default="", max_length=500)
    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2, e.g. DE")
    vat_id: str | None = Field(default=None, max_length=20, description="e.g. DE123456789")

    @model_validator(mode="after")
    def _vat_id_format(self) -> _PartyUpdate:
        if self.vat_id is not None:
            self.vat_id = check_vat_id(self.vat_id, self.country)
        return self


class SellerUpdate(_PartyUpdate):
    email: str = Field(default="", max_length=200)


class BillingProfileUpdate(_PartyUpdate):
    customer_type: CustomerType


class SellerProfile(BaseModel):
    legal_name: str
    address: str
    country: str
    vat_id: str | None
    email: str
    updated_at: datetime


class BillingProfile(BaseModel):
    customer_id: int
    legal_name: str
    address: str
    country: str
    customer_type: CustomerType
    vat_id: str | None
    updated_at: datetime


class TaxRate(BaseModel):
    country: str
    customer_type: CustomerType
    rate_bps: int
    eu: bool
    regime: Literal["vat", "none"] = Field(
        default="vat", description="none: the country has no VAT on services (e.g. US)"
    )
    valid_from: date = Field(description="first day the rate applies")
    valid_to: date | None = Field(default=None, description="first day it no longer applies")


class CreditNoteLine(BaseModel):
    id: int
    credit_note_id: int
    line_no: int
    invoice_line_id: int
    description: str
    amount_minor: int
    tax_category: str
    tax_rate_bps: int
    tax_minor: int


class CreditNote(BaseModel):
    id: int
    customer_id: int
    invoice_id: int
    number: str
    kind: Literal["void", "correction"]
    reason: str
    currency: str
    total_minor: int = Field(description="net amount credited (sum of the lines)")
    tax_minor: int
    line_count: int
    seller: Party
    buyer: Party
    issued_at: datetime
    rebill: bool = Field(
        default=False, description="a correction whose lines the next close bills again"
    )


class CreditNoteDetail(CreditNote):
    lines: list[CreditNoteLine]


class CreditLineRequest(Strict):
    line_no: int = Field(ge=1, le=100_000, description="the invoice line to credit")
    amount_minor: int | None = Field(
        default=None,
        ge=-(10**15),
        le=10**15,
        description="how much of the line (same sign as the line); omitted: what remains of it",
    )


class CorrectionRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)
    lines: list[CreditLineRequest] = Field(min_length=1, max_length=1000)
    rebill: bool = Field(
        default=False,
        description="bill the credited lines again, recomputed from the current data, on a"
        " supplementary invoice of the same period (each line credited in full)",
    )


class ServiceCredit(BaseModel):
    id: int
    customer_id: int
    subscription_id: int
    plan_id: int
    asset_id: int
    asset_ref: str
    component: str
    life_id: int
    failure_report_id: int | None
    failed_at: datetime
    period: str
    kind: Literal["percent", "free_repair"]
    rate_bps: int | None
    order_id: int | None
    reason: str
    currency: str
    amount_minor: int | None = Field(description="what the invoice credited; null until then")
    invoice_id: int | None
    earned_at: datetime


class FailureOnCover(BaseModel):
    """A failure (an ended life) of a covered asset, as the service-credit rule reads it."""

    life_id: int
    asset_id: int
    asset_ref: str
    customer_id: int
    component: str
    failed_at: datetime
    failure_report_id: int | None
    order_id: int | None
    order_reason: str | None
    order_due_at: datetime | None
