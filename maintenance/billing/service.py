"""Billing: closing periods into invoices, issuing, paying, voiding, reading, statements.

The lines themselves (coverage, metering, line rules) are in ``lines``; plan advice in
``advice``. No SQL text, no HTTP. Callers own the transaction. See docs/billing.md.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.cursor import decode_cursor, encode_cursor
from fleetcare.errors import Conflict, FleetcareError, Invalid, NotFound
from maintenance.billing import rebilling
from maintenance.billing import repository as repo
from maintenance.billing.lines import (
    ADJUSTMENT_LOOKBACK_MONTHS,
    compute_lines,
    meter_asset,
    open_draft,
    store_lines,
)
from maintenance.billing.pricing import Period, parse_period, period_of, shift
from maintenance.billing.schemas import (
    INVOICE_LIFECYCLE,
    AssetUsage,
    CloseFailure,
    CloseResult,
    Invoice,
    InvoiceDetail,
    InvoiceLine,
    InvoiceStatus,
    PartnerStatement,
    StatementTotal,
    UsageRecord,
)
from maintenance.common import Conn, subject
from maintenance.documents import credits
from maintenance.documents import repository as documents_repo
from maintenance.documents import service as documents
from maintenance.dunning.service import pay_in_full, payment_terms_days
from maintenance.events.service import emit
from maintenance.partners import service as partners

CSV_COLUMNS = (
    "invoice_id",
    "customer_id",
    "period",
    "currency",
    "status",
    "line_no",
    "kind",
    "description",
    "subscription_id",
    "asset_id",
    "plan_id",
    "order_id",
    "part_id",
    "adjusts_period",
    "starts_at",
    "ends_at",
    "quantity",
    "unit",
    "unit_price_minor",
    "unit_quantity",
    "amount_minor",
)


# --- closing and issuing -------------------------------------------------------------------


def close_customer(
    conn: Conn, customer_id: int, period: Period, clock: Clock, *, rebill_void: bool = True
) -> Invoice | None:
    """Create or refresh a customer's draft for ``period``; an issued invoice is returned as is.

    Idempotent and safe under concurrent closers: the live (not void) draft row is unique per
    customer and period and locked before anything is computed, so a second closer waits and
    then finds lines equal to what it computes (and leaves them alone). None: nothing to bill.
    A period whose invoice was voided is billed again by a replacement (a new draft that names
    the void one), unless ``rebill_void`` is False (the worker: a void not followed by an
    explicit close waives the period).
    """
    now = clock.now()
    currency = repo.customer_currency(conn, customer_id)
    if currency is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    replaces = None
    if repo.lock_invoice(conn, customer_id, period.name) is None:
        replaces = repo.last_void_invoice(conn, customer_id, period.name)
        if replaces is not None and not rebill_void:
            return None
    invoice = open_draft(conn, customer_id, period, currency, now, replaces=replaces)
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice
    lines, records = compute_lines(conn, customer_id, period, invoice.currency, now)
    credits.assess_failures(conn, customer_id, period.end, now)
    lines += credits.credit_lines(conn, customer_id, period, lines)
    lines = documents.with_tax(
        lines, documents.parties(conn, customer_id, documents.tax_date(period.end))[2]
    )
    stored = store_lines(conn, invoice, lines, now)
    repo.delete_stale_usage(conn, customer_id, period.name, records)
    return stored


def _issue(conn: Conn, invoice: Invoice, now: datetime) -> Invoice:
    if invoice.rebills_credit_note_id is None:
        repo.mark_usage_billed(conn, invoice.id, invoice.customer_id, invoice.period)
    else:
        rebilling.mark_supplementary_billed(conn, invoice)
    lines = repo.invoice_lines(conn, invoice.id)
    terms = payment_terms_days(sorted({ln.plan_id for ln in lines if ln.plan_id}), conn)
    document = documents.stamp_issued(conn, invoice, now)
    values = {
        "issued_at": now,
        **document,
        "payment_terms_days": terms,
        "due_at": now + timedelta(days=terms),
    }
    issued = repo.move_invoice(conn, invoice, InvoiceStatus.ISSUED, values, now)
    documents_repo.apply_credits(conn, issued.id)
    lines = repo.invoice_lines(conn, issued.id)
    emit(
        conn,
        "invoice.issued",
        {"invoice": InvoiceDetail(**issued.model_dump(), lines=lines).model_dump(mode="json")},
        customer_id=issued.customer_id,
        subject=subject("invoice", issued.id),
        occurred_at=now,
    )
    return issued


def _check_issuable(period: Period, now: datetime) -> None:
    if now < period.end:
        raise Invalid(f"period {period.name} is not over yet; it can be closed as a draft only")


def close_period(
    conn: Conn,
    period_name: str,
    clock: Clock,
    *,
    customer_id: int | None = None,
    issue: bool = False,
    open_month: bool = True,
    rebill_void: bool = True,
) -> CloseResult:
    """Close ``period`` for every customer with something to bill (or one customer).

    Each customer runs in a savepoint: one customer's error (e.g. a plan in another
    currency) is reported and does not stop the others. ``issue`` also issues the drafts.
    ``open_month=False`` refuses a period that has not ended (the CLI's and the API's default;
    this function's ``True`` is for the worker and tests that choose their clock). A voided
    period is billed again by a replacement invoice unless ``rebill_void`` is False; the
    supplementary invoices of re-billing corrections are closed with it (see ``rebilling``).
    """
    period = parse_period(period_name)
    now = clock.now()
    if period.start > now:
        raise Invalid(f"period {period.name} has not started")
    if not open_month and now < period.end:
        raise Invalid(
            f"period {period.name} has not ended yet (it ends {period.end:%Y-%m-%d %H:%M} UTC), "
            "so its invoices would miss the rest of the month's usage and fees; close it early "
            'into drafts only when told explicitly (--open-month; "open_month": true in the API)',
            code="period_not_ended",
        )
    if issue:
        _check_issuable(period, now)
    if conn.autocommit:
        raise RuntimeError("close_period must run inside the caller's transaction")
    result = CloseResult(period=period.name, invoices=[])
    for customer in repo.customers_to_bill(conn, period.start, period.end, customer_id):
        try:
            # a savepoint (the query above opened the caller's transaction): never a commit
            with conn.transaction():
                regular = close_customer(conn, customer, period, clock, rebill_void=rebill_void)
                found = [regular] if regular is not None else []
                found += rebilling.close_supplementaries(conn, customer, period, clock)
                if issue:
                    found = [
                        _issue(conn, i, now) if i.status == InvoiceStatus.DRAFT else i
                        for i in found
                    ]
        except FleetcareError as exc:
            result.failures.append(CloseFailure(customer_id=customer, error=exc.detail))
            continue
        result.invoices += found
    return result


def bill_due_periods(
    conn: Conn, clock: Clock, grace: timedelta, catch_up_months: int = ADJUSTMENT_LOOKBACK_MONTHS
) -> list[CloseResult]:
    """The worker's job: close the last ``catch_up_months`` months, oldest first, and issue
    each once ``grace`` has passed since its end.

    During the grace period the drafts are refreshed on every run, so late telemetry lands
    on the right invoice; after it, late usage goes to the next invoice as an adjustment.
    Looking back more than one month lets a worker that was down catch up; periods already
    issued cost one locked read per customer.
    """
    now = clock.now()
    current = period_of(now)
    results = []
    for months_ago in range(max(catch_up_months, 1), 0, -1):
        period = shift(current, -months_ago)
        results.append(
            close_period(
                conn, period.name, clock, issue=now >= period.end + grace, rebill_void=False
            )
        )
    return results


def _invoice_for_update(conn: Conn, principal: Principal, invoice_id: int) -> Invoice:
    principal.require("billing:write")
    invoice = repo.get_invoice(conn, invoice_id, None, for_update=True)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return invoice


def issue_invoice(conn: Conn, principal: Principal, invoice_id: int, clock: Clock) -> Invoice:
    """Refresh a draft from the latest data and issue it (operator); emits invoice.issued."""
    invoice = _invoice_for_update(conn, principal, invoice_id)
    INVOICE_LIFECYCLE.check(invoice.id, invoice.status, InvoiceStatus.ISSUED)
    period = parse_period(invoice.period)
    now = clock.now()
    _check_issuable(period, now)
    if invoice.rebills_credit_note_id is None:
        refreshed = close_customer(conn, invoice.customer_id, period, clock)
    else:
        assert invoice.replaces_invoice_id is not None
        refreshed = rebilling.close_supplementary(
            conn,
            invoice.customer_id,
            period,
            invoice.rebills_credit_note_id,
            invoice.replaces_invoice_id,
            clock,
        )
    if refreshed is None:
        raise Conflict(f"invoice {invoice.id} has nothing left to bill; the draft was removed")
    return _issue(conn, refreshed, now)


def pay_invoice(conn: Conn, principal: Principal, invoice_id: int, clock: Clock) -> Invoice:
    """Record the payment of what is left of an issued invoice (operator); see dunning."""
    return pay_in_full(conn, principal, invoice_id, clock)


def void_invoice(
    conn: Conn, principal: Principal, invoice_id: int, reason: str, clock: Clock
) -> Invoice:
    """Void a draft or an unpaid issued invoice (operator). It stays, with its lines; an issued
    one is reversed by a credit note for what remains of its lines (its service credits
    included: they are pending again, for the replacement or the next invoice). Closing the
    period again bills it under a new number (``rebilling``)."""
    invoice = _invoice_for_update(conn, principal, invoice_id)
    now = clock.now()
    if invoice.status == InvoiceStatus.ISSUED:
        rebilling.check_voidable(conn, invoice)
    voided = repo.move_invoice(
        conn, invoice, InvoiceStatus.VOID, {"voided_at": now, "void_reason": reason}, now
    )
    note = None
    if invoice.status == InvoiceStatus.ISSUED:
        note = documents.credit_remaining(conn, invoice, reason, now)
        rebilling.release(conn, invoice)
    emit(
        conn,
        "invoice.voided",
        {
            "invoice": voided.model_dump(mode="json"),
            "previous_status": invoice.status,
            "credit_note": None if note is None else note.model_dump(mode="json"),
        },
        customer_id=voided.customer_id,
        subject=subject("invoice", voided.id),
        occurred_at=now,
    )
    return voided


# --- reading -------------------------------------------------------------------------------


def list_invoices(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    period: str | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Invoice], int | None]:
    """Invoices the caller may see: its customer's, or all (operator)."""
    principal.require("billing:read")
    if period is not None:
        parse_period(period)
    return repo.list_invoices(
        conn,
        scope=principal.scope,
        customer_id=customer_id,
        period=period,
        status=status,
        after=after,
        limit=limit,
    )


def get_invoice(conn: Conn, principal: Principal, invoice_id: int) -> InvoiceDetail:
    """One invoice with its lines; another customer's invoice is not found."""
    principal.require("billing:read")
    invoice = repo.get_invoice(conn, invoice_id, principal.scope)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return InvoiceDetail(**invoice.model_dump(), lines=repo.invoice_lines(conn, invoice.id))


def _write_lines(writer: Any, invoice: Invoice, lines: list[InvoiceLine]) -> None:
    head = {
        "invoice_id": invoice.id,
        "customer_id": invoice.customer_id,
        "period": invoice.period,
        "currency": invoice.currency,
        "status": invoice.status,
    }
    for line in lines:
        values = {**line.model_dump(mode="json"), **head}
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])


