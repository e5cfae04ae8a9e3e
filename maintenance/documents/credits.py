"""Service credits: a plan's promise broken by a failure becomes a credit on the next invoice.

A failure is an ended life with reason 'failure' (reported through the failure API, or
detected and recorded by an order). It earns credits when, at the moment it failed, the asset
was covered by a subscription whose plan promises something, and nothing anticipated it: no
order was open, the open order was the one raised for the failure itself, or the open
order's due date was still ahead (the component failed before its predicted due date).

- ``percent``: ``failure_credit_bps`` of the asset's charges (base fee and usage) under that
  subscription in the month of the failure;
- ``free_repair``: the billable parts and labour of the order that repaired it.

Credits are recorded once per failure and kind (``service_credit.earned``), and go onto the
invoice of the failure's month, or the next invoice when that one has been issued; never
more than the invoice's charges (the invoice total stays >= 0). No SQL text, no HTTP.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from maintenance.billing import repository as billing_repo
from maintenance.billing.pricing import Period, period_of, to_minor
from maintenance.billing.schemas import LineDraft
from maintenance.common import Conn, subject
from maintenance.documents import repository as repo
from maintenance.documents.schemas import FailureOnCover, ServiceCredit
from maintenance.events.service import emit
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import service as subscriptions

CHARGE_KINDS = frozenset({"base_fee", "usage"})
REPAIR_KINDS = frozenset({"parts", "labour"})
# How far back a close looks for failures it has not assessed yet.
ASSESS_LOOKBACK = timedelta(days=100)


def unanticipated(failure: FailureOnCover) -> bool:
    """Whether nothing anticipated the failure: no order, the failure's own order, or an order
    whose due date was still ahead when it failed."""
    if failure.order_id is None or failure.order_reason == "failure":
        return True
    return failure.order_due_at is not None and failure.order_due_at > failure.failed_at


def _reason(failure: FailureOnCover, plan: Plan) -> str:
    source = (
        f"failure report {failure.failure_report_id}"
        if failure.failure_report_id is not None
        else "detected failure"
    )
    when = f"{failure.failed_at:%Y-%m-%d %H:%M} UTC"
    if failure.order_id is None or failure.order_reason == "failure":
        why = "no maintenance was predicted before it failed"
    else:
        assert failure.order_due_at is not None
        why = f"it failed before its predicted due date {failure.order_due_at:%Y-%m-%d}"
    return (
        f"{failure.asset_ref} {failure.component} failed {when} ({source}); {why}."
        f" Plan {plan.code!r}: {plan.promise}"
    )


def assess_failures(
    conn: Conn, customer_id: int, until: datetime, now: datetime
) -> list[ServiceCredit]:
    """Record the credits earned by a customer's failures before ``until`` (idempotent); the
    new ones, each announced by a ``service_credit.earned`` event."""
    earned: list[ServiceCredit] = []
    for failure in repo.failures_to_assess(conn, customer_id, until - ASSESS_LOOKBACK, until):
        if not unanticipated(failure):
            continue
        coverage = subscriptions.coverage_for(conn, failure.asset_id, failure.failed_at)
        if coverage is None:
            continue
        plan = coverage.plan
        kinds: list[tuple[str, int | None]] = []
        if plan.failure_credit_bps is not None:
            kinds.append(("percent", plan.failure_credit_bps))
        if plan.failure_repair_free and failure.order_id is not None:
            kinds.append(("free_repair", None))
        for kind, rate in kinds:
            new_id = repo.insert_service_credit(
                conn,
                {
                    "customer_id": customer_id,
                    "subscription_id": coverage.subscription.id,
                    "plan_id": plan.id,
                    "asset_id": failure.asset_id,
                    "component": failure.component,
                    "life_id": failure.life_id,
                    "failure_report_id": failure.failure_report_id,
                    "failed_at": failure.failed_at,
                    "period": period_of(failure.failed_at).name,
                    "kind": kind,
                    "rate_bps": rate,
                    "order_id": failure.order_id if kind == "free_repair" else None,
                    "reason": _reason(failure, plan),
                    "currency": plan.currency.strip(),
                    "earned_at": now,
                },
            )
            if new_id is None:
                continue  # another closer (or an earlier run) recorded it
            credit = repo.service_credit(conn, new_id, None)
            assert credit is not None
            emit(
                conn,
                "service_credit.earned",
                {"credit": credit.model_dump(mode="json")},
                customer_id=customer_id,
                subject=subject("service_credit", credit.id),
                occurred_at=now,
            )
            earned.append(credit)
    return earned


def assess_recent_failures(conn: Conn, now: datetime) -> int:
    """The billing worker's step: assess every customer's failures of the last
    ``ASSESS_LOOKBACK`` now, so a credit is earned (and announced) within a run of the
    failure, not only when its month closes; how many credits were earned."""
    return sum(
        len(assess_failures(conn, customer_id, now, now))
        for customer_id in repo.customers_with_failures(conn, now - ASSESS_LOOKBACK, now)
    )


def _base(conn: Conn, credit: ServiceCredit, period: Period, lines: list[LineDraft]) -> int | None:
    """What the credit is a share of; None while it cannot be known yet."""
    if credit.kind == "percent":
        if credit.period == period.name:
            return sum(
                line.amount_minor
                for line in lines
                if line.kind in CHARGE_KINDS
                and line.asset_id == credit.asset_id
                and line.subscription_id == credit.subscription_id
            )
        return billing_repo.issued_charges(
            conn, credit.customer_id, credit.period, credit.asset_id, credit.subscription_id
        )
    assert credit.order_id is not None
    here = [
        line.amount_minor
        for line in lines
        if line.order_id == credit.order_id and line.kind in REPAIR_KINDS
    ]
    earlier = billing_repo.issued_order_charges(conn, credit.order_id)
    if not here and earlier is None:
        return None  # the repair is not billed yet
    return sum(here) + (earlier or 0)


def credit_lines(
    conn: Conn, customer_id: int, period: Period, lines: list[LineDraft]
) -> list[LineDraft]:
    """The service credits the invoice of ``period`` applies, as negative lines.

    A credit goes on the invoice of its own month; one of an earlier month waits until that
    month's invoice has left draft (so two open drafts never both take it). The charges of
    the invoice cap the credits: what does not fit is credited up to the cap and said so.
    """
    room = sum(line.amount_minor for line in lines)
    drafts = set(billing_repo.draft_periods(conn, customer_id))
    found: list[LineDraft] = []
    for credit in repo.pending_credits(conn, customer_id, period.end):
        if credit.period != period.name and credit.period in drafts:
            continue
        base = _base(conn, credit, period, lines)
        if base is None:
            continue
        base = max(base, 0)  # nothing charged for the asset: a credit of 0, settled here
        if credit.kind == "percent":
            assert credit.rate_bps is not None
            amount = to_minor(base * credit.rate_bps / Decimal(10_000))
            what = f"{credit.rate_bps / 100:g} % of {base / 100:.2f} {credit.currency}"
        else:
            amount = base
            what = f"free repair, order {credit.order_id}"
        if amount > 0 and room <= 0:
            continue  # this invoice charges nothing: the next one applies it
        capped = min(amount, room)
        note = "" if capped == amount else f" (capped at this invoice's charges, of {amount})"
        room -= capped
        found.append(
            LineDraft(
                kind="service_credit",
                description=f"Service credit ({what}){note}: {credit.reason}",
                quantity=Decimal(1),
                unit="credit",
                unit_price_minor=-capped,
                amount_minor=-capped,
                subscription_id=credit.subscription_id,
                asset_id=credit.asset_id,
                plan_id=credit.plan_id,
                order_id=credit.order_id,
                service_credit_id=credit.id,
                starts_at=credit.failed_at,
                ends_at=credit.failed_at,
            )
        )
    return found
