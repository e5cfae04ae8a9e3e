"""Order events and the changes other domains make to open orders (the visit planner)."""

from __future__ import annotations

from typing import Any

from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.orders import repository as repo
from maintenance.orders.schemas import Order, OrderStatus


def order_payload(order: Order, **extra: Any) -> dict[str, Any]:
    """The body of order.* events: the whole order plus context."""
    return {"order": order.model_dump(mode="json"), **extra}


def emit_order(conn: Conn, type: str, order: Order, **extra: Any) -> None:
    """Emit an ``order.*`` event with the whole order and ``extra``."""
    emit(
        conn,
        type,
        order_payload(order, **extra),
        customer_id=order.customer_id,
        subject=subject("order", order.id),
    )


def set_supply_risk(conn: Conn, order: Order, risk: str | None) -> Order:
    """Record whether the order's part may come too late (``order.at_risk`` /
    ``order.risk_cleared`` when that changes); the order as it is now."""
    if risk == order.at_risk_reason:
        return order
    updated = repo.set_order(conn, order.id, {"at_risk": risk is not None, "at_risk_reason": risk})
    if (risk is None) != (order.at_risk_reason is None):
        emit_order(conn, "order.at_risk" if risk else "order.risk_cleared", updated)
    return updated


def lock_open_order(conn: Conn, order_id: int) -> Order | None:
    """Any customer's order, locked, when it is still open and not started; else None."""
    order = repo.find_order(conn, order_id, customer_id=None, partner_id=None, for_update=True)
    if order is None or order.status not in (OrderStatus.RAISED, OrderStatus.SCHEDULED):
        return None
    return order
