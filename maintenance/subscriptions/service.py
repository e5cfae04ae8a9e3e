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
    StatusPeriod,
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
# Commercial terms only the operator changes (PATCH)
CONTRACT_FIELDS = frozenset(
    {
        "notice_days",
        "renewal_reminder_days",
        "committed_assets",
        "committed_usage",
        "escalation_bps",
        "cancellation_rule",
        "billing_timing",
    }
)
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
        "trial_asset_limit": body.trial_asset_limit,
        "trial_converts": body.trial_converts,
        **body.contract.model_dump(),
    }
    with translate_integrity_errors("subscription"):
        sub = repo.insert_subscription(conn, values)
        repo.insert_period(conn, sub.id, plan.id, starts)
        repo.add_assets(conn, sub.id, owner, body.asset_ids, starts)
        repo.record_status(conn, sub, sub.status, starts, "created", now)
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
    conn: Conn,
    principal: Principal,
    subscription_id: int,
    to: str,
    clock: Clock,
    reason: str = "requested",
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
    return move_status(conn, sub, target, clock.now(), reason=reason)


def move_status(
    conn: Conn,
    sub: Subscription,
    target: SubscriptionStatus,
    now: datetime,
    *,
    reason: str,
    effective_at: datetime | None = None,
    extra: dict[str, object] | None = None,
) -> SubscriptionView:
    """Change a locked subscription's status (checked), record it in the status history from
    ``effective_at`` (default now) and emit the status's event with ``extra`` in it."""
    SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, target)
    at = effective_at or now
    values: dict[str, object] = {"status": target}
    if target == SubscriptionStatus.CANCELLED:
        values |= {"cancelled_at": now, "ends_at": at}
    updated = repo.set_fields(conn, sub.id, values, now)
    repo.record_status(conn, sub, target, at, reason, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        EVENT_OF_STATUS[target],
        _payload(view, previous_status=sub.status, reason=reason, **(extra or {})),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )
    return view


def notice_deadline(sub: Subscription) -> datetime:
    """The last moment a non-renewal of the current term may be given."""
    return sub.current_term_ends_at - timedelta(days=sub.notice_days)


def scheduled_end(sub: Subscription, now: datetime) -> datetime:
    """When a non-renewal given ``now`` ends the subscription: this term's end when the notice
    period is respected, otherwise the end of the following term."""
    if now <= notice_deadline(sub):
        return sub.current_term_ends_at
    return add_months(sub.current_term_ends_at, sub.term_months)


def cancel(
    conn: Conn, principal: Principal, subscription_id: int, at_term_end: bool, clock: Clock
) -> SubscriptionView:
    """Cancel now (the contract's cancellation rule says what the rest of the term owes), or
    at the end of the term (the following one when the notice period has passed)."""
    if not at_term_end:
        return transition(conn, principal, subscription_id, "cancelled", clock)
    principal.require("subscriptions:write")
    sub = _get_locked(conn, principal, subscription_id)
    SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, SubscriptionStatus.CANCELLED)
    if sub.cancel_at_term_end:
        return _view(conn, sub, clock.now())
    now = clock.now()
    ends = scheduled_end(sub, now)
    values = {"cancel_at_term_end": True, "cancel_effective_at": ends}
    updated = repo.set_fields(conn, sub.id, values, now)
    view = _view(conn, updated, now)
    emit(
        conn,
        "subscription.cancellation_scheduled",
        _payload(
            view,
            ends_at=ends.isoformat(),
            notice_deadline=notice_deadline(sub).isoformat(),
            notice_respected=ends == sub.current_term_ends_at,
        ),
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
    terms = body.model_fields_set & CONTRACT_FIELDS
    if terms and principal.role != "operator":
        raise Forbidden(f"only the operator may change the contract terms ({', '.join(terms)})")
    values |= {name: getattr(body, name) for name in terms}
    now = clock.now()
    if body.auto_renew is False and sub.auto_renew and now > notice_deadline(sub):
        raise Conflict(
            f"the notice period of subscription {sub.id} has passed (non-renewal was due by"
            f" {notice_deadline(sub):%Y-%m-%d %H:%M} UTC); the term renews on"
            f" {sub.current_term_ends_at:%Y-%m-%d}: cancel at term end to end the next term",
            code="notice_period_passed",
        )
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
    # changes not yet in effect are forgotten; a subscription that has not started keeps its
    # first period (it starts at starts_at, after now), which the new plan then takes over
    repo.drop_future_periods(conn, sub.id, max(now, sub.starts_at))
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
    listed = set(plan.asset_ids) | set(body.asset_ids)
    limit = sub.trial_asset_limit
    if sub.status == SubscriptionStatus.TRIALING and limit is not None and len(listed) > limit:
        raise Invalid(
            f"subscription {sub.id} is a trial for at most {limit} asset(s);"
            f" it would cover {len(listed)}",
            code="trial_asset_limit",
        )
    if repo.add_assets(conn, sub.id, sub.customer_id, body.asset_ids, now) == 0:
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
    now = clock.now()
    if not repo.remove_asset(conn, sub.id, asset_id, now):
        raise NotFound(
            f"asset {asset_id} is not on subscription {sub.id}", code="asset_not_subscribed"
        )
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


def covered_asset_stretches(conn: Conn, subscription: Subscription) -> list[CoveredAsset]:
    """Every asset a subscription covered at some time, once per stretch, its times narrowed
    to the stretch (listing history): what billing and the SaaS metrics of a past month use."""
    return repo.covered_asset_stretches(conn, subscription)


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


def view_of(conn: Conn, sub: Subscription, now: datetime) -> SubscriptionView:
    """A subscription with its plan now, pending change, assets and entitlements."""
    return _view(conn, sub, now)


def lock_by_id(conn: Conn, subscription_id: int) -> Subscription | None:
    """A subscription by id, row-locked, for other domains' jobs (no caller scope)."""
    return repo.lock_subscription(conn, subscription_id, None)


def plan_at(conn: Conn, subscription_id: int, at: datetime) -> int:
    """The id of the plan a subscription is on at ``at`` (its first plan before it starts)."""
    periods = repo.periods(conn, subscription_id)
    for p in periods:
        if p.effective_from <= at and (p.effective_to is None or p.effective_to > at):
            return p.plan_id
    return periods[0].plan_id if at < periods[0].effective_from else periods[-1].plan_id


def status_history(conn: Conn, subscription_id: int) -> list[StatusPeriod]:
    """A subscription's status history, oldest first."""
    return repo.status_history(conn, subscription_id)


def get_status_history(
    conn: Conn, principal: Principal, subscription_id: int, clock: Clock
) -> list[StatusPeriod]:
    """The status history of a subscription the caller may see, oldest first."""
    sub = get_subscription(conn, principal, subscription_id, clock)
    return repo.status_history(conn, sub.id)
