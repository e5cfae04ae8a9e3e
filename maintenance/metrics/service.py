"""SaaS metrics from the subscription history: MRR and ARR, new / expansion / contraction /
churned MRR, gross and net revenue retention, logo churn and renewal rate, per month, plan and
asset kind. Nothing is read from stored totals: MRR at a moment is recomputed from the status
history, the plan periods, the covered assets and the contract terms. No SQL text, no HTTP.
See docs/billing.md, "SaaS metrics"."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import Invalid
from maintenance.billing.pricing import Period, parse_period, shift, usage_charge
from maintenance.billing.segments import contract_year, escalated, recurring_fee
from maintenance.common import Conn
from maintenance.metrics import repository as repo
from maintenance.metrics.schemas import GroupMetrics, MetricsSeries, MonthMetrics, Movements
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import (
    CoveredAsset,
    PlanPeriod,
    StatusPeriod,
    Subscription,
)

# A customer with a subscription in one of these statuses is a live logo (a trial is not yet)
LIVE = frozenset({"active", "past_due", "paused"})
MAX_MONTHS = 36
COMMITMENT = "commitment"
LAST_MOMENT = timedelta(microseconds=1)


@dataclass
class Book:
    """Everything the metrics read, loaded once: subscriptions with their histories."""

    subs: list[Subscription]
    history: dict[int, list[StatusPeriod]]
    periods: dict[int, list[PlanPeriod]]
    assets: dict[int, list[CoveredAsset]]
    plans: dict[int, Plan] = field(default_factory=dict)


def load_book(conn: Conn, end: datetime) -> Book:
    """The subscriptions, status rows, plan periods, covered assets and plans before ``end``."""
    subs = repo.subscriptions_started_before(conn, end)
    history: dict[int, list[StatusPeriod]] = defaultdict(list)
    for row in repo.status_rows(conn, end):
        history[row.subscription_id].append(row)
    periods: dict[int, list[PlanPeriod]] = defaultdict(list)
    for p in repo.plan_periods(conn, end):
        periods[p.subscription_id].append(p)
    book = Book(
        subs=subs,
        history=history,
        periods=periods,
        assets={s.id: subscriptions.covered_asset_stretches(conn, s) for s in subs},
    )
    for plan_periods in periods.values():
        for p in plan_periods:
            if p.plan_id not in book.plans:
                book.plans[p.plan_id] = plans.get_plan(conn, p.plan_id)
    return book


def _at(rows: list[StatusPeriod], t: datetime) -> str | None:
    for r in rows:
        if r.valid_from <= t and (r.valid_to is None or r.valid_to > t):
            return r.status
    return None


def _plan_at(rows: list[PlanPeriod], t: datetime) -> int | None:
    for p in rows:
        if p.effective_from <= t and (p.effective_to is None or p.effective_to > t):
            return p.plan_id
    return None


def subscription_mrr(
    book: Book, sub: Subscription, t: datetime, currency: str
) -> dict[tuple[str, str], int]:
    """MRR of one subscription at ``t`` by (plan code, asset kind): the fee per asset-month of
    each covered asset (escalated; by the plan's pause rule when paused) plus, when not
    paused, the committed minimum's shortfall (kind 'commitment'). Usage beyond a commitment
    is not recurring revenue."""
    status = _at(book.history.get(sub.id, []), t)
    plan_id = _plan_at(book.periods.get(sub.id, []), t)
    if status not in LIVE or plan_id is None:
        return {}
    plan = book.plans[plan_id]
    if plan.currency.strip() != currency:
        return {}
    paused = status == "paused"
    year = contract_year(sub, t)
    found: dict[tuple[str, str], int] = defaultdict(int)
    alive = [
        a
        for a in book.assets.get(sub.id, [])
        if a.kind in plan.kinds
        and a.installed_at <= t
        and (a.retired_at is None or a.retired_at > t)
    ]
    fee = recurring_fee(plan, sub, year, paused)
    if fee is not None:
        for asset in alive:
            found[(plan.code, asset.kind)] += fee
        if not paused and sub.committed_assets is not None and sub.committed_assets > len(alive):
            found[(plan.code, COMMITMENT)] += fee * (sub.committed_assets - len(alive))
    if not paused and sub.committed_usage is not None and plan.usage_price_minor is not None:
        price = escalated(plan.usage_price_minor, sub.escalation_bps, year)
        found[(plan.code, COMMITMENT)] += usage_charge(
            sub.committed_usage, price, plan.usage_price_quantity
        )
    return {k: v for k, v in found.items() if v}


@dataclass
class _Snapshot:
    """Per customer at one moment: MRR by (plan, kind) and whether it is a live logo."""

    mrr: dict[int, dict[tuple[str, str], int]]
    live: set[int]

    def total(self, customer: int) -> int:
        return sum(self.mrr.get(customer, {}).values())


def snapshot(book: Book, t: datetime, currency: str) -> _Snapshot:
    """Every customer's MRR and liveness at ``t``."""
    mrr: dict[int, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    live: set[int] = set()
    for sub in book.subs:
        if _at(book.history.get(sub.id, []), t) in LIVE:
            live.add(sub.customer_id)
        for key, amount in subscription_mrr(book, sub, t, currency).items():
            mrr[sub.customer_id][key] += amount
    return _Snapshot(mrr=mrr, live=live)


def _ratio(numerator: int, denominator: int) -> str | None:
    if denominator == 0:
        return None
    value = Decimal(numerator) / Decimal(denominator)
    return str(value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def _classify(moves: Movements, start: int, end: int, *, new: bool, churned: bool) -> None:
    if start == 0 and end > 0:
        if new:
            moves.new_mrr_minor += end
        else:
            moves.expansion_mrr_minor += end
    elif start > 0 and end == 0:
        if churned:
            moves.churned_mrr_minor += start
        else:
            moves.contraction_mrr_minor += start
    elif end > start:
        moves.expansion_mrr_minor += end - start
    elif end < start:
        moves.contraction_mrr_minor += start - end


def _groups(opening: _Snapshot, closing: _Snapshot, index: int) -> list[GroupMetrics]:
    """Movements by plan (index 0) or kind (index 1), on (customer, group) keys."""
    keys: set[tuple[int, str]] = set()
    for snap in (opening, closing):
        for customer, amounts in snap.mrr.items():
            keys.update((customer, k[index]) for k in amounts)

    def amount(snap: _Snapshot, customer: int, group: str) -> int:
        return sum(v for k, v in snap.mrr.get(customer, {}).items() if k[index] == group)

    groups: dict[str, GroupMetrics] = {}
    for customer, group in sorted(keys):
        g = groups.setdefault(
            group, GroupMetrics(key=group, opening_mrr_minor=0, closing_mrr_minor=0, customers=0)
        )
        start, end = amount(opening, customer, group), amount(closing, customer, group)
        g.opening_mrr_minor += start
        g.closing_mrr_minor += end
        g.customers += end > 0
        _classify(g, start, end, new=True, churned=True)
    return [groups[k] for k in sorted(groups)]


def compute_month(book: Book, period: Period, currency: str) -> MonthMetrics:
    """The metrics of one month from a loaded book."""
    # a month opens with the state of its predecessor's last moment and closes with its own
    # last moment: a term ending at midnight on 1 September counts in August and churns in
    # September, the month its non-renewal is counted in
    opening = snapshot(book, period.start - LAST_MOMENT, currency)
    closing = snapshot(book, period.end - LAST_MOMENT, currency)
    customers = set(opening.mrr) | set(closing.mrr) | opening.live | closing.live
    moves = Movements(
        opening_mrr_minor=sum(opening.total(c) for c in customers),
        closing_mrr_minor=sum(closing.total(c) for c in customers),
    )
    retained = kept = base = 0
    for c in sorted(customers):
        start, end = opening.total(c), closing.total(c)
        _classify(moves, start, end, new=c not in opening.live, churned=c not in closing.live)
        if start > 0:
            base += start
            retained += end
            kept += min(start, end)
    renewed = due = 0
    for rows in book.history.values():
        for r in rows:
            if not period.start <= r.valid_from < period.end:
                continue
            if r.reason == "renewal":
                renewed += 1
                due += 1
            elif r.status == "cancelled" and r.reason == "term_end":
                due += 1
    churned_logos = len(opening.live - closing.live)
    return MonthMetrics(
        month=period.name,
        currency=currency,
        **moves.model_dump(),
        arr_minor=moves.closing_mrr_minor * 12,
        customers_opening=len(opening.live),
        customers_closing=len(closing.live),
        new_customers=len(closing.live - opening.live),
        churned_customers=churned_logos,
        logo_churn_rate=_ratio(churned_logos, len(opening.live)),
        gross_revenue_retention=_ratio(kept, base),
        net_revenue_retention=_ratio(retained, base),
        renewals_due=due,
        renewals=renewed,
        renewal_rate=_ratio(renewed, due),
        by_plan=_groups(opening, closing, 0),
        by_kind=_groups(opening, closing, 1),
    )


def _check(month: str, months: int, currency: str, clock: Clock) -> Period:
    period = parse_period(month)
    if period.start > clock.now():
        raise Invalid(f"month {period.name} has not started", code="month_not_started")
    if not 1 <= months <= MAX_MONTHS:
        raise Invalid(f"months is between 1 and {MAX_MONTHS}", code="invalid_months")
    if re.fullmatch(r"[A-Z]{3}", currency) is None:
        raise Invalid(f"currency {currency!r} is not an ISO 4217 code", code="invalid_currency")
    return period


def metrics_series(
    conn: Conn,
    principal: Principal,
    month: str,
    clock: Clock,
    *,
    months: int = 1,
    currency: str = "EUR",
) -> MetricsSeries:
    """The metrics of ``months`` months ending with ``month`` (operator), oldest first."""
    principal.require("revenue:read")
    last = _check(month, months, currency, clock)
    book = load_book(conn, last.end)
    return MetricsSeries(
        currency=currency,
        months=[compute_month(book, shift(last, -k), currency) for k in range(months - 1, -1, -1)],
    )
