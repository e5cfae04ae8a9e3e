"""Plan advice: what the last months would have cost a customer on each plan.

Uses the same coverage, metering and line rules as invoices (``service``); only the plan
changes. No SQL text, no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import Invalid
from maintenance.billing import repository as repo
from maintenance.billing.lines import meter_asset, order_lines
from maintenance.billing.pricing import Period, period_of, prorated_fee, shift, usage_charge
from maintenance.billing.schemas import (
    OrderPartUse,
    PlanAdvice,
    PlanOption,
    SubscriptionAdvice,
)
from maintenance.billing.segments import (
    PlanCache,
    Segment,
    by_asset,
    coverage,
    monthly_fee,
    usage_price,
)
from maintenance.common import Conn
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import service as subscriptions


@dataclass
class _Cost:
    fees: int = 0
    usage: int = 0
    parts: int = 0
    labour: int = 0

    @property
    def total(self) -> int:
        return self.fees + self.usage + self.parts + self.labour


def _cost_of(
    segments: list[Segment],
    usage: dict[tuple[int, datetime], Decimal],
    uses: list[OrderPartUse],
    period: Period,
    plan: Plan | None,
) -> _Cost:
    """What segments and orders cost on ``plan`` (None: on the plans actually in effect)."""
    cost = _Cost()
    for seg in segments:
        priced = plan or seg.plan
        fee = monthly_fee(seg, priced)
        if fee is not None:
            cost.fees += prorated_fee(fee, seg.seconds, period)
        price = usage_price(seg, priced)
        if price is not None:
            units = usage[(seg.asset.id, seg.start)]
            cost.usage += usage_charge(units, price, priced.usage_price_quantity)
    for line in order_lines(
        uses,
        uses[0].currency if uses else "EUR",
        parts_billable=(lambda u: not plan.includes_parts) if plan else (lambda u: u.billable),
        labour_billable=(lambda u: not plan.includes_labour)
        if plan
        else (lambda u: not u.labour_included),
    ):
        if line.kind == "parts":
            cost.parts += line.amount_minor
        else:
            cost.labour += line.amount_minor
    return cost


def plan_advice(
    conn: Conn, principal: Principal, customer_id: int | None, months: int, clock: Clock
) -> PlanAdvice:
    """What the last ``months`` full months would have cost on each plan, per subscription.

    Uses the real coverage, the real metered usage and the real completed orders; only the
    plan changes. A plan is a candidate when it covers every kind of asset the subscription
    covered and is priced in the customer's currency.
    """
    principal.require("billing:read")
    if not 1 <= months <= 24:
        raise Invalid("months is between 1 and 24")
    owner = fleet.owner_for(principal, customer_id)
    customer = fleet.get_customer(conn, principal, owner)
    current = period_of(clock.now())
    periods = [shift(current, -k) for k in range(months, 0, -1)]
    cache = PlanCache(conn)
    catalogue, _ = plans.list_plans(conn, after=None, limit=500)
    advice: list[SubscriptionAdvice] = []
    for sub in subscriptions.running_in(conn, owner, periods[0].start, periods[-1].end):
        per_period: list[tuple[Period, list[Segment], dict[tuple[int, datetime], Decimal]]] = []
        for period in periods:
            segments = coverage(conn, sub, period, cache)
            usage: dict[tuple[int, datetime], Decimal] = {}
            for asset_segments in by_asset(segments).values():
                windows = [(s.start, s.end) for s in asset_segments]
                _, _, metering = meter_asset(conn, asset_segments[0].asset, windows)
                for seg, units in zip(asset_segments, metering.per_window, strict=True):
                    usage[(seg.asset.id, seg.start)] = units
            per_period.append((period, segments, usage))
        if not any(segments for _, segments, _ in per_period):
            continue
        orders = {
            period.name: [
                u
                for u in repo.completed_order_parts(conn, owner, period.start, period.end)
                if u.subscription_id == sub.id
            ]
            for period in periods
        }
        kinds = {seg.asset.kind for _, segments, _ in per_period for seg in segments}
        current_plans = sorted({seg.plan.id for _, segments, _ in per_period for seg in segments})
        actual = sum(
            _cost_of(segments, usage, orders[p.name], p, None).total
            for p, segments, usage in per_period
        )
        options: list[PlanOption] = []
        for plan in catalogue:
            if not kinds <= set(plan.kinds) or plan.currency != customer.currency:
                continue
            costs = {
                p.name: _cost_of(segments, usage, orders[p.name], p, plan)
                for p, segments, usage in per_period
            }
            total = sum(c.total for c in costs.values())
            options.append(
                PlanOption(
                    plan_id=plan.id,
                    plan_code=plan.code,
                    plan_name=plan.name,
                    currency=plan.currency,
                    cost_minor=total,
                    fees_minor=sum(c.fees for c in costs.values()),
                    usage_minor=sum(c.usage for c in costs.values()),
                    parts_minor=sum(c.parts for c in costs.values()),
                    labour_minor=sum(c.labour for c in costs.values()),
                    by_period={name: c.total for name, c in costs.items()},
                    saving_minor=actual - total,
                )
            )
        options.sort(key=lambda o: (o.cost_minor, o.plan_id))
        advice.append(
            SubscriptionAdvice(
                subscription_id=sub.id,
                current_plan_ids=current_plans,
                current_cost_minor=actual,
                options=options,
                best_plan_id=options[0].plan_id if options else None,
            )
        )
    return PlanAdvice(
        customer_id=owner,
        currency=customer.currency,
        periods=[p.name for p in periods],
        subscriptions=advice,
    )
