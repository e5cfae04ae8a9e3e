"""Payload models of the subscription back office's events (producers: maintenance/billing,
dunning, documents, value), registered in ``catalog``; docs/events.md describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from maintenance.webhooks.records import Payload, Record


class InvoicePaidV1(Payload):
    invoice: InvoiceRecord


class InvoicePaymentRecordedV1(Payload):
    invoice: InvoiceRecord
    payment: dict[str, Any]
    remaining_minor: int


class InvoicePaymentReminderV1(Payload):
    invoice_id: int
    period: str
    currency: str
    due_at: datetime
    amount_due_minor: int
    reminder_day: int
    days_overdue: int


class InvoiceRecord(Record):
    """An invoice as every invoice.* event carries it (amounts in minor units, net of tax)."""

    id: int
    customer_id: int
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    status: str
    number: str | None
    total_minor: int
    tax_minor: int
    gross_minor: int
    issued_at: datetime | None
    due_at: datetime | None
    paid_minor: int
    replaces_invoice_id: int | None
    rebills_credit_note_id: int | None


class InvoiceIssuedRecord(InvoiceRecord):
    number: str
    issued_at: datetime
    lines: list[dict[str, Any]]


class InvoiceIssuedV1(Payload):
    invoice: InvoiceIssuedRecord


class CreditNoteRecord(Record):
    id: int
    customer_id: int
    invoice_id: int
    number: str
    kind: str
    reason: str
    currency: str
    total_minor: int
    tax_minor: int
    issued_at: datetime
    rebill: bool


class CreditNoteDetailRecord(CreditNoteRecord):
    lines: list[dict[str, Any]]


class CreditNoteIssuedV1(Payload):
    credit_note: CreditNoteDetailRecord
    invoice_number: str | None


class InvoiceVoidedV1(Payload):
    invoice: InvoiceRecord
    previous_status: str
    credit_note: CreditNoteRecord | None


class ServiceCreditRecord(Record):
    id: int
    customer_id: int
    subscription_id: int
    asset_id: int
    asset_ref: str
    component: str
    life_id: int
    failure_report_id: int | None
    failed_at: datetime
    period: str
    kind: str
    rate_bps: int | None
    order_id: int | None
    reason: str
    currency: str


class ServiceCreditEarnedV1(Payload):
    credit: ServiceCreditRecord


class ValueReportReadyV1(Payload):
    customer_id: int
    period: str
    report: dict[str, Any]
