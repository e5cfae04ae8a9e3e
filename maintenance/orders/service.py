"""Maintenance orders: raising (with parts), lifecycle, completion, failures. No SQL text."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fleet import service as fleet
from fleet.causes import life_outcome
from fleet.schemas import AssetContext, Principal
from fleet.service import translate_integrity_errors
from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from kinds.service import get_kind
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import ShipmentStatus
from maintenance.orders import repository as repo
from maintenance.orders.changes import (  # noqa: F401 - the orders service's public names
    emit_order,
    lock_open_order,
    order_payload,
    set_supply_risk,
)
from maintenance.orders.changes import emit_order as _emit_order
from maintenance.orders.schemas import (
    ORDER_LIFECYCLE,
    CancelOrder,
    CompleteRequest,
    FailureCreate,
    FailureReport,
    MissedPrediction,
    Order,
    OrderCreate,
    OrderDetail,
    OrderStatus,
    ScheduleRequest,
)
from maintenance.outcomes import service as outcomes
from maintenance.partners import service as partners
from maintenance.policy_state import service as policy_state
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import Coverage
from models.schemas import Explanation

# Labour is valued at this rate (minor units per hour) for partner commissions.
STANDARD_LABOUR_RATE_MINOR = 9_000
# Orders without a plan (manual, unsubscribed) answer within this many hours.
DEFAULT_SLA_HOURS = 72


def _check_component(conn: Conn, asset: AssetContext, component: str) -> None:
    names = list(get_kind(conn, asset.kind).component_names)
    if component not in names:
        raise Invalid(f"a {asset.kind} has components {', '.join(names)}, not {component!r}")


def raise_order(
    conn: Conn,
    *,
    asset: AssetContext,
    component: str,
    reason: str,
    due_at: datetime,
    priority: str,
    now: datetime,
    coverage: Coverage | None,
    prediction_time: datetime | None = None,
    notes: str = "",
    ship_parts: bool = True,
    supply_later: bool = False,
    explanation: Explanation | None = None,
) -> Order | None:
    """Raise an order, reserve and ship its part; None when one is already open.

    With ``supply_later`` the part is named but neither reserved nor shipped: the caller plans
    the supply (a carried asset's visit planner). The order row is inserted with ON CONFLICT
    DO NOTHING on the one-open-order index, so two dispatchers racing on the same asset and
    component raise exactly one order.
    """
    ent = coverage.entitlements if coverage else None
    partner = partners.partner_for_site(conn, asset.site_id)
    part = logistics.part_for(conn, asset.kind, component) if ship_parts else None
    options = (
        logistics.supply_options(conn, part.id, asset.latitude, asset.longitude)
        if part and not supply_later
        else []
    )
    expected = logistics.nearest_in_stock(options)
    sla_hours = ent.response_sla_hours if ent else DEFAULT_SLA_HOURS
    risk = _supply_risk(part, expected.shipping_days if expected else None, now, due_at, ship_parts)
    if supply_later:
        risk = None
    values: dict[str, Any] = {
        "customer_id": asset.customer_id,
        "asset_id": asset.id,
        "component": component,
        "subscription_id": coverage.subscription.id if coverage else None,
        "plan_id": coverage.plan.id if coverage else None,
        "priority": priority,
        "reason": reason,
        "due_at": due_at,
        "sla_deadline": now + timedelta(hours=sla_hours),
        "prediction_time": prediction_time,
        "at_risk": risk is not None,
        "at_risk_reason": risk,
        "parts_included": bool(ent and ent.includes_parts),
        "labour_included": bool(ent and ent.includes_labour),
        "partner_id": partner.id if partner else None,
        "notes": notes,
        "raised_at": now,
        "explanation": explanation.model_dump(mode="json") if explanation else None,
    }
    order = repo.insert_order_unless_open(conn, values)
    if order is None:
        return None
    _emit_order(conn, "order.created", order, asset_ref=asset.ref, sku=part.sku if part else None)
    if part is None or supply_later:
        return order
    supplied = logistics.reserve_and_ship(
        conn,
        order_id=order.id,
        customer_id=order.customer_id,
        site_id=asset.site_id,
        part=part,
        options=options,
        now=now,
    )
    # Another order may have taken the expected depot's last unit meanwhile: re-judge the risk.
    actual_days = (supplied.shipment.eta - now).days if supplied else None
    actual = _supply_risk(part, actual_days, now, due_at, ship_parts)
    if actual != order.at_risk_reason:
        order = repo.set_order(
            conn, order.id, {"at_risk": actual is not None, "at_risk_reason": actual}
        )
        _emit_order(conn, "order.at_risk" if actual else "order.risk_cleared", order)
    return order


PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


def bring_forward(conn: Conn, order: Order, *, due_at: datetime, priority: str) -> Order:
    """Move an open order's due date earlier (the policy decides when), re-judge whether its
    part arrives in time, and tell the customer (``order.rescheduled``)."""
    eta = logistics.part_arrival(conn, order.id)
    # a part on its way (or there) is judged against the new date; otherwise the risk stands
    risk = _late_part(eta, due_at) if eta is not None else order.at_risk_reason
    values: dict[str, Any] = {
        "due_at": due_at,
        "priority": max(priority, order.priority, key=lambda p: PRIORITY_RANK.get(p, 1)),
        "at_risk": risk is not None,
        "at_risk_reason": risk,
    }
    moved = repo.set_order(conn, order.id, values)
    _emit_order(conn, "order.rescheduled", moved, previous_due_at=order.due_at.isoformat())
    if risk != order.at_risk_reason:
        _emit_order(conn, "order.at_risk" if risk else "order.risk_cleared", moved)
    return moved


def _late_part(eta: datetime, due_at: datetime) -> str | None:
    """Why a part arriving at ``eta`` is too late for ``due_at``; None when it is in time."""
    if eta > due_at:
        return (
            f"shipment ETA {eta:%Y-%m-%d %H:%M} UTC is after the due date"
            f" {due_at:%Y-%m-%d %H:%M} UTC"
        )
    return None


def _supply_risk(
    part: Any, shipping_days: int | None, now: datetime, due_at: datetime, ship_parts: bool
) -> str | None:
    """Why the part may not be on site before the due date; None when it will be."""
    if not ship_parts:
        return None
    if part is None:
        return "no part in the catalogue fits this component"
    if shipping_days is None:
        return f"no depot has {part.sku} in stock"
    return _late_part(now + timedelta(days=shipping_days), due_at)


# --- reading -------------------------------------------------------------------------------


def open_order_for(conn: Conn, asset_id: int, component: str) -> Order | None:
    """The open order of an asset's component, locked; None when there is none."""
    return repo.open_order_for(conn, asset_id, component)


def _scope(principal: Principal) -> tuple[int | None, int | None]:
    """(customer_id, partner_id) that confine what the caller may see."""
    if principal.organisation == "operator":
        return None, None
    if principal.partner_scope is not None:
        return None, principal.partner_scope
    return principal.customer_id, None


def get_order(
    conn: Conn, principal: Principal, order_id: int, *, for_update: bool = False
) -> Order:
    """An order the caller may see (another customer's, or not assigned to a partner: 404)."""
    customer_id, partner_id = _scope(principal)
    order = repo.find_order(
        conn, order_id, customer_id=customer_id, partner_id=partner_id, for_update=for_update
    )
    if order is None:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    return order


def order_detail(conn: Conn, principal: Principal, order_id: int) -> OrderDetail:
    """An order with its shipments and parts used."""
    order = get_order(conn, principal, order_id)
    return OrderDetail(
        **order.model_dump(),
        shipments=logistics.shipments_of_order(conn, order.id),
        parts_used=repo.order_parts(conn, order.id),
        outcomes=outcomes.outcomes_of_order(conn, order.id),
    )


def list_orders(
    conn: Conn,
    principal: Principal,
    *,
    status: str | None = None,
    asset_id: int | None = None,
    component: str | None = None,
    reason: str | None = None,
    customer_id: int | None = None,
    partner_id: int | None = None,
    at_risk: bool | None = None,
    open_only: bool = False,
    after: int | None = None,
    limit: int = 50,
) -> tuple[list[Order], int | None]:
    """Orders the caller may see, filtered, one page."""
    scope_customer, scope_partner = _scope(principal)
    filters: dict[str, Any] = {
        "status": status,
        "asset_id": asset_id,
        "component": component,
        "reason": reason,
        "customer_id": customer_id,
        "partner_id": partner_id,
        "at_risk": at_risk,
    }
    rows = repo.list_orders(
        conn,
        filters=filters
        | ({"customer_id": scope_customer} if scope_customer is not None else {})
        | ({"partner_id": scope_partner} if scope_partner is not None else {}),
        open_only=open_only,
        after=after,
        limit=limit,
    )
    if scope_customer is not None and customer_id not in (None, scope_customer):
        rows = []
    if scope_partner is not None and partner_id not in (None, scope_partner):
        rows = []
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


# --- manual orders and transitions ---------------------------------------------------------


def _asset_for(conn: Conn, principal: Principal, asset_id: int) -> AssetContext:
    customer_id, _ = _scope(principal)
    asset = fleet.asset_context(conn, asset_id, customer_id=customer_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
    if asset.retired_at is not None:
        raise Invalid(f"asset {asset_id} is retired")
    return asset


def create_manual_order(
    conn: Conn, principal: Principal, body: OrderCreate, clock: Clock, *, supply_later: bool = False
) -> Order:
    """Raise an order by hand (operator, customer or technician); Conflict if one is open.
    ``supply_later``: the part is planned by the caller (a carried asset's visit)."""
    principal.require("orders:write")
    asset = _asset_for(conn, principal, body.asset_id)
    _check_component(conn, asset, body.component)
    now = clock.now()
    coverage = subscriptions.coverage_for(conn, asset.id, now)
    if coverage is not None and not coverage.entitlements.includes_orders:
        coverage = None
    order = raise_order(
        conn,
        asset=asset,
        component=body.component,
        reason="manual",
        due_at=body.due_at,
        priority=body.priority,
        now=now,
        coverage=coverage,
        notes=body.notes,
        ship_parts=body.ship_parts,
        supply_later=supply_later,
    )
    if order is None:
        raise Conflict(f"asset {asset.id} already has an open order for {body.component}")
    return order


def _may_update(principal: Principal) -> None:
    principal.require("orders:schedule")


def _transition(conn: Conn, principal: Principal, order_id: int, to: OrderStatus) -> Order:
    """The order, locked, when the caller may update it and its lifecycle allows ``to``."""
    _may_update(principal)
    order = get_order(conn, principal, order_id, for_update=True)
    ORDER_LIFECYCLE.check(order.id, order.status, to)
    return order


def schedule_order(
    conn: Conn, principal: Principal, order_id: int, body: ScheduleRequest, clock: Clock
) -> Order:
    """Book the work for a time (or move the booking)."""
    order = _transition(conn, principal, order_id, OrderStatus.SCHEDULED)
    values: dict[str, Any] = {
        "status": OrderStatus.SCHEDULED,
        "scheduled_for": body.scheduled_for,
        "scheduled_at": clock.now(),
    }
    if body.notes is not None:
        values["notes"] = body.notes
    updated = repo.set_order(conn, order.id, values)
    _emit_order(conn, "order.scheduled", updated, previous_status=order.status)
    return updated


def start_order(conn: Conn, principal: Principal, order_id: int, clock: Clock) -> Order:
    """The technician is on site and working."""
    principal.require("orders:work")
    order = _transition(conn, principal, order_id, OrderStatus.IN_PROGRESS)
    updated = repo.set_order(
        conn, order.id, {"status": OrderStatus.IN_PROGRESS, "started_at": clock.now()}
    )
    _emit_order(conn, "order.started", updated, previous_status=order.status)
    return updated


def cancel_order(
    conn: Conn, principal: Principal, order_id: int, body: CancelOrder, clock: Clock
) -> Order:
    """Cancel an open order: its held parts go back to stock, pending shipments stop."""
    principal.require("orders:write")
    order = _transition(conn, principal, order_id, OrderStatus.CANCELLED)
    now = clock.now()
    start = repo.life_start(conn, order.asset_id, order.component)
    found = outcomes.record_for_order(conn, order, body.findings, "cancelled", start, now=now)
    released = logistics.release_for_order(conn, order.id, order.customer_id, now)
    updated = repo.set_order(
        conn,
        order.id,
        {
            "status": OrderStatus.CANCELLED,
            "cancelled_at": now,
            "cancel_reason": body.reason or None,
        },
    )
    _emit_order(
        conn,
        "order.cancelled",
        updated,
        previous_status=order.status,
        reservations_released=released,
        outcomes=found,
    )
    return updated


def complete_order(
    conn: Conn, principal: Principal, order_id: int, body: CompleteRequest, clock: Clock
) -> OrderDetail:
    """Close the work: record parts used, end the life, renew the asset, pay the partner."""
    principal.require("orders:work")
    order = _transition(conn, principal, order_id, OrderStatus.COMPLETED)
    # Take the policy's lock on this asset's component before changing the order, in the same
    # order the policy takes them (state, then order index), so the two cannot deadlock.
    policy_state.lock(conn, order.asset_id, order.component)
    now = clock.now()
    asset = fleet.asset_context(conn, order.asset_id, customer_id=None)
    assert asset is not None
    used = _parts_used(conn, order, body)
    # Parts not shipped by now were not used: give the reservations back.
    logistics.release_for_order(conn, order.id, order.customer_id, now)
    parts_value = 0
    labour_hours = 0.0
    for part, quantity in used:
        repo.insert_order_part(
            conn,
            {
                "order_id": order.id,
                "part_id": part.id,
                "quantity": quantity,
                "price_minor": part.price_minor,
                "currency": part.currency,
                "billable": not order.parts_included,
            },
        )
        parts_value += part.price_minor * quantity
        labour_hours += part.labour_hours * quantity
    values: dict[str, Any] = {"status": OrderStatus.COMPLETED, "completed_at": now}
    if order.started_at is None:
        values["started_at"] = now
    if body.notes is not None:
        values["notes"] = body.notes
    updated = repo.set_order(conn, order.id, values)
    life_id = None
    at_end = body.usage_at_end if body.usage_at_end is not None else asset.usage_counter
    start = repo.life_start(conn, order.asset_id, order.component)
    if not repo.life_recorded_for_order(conn, order.id):
        life_id = repo.insert_life(
            conn,
            {
                "asset_id": order.asset_id,
                "component": order.component,
                # an asset registered with a later installation date (or a clock that moved
                # back) must not make the life end before it starts
                "started_at": min(start, now),
                "ended_at": now,
                "end_reason": "replacement",
                "usage_at_end": at_end,
                "source": "order",
                "order_id": order.id,
            },
        )
    found = outcomes.record_for_order(conn, order, body.findings, "completed", start, now=now,
                                      usage_at_end=at_end, life_id=life_id)  # fmt: skip
    _emit_order(
        conn,
        "order.completed",
        updated,
        previous_status=order.status,
        parts_used=[{"sku": p.sku, "quantity": q} for p, q in used],
        life_id=life_id,
        outcomes=found,
    )
    repo.renew_asset(conn, order.asset_id, now)
    policy_state.reset(conn, order.asset_id, order.component)
    emit(
        conn,
        "asset.renewed",
        {
            "asset_id": order.asset_id,
            "asset_ref": asset.ref,
            "component": order.component,
            "renewed_at": now.isoformat(),
            "order_id": order.id,
        },
        customer_id=order.customer_id,
        subject=subject("asset", order.asset_id),
    )
    if order.partner_id is not None:
        currency = used[0][0].currency if used else "EUR"
        partners.record_commission(
            conn,
            partner_id=order.partner_id,
            order_id=order.id,
            customer_id=order.customer_id,
            basis_minor=parts_value + round(labour_hours * STANDARD_LABOUR_RATE_MINOR),
            currency=currency,
        )
    return order_detail(conn, principal, updated.id)


def _parts_used(conn: Conn, order: Order, body: CompleteRequest) -> list[tuple[Any, int]]:
    if body.parts_used is not None:
        asset = fleet.asset_context(conn, order.asset_id, customer_id=None)
        assert asset is not None
        found = []
        for use in body.parts_used:
            part = logistics.part_by_sku(conn, use.sku)
            if part.kind != asset.kind:
                raise Invalid(f"part {part.sku} fits a {part.kind}, not a {asset.kind}")
            found.append((part, use.quantity))
        return found
    shipped = [
        s
        for s in logistics.shipments_of_order(conn, order.id)
        if s.status in (ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED)
    ]
    return [(logistics.get_part(conn, s.part_id), s.quantity) for s in shipped]


# --- failures ------------------------------------------------------------------------------


def report_failure(
    conn: Conn,
    principal: Principal,
    body: FailureCreate,
    clock: Clock,
    *,
    supply_later: bool = False,
) -> FailureReport:
    """Record a failure: the life ends; with no open order it is a missed prediction. With
    ``supply_later`` the order it raises ships nothing yet (a carried asset's visit planner
    plans the supply: ``maintenance.mobility.visits.report_failure``)."""
    principal.require("orders:report")
    asset = _asset_for(conn, principal, body.asset_id)
    _check_component(conn, asset, body.component)
    now = clock.now()
    failed_at = body.failed_at or now
    if failed_at > now + timedelta(minutes=5):
        raise Invalid("failed_at is in the future")
    open_order = repo.open_order_for(conn, asset.id, body.component)
    order = open_order
    if open_order is None:
        coverage = subscriptions.coverage_for(conn, asset.id, now)
        if coverage is not None and coverage.entitlements.includes_orders:
            order = raise_order(
                conn,
                asset=asset,
                component=body.component,
                reason="failure",
                due_at=now,
                priority="urgent",
                now=now,
                coverage=coverage,
                notes=body.description,
                supply_later=supply_later,
            )
    with translate_integrity_errors("failure report"):
        report = repo.insert_failure_report(
            conn,
            {
                "customer_id": asset.customer_id,
                "asset_id": asset.id,
                **body.model_dump(include={"component", "description", "cause"}),
                "failed_at": failed_at,
                "order_id": order.id if order else None,
                "missed": open_order is None,
            },
        )
    life_id = repo.insert_life(
        conn,
        {
            "asset_id": asset.id,
            "component": body.component,
            "started_at": min(repo.life_start(conn, asset.id, body.component), failed_at),
            "ended_at": failed_at,
            "end_reason": "failure",
            "usage_at_end": asset.usage_counter,
            "source": "failure_report",
            "order_id": order.id if order else None,
            "outcome": life_outcome(body.cause),  # other_fault: training censors it
        },
    )
    emit(
        conn,
        "failure.reported",
        {"failure": report.model_dump(mode="json"), "asset_ref": asset.ref, "life_id": life_id},
        customer_id=asset.customer_id,
        subject=subject("asset", asset.id),
    )
    if open_order is None:
        last = repo.last_prediction(conn, asset.id, body.component, failed_at)
        missed = repo.insert_missed_prediction(
            conn,
            {
                "failure_report_id": report.id,
                "customer_id": asset.customer_id,
                "asset_id": asset.id,
                "component": body.component,
                "failed_at": failed_at,
                "last_prediction_time": last.time if last else None,
                "last_due_at_conservative": last.due_at_conservative if last else None,
                "last_failure_probability": last.failure_probability if last else None,
            },
        )
        emit(
            conn,
            "prediction.missed",
            {"missed": missed.model_dump(mode="json"), "asset_ref": asset.ref},
            customer_id=asset.customer_id,
            subject=subject("asset", asset.id),
        )
    return report


def list_missed(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[MissedPrediction], int | None]:
    """Missed predictions the caller may see."""
    if principal.partner_scope is not None:
        return [], None
    return repo.list_missed(conn, scope=principal.scope, after=after, limit=limit)
