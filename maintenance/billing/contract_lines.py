"""Lines a contract adds to an invoice: the shortfall to a committed minimum, and what an
immediate cancellation owes for the rest of its term (the contract's cancellation rule).

No SQL text, no HTTP. See docs/billing.md, "Contracts".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from maintenance.billing.pricing import (
    Period,
    days,
    overlap,
    period_of,
    prorated_fee,
    quantity,
    shift,
    usage_charge,
)
from maintenance.billing.schemas import LineDraft
from maintenance.billing.segments import Segment, escalated, monthly_fee, usage_price
from maintenance.plans.schemas import Plan
from maintenance.subscriptions.schemas import CoveredAsset, Subscription


def _active(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if not s.paused]


def _active_seconds(segments: list[Segment]) -> int:
    """Seconds of the period the subscription was billable and not paused (any asset)."""
    spans = sorted({(s.start, s.end) for s in _active(segments)})
    total, reach = 0, None
    for start, end in spans:
        start = max(start, reach) if reach else start
        if end > start:
            total += int((end - start).total_seconds())
            reach = end
    return total


def commitment_lines(
    sub: Subscription,
    segments: list[Segment],
    usage: list[tuple[Segment, Decimal]],
    period: Period,
) -> list[LineDraft]:
    """The shortfall to the committed assets and usage over the active part of the period."""
    active = _active(segments)
    if not active or (sub.committed_assets is None and sub.committed_usage is None):
        return []
    last = active[-1]
    seconds = _active_seconds(segments)
    share = Decimal(seconds) / period.seconds
    lines: list[LineDraft] = []
    fee = monthly_fee(last)
    if sub.committed_assets is not None and fee is not None:
        owed = prorated_fee(fee * sub.committed_assets, seconds, period)
        billed = sum(
            prorated_fee(f, s.seconds, period) for s in active if (f := monthly_fee(s)) is not None
        )
        if owed > billed:
            lines.append(
                LineDraft(
                    kind="base_fee",
                    contract_charge="commitment",
                    description=f"Committed minimum: {sub.committed_assets} asset(s) of"
                    f" {last.plan.name} for {days(seconds)} of {period.days} days"
                    f" ({owed} owed, {billed} billed as fees)",
                    quantity=Decimal(sub.committed_assets),
                    unit="assets",
                    unit_price_minor=fee,
                    amount_minor=owed - billed,
                    subscription_id=sub.id,
                    plan_id=last.plan.id,
                    starts_at=active[0].start,
                    ends_at=max(s.end for s in active),
                )
            )
    price = usage_price(last)
    if sub.committed_usage is not None and price is not None:
        per = last.plan.usage_price_quantity
        minimum = quantity(sub.committed_usage * share)
        used = sum((units for seg, units in usage if not seg.paused), Decimal(0))
        short = minimum - used
        if short > 0:
            lines.append(
                LineDraft(
                    kind="base_fee",
                    contract_charge="commitment",
                    description=f"Committed minimum usage: {minimum} of {sub.committed_usage}"
                    f" a month for {days(seconds)} of {period.days} days, {used} used",
                    quantity=short,
                    unit="units",
                    unit_price_minor=price,
                    unit_quantity=per,
                    amount_minor=usage_charge(short, price, per),
                    subscription_id=sub.id,
                    plan_id=last.plan.id,
                    starts_at=active[0].start,
                    ends_at=max(s.end for s in active),
                )
            )
    return [line for line in lines if line.amount_minor > 0]


def owed_until(sub: Subscription) -> datetime | None:
    """Until when an immediate cancellation still owes fees under the contract's rule (None:
    nothing owed: no rule, a trial, or the term's natural end)."""
    ended = sub.ends_at
    if ended is None or sub.cancellation_rule == "none" or ended >= sub.current_term_ends_at:
        return None
    if sub.trial_ends_at is not None and ended <= sub.trial_ends_at:
        return None
    if sub.cancellation_rule == "remainder":
        return sub.current_term_ends_at
    return min(sub.current_term_ends_at, ended + timedelta(days=sub.notice_days))


def early_termination_line(
    sub: Subscription,
    plan: Plan,
    assets: list[CoveredAsset],
    contract_year: int,
    period: Period,
) -> LineDraft | None:
    """What an immediate cancellation in ``period`` owes for the rest of the term: the fees
    of the assets it covered when it ended (at least the committed ones), month by month."""
    until = owed_until(sub)
    if until is None or sub.ends_at is None or not period.start <= sub.ends_at < period.end:
        return None
    if plan.fee_per_asset_month_minor is None:
        return None
    ended = sub.ends_at
    count = max(
        sum(
            1
            for a in assets
            if a.kind in plan.kinds
            and overlap(ended - timedelta(seconds=1), ended, a.installed_at, a.retired_at)
        ),
        sub.committed_assets or 0,
    )
    if count == 0:
        return None
    fee = escalated(plan.fee_per_asset_month_minor, sub.escalation_bps, contract_year)
    amount, month = 0, period_of(ended)
    while month.start < until:
        span = overlap(month.start, month.end, ended, until)
        if span is not None:
            amount += prorated_fee(fee * count, int((span[1] - span[0]).total_seconds()), month)
        month = shift(month, 1)
    rule = "the rest of the term" if sub.cancellation_rule == "remainder" else "the notice period"
    return LineDraft(
        kind="base_fee",
        contract_charge="early_termination",
        description=f"Cancelled {ended:%Y-%m-%d}: {rule} to {until:%Y-%m-%d}, {count} asset(s)"
        f" of {plan.name} at {fee} a month",
        quantity=Decimal(count),
        unit="assets",
        unit_price_minor=fee,
        amount_minor=amount,
        subscription_id=sub.id,
        plan_id=plan.id,
        # a point in time, not a service period: no service follows, so revenue recognition
        # takes it in the month of the cancellation
        starts_at=ended,
        ends_at=ended,
    )
