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
from simulators.schemas import FleetSpec, LifeEnd, TruthRow
from simulators.technician import (
    InMemoryOrderSource,
    ProductOrderSource,
    SimTechnician,
    WorkOrder,
    finding,
)
from simulators.worker import FleetRunner
from tests.fixtures.maintenance import OPERATOR, stock_depot
from tests.test_simulators_physics import RecordingLink

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
    [found] = orders.findings[1]  # what was found on the order's component, with the work
    assert found["component"] == "tire" and found["code"] in ("confirmed_wear", "false_alarm")
    assert len(ended) == 1
    life = ended[0]
    assert (life.asset_ref, life.component, life.end_reason, life.by_order) == (
        "TRK-001-FL", "tire", "replacement", True,
    )  # fmt: skip
    assert life.usage_at_end > 0
    assert float(kf.population.wear("tire")[index]) == 0.0, "a new tire"
    assert float(kf.population.usage[index]) == 0.0, "its odometer starts again"
    assert tech.work(due + timedelta(hours=1)) == []  # completed orders are not worked again


def test_the_finding_is_confirmed_wear_within_the_risk_horizon_and_a_false_alarm_beyond() -> None:
    fleet = make_fleet()
    kf, index = fleet.locate("TRK-001-FL")
    tires = kf.population
    assert isinstance(tires, TirePopulation)
    horizon = tires.kind.model.horizon
    tires.renew(index, "tire")
    assert float(tires.expected_rul("tire")[index]) > horizon  # a new tire has its life ahead
    assert finding(fleet, "TRK-001-FL", "tire")["code"] == "false_alarm"
    tires.tread[index] = 1.7  # a tenth of a millimetre above the limit
    assert float(tires.expected_rul("tire")[index]) <= horizon
    worn = finding(fleet, "TRK-001-FL", "tire")
    assert worn["code"] == "confirmed_wear" and "km of life left" in worn["notes"]


def test_the_orders_lead_time_runs_at_the_fleets_pace() -> None:
    """An order due 14 days after it was raised is due after 14 simulated days: a minute at
    a speed-up of 20,160 (as the courier's transit times), not 14 days of real time."""
    fleet = make_fleet()
    orders = InMemoryOrderSource()
    due = START + timedelta(days=14)
    orders.add(
        WorkOrder(5, "TRK-001-FL", "tire", due, parts_on_site=(SKU,), parts_needed=(SKU,),
                  reason="predicted", raised_at=START)
    )  # fmt: skip
    tech = SimTechnician(fleet, orders, speedup=20_160.0)
    assert tech.due_at(orders.orders[5]) == START + timedelta(minutes=1)
    assert tech.work(START + timedelta(seconds=50)) == []  # 11.7 simulated days: not yet
    assert orders.completed == {}
    tech.work(START + timedelta(seconds=61))
    assert orders.completed == {5: (SKU,)}
    # without a speed-up (or the time it was raised) the due date is the order's own
    assert SimTechnician(fleet, orders).due_at(orders.orders[5]) == due


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
    orders.add(
        WorkOrder(7, "TRK-001-RLO", "tire", far, parts_on_site=(SKU,), parts_needed=(SKU,),
                  reason="failure")
    )  # fmt: skip
    orders.add(WorkOrder(8, "NOT-OURS", "tire", START, parts_on_site=(SKU,), parts_needed=(SKU,)))
    ended = SimTechnician(fleet, orders).work(START + timedelta(seconds=61))
    assert ended == []  # the failure already ended that life
    assert orders.completed == {7: (SKU,)}
    assert orders.findings == {7: []}  # the failure report is that order's outcome
    assert not fleet.is_failed("TRK-001-RLO", "tire")


class Sink:
    """A truth sink that notes, for each life end it records, which orders were completed."""

    def __init__(self, orders: InMemoryOrderSource) -> None:
        self.orders = orders
        self.recorded: list[tuple[str, str, list[int]]] = []

    def record_life_ends(self, ends: list[LifeEnd]) -> None:
        done = sorted(self.orders.completed)
        self.recorded += [(e.asset_ref, e.end_reason, done) for e in ends]

    def record_truth(self, rows: list[TruthRow]) -> None:
        pass


def test_a_failure_is_reported_before_the_technician_completes_its_open_order() -> None:
    """Reported while the predicted order is open, the failure counts against that order
    (the product's missed failures are failures with no open order)."""
    fleet = make_fleet()
    kf, index = fleet.locate("TRK-001-RLO")
    tires = kf.population
    assert isinstance(tires, TirePopulation)
    tires.tread[index] = 1.61  # the next drive ends it
    orders = InMemoryOrderSource()
    far = START + timedelta(days=30)
    orders.add(
        WorkOrder(9, "TRK-001-RLO", "tire", far, parts_on_site=(SKU,), parts_needed=(SKU,),
                  reason="predicted")
    )  # fmt: skip
    sink = Sink(orders)
    links = {ref: RecordingLink() for ref in fleet.gateways}
    runner = FleetRunner(
        fleet, links, ManualClock(START), sink=sink, technician=SimTechnician(fleet, orders)
    )
    runner.open()
    runner.tick(START + timedelta(seconds=60))
    runner.close()
    assert sink.recorded == [("TRK-001-RLO", "failure", [])]  # the order was still open
    assert orders.completed == {9: (SKU,)}  # then worked, on the failed tire
    [found] = orders.findings[9]
    assert (found["code"], found["notes"]) == ("confirmed_wear", "found failed")


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
            "SELECT source, order_id, end_reason, outcome FROM asset_lives WHERE asset_id = %s",
            (asset_id,),
        ).fetchall()
        outcomes = conn.execute(
            "SELECT component, code, order_status FROM order_outcomes WHERE order_id = %s",
            (order.id,),
        ).fetchall()
    assert done.status == "completed"
    # the technician recorded what was found: the outcome the model page counts
    [(component, code, status)] = outcomes
    assert (component, status) == ("tire", "completed")
    assert code in ("confirmed_wear", "false_alarm")
    assert [p.quantity for p in done.parts_used] == [1]
    assert lives == [("order", order.id, "replacement", code)]  # recorded and labelled
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
