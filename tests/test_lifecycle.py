"""Lifecycles: one transition table per kind of object, an illegal move is a 409 domain error."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.lifecycle import IllegalTransition, Lifecycle
from maintenance.billing.schemas import INVOICE_LIFECYCLE, InvoiceStatus
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import SHIPMENT_LIFECYCLE, ShipmentStatus
from maintenance.orders import service as orders
from maintenance.orders.schemas import ORDER_LIFECYCLE, CancelOrder, OrderStatus
from maintenance.policy import service as policy
from maintenance.subscriptions.schemas import SUBSCRIPTION_LIFECYCLE, SubscriptionStatus
from maintenance.webhooks.schemas import DELIVERY_LIFECYCLE, DeliveryStatus
from tests.fixtures.maintenance import (
    OPERATOR,
    T0,
    clock,
    insert_prediction,
    make_world,
    stock_depot,
)

TABLES: list[tuple[Lifecycle[Any], type[StrEnum]]] = [
    (ORDER_LIFECYCLE, OrderStatus),
    (SHIPMENT_LIFECYCLE, ShipmentStatus),
    (SUBSCRIPTION_LIFECYCLE, SubscriptionStatus),
    (INVOICE_LIFECYCLE, InvoiceStatus),
    (DELIVERY_LIFECYCLE, DeliveryStatus),
]


@pytest.mark.parametrize(("lifecycle", "status"), TABLES, ids=lambda x: getattr(x, "noun", ""))
def test_every_status_has_a_row_and_every_target_is_a_status(
    lifecycle: Lifecycle[Any], status: type[StrEnum]
) -> None:
    assert set(lifecycle.transitions) == set(status)
    for targets in lifecycle.transitions.values():
        assert targets <= set(status)


def test_a_move_the_table_does_not_allow_is_an_illegal_transition() -> None:
    assert ORDER_LIFECYCLE.allows("raised", OrderStatus.SCHEDULED)
    assert not ORDER_LIFECYCLE.allows("completed", OrderStatus.CANCELLED)
    with pytest.raises(IllegalTransition) as caught:
        ORDER_LIFECYCLE.check(7, "completed", OrderStatus.CANCELLED)
    assert caught.value.status_code == 409 and caught.value.code == "illegal_transition"
    assert caught.value.detail == "order 7 is completed; it cannot become cancelled"
    assert INVOICE_LIFECYCLE.sources(InvoiceStatus.VOID) == ["draft", "issued"]
    assert SUBSCRIPTION_LIFECYCLE.is_final("cancelled")
    assert not SHIPMENT_LIFECYCLE.is_final("pending")


def test_cancelling_a_cancelled_order_is_a_409_illegal_transition(
    conn: Connection[Any], client: TestClient, operator_headers: dict[str, str]
) -> None:
    world = make_world(conn, "life-a")
    stock_depot(conn, "D", on_hand=2)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=5)
    policy.process_queue(conn, clock())
    conn.commit()
    (order,), _ = orders.list_orders(conn, OPERATOR, asset_id=world.asset_id)
    orders.cancel_order(conn, OPERATOR, order.id, CancelOrder(), clock())
    conn.commit()
    with pytest.raises(IllegalTransition):
        orders.cancel_order(conn, OPERATOR, order.id, CancelOrder(), clock())
    conn.rollback()
    again = client.post(f"/v1/orders/{order.id}/cancel", json={}, headers=operator_headers)
    assert again.status_code == 409
    assert "illegal_transition" in again.text and "it cannot become cancelled" in again.text
    # its shipment was called off with it: it cannot leave the depot any more
    (shipment,) = logistics.shipments_of_order(conn, order.id)
    assert shipment.status == ShipmentStatus.CANCELLED
    shipped = client.post(f"/v1/shipments/{shipment.id}/ship", json={}, headers=operator_headers)
    assert shipped.status_code == 409 and "it cannot become shipped" in shipped.text