def invoice_lines_csv(conn: Conn, principal: Principal, invoice_id: int) -> str:
    """The lines of an invoice as CSV (one header row, amounts in minor units)."""
    detail = get_invoice(conn, principal, invoice_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    _write_lines(writer, detail, detail.lines)
    return out.getvalue()


def period_lines_csv(conn: Conn, principal: Principal, period_name: str) -> str:
    """The lines of every invoice of a period the caller may see, as one CSV."""
    principal.require("billing:read")
    period = parse_period(period_name)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for invoice, lines in repo.invoices_with_lines(conn, principal.scope, period.name):
        _write_lines(writer, invoice, lines)
    return out.getvalue()


def list_usage(
    conn: Conn,
    principal: Principal,
    *,
    asset_id: int | None,
    period: str | None,
    after: str | None = None,
    limit: int,
) -> tuple[list[UsageRecord], str | None]:
    """Usage records billing wrote, scoped to the caller's customer: one keyset page (newest
    period first) and the opaque cursor of the next."""
    principal.require("billing:read")
    if period is not None:
        parse_period(period)
    key = None
    if after is not None:
        p, s, a = decode_cursor(after, ("str", "int", "int"))
        if p is None or s is None or a is None:
            raise Invalid(
                "after: not a cursor of this list (pass back a next_after)", code="bad_cursor"
            )
        key = (p, s, a)
    rows = repo.list_usage(
        conn, scope=principal.scope, asset_id=asset_id, period=period, after=key, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    nxt = encode_cursor([last.period, last.subscription_id, last.asset_id]) if last else None
    return rows, nxt


def asset_usage(conn: Conn, principal: Principal, asset_id: int, period_name: str) -> AssetUsage:
    """An asset's usage over a whole period, metered now from its telemetry."""
    principal.require("billing:read")
    period = parse_period(period_name)
    asset = repo.asset(conn, asset_id, principal.scope)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
    metric, unit, metering = meter_asset(conn, asset, [(period.start, period.end)])
    return AssetUsage(
        asset_id=asset.id,
        asset_ref=asset.ref,
        kind=asset.kind,
        metric=metric,
        unit=unit,
        period=period.name,
        quantity=metering.total,
        readings=metering.readings,
        resets=metering.resets,
        first_reading_at=metering.first_at,
        last_reading_at=metering.last_at,
        records=repo.list_usage(
            conn,
            scope=asset.customer_id,
            asset_id=asset.id,
            period=period.name,
            after=None,
            limit=100,
        ),
    )


def partner_statement(
    conn: Conn, principal: Principal, partner_id: int, period_name: str
) -> PartnerStatement:
    """A partner's commissions on orders completed in a period, with totals per currency."""
    partner = partners.get_partner(conn, principal, partner_id)
    period = parse_period(period_name)
    lines = repo.commissions_in(conn, partner.id, period.start, period.end)
    totals: dict[str, StatementTotal] = {}
    for line in lines:
        total = totals.setdefault(
            line.currency,
            StatementTotal(currency=line.currency, orders=0, basis_minor=0, amount_minor=0),
        )
        total.orders += 1
        total.basis_minor += line.basis_minor
        total.amount_minor += line.amount_minor
    return PartnerStatement(
        partner_id=partner.id,
        partner_code=partner.code,
        period=period.name,
        lines=lines,
        totals=sorted(totals.values(), key=lambda t: t.currency),
    )
