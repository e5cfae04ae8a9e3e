"""Dunning: payment terms, payments, reminders on a schedule, past due, automatic orders
paused, and everything restored by payment. Each step is an event (outbox) and is taken once,
however many workers run. No SQL text, no HTTP. See docs/billing.md, "Dunning"."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from maintenance.billing.schemas import INVOICE_LIFECYCLE, Invoice, InvoiceStatus
from maintenance.common import Conn, subject
from maintenance.dunning import repository as repo
from maintenance.dunning.schemas import (
    DunningRun,
    DunningStep,
    OverdueInvoice,
    Payment,
    PaymentCreate,
)
from maintenance.events.service import emit
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import Subscription, SubscriptionStatus

# Used when no plan is on the invoice (parts and labour only)
DEFAULT_PAYMENT_TERMS_DAYS = 30
DEFAULT_REMINDER_DAYS = (3, 10, 20)


class PaymentResult(BaseModel):
    payment: Payment | None
    invoice: Invoice


def payment_terms_days(plan_ids: list[int], conn: Conn) -> int:
    """The payment terms of an invoice: the shortest of its plans' (default 30 days)."""
    terms = [plans.get_plan(conn, pid).payment_terms_days for pid in plan_ids]
    return min(terms, default=DEFAULT_PAYMENT_TERMS_DAYS)


def _invoice_payload(invoice: Invoice) -> dict[str, object]:
    return {"invoice": invoice.model_dump(mode="json")}


def _locked_invoice(conn: Conn, principal: Principal, invoice_id: int) -> Invoice:
    principal.require("billing:write")
    invoice = repo.lock_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    if invoice.status != InvoiceStatus.ISSUED:
        raise Conflict(
            f"invoice {invoice.id} is {invoice.status}; only an issued invoice takes payments",
            code="invoice_not_payable",
        )
    return invoice


def _left_to_pay(conn: Conn, invoice: Invoice) -> int:
    """The total with tax, less payments and correction credit notes."""
    return invoice.gross_minor - invoice.paid_minor - repo.credited_minor(conn, invoice.id)


def _settle(conn: Conn, invoice: Invoice, now: datetime, paid_at: datetime) -> Invoice:
    """Mark a fully paid invoice paid, emit invoice.paid and lift the customer's dunning."""
    INVOICE_LIFECYCLE.check(invoice.id, invoice.status, InvoiceStatus.PAID)
    paid = repo.mark_paid(conn, invoice.id, paid_at, now)
    emit(
        conn,
        "invoice.paid",
        _invoice_payload(paid),
        customer_id=paid.customer_id,
        subject=subject("invoice", paid.id),
        occurred_at=now,
    )
    restore(conn, paid.customer_id, now)
    return paid


def record_payment(
    conn: Conn, principal: Principal, invoice_id: int, body: PaymentCreate, clock: Clock
) -> PaymentResult:
    """Record a (part) payment of an issued invoice (operator); the invoice is paid when the
    payments reach its total, which restores the customer's subscriptions."""
    invoice = _locked_invoice(conn, principal, invoice_id)
    now = clock.now()
    received = body.received_at or now
    if received > now:
        raise Invalid("received_at is in the future", code="payment_in_future")
    remaining = _left_to_pay(conn, invoice)
    if body.amount_minor > remaining:
        raise Invalid(
            f"invoice {invoice.id} has {remaining} {invoice.currency} (minor units) left to"
            f" pay; {body.amount_minor} is more",
            code="overpayment",
        )
    payment = repo.insert_payment(
        conn,
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        amount_minor=body.amount_minor,
        received_at=received,
        reference=body.reference,
        now=now,
    )
    if payment is None:
        raise Conflict(
            f"a payment with reference {body.reference!r} is already recorded on invoice"
            f" {invoice.id}",
            code="duplicate_payment",
        )
    repo.add_paid(conn, invoice.id, payment.amount_minor, now)
    updated = repo.lock_invoice(conn, invoice.id)
    assert updated is not None
    emit(
        conn,
        "invoice.payment_recorded",
        {
            **_invoice_payload(updated),
            "payment": payment.model_dump(mode="json"),
            "remaining_minor": _left_to_pay(conn, updated),
        },
        customer_id=invoice.customer_id,
        subject=subject("invoice", invoice.id),
        occurred_at=now,
    )
    if _left_to_pay(conn, updated) <= 0:
        updated = _settle(conn, updated, now, received)
    return PaymentResult(payment=payment, invoice=updated)


def pay_in_full(conn: Conn, principal: Principal, invoice_id: int, clock: Clock) -> Invoice:
    """Record the payment of what is left of an issued invoice (operator)."""
    invoice = _locked_invoice(conn, principal, invoice_id)
    remaining = _left_to_pay(conn, invoice)
    if remaining <= 0:
        return _settle(conn, invoice, clock.now(), clock.now())
    body = PaymentCreate(amount_minor=remaining, reference=f"paid-in-full:{invoice.id}")
    return record_payment(conn, principal, invoice_id, body, clock).invoice


def list_payments(conn: Conn, principal: Principal, invoice_id: int) -> list[Payment]:
    """The payments of an invoice the caller may see."""
    principal.require("billing:read")
    if repo.get_invoice(conn, invoice_id, principal.scope) is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return repo.payments(conn, invoice_id)


