"""Subscriptions: creation, lifecycle, plan changes, scope and entitlements. No SQL text."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from fleet import service as fleet
from fleet.schemas import Principal
from fleet.service import translate_integrity_errors
from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Forbidden, Invalid, NotFound
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import repository as repo
from maintenance.subscriptions.schemas import (
    SUBSCRIPTION_LIFECYCLE,
    AssetList,
    Coverage,
    CoveredAsset,
    PlanChange,
    PlanPeriod,
    Subscription,
    SubscriptionCreate,
    SubscriptionStatus,
    SubscriptionUpdate,
    SubscriptionView,
)

# The moves of SUBSCRIPTION_LIFECYCLE a customer key may ask for itself (to -> from); the
# rest (billing states) is the operator's.
CUSTOMER_TRANSITIONS: dict[SubscriptionStatus, tuple[SubscriptionStatus, ...]] = {
    SubscriptionStatus.ACTIVE: (SubscriptionStatus.TRIALING, SubscriptionStatus.PAUSED),
    SubscriptionStatus.PAUSED: (SubscriptionStatus.ACTIVE,),
    SubscriptionStatus.CANCELLED: (
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.PAUSED,
    ),
}
EVENT_OF_STATUS = {
    SubscriptionStatus.ACTIVE: "subscription.activated",
    SubscriptionStatus.PAST_DUE: "subscription.past_due",
    SubscriptionStatus.PAUSED: "subscription.paused",
    SubscriptionStatus.CANCELLED: "subscription.cancelled",
}


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months (the day clamped to the month's length)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _view(conn: Conn, sub: Subscription, now: datetime) -> SubscriptionView:
    periods = repo.periods(conn, sub.id)
    current = next(
        (
            p
            for p in periods
            if p.effective_from <= now and (p.effective_to is None or p.effective_to > now)
        ),
        periods[0],
    )
    pending = next((p for p in periods if p.effective_from > now), None)
    plan = plans.get_plan(conn, current.plan_id)
    return SubscriptionView(
        **sub.model_dump(),
        plan_id=current.plan_id,
        pending_plan_id=pending.plan_id if pending else None,
        pending_plan_from=pending.effective_from if pending else None,
        asset_ids=repo.listed_assets(conn, sub.id) if sub.scope == "assets" else [],
        covered_asset_count=sum(1 for a in repo.covered_assets(conn, sub) if a.retired_at is None),
        entitlements=plan.entitlements(sub.entitlement_overrides),
    )


def _payload(view: SubscriptionView, **extra: object) -> dict[str, object]:
    return {"subscription": view.model_dump(mode="json"), **extra}


def _get_locked(conn: Conn, principal: Principal, subscription_id: int) -> Subscription:
    if not principal.can("subscriptions:read"):
        raise NotFound(f"subscription {subscription_id} not found", code="subscription_not_found")
    sub = repo.lock_subscription(conn, subscription_id, principal.scope)
    if sub is None:
        raise NotFound(f"subscription {subscription_id} not found", code="subscription_not_found")
    return sub


def _check_assets(conn: Conn, customer_id: int, plan: Plan, asset_ids: list[int]) -> None:
    kinds = repo.asset_kinds(conn, customer_id, asset_ids)
    for asset_id in asset_ids:
        if asset_id not in kinds:
            raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
        if kinds[asset_id] not in plan.kinds:
            raise Invalid(
                f"asset {asset_id} is a {kinds[asset_id]}; plan {plan.code!r} covers"
                f" {', '.join(plan.kinds)}"
            )


def create_subscription(
    conn: Conn, principal: Principal, body: SubscriptionCreate, clock: Clock
) -> SubscriptionView:
    """Subscribe listed assets or a whole site of a customer to a plan."""
    principal.require("subscriptions:write")
    owner = fleet.owner_for(principal, body.customer_id)
    customer = fleet.get_customer(conn, principal, owner)
    if customer.retired_at is not None:
        raise Invalid(f"customer {owner} is retired")
    plan = plans.get_plan(conn, body.plan_id)
    if plan.retired_at is not None:
        raise Invalid(f"plan {plan.code!r} is no longer sold")
    if body.scope == "site":
        assert body.site_id is not None
        site = fleet.get_site(conn, principal, body.site_id)
        if site.customer_id != owner:
            raise NotFound(f"site {body.site_id} not found", code="site_not_found")
    _check_assets(conn, owner, plan, body.asset_ids)
    now = clock.now()
    starts = body.starts_at or now
    trial_ends = starts + timedelta(days=body.trial_days) if body.trial_days else None
    values = {
        "customer_id": owner,
        "scope": body.scope,
        "site_id": body.site_id,
        "status": SubscriptionStatus.TRIALING if trial_ends else SubscriptionStatus.ACTIVE,
        "starts_at": starts,
        "current_term_ends_at": add_months(starts, body.term_months),
        "term_months": body.term_months,
        "auto_renew": body.auto_renew,
        "trial_ends_at": trial_ends,
        "entitlement_overrides": body.entitlement_overrides.model_dump(exclude_none=True),
        "created_at": now,
        "updated_at": now,
    }
    with translate_integrity_errors("subscription"):
        sub = repo.insert_subscription(conn, values)
        repo.insert_period(conn, sub.id, plan.id, starts)
        repo.add_assets(conn, sub.id, owner, body.asset_ids)
    view = _view(conn, sub, now)
    emit(
        conn,
        "subscription.created",
        _payload(view),
        customer_id=owner,
        subject=subject("subscription", sub.id),
    )
    return view


def get_subscription(
    conn: Conn, principal: Principal, subscription_id: int, clock: Clock
) -> SubscriptionView:
    """One subscription the caller may see."""
    if not principal.can("subscriptions:read"):
        raise NotFound(f"subscription {subscription_id} not found", code="subscription_not_found")
    sub = repo.get_subscription(conn, subscription_id, principal.scope)
    if sub is None:
        raise NotFound(f"subscription {subscription_id} not found", code="subscription_not_found")
    return _view(conn, sub, clock.now())


def list_subscriptions(
    conn: Conn,
    principal: Principal,
    clock: Clock,
    *,
    customer_id: int | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[SubscriptionView], int | None]:
    """Subscriptions visible to the caller, one page."""
    if not principal.can("subscriptions:read"):
        return [], None
    rows, nxt = repo.list_subscriptions(
        conn,
        scope=principal.scope,
        customer_id=customer_id,
        status=status,
        after=after,
        limit=limit,
    )
    now = clock.now()
    return [_view(conn, s, now) for s in rows], nxt


def transition(
    conn: Conn, principal: Principal, subscription_id: int, to: str, clock: Clock
) -> SubscriptionView:
    """Move a subscription to ``to`` (active, past_due, paused, cancelled) if allowed."""
    if not principal.can("subscriptions:override"):
        principal.require("subscriptions:write")
    if to not in EVENT_OF_STATUS:
        raise Invalid(f"unknown subscription status {to!r}")
    target = SubscriptionStatus(to)
    sub = _get_locked(conn, principal, subscription_id)
    SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, target)
    if not principal.can("subscriptions:override") and sub.status not in CUSTOMER_TRANSITIONS.get(
        target, ()
    ):
        raise Forbidden(f"only the operator may move a {sub.status} subscription to {to}")
    now = clock.now()
    values: dict[str, object] = {"status": target}
    if target == SubscriptionStatus.CANCELLED:
        values |= {"cancelled_at": now, "ends_at": now}
    updated = repo.set_fields(conn, sub.id, values, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        EVENT_OF_STATUS[target],
        _payload(view, previous_status=sub.status),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def cancel(
    conn: Conn, principal: Principal, subscription_id: int, at_term_end: bool, clock: Clock
) -> SubscriptionView:
    """Cancel now, or at the end of the current term (service continues until then)."""
    if not at_term_end:
        return transition(conn, principal, subscription_id, "cancelled", clock)
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, SubscriptionStatus.CANCELLED)
    if sub.cancel_at_term_end:
        return _view(conn, sub, clock.now())
    now = clock.now()
    updated = repo.set_fields(conn, sub.id, {"cancel_at_term_end": True}, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        "subscription.cancellation_scheduled",
        _payload(view, ends_at=sub.current_term_ends_at.isoformat()),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def update_subscription(
    conn: Conn, principal: Principal, subscription_id: int, body: SubscriptionUpdate, clock: Clock
) -> SubscriptionView:
    """Change renewal settings (customer or operator) or entitlement overrides (operator)."""
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    values: dict[str, object] = {}
    if body.auto_renew is not None:
        values["auto_renew"] = body.auto_renew
    if body.term_months is not None:
        values["term_months"] = body.term_months
    if body.entitlement_overrides is not None:
        if not principal.can("subscriptions:override"):
            raise Forbidden(
                "only the operator may override entitlements", code="role_not_permitted"
            )
        values["entitlement_overrides"] = body.entitlement_overrides.model_dump(exclude_none=True)
    now = clock.now()
    if not values:
        return _view(conn, sub, now)
    updated = repo.set_fields(conn, sub.id, values, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        "subscription.updated",
        _payload(view, changed=sorted(values)),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def change_plan(
    conn: Conn, principal: Principal, subscription_id: int, body: PlanChange, clock: Clock
) -> SubscriptionView:
    """Switch plans now or at the end of the term; a pending change is replaced."""
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    if SUBSCRIPTION_LIFECYCLE.is_final(sub.status):
        raise Conflict(f"subscription {sub.id} is {sub.status}")
    plan = plans.get_plan(conn, body.plan_id)
    if plan.retired_at is not None:
        raise Invalid(f"plan {plan.code!r} is no longer sold")
    if sub.scope == "assets":
        _check_assets(conn, sub.customer_id, plan, repo.listed_assets(conn, sub.id))
    now = clock.now()
    before = _view(conn, sub, now)
    effective = now if body.at == "now" else sub.current_term_ends_at
    effective = max(effective, sub.starts_at)
    repo.drop_future_periods(conn, sub.id, now)
    current_from = max(p.effective_from for p in repo.periods(conn, sub.id))
    if current_from >= effective:
        repo.set_open_period_plan(conn, sub.id, plan.id)
    else:
        repo.close_open_period(conn, sub.id, effective)
        repo.insert_period(conn, sub.id, plan.id, effective)
    updated = repo.set_fields(conn, sub.id, {}, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        "subscription.plan_changed",
        _payload(
            view,
            previous_plan_id=before.plan_id,
            plan_id=plan.id,
            effective_at=effective.isoformat(),
        ),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def add_assets(
    conn: Conn, principal: Principal, subscription_id: int, body: AssetList, clock: Clock
) -> SubscriptionView:
    """List more assets on an assets-scoped subscription."""
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    if sub.scope != "assets":
        raise Invalid("this subscription covers a whole site; it lists no assets")
    now = clock.now()
    plan = _view(conn, sub, now)
    _check_assets(conn, sub.customer_id, plans.get_plan(conn, plan.plan_id), body.asset_ids)
    if repo.add_assets(conn, sub.id, sub.customer_id, body.asset_ids) == 0:
        return plan
    view = _view(conn, repo.set_fields(conn, sub.id, {}, now), now)
    emit(
        conn,
        "subscription.assets_added",
        _payload(view, asset_ids=body.asset_ids),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def remove_asset(
    conn: Conn, principal: Principal, subscription_id: int, asset_id: int, clock: Clock
) -> SubscriptionView:
    """Take an asset off a subscription."""
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    if not repo.remove_asset(conn, sub.id, asset_id):
        raise NotFound(
            f"asset {asset_id} is not on subscription {sub.id}", code="asset_not_subscribed"
        )
    now = clock.now()
    view = _view(conn, repo.set_fields(conn, sub.id, {}, now), now)
    emit(
        conn,
        "subscription.asset_removed",
        _payload(view, asset_id=asset_id),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def subscription_by_id(conn: Conn, subscription_id: int) -> Subscription:
    """A subscription by id, for other domains' jobs (no caller scope); NotFound if absent."""
    sub = repo.get_subscription(conn, subscription_id, None)
    if sub is None:
        raise NotFound(f"subscription {subscription_id} not found", code="subscription_not_found")
    return sub


