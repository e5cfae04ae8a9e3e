"""The technician works due orders whose parts are on site and renews the simulated asset:
through the seam (``OrderSource``) with the in-memory stand-in, and against the product's
maintenance orders through the API (``ProductOrderSource``)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from psycopg import Connection

from fleet.service import issue_api_key
from fleetcare.clock import ManualClock
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import ShipRequest
from maintenance.orders import service as orders
from maintenance.orders.schemas import OrderCreate
from simulators import service
from simulators.api_client import ProductAPI
from simulators.courier import Courier
from simulators.failures import FailureReporter
from simulators.fleet import Fleet
from simulators.physics import TirePopulation
from simulators.schemas import FleetSpec, LifeEnd
from simulators.technician import (
    InMemoryOrderSource,
    ProductOrderSource,
    SimTechnician,
    WorkOrder,
)
from tests.fixtures.maintenance import OPERATOR, stock_depot

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday morning: the trucks are driving
SKU = "TIRE-315-80R22.5"


def make_fleet() -> Fleet:
    fleet = Fleet(
        FleetSpec(customer="sim-tech", tires=6, elevators=0, engines=0, seed=3, repair_after_h=None)
    )
    fleet.start(START)
    fleet.advance_to(START + timedelta(seconds=5))
    return fleet


def test_works_a_due_order_only_once_its_parts_are_on_site() -> None:
    fleet = make_fleet()
    orders = InMemoryOrderSource()
    due = START + timedelta(hours=1)
    orders.add(WorkOrder(1, "TRK-001-FL", "tire", due, parts_on_site=(), parts_needed=(SKU,)))
    tech = SimTechnician(fleet, orders)
    kf, index = fleet.locate("TRK-001-FL")
    worn = float(kf.population.wear("tire")[index])
    assert worn > 0.0

    assert tech.work(due + timedelta(minutes=5)) == []  # due, but the part has not arrived
    orders.deliver(1, SKU)
    assert tech.work(due - timedelta(minutes=30)) == []  # the part is there, not due yet
    assert orders.completed == {}

    ended = tech.work(due + timedelta(minutes=10))
    assert orders.completed == {1: (SKU,)}
    assert len(ended) == 1
    life = ended[0]
    assert (life.asset_ref, life.component, life.end_reason, life.by_order) == (
        "TRK-001-FL", "tire", "replacement", True,
    )  # fmt: skip
    assert life.usage_at_end > 0
    assert float(kf.population.wear("tire")[index]) == 0.0, "a new tire"
    assert float(kf.population.usage[index]) == 0.0, "its odometer starts again"
    assert tech.work(due + timedelta(hours=1)) == []  # completed orders are not worked again


def test_an_order_closed_meanwhile_is_skipped_not_fatal() -> None:
    fleet = make_fleet()

    class ClosedMeanwhile(InMemoryOrderSource):
        """A stand-in whose order another technician completed a moment ago."""

        def due_orders(self) -> list[WorkOrder]:
            return list(self.orders.values())

    orders = ClosedMeanwhile()
    orders.add(WorkOrder(3, "TRK-001-FR", "tire", START, parts_on_site=(SKU,), parts_needed=(SKU,)))
    orders.completed[3] = (SKU,)
    kf, index = fleet.locate("TRK-001-FR")
    worn = float(kf.population.wear("tire")[index])
    assert SimTechnician(fleet, orders).work(START + timedelta(hours=1)) == []
    assert float(kf.population.wear("tire")[index]) == worn  # nothing was renewed


def test_a_failed_component_is_replaced_at_once_when_the_part_is_there() -> None:
    fleet = make_fleet()
    kf, index = fleet.locate("TRK-001-RLO")
    tires = kf.population
    assert isinstance(tires, TirePopulation)
    tires.tread[index] = 1.61  # almost worn out: the next drive ends it
    fleet.advance_to(START + timedelta(seconds=60))
    assert fleet.is_failed("TRK-001-RLO", "tire")
    orders = InMemoryOrderSource()
    far = START + timedelta(days=30)
    orders.add(WorkOrder(7, "TRK-001-RLO", "tire", far, parts_on_site=(SKU,), parts_needed=(SKU,)))
    orders.add(WorkOrder(8, "NOT-OURS", "tire", START, parts_on_site=(SKU,), parts_needed=(SKU,)))
    ended = SimTechnician(fleet, orders).work(START + timedelta(seconds=61))
    assert ended == []  # the failure already ended that life
    assert orders.completed == {7: (SKU,)}
    assert not fleet.is_failed("TRK-001-RLO", "tire")


def test_the_technician_works_the_products_orders(
    conn: Connection[Any], client: TestClient
) -> None:
    fleet = make_fleet()
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
        key = issue_api_key(conn, role="technician", customer_id=registration.customer_id)
    stock_depot(conn, "SIM-DEPOT", on_hand=3)
    clock = ManualClock(START + timedelta(seconds=5))
    client.app.state.clock = clock  # type: ignore[attr-defined]
    asset_id = registration.asset_ids["TRK-001-FL"]
    due = START + timedelta(hours=1)
    with conn.transaction():
        order = orders.create_manual_order(
            conn, OPERATOR, OrderCreate(asset_id=asset_id, component="tire", due_at=due), clock
        )
    refs = {asset_id: ref for ref, asset_id in registration.asset_ids.items()}
    source = ProductOrderSource(ProductAPI(str(client.base_url), key.key, client=client), refs)
    tech = SimTechnician(fleet, source)
    try:
        clock.set(due + timedelta(minutes=5))
        [seen] = source.due_orders()
        assert (seen.order_id, seen.asset_ref, seen.component) == (order.id, "TRK-001-FL", "tire")
        assert (seen.parts_needed, seen.parts_on_site) == ((SKU,), ())
        assert tech.work(clock.now()) == []  # due, but the tire is still at the depot
        with conn.transaction():  # the depot ships it, the carrier delivers it
            [shipment] = logistics.shipments_of_order(conn, order.id)
            logistics.ship(conn, OPERATOR, shipment.id, ShipRequest(), clock)
            logistics.deliver(conn, OPERATOR, shipment.id, clock)
        ended = tech.work(clock.now())
        assert [(e.asset_ref, e.end_reason, e.by_order) for e in ended] == [
            ("TRK-001-FL", "replacement", True)
        ]
        assert source.due_orders() == []
    finally:
        source.close()
    with conn.transaction():
        done = orders.order_detail(conn, OPERATOR, order.id)
        lives = conn.execute(
            "SELECT source, order_id, end_reason FROM asset_lives WHERE asset_id = %s",
            (asset_id,),
        ).fetchall()
    assert done.status == "completed"
    assert [p.quantity for p in done.parts_used] == [1]
    assert lives == [("order", order.id, "replacement")]  # the product recorded the life
    kf, index = fleet.locate("TRK-001-FL")
    assert float(kf.population.wear("tire")[index]) == 0.0  # and the simulation renewed it


def test_the_courier_ships_and_delivers_through_the_api(
    conn: Connection[Any], client: TestClient
) -> None:
    fleet = make_fleet()
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
        key = issue_api_key(conn, role="operator", customer_id=None)
    stock_depot(conn, "SIM-DEPOT", on_hand=3, shipping_days=2)
    clock = ManualClock(START)
    client.app.state.clock = clock  # type: ignore[attr-defined]
    asset_id = registration.asset_ids["TRK-001-FL"]
    with conn.transaction():
        order = orders.create_manual_order(
            conn, OPERATOR, OrderCreate(asset_id=asset_id, component="tire", due_at=START), clock
        )
    courier = Courier(ProductAPI(str(client.base_url), key.key, client=client), clock, 1_000.0)
    assert courier.step() == 1  # pending → shipped
    assert courier.step() == 0  # in transit: 2 days / 1000 is about 3 minutes
    clock.set(START + timedelta(minutes=4))
    assert courier.step() == 1  # → delivered
    with conn.transaction():
        [shipment] = logistics.shipments_of_order(conn, order.id)
    assert (shipment.status, shipment.carrier) == ("delivered", "demo courier")
    assert (courier.shipped, courier.delivered) == (1, 1)


def test_failure_reports_wait_while_the_api_is_unreachable(
    conn: Connection[Any], client: TestClient
) -> None:
    fleet = make_fleet()
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
        key = issue_api_key(conn, role="technician", customer_id=registration.customer_id)
    asset_id = registration.asset_ids["TRK-001-FL"]
    life = LifeEnd(
        asset_ref="TRK-001-FL", kind="tire", component="tire", started_at=START,
        ended_at=START + timedelta(seconds=5), end_reason="failure", failure_mode="tread_worn",
        usage_at_start=0.0, usage_at_end=100.0,
    )  # fmt: skip
    with socket.socket() as free:  # a port nobody listens on: the API is not up yet
        free.bind(("127.0.0.1", 0))
        down = ProductAPI(f"http://127.0.0.1:{free.getsockname()[1]}", key.key, timeout_s=2)
    reporter = FailureReporter(down)
    reporter.report(asset_id, life)
    assert reporter.flush() == 0 and len(reporter.pending) == 1
    reporter.api = ProductAPI(str(client.base_url), key.key, client=client)  # the API is up
    assert reporter.flush() == 1 and not reporter.pending
    with conn.transaction():
        reports = conn.execute(
            "SELECT missed, failed_at FROM failure_reports WHERE asset_id = %s", (asset_id,)
        ).fetchall()
    assert reports == [(True, life.ended_at)]
    # a report the product refuses is dropped, not retried forever
    reporter.report(asset_id, life.model_copy(update={"component": "brake"}))
    assert reporter.flush() == 0 and not reporter.pending and reporter.refused == 1
