"""Records of revenue recognition."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RecognisableLine(BaseModel):
    """An invoice line as revenue recognition reads it."""

    line_id: int
    invoice_id: int
    customer_id: int
    period: str
    currency: str
    issued_at: datetime | None = Field(description="null: a draft, not billed yet")
    line_no: int
    kind: str
    starts_at: datetime | None
    ends_at: datetime | None
    amount_minor: int
    tax_minor: int
    plan_id: int | None


class CreditedLine(BaseModel):
    """A credit-note line, with the invoice line it credits."""

    credit_line_id: int
    credit_note_id: int
    number: str
    issued_at: datetime
    invoice_line_id: int
    amount_minor: int
    tax_minor: int


class SchedulePiece(BaseModel):
    month: str
    amount_minor: int
    rule: str


class LineSchedule(BaseModel):
    """The recognition schedule of one invoice line (and of the credit notes against it)."""

    invoice_id: int
    line_no: int
    kind: str
    amount_minor: int
    plan_id: int | None
    pieces: list[SchedulePiece]
    credits: list[SchedulePiece] = Field(description="reversals by credit notes")


class DeferredRoll(BaseModel):
    opening_minor: int
    billed_minor: int = Field(description="invoices issued in the month minus credit notes")
    recognised_minor: int = Field(description="recognised in the month out of billed revenue")
    from_unbilled_minor: int = Field(
        description="billed in the month for revenue recognised in earlier months"
    )
    closing_minor: int


class UnbilledRoll(BaseModel):
    opening_minor: int
    recognised_minor: int = Field(description="recognised in the month, not billed by its end")
    billed_minor: int = Field(description="moved to billed (the deferred side's from_unbilled)")
    closing_minor: int


class RevenueRow(BaseModel):
    customer_id: int
    plan_id: int | None
    currency: str
    recognised_minor: int
    tax_billed_minor: int = Field(description="tax on what was billed in the month")
    deferred: DeferredRoll
    unbilled: UnbilledRoll


class RevenueCheck(BaseModel):
    name: str
    ok: bool
    detail: str


class RevenueReport(BaseModel):
    month: str
    rows: list[RevenueRow]
    totals: dict[str, RevenueRow] = Field(description="per currency (customer_id 0)")
    checks: list[RevenueCheck]
    reconciled: bool
