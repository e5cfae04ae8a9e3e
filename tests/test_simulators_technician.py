"""The technician works due orders whose parts are on site and renews the simulated asset.

The orders domain is not in this build: the seam (``OrderSource``) is exercised with the
in-memory stand-in ``InMemoryOrderSource``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simulators.fleet import Fleet
from simulators.physics import TirePopulation
from simulators.schemas import FleetSpec
from simulators.technician import InMemoryOrderSource, SimTechnician, WorkOrder

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
