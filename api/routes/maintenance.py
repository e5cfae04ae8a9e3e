"""Maintenance orders, failure reports and missed predictions."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.inputs import Id, ShortText
from kinds.schemas import KindName
from maintenance.mobility import visits
from maintenance.orders import service as orders
from maintenance.orders.schemas import (
    CancelOrder,
    CompleteRequest,
    FailureCreate,
    FailureReport,
    MissedPrediction,
    Order,
    OrderCreate,
    OrderDetail,
    OrderStatus,
    Reason,
    ScheduleRequest,
)
from maintenance.outcomes import service as outcomes
from maintenance.outcomes.schemas import ModelPage

router = APIRouter(prefix="/v1")


@router.get("/orders", tags=["orders"])
def list_orders(
    conn: ReadConn,
    caller: Caller,
    status: OrderStatus | None = None,
    open: bool = False,
    asset_id: Id | None = None,
    component: ShortText | None = None,
    reason: Reason | None = None,
    customer_id: Id | None = None,
    partner_id: Id | None = None,
    at_risk: bool | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Order]:
    """Orders the caller may see: its customer's, or (partner keys) those assigned to it."""
    items, nxt = orders.list_orders(
        conn,
        caller,
        status=status,
        asset_id=asset_id,
        component=component,
        reason=reason,
        customer_id=customer_id,
        partner_id=partner_id,
        at_risk=at_risk,
        open_only=open,
        after=after,
        limit=limit,
    )
    return Page(items=items, next_after=nxt)


@router.get("/orders/{order_id}", tags=["orders"])
def get_order(order_id: Id, conn: ReadConn, caller: Caller) -> OrderDetail:
    """One order with its shipments and parts used."""
    return orders.order_detail(conn, caller, order_id)


@router.post("/orders", status_code=status.HTTP_201_CREATED, tags=["orders"])
def create_order(body: OrderCreate, conn: Conn, caller: Caller, clock: AppClock) -> Order:
    """Raise an order by hand; 409 when the asset's component already has an open order. For
    an asset on a carrier the part is sent to the planned visit (``/v1/orders/{id}/visit``)."""
    return visits.create_manual_order(conn, caller, body, clock)


@router.post("/orders/{order_id}/schedule", tags=["orders"])
def schedule_order(
    order_id: Id, body: ScheduleRequest, conn: Conn, caller: Caller, clock: AppClock
) -> Order:
    """Book the work (raised/scheduled → scheduled)."""
    return orders.schedule_order(conn, caller, order_id, body, clock)


@router.post("/orders/{order_id}/start", tags=["orders"])
def start_order(order_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> Order:
    """Work begins (→ in_progress)."""
    return orders.start_order(conn, caller, order_id, clock)


@router.post("/orders/{order_id}/complete", tags=["orders"])
def complete_order(
    order_id: Id,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    body: CompleteRequest | None = None,
) -> OrderDetail:
    """Work done: parts used recorded, asset renewed, the life recorded."""
    return orders.complete_order(conn, caller, order_id, body or CompleteRequest(), clock)


@router.post("/orders/{order_id}/cancel", tags=["orders"])
def cancel_order(
    order_id: Id,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    body: CancelOrder | None = None,
) -> Order:
    """Cancel an open order; its reserved parts go back to stock."""
    return orders.cancel_order(conn, caller, order_id, body or CancelOrder(), clock)


@router.post("/failures", status_code=status.HTTP_201_CREATED, tags=["orders"])
def report_failure(
    body: FailureCreate, conn: Conn, caller: Caller, clock: AppClock
) -> FailureReport:
    """Report a failure; with no open order it is recorded as a missed prediction (for a
    carried asset, the order it raises is planned at the carrier's next fitting visit)."""
    return visits.report_failure(conn, caller, body, clock)


@router.get("/missed-predictions", tags=["orders"])
def list_missed(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[MissedPrediction]:
    """Failures that no open order anticipated."""
    items, nxt = orders.list_missed(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/models/outcomes", tags=["models"])
def model_outcomes(
    conn: ReadConn, caller: Caller, kind: KindName | None = None, limit: Limit = 50
) -> ModelPage:
    """The model page: per kind and model version, the precision of alerts (what technicians
    found), missed failures and interval coverage on real outcomes; with the newest outcomes
    beside the predictions they judge. A customer sees its own fleet's."""
    return outcomes.model_page(conn, caller, kind=kind, limit=limit)