def list_steps(conn: Conn, principal: Principal, invoice_id: int) -> list[DunningStep]:
    """The dunning steps taken on an invoice the caller may see."""
    principal.require("billing:read")
    if repo.get_invoice(conn, invoice_id, principal.scope) is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return repo.steps(conn, invoice_id)


def _days_overdue(invoice: OverdueInvoice, now: datetime) -> int:
    return max((now - invoice.due_at).days, 0)


def _reminder_days(conn: Conn, invoice: OverdueInvoice) -> list[int]:
    days: set[int] = set()
    for plan_id in invoice.plan_ids:
        days.update(plans.get_plan(conn, plan_id).dunning_reminder_days)
    return sorted(days) if invoice.plan_ids else list(DEFAULT_REMINDER_DAYS)


def _plan_now(conn: Conn, sub: Subscription, now: datetime) -> Plan:
    return plans.get_plan(conn, subscriptions.plan_at(conn, sub.id, now))


def _dun_subscription(
    conn: Conn,
    invoice: OverdueInvoice,
    subscription_id: int,
    days: int,
    now: datetime,
    run: DunningRun,
) -> None:
    sub = subscriptions.lock_by_id(conn, subscription_id)
    if sub is None or sub.status == SubscriptionStatus.CANCELLED:
        return
    plan = _plan_now(conn, sub, now)
    extra: dict[str, object] = {"invoice_id": invoice.id, "days_overdue": days}
    if days >= plan.past_due_after_days and sub.status == SubscriptionStatus.ACTIVE:
        step = repo.take_step(conn, invoice, f"past_due:{sub.id}", days, now, sub.id)
        if step is not None:
            subscriptions.move_status(
                conn, sub, SubscriptionStatus.PAST_DUE, now, reason="dunning", extra=extra
            )
            run.past_due += 1
            run.steps.append(step)
    if days >= plan.orders_pause_after_days and sub.orders_paused_at is None:
        step = repo.take_step(conn, invoice, f"orders_paused:{sub.id}", days, now, sub.id)
        if step is not None and repo.set_orders_paused(conn, sub.id, now, now):
            emit(
                conn,
                "subscription.orders_paused",
                {
                    **_sub_payload(conn, sub.id, now),
                    **extra,
                    "orders_pause_after_days": plan.orders_pause_after_days,
                },
                customer_id=sub.customer_id,
                subject=subject("subscription", sub.id),
                occurred_at=now,
            )
            run.orders_paused += 1
            run.steps.append(step)


def _sub_payload(conn: Conn, subscription_id: int, now: datetime) -> dict[str, object]:
    sub = subscriptions.subscription_by_id(conn, subscription_id)
    return {"subscription": subscriptions.view_of(conn, sub, now).model_dump(mode="json")}


def run_dunning(conn: Conn, clock: Clock) -> DunningRun:
    """One pass over the overdue invoices: the reminders that fell due, past due and orders
    paused by each subscription's plan. Every step is taken once (``dunning_steps``)."""
    now = clock.now()
    run = DunningRun()
    for invoice in repo.overdue_invoices(conn, now):
        if invoice.due_minor <= 0:
            continue  # credited in full by corrections: nothing to chase
        days = _days_overdue(invoice, now)
        for day in _reminder_days(conn, invoice):
            if day > days:
                break
            step = repo.take_step(conn, invoice, f"reminder:{day}", days, now)
            if step is None:
                continue
            emit(
                conn,
                "invoice.payment_reminder",
                {
                    "invoice_id": invoice.id,
                    "period": invoice.period,
                    "currency": invoice.currency,
                    "due_at": invoice.due_at.isoformat(),
                    "amount_due_minor": invoice.due_minor,
                    "reminder_day": day,
                    "days_overdue": days,
                },
                customer_id=invoice.customer_id,
                subject=subject("invoice", invoice.id),
                occurred_at=now,
            )
            run.reminders += 1
            run.steps.append(step)
        for subscription_id in invoice.subscription_ids:
            _dun_subscription(conn, invoice, subscription_id, days, now, run)
    return run


def restore(conn: Conn, customer_id: int, now: datetime) -> int:
    """Lift dunning from the customer's subscriptions that no overdue invoice holds any more:
    orders resume, past due becomes active; how many subscriptions changed."""
    overdue = repo.overdue_of_customer(conn, customer_id, now)
    changed = 0
    for subscription_id in repo.subscriptions_in_dunning(conn, customer_id):
        sub = subscriptions.lock_by_id(conn, subscription_id)
        if sub is None:
            continue
        plan = _plan_now(conn, sub, now)
        days = max(
            (_days_overdue(i, now) for i in overdue if sub.id in i.subscription_ids), default=-1
        )
        if sub.orders_paused_at is not None and days < plan.orders_pause_after_days:
            repo.set_orders_paused(conn, sub.id, None, now)
            emit(
                conn,
                "subscription.orders_resumed",
                {**_sub_payload(conn, sub.id, now), "reason": "payment_received"},
                customer_id=sub.customer_id,
                subject=subject("subscription", sub.id),
                occurred_at=now,
            )
            changed += 1
        if sub.status == SubscriptionStatus.PAST_DUE and days < plan.past_due_after_days:
            subscriptions.move_status(
                conn, sub, SubscriptionStatus.ACTIVE, now, reason="payment_received"
            )
            changed += 1
    return changed