def plan_periods(conn: Conn, subscription_id: int) -> list[PlanPeriod]:
    """The plan periods of a subscription, oldest first."""
    return repo.periods(conn, subscription_id)


def covered_assets(conn: Conn, subscription: Subscription) -> list[CoveredAsset]:
    """Assets a subscription covers: the listed ones, or every asset of its site."""
    return repo.covered_assets(conn, subscription)


def running_in(conn: Conn, customer_id: int, start: datetime, end: datetime) -> list[Subscription]:
    """A customer's subscriptions that were running at some time in ``[start, end)``."""
    return repo.subscriptions_in(conn, customer_id, start, end)


def coverage_for(conn: Conn, asset_id: int, at: datetime) -> Coverage | None:
    """The entitled subscription that governs an asset at ``at``: orders beat alerts-only."""
    best: Coverage | None = None
    for sub, plan_id in repo.covering(conn, asset_id, at):
        plan = plans.get_plan(conn, plan_id)
        found = Coverage(
            subscription=sub,
            plan=plan,
            entitlements=plan.entitlements(sub.entitlement_overrides),
        )
        if found.entitlements.includes_orders:
            return found
        if best is None and found.entitlements.includes_alerts:
            best = found
    return best


def advance_lifecycles(conn: Conn, clock: Clock) -> int:
    """End trials, renew terms and apply cancellations that fell due; how many changed."""
    now = clock.now()
    changed = 0
    for sub in repo.due_for_lifecycle(conn, now):
        if (
            sub.status == SubscriptionStatus.TRIALING
            and sub.trial_ends_at
            and sub.trial_ends_at <= now
        ):
            active = SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, SubscriptionStatus.ACTIVE)
            sub = repo.set_fields(conn, sub.id, {"status": active}, now)
            view = _view(conn, sub, now)
            emit(
                conn,
                "subscription.activated",
                _payload(view, previous_status="trialing", reason="trial_ended"),
                customer_id=sub.customer_id,
                subject=subject("subscription", sub.id),
            )
            changed += 1
        if sub.current_term_ends_at > now:
            continue
        if sub.cancel_at_term_end or not sub.auto_renew:
            ended = sub.current_term_ends_at
            cancelled = SUBSCRIPTION_LIFECYCLE.check(
                sub.id, sub.status, SubscriptionStatus.CANCELLED
            )
            values = {"status": cancelled, "cancelled_at": now, "ends_at": ended}
            updated = repo.set_fields(conn, sub.id, values, now)
            emit(
                conn,
                "subscription.cancelled",
                _payload(_view(conn, updated, now), previous_status=sub.status, reason="term_end"),
                customer_id=sub.customer_id,
                subject=subject("subscription", sub.id),
            )
        else:
            term_end = sub.current_term_ends_at
            while term_end <= now:
                term_end = add_months(term_end, sub.term_months)
            updated = repo.set_fields(conn, sub.id, {"current_term_ends_at": term_end}, now)
            emit(
                conn,
                "subscription.renewed",
                _payload(_view(conn, updated, now)),
                customer_id=sub.customer_id,
                subject=subject("subscription", sub.id),
            )
        changed += 1
    return changed
