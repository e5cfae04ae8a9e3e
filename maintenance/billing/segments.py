"""Coverage: the segments of a period in which a subscription's plan covered an asset —
cut at plan changes, pauses (status history) and contract years — and their prices (the
plan's pause rule, yearly escalation). Shared by lines, contract lines and plan advice.
No SQL text, no HTTP."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from maintenance.billing.pricing import Period, overlap, to_minor
from maintenance.common import Conn
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import CoveredAsset, Subscription

# --- coverage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of a period in which one plan of one subscription covered one asset; paused
    stretches and contract years (when prices escalate) are segments of their own."""

    subscription: Subscription
    asset: CoveredAsset
    plan: Plan
    start: datetime
    end: datetime
    paused: bool = False
    contract_year: int = 0

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


class PlanCache:
    """Plans by id, read once per close."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._plans: dict[int, Plan] = {}

    def get(self, plan_id: int) -> Plan:
        if plan_id not in self._plans:
            self._plans[plan_id] = plans.get_plan(self._conn, plan_id)
        return self._plans[plan_id]


def billable_window(sub: Subscription, period: Period) -> tuple[datetime, datetime] | None:
    """The part of ``period`` a subscription is billed for: after its trial, before its end."""
    start = max(period.start, sub.starts_at, sub.trial_ends_at or sub.starts_at)
    end = min(period.end, sub.ends_at or period.end)
    return (start, end) if start < end else None


def _contract_pieces(
    conn: Conn, sub: Subscription, window: tuple[datetime, datetime]
) -> list[tuple[datetime, datetime, bool, int]]:
    """``window`` cut where a pause starts or ends (status history) and, when prices escalate,
    at each anniversary of the start: (start, end, paused, contract year)."""
    paused = [p for p in subscriptions.status_history(conn, sub.id) if p.status == "paused"]
    cuts = {window[0], window[1]}
    for p in paused:
        for t in (p.valid_from, p.valid_to):
            if t is not None and window[0] < t < window[1]:
                cuts.add(t)
    anniversaries: list[datetime] = []
    if sub.escalation_bps:
        year = 1
        while (moment := subscriptions.add_months(sub.starts_at, 12 * year)) < window[1]:
            anniversaries.append(moment)
            if moment > window[0]:
                cuts.add(moment)
            year += 1
    points = sorted(cuts)
    return [
        (
            start,
            end,
            any(
                p.valid_from <= start and (p.valid_to is None or p.valid_to >= end) for p in paused
            ),
            sum(1 for a in anniversaries if a <= start),
        )
        for start, end in itertools.pairwise(points)
    ]


def coverage(conn: Conn, sub: Subscription, period: Period, cache: PlanCache) -> list[Segment]:
    """Segments of ``period``: per covered asset, plan period, pause state and contract year,
    the time it was billable."""
    window = billable_window(sub, period)
    if window is None:
        return []
    assets = subscriptions.covered_asset_stretches(conn, sub)
    plan_periods = subscriptions.plan_periods(conn, sub.id)
    found: list[Segment] = []
    for start, end, paused, year in _contract_pieces(conn, sub, window):
        for plan_period in plan_periods:
            in_plan = overlap(start, end, plan_period.effective_from, plan_period.effective_to)
            if in_plan is None:
                continue
            plan = cache.get(plan_period.plan_id)
            for asset in assets:
                if asset.kind not in plan.kinds:
                    continue
                alive = overlap(in_plan[0], in_plan[1], asset.installed_at, asset.retired_at)
                if alive is not None:
                    found.append(Segment(sub, asset, plan, alive[0], alive[1], paused, year))
    return sorted(found, key=lambda s: (s.asset.id, s.start))


def escalated(price_minor: int, escalation_bps: int, contract_year: int) -> int:
    """A price after ``contract_year`` yearly rises of ``escalation_bps`` (compounded, rounded
    once to minor units)."""
    if not escalation_bps or not contract_year:
        return price_minor
    return to_minor(
        Decimal(price_minor) * (Decimal(10000 + escalation_bps) / 10000) ** contract_year
    )


def recurring_fee(plan: Plan, sub: Subscription, contract_year: int, paused: bool) -> int | None:
    """The fee per asset-month of ``plan`` for ``sub`` in its contract year: escalated, and by
    the plan's pause rule when paused (None: nothing to bill). Billing and MRR both use it."""
    if plan.fee_per_asset_month_minor is None:
        return None
    fee = escalated(plan.fee_per_asset_month_minor, sub.escalation_bps, contract_year)
    if not paused or plan.pause_rule == "full":
        return fee
    if plan.pause_rule == "reduced":
        return to_minor(Decimal(fee) * plan.pause_fee_bps / 10000)
    return None


def contract_year(sub: Subscription, at: datetime) -> int:
    """Whole years of the contract before ``at`` (0 in the first year); 0 without escalation,
    whose prices never change."""
    if not sub.escalation_bps:
        return 0
    years = 0
    while subscriptions.add_months(sub.starts_at, 12 * (years + 1)) <= at:
        years += 1
    return years


def monthly_fee(seg: Segment, plan: Plan | None = None) -> int | None:
    """The fee per asset-month of a segment on ``plan`` (default: its own)."""
    return recurring_fee(plan or seg.plan, seg.subscription, seg.contract_year, seg.paused)


def by_asset(segments: Iterable[Segment]) -> dict[int, list[Segment]]:
    grouped: dict[int, list[Segment]] = defaultdict(list)
    for seg in segments:
        grouped[seg.asset.id].append(seg)
    return grouped


def usage_price(seg: Segment, plan: Plan | None = None) -> int | None:
    """The usage price of a segment on ``plan`` (default: its own), escalated for its year."""
    plan = plan or seg.plan
    if plan.usage_price_minor is None:
        return None
    return escalated(plan.usage_price_minor, seg.subscription.escalation_bps, seg.contract_year)
