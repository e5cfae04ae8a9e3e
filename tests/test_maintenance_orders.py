"""Orders, stock and lives: cancellation, concurrency on the last unit, completion, failures,
and events written in the same transaction as each change."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import Connection

from fleet import repository as fleet_repo
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.errors import Conflict
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import ShipRequest
from maintenance.orders import service as orders
from maintenance.orders.schemas import CancelOrder, CompleteRequest, FailureCreate
from maintenance.partners import service as partners
from maintenance.partners.schemas import PartnerCreate
from maintenance.policy import service as policy
from maintenance.subscriptions import service as subscriptions
from models import repository as model_repo
from tests.fixtures.maintenance import (
    OPERATOR,
    T0,
    clock,
    count,
    event_types,
    insert_prediction,
    make_world,
    stock_depot,
)

Conn = Connection[Any]


def _raise_by_policy(conn: Conn, asset_id: int, due_in_days: float = 5) -> int:
    insert_prediction(conn, asset_id, time=T0, due_in_days=due_in_days)
    policy.process_queue(conn, clock())
    conn.commit()
    row = conn.execute(
        "SELECT id FROM maintenance_orders WHERE asset_id = %s", (asset_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _stock(conn: Conn) -> tuple[int, int]:
    row = conn.execute("SELECT sum(on_hand), sum(reserved) FROM inventory").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_cancellation_releases_the_reserved_stock(conn: Conn) -> None:
    world = make_world(conn, "ord-a")
    stock_depot(conn, "D", on_hand=2)
    order_id = _raise_by_policy(conn, world.asset_id)
    assert _stock(conn) == (2, 1)
    before = event_types(conn, world.customer_id)

    cancelled = orders.cancel_order(conn, OPERATOR, order_id, CancelOrder(reason="x"), clock())
    conn.commit()
    assert cancelled.status == "cancelled" and cancelled.cancel_reason == "x"
    assert _stock(conn) == (2, 0)
    assert count(conn, "SELECT count(*) FROM reservations WHERE status = 'released'") == 1
    assert count(conn, "SELECT count(*) FROM shipments WHERE status = 'cancelled'") == 1
    assert event_types(conn, world.customer_id)[len(before) :] == [
        "part.released",
        "shipment.cancelled",
        "order.cancelled",
    ]
    with pytest.raises(Conflict):
        orders.cancel_order(conn, OPERATOR, order_id, CancelOrder(), clock())
    conn.rollback()


def test_concurrent_reservations_of_the_last_unit_never_go_negative(
    db_url: str, conn: Conn
) -> None:
    worlds = [make_world(conn, f"last-{i}", ref=f"TRK-{i}") for i in range(4)]
    stock_depot(conn, "ONE", on_hand=1)
    for w in worlds:
        insert_prediction(conn, w.asset_id, time=T0, due_in_days=5)
    barrier = threading.Barrier(len(worlds))
    errors: list[BaseException] = []

    def handle(asset_id: int) -> None:
        try:
            with connect(db_url) as own:
                prediction = model_repo.get_prediction(own, asset_id, "tire", T0)
                assert prediction is not None
                barrier.wait(timeout=10)
                policy.handle_prediction(own, prediction, clock())
                own.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=handle, args=(w.asset_id,)) for w in worlds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert _stock(conn) == (1, 1)
    rows = conn.execute("SELECT at_risk, at_risk_reason FROM maintenance_orders").fetchall()
    assert len(rows) == 4
    assert sorted(r[0] for r in rows) == [False, True, True, True]
    assert {r[1] for r in rows if r[0]} == {"no depot has TIRE-315-80R22.5 in stock"}
    # and the database itself refuses negative or over-reserved stock
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE inventory SET reserved = on_hand + 1")
    conn.rollback()
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE inventory SET on_hand = -1, reserved = 0")
    conn.rollback()


def test_completion_renews_the_asset_and_records_the_life(conn: Conn) -> None:
    world = make_world(conn, "ord-c", plan="full-service-tire", site_region="south")
    stock_depot(conn, "D", on_hand=3, reorder_point=2)
    partner = partners.create_partner(
        conn, OPERATOR, PartnerCreate(code="tyre-shop", name="Tyre shop", regions=["south"])
    )
    conn.commit()
    order_id = _raise_by_policy(conn, world.asset_id)
    order = orders.get_order(conn, OPERATOR, order_id)
    assert order.partner_id == partner.id and order.parts_included and order.labour_included
    [shipment] = logistics.shipments_of_order(conn, order_id)
    c = ManualClock(T0)
    logistics.ship(conn, OPERATOR, shipment.id, ShipRequest(carrier="DHL"), c)
    c.advance(timedelta(days=2))
    logistics.deliver(conn, OPERATOR, shipment.id, c)
    orders.start_order(conn, OPERATOR, order_id, c)
    conn.execute(
        "INSERT INTO asset_seen (asset_id, usage_counter) VALUES (%s, 118000)"
        " ON CONFLICT (asset_id) DO UPDATE SET usage_counter = EXCLUDED.usage_counter",
        (world.asset_id,),
    )
    c.advance(timedelta(hours=3))
    before = event_types(conn)
    detail = orders.complete_order(conn, OPERATOR, order_id, CompleteRequest(), c)
    conn.commit()

    assert detail.status == "completed" and detail.completed_at == c.now()
    assert [(p.quantity, p.billable) for p in detail.parts_used] == [(1, False)]
    renewed_at, usage = conn.execute(
        "SELECT a.renewed_at, s.usage_counter FROM assets a JOIN asset_seen s"
        " ON s.asset_id = a.id WHERE a.id = %s",
        (world.asset_id,),
    ).fetchone() or (None, None)
    assert renewed_at == c.now() and usage == 0
    life = conn.execute(
        "SELECT started_at, ended_at, end_reason, usage_at_end, order_id FROM asset_lives"
        " WHERE asset_id = %s",
        (world.asset_id,),
    ).fetchall()
    assert life == [(T0 - timedelta(days=400), c.now(), "replacement", 118000.0, order_id)]
    # stock left the depot when shipped; the depot fell to its reorder point and asked for more
    assert _stock(conn) == (2, 0)
    assert count(conn, "SELECT count(*) FROM replenishments WHERE status = 'requested'") == 1
    commission = conn.execute(
        "SELECT basis_minor, rate_bps, amount_minor FROM partner_commissions WHERE order_id = %s",
        (order_id,),
    ).fetchone()
    assert commission == (45000 + 6750, 1000, 5175)
    assert event_types(conn)[len(before) :] == [
        "order.completed",
        "asset.renewed",
        "partner.commission_recorded",
    ]
    # the policy starts afresh for the new life: older predictions are stale
    insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=1), due_in_days=1)
    policy.process_queue(conn, c)
    conn.commit()
    assert count(conn, "SELECT count(*) FROM maintenance_orders") == 1


def test_proactive_plan_bills_parts_to_the_customer(conn: Conn) -> None:
    world = make_world(conn, "ord-d", plan="proactive")
    stock_depot(conn, "D", on_hand=1)
    order_id = _raise_by_policy(conn, world.asset_id)
    detail = orders.complete_order(
        conn,
        OPERATOR,
        order_id,
        CompleteRequest(parts_used=[{"sku": "TIRE-315-80R22.5", "quantity": 2}]),  # type: ignore[list-item]
        clock(),
    )
    conn.commit()
    assert [(p.quantity, p.billable) for p in detail.parts_used] == [(2, True)]
    # the shipment never left: its reservation went back to stock
    assert _stock(conn) == (1, 0)


def test_a_failure_with_no_open_order_is_a_missed_prediction(conn: Conn) -> None:
    world = make_world(conn, "ord-e")
    stock_depot(conn, "D", on_hand=1)
    insert_prediction(conn, world.asset_id, time=T0 - timedelta(days=1), due_in_days=60)
    policy.process_queue(conn, clock())
    report = orders.report_failure(
        conn,
        OPERATOR,
        FailureCreate(asset_id=world.asset_id, component="tire", description="blowout"),
        clock(),
    )
    conn.commit()
    assert report.missed is True and report.order_id is not None
    missed = conn.execute(
        "SELECT last_due_at_conservative FROM missed_predictions WHERE failure_report_id = %s",
        (report.id,),
    ).fetchone()
    assert missed == (T0 - timedelta(days=1) + timedelta(days=60),)
    order = orders.get_order(conn, OPERATOR, report.order_id)
    assert (order.reason, order.priority) == ("failure", "urgent")
    lives = conn.execute("SELECT end_reason, order_id FROM asset_lives").fetchall()
    assert lives == [("failure", order.id)]
    # completing the repair renews the asset but does not record the same life twice
    orders.complete_order(conn, OPERATOR, order.id, CompleteRequest(parts_used=[]), clock())
    conn.commit()
    assert count(conn, "SELECT count(*) FROM asset_lives") == 1
    types = event_types(conn, world.customer_id)
    assert types.count("failure.reported") == 1 and types.count("prediction.missed") == 1


def test_a_failure_during_an_open_order_is_not_missed(conn: Conn) -> None:
    world = make_world(conn, "ord-f")
    stock_depot(conn, "D", on_hand=1)
    order_id = _raise_by_policy(conn, world.asset_id)
    report = orders.report_failure(
        conn, OPERATOR, FailureCreate(asset_id=world.asset_id, component="tire"), clock()
    )
    conn.commit()
    assert report.missed is False and report.order_id == order_id
    assert count(conn, "SELECT count(*) FROM missed_predictions") == 0


def test_every_change_emits_one_event_in_its_transaction(conn: Conn) -> None:
    world = make_world(conn, "ord-g")
    stock_depot(conn, "D", on_hand=1)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=5)
    events_before = count(conn, "SELECT count(*) FROM events")
    # the policy's work is rolled back: no order, no reservation, no event, prediction queued
    policy.process_queue(conn, clock())
    assert count(conn, "SELECT count(*) FROM maintenance_orders") == 1
    conn.rollback()
    assert count(conn, "SELECT count(*) FROM maintenance_orders") == 0
    assert count(conn, "SELECT count(*) FROM events") == events_before
    assert _stock(conn) == (1, 0)
    # committed: one event per state change
    policy.process_queue(conn, clock())
    conn.commit()
    order_id = count(conn, "SELECT id FROM maintenance_orders")
    c = ManualClock(T0)
    steps = [
        (
            "order.scheduled",
            lambda: orders.schedule_order(conn, OPERATOR, order_id, _schedule(), c),
        ),
        ("order.started", lambda: orders.start_order(conn, OPERATOR, order_id, c)),
    ]
    for expected, step in steps:
        n = count(conn, "SELECT count(*) FROM events")
        step()
        conn.commit()
        assert event_types(conn)[n:] == [expected]
    subscription_id = world.subscription_id
    assert subscription_id is not None
    n = count(conn, "SELECT count(*) FROM events")
    subscriptions.transition(conn, OPERATOR, subscription_id, "past_due", c)
    conn.rollback()
    assert count(conn, "SELECT count(*) FROM events") == n
    subscriptions.transition(conn, OPERATOR, subscription_id, "past_due", c)
    conn.commit()
    assert event_types(conn)[n:] == ["subscription.past_due"]


def _schedule() -> Any:
    from maintenance.orders.schemas import ScheduleRequest

    return ScheduleRequest(scheduled_for=T0 + timedelta(days=1))


def test_the_parts_catalogue_is_the_kinds_parts(conn: Conn) -> None:
    from kinds.service import all_kinds

    skus = {p.sku for k in all_kinds(conn).values() for c in k.components for p in c.parts}
    rows = conn.execute("SELECT sku FROM parts WHERE retired_at IS NULL").fetchall()
    assert {r[0] for r in rows} == skus and len(skus) == 4
    assert fleet_repo.asset_context(conn, 10**9, customer_id=None) is None


def test_a_rolled_back_subscription_leaves_neither_rows_nor_events(conn: Conn) -> None:
    from fleet import service as fleet
    from maintenance.subscriptions.schemas import SubscriptionCreate
    from tests.fixtures.maintenance import plan_id

    customer = fleet.ensure_customer(conn, "rb", "Rb")
    conn.commit()
    subscriptions.create_subscription(
        conn,
        OPERATOR,
        SubscriptionCreate(customer_id=customer.id, plan_id=plan_id(conn, "monitor")),
        clock(),
    )
    assert event_types(conn, customer.id) == ["subscription.created"]
    conn.rollback()
    assert count(conn, "SELECT count(*) FROM subscriptions") == 0
    assert event_types(conn, customer.id) == []
