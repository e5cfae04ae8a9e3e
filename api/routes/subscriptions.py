"""Plans and subscriptions."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import After, AppClock, Caller, Conn, IncludeRetired, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.inputs import Id
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan, PlanCreate
from maintenance.subscriptions import service as subs
from maintenance.subscriptions.schemas import (
    AssetList,
    CancelRequest,
    PlanChange,
    StatusPeriod,
    SubscriptionCreate,
    SubscriptionStatus,
    SubscriptionUpdate,
    SubscriptionView,
)

router = APIRouter(prefix="/v1")


# --- plans ---------------------------------------------------------------------------------


@router.get("/plans", tags=["plans"])
def list_plans(
    conn: ReadConn,
    caller: Caller,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Plan]:
    """The plan catalogue."""
    items, nxt = plans.list_plans(conn, after=after, limit=limit, include_retired=include_retired)
    return Page(items=items, next_after=nxt)


@router.get("/plans/{plan_id}", tags=["plans"])
def get_plan(plan_id: Id, conn: ReadConn, caller: Caller) -> Plan:
    """One plan."""
    return plans.get_plan(conn, plan_id)


@router.post("/plans", status_code=status.HTTP_201_CREATED, tags=["plans"])
def create_plan(body: PlanCreate, conn: Conn, caller: Caller) -> Plan:
    """Add a plan (operator)."""
    return plans.create_plan(conn, caller, body)


@router.delete("/plans/{plan_id}", tags=["plans"])
def retire_plan(plan_id: Id, conn: Conn, caller: Caller) -> Plan:
    """Withdraw a plan from sale (operator); existing subscriptions keep it."""
    return plans.retire_plan(conn, caller, plan_id)


# --- subscriptions -------------------------------------------------------------------------


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED, tags=["subscriptions"])
def create_subscription(
    body: SubscriptionCreate, conn: Conn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """Subscribe listed assets or a whole site to a plan."""
    return subs.create_subscription(conn, caller, body, clock)


@router.get("/subscriptions", tags=["subscriptions"])
def list_subscriptions(
    conn: ReadConn,
    caller: Caller,
    clock: AppClock,
    customer_id: Id | None = None,
    status: SubscriptionStatus | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[SubscriptionView]:
    """Subscriptions the caller may see."""
    items, nxt = subs.list_subscriptions(
        conn, caller, clock, customer_id=customer_id, status=status, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.get("/subscriptions/{subscription_id}", tags=["subscriptions"])
def get_subscription(
    subscription_id: Id, conn: ReadConn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """One subscription, with its plan now, a pending plan change and its entitlements."""
    return subs.get_subscription(conn, caller, subscription_id, clock)


@router.get("/subscriptions/{subscription_id}/history", tags=["subscriptions"])
def status_history(
    subscription_id: Id, conn: ReadConn, caller: Caller, clock: AppClock
) -> list[StatusPeriod]:
    """Every status the subscription had and when ([valid_from, valid_to)), oldest first."""
    return subs.get_status_history(conn, caller, subscription_id, clock)


@router.patch("/subscriptions/{subscription_id}", tags=["subscriptions"])
def update_subscription(
    subscription_id: Id, body: SubscriptionUpdate, conn: Conn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """Change renewal settings; contract terms and entitlement overrides: operator."""
    return subs.update_subscription(conn, caller, subscription_id, body, clock)


@router.post("/subscriptions/{subscription_id}/activate", tags=["subscriptions"])
def activate(subscription_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> SubscriptionView:
    """trialing/paused → active (past_due → active: operator, when paid)."""
    return subs.transition(conn, caller, subscription_id, "active", clock)


@router.post("/subscriptions/{subscription_id}/pause", tags=["subscriptions"])
def pause(subscription_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> SubscriptionView:
    """active → paused: no alerts or orders until resumed."""
    return subs.transition(conn, caller, subscription_id, "paused", clock)


@router.post("/subscriptions/{subscription_id}/resume", tags=["subscriptions"])
def resume(subscription_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> SubscriptionView:
    """paused → active."""
    return subs.transition(conn, caller, subscription_id, "active", clock)


@router.post("/subscriptions/{subscription_id}/past-due", tags=["subscriptions"])
def past_due(subscription_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> SubscriptionView:
    """active → past_due (operator/billing): service continues during the grace period."""
    return subs.transition(conn, caller, subscription_id, "past_due", clock)


@router.post("/subscriptions/{subscription_id}/cancel", tags=["subscriptions"])
def cancel(
    subscription_id: Id,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    body: CancelRequest | None = None,
) -> SubscriptionView:
    """Cancel now, or at the end of the term."""
    at_term_end = body.at_term_end if body else False
    return subs.cancel(conn, caller, subscription_id, at_term_end, clock)


@router.post("/subscriptions/{subscription_id}/plan-changes", tags=["subscriptions"])
def change_plan(
    subscription_id: Id, body: PlanChange, conn: Conn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """Switch plans now or at the end of the current term."""
    return subs.change_plan(conn, caller, subscription_id, body, clock)


@router.post("/subscriptions/{subscription_id}/assets", tags=["subscriptions"])
def add_assets(
    subscription_id: Id, body: AssetList, conn: Conn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """List more assets on the subscription."""
    return subs.add_assets(conn, caller, subscription_id, body, clock)


@router.delete("/subscriptions/{subscription_id}/assets/{asset_id}", tags=["subscriptions"])
def remove_asset(
    subscription_id: Id, asset_id: Id, conn: Conn, caller: Caller, clock: AppClock
) -> SubscriptionView:
    """Take an asset off the subscription."""
    return subs.remove_asset(conn, caller, subscription_id, asset_id, clock)
