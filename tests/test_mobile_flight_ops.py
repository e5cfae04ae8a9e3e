"""The demo's flight operations desk flies tails through the real API: stations, lanes,
carriers with their engines, itineraries and positions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from simulators.api_client import ProductAPI
from simulators.flight_ops import SHOPS, FlightOps
from simulators.truck_ops import TIRE_SHOPS, TruckOps
from simulators.truck_routes import PLACES
from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.maintenance import T0
from tests.fixtures.mobile import predict_engine


def test_flight_ops_sets_up_once_and_reports_plans_and_positions(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    acme = make_tenant("acme")
    h = acme.headers
    for n in range(4):
        body = {
            "kind": "engine",
            "ref": f"AC-00{n // 2 + 1}-E{n % 2 + 1}",
            "attributes": {"aircraft": f"AC-00{n // 2 + 1}", "position": n % 2 + 1},
        }
        ok(client.post("/v1/assets", json=body, headers=h), 201)
    ok(
        client.post(
            "/v1/depots",
            json={"code": "CENTRAL", "name": "C", "latitude": 50.8, "longitude": 4.3},
            headers=operator_headers,
        ),
        201,
    )
    clock = ManualClock(T0)
    op_key = operator_headers["Authorization"].removeprefix("Bearer ")
    ops = FlightOps(
        ProductAPI("http://testserver", acme.key, client=client),
        ProductAPI("http://testserver", op_key, client=client),
        clock,
    )
    assert ops.setup() == 2
    assert ops.setup() == 2, "a second set-up changes nothing and fails on nothing"
    carriers = ok(client.get("/v1/carriers", headers=h))["items"]
    assert [c["ref"] for c in carriers] == ["D-AC-001", "D-AC-002"]
    mounts = ok(client.get(f"/v1/carriers/{carriers[0]['id']}/assets", headers=h))
    assert sorted(m["position"] for m in mounts) == ["ENG1", "ENG2"]
    stations = ok(client.get("/v1/stations", headers=h))
    assert len(stations) == len(SHOPS)
    assert len(ok(client.get("/v1/lanes", headers=h))["items"]) == len(SHOPS)

    assert ops.step() >= 2  # each tail's itinerary (and a position once it has flown)
    legs = ok(client.get(f"/v1/carriers/{carriers[0]['id']}/itinerary", headers=h))
    assert legs and all(leg["from_station"] != leg["to_station"] for leg in legs)
    assert ops.step() == 0, "nothing changed: nothing sent"
    # an hour later the schedule has moved on 120 hours: the tails flew and landed
    clock.advance(timedelta(hours=1))
    ops.step()
    moved = ok(client.get("/v1/carriers", headers=h))["items"]
    assert all(c["position_at"] is not None for c in moved)


def test_in_the_compressed_demo_an_engine_due_soon_gets_a_visit_not_an_aog_risk(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    acme = make_tenant("acme")
    h = acme.headers
    clock = ManualClock(T0)
    client.app.state.clock = clock  # type: ignore[attr-defined]
    engine = ok(
        client.post(
            "/v1/assets",
            json={
                "kind": "engine",
                "ref": "AC-001-E1",
                "installed_at": "2025-01-01T00:00:00Z",
                "attributes": {"aircraft": "AC-001"},
            },
            headers=h,
        ),
        201,
    )
    plans = ok(client.get("/v1/plans", headers=h))["items"]
    full = next(p for p in plans if p["code"] == "full-service-engine")
    body = {"plan_id": full["id"], "asset_ids": [engine["id"]], "starts_at": "2026-11-01T00:00:00Z"}
    ok(client.post("/v1/subscriptions", json=body, headers=h), 201)
    depot = ok(
        client.post(
            "/v1/depots",
            json={"code": "CENTRAL", "name": "C", "latitude": 50.8, "longitude": 4.3},
            headers=operator_headers,
        ),
        201,
    )
    part = ok(client.get("/v1/parts", params={"kind": "engine"}, headers=h))["items"][0]
    ok(
        client.put(
            f"/v1/depots/{depot['id']}/inventory/{part['id']}",
            json={"on_hand": 5},
            headers=operator_headers,
        )
    )
    op_key = operator_headers["Authorization"].removeprefix("Bearer ")
    ops = FlightOps(
        ProductAPI("http://testserver", acme.key, client=client),
        ProductAPI("http://testserver", op_key, client=client),
        clock,
    )
    ops.setup()
    ops.step()
    # the demo's wear is compressed too: the engine is due in two hours of the clock
    predict_engine(db_url, engine["id"], due_in_days=2 / 24, now=T0)
    [order] = ok(client.get("/v1/orders", headers=h))["items"]
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["aog_risk"] is False, crew
    assert crew["station"] in ("FRA", "MUC", "HAM", "CDG")


def test_truck_ops_drive_the_trucks_with_their_tires_through_the_api(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    acme = make_tenant("acme")
    h = acme.headers
    for n in range(12):
        truck = f"TRK-00{n // 6 + 1}"
        body = {
            "kind": "tire",
            "ref": f"{truck}-P{n % 6 + 1}",
            "attributes": {"truck": truck, "position": f"P{n % 6 + 1}"},
        }
        ok(client.post("/v1/assets", json=body, headers=h), 201)
    ok(
        client.post(
            "/v1/depots",
            json={"code": "CENTRAL", "name": "C", "latitude": 50.8, "longitude": 4.3},
            headers=operator_headers,
        ),
        201,
    )
    clock = ManualClock(T0)
    op_key = operator_headers["Authorization"].removeprefix("Bearer ")
    ops = TruckOps(
        ProductAPI("http://testserver", acme.key, client=client),
        ProductAPI("http://testserver", op_key, client=client),
        clock,
    )
    assert ops.setup() == 2 and ops.setup() == 2
    carriers = ok(client.get("/v1/carriers", headers=h))["items"]
    assert [(c["ref"], c["carrier_type"]) for c in carriers] == [
        ("TRK-001", "truck"),
        ("TRK-002", "truck"),
    ]
    mounts = ok(client.get(f"/v1/carriers/{carriers[0]['id']}/assets", headers=h))
    assert sorted(m["position"] for m in mounts) == [f"P{p}" for p in range(1, 7)]
    stations = ok(client.get("/v1/stations", headers=h))
    assert len(stations) == len(TIRE_SHOPS)
    assert all(s["kinds"] == ["tire"] for s in stations)
    # the schedule starts on the clock's day: an hour of the clock is 120 hours of routes
    clock.advance(timedelta(hours=1))
    assert ops.step() >= 2
    legs = ok(client.get(f"/v1/carriers/{carriers[0]['id']}/itinerary", headers=h))
    assert legs and all(leg["from_station"] != leg["to_station"] for leg in legs)
    assert {leg["to_station"] for leg in legs} <= {p.code for p in PLACES}
    moved = ok(client.get("/v1/carriers", headers=h))["items"]
    assert all(c["position_at"] is not None for c in moved)


class Renumbered:
    """A truck whose known legs' ids are shifted by ``shift``, so that they can be the very
    ids another desk of the same customer uses."""

    def __init__(self, truck: Any, shift: int) -> None:
        self.truck, self.shift = truck, shift

    def __getattr__(self, name: str) -> Any:
        return getattr(self.truck, name)

    def known_legs(self, at: datetime) -> list[Any]:
        return [replace(leg, id=leg.id + self.shift) for leg in self.truck.known_legs(at)]


def sent_leg_numbers(ops: FlightOps | TruckOps, carrier: Any) -> list[int]:
    """The ids of the legs a desk's step sends for ``carrier`` (its window, as ``step``)."""
    now = ops.schedule_now()
    return sorted(
        leg.id for leg in carrier.known_legs(now)
        if leg.arrives > now - timedelta(days=1) and leg.departs < now + timedelta(days=2)
    )  # fmt: skip


def test_a_customers_flight_and_truck_desks_send_itineraries_whose_leg_ids_cannot_clash(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    """`up` runs both desks for ACME, and a customer's leg ids are unique across its carriers:
    legs numbered alike by the two schedules must still be two legs (a truck's upload naming
    the tail's leg ids took those legs from the tail; two such uploads at once, a 409)."""
    acme = make_tenant("acme")
    h = acme.headers
    for n in range(2):
        body = {"kind": "engine", "ref": f"AC-001-E{n + 1}",
                "attributes": {"aircraft": "AC-001", "position": n + 1}}  # fmt: skip
        ok(client.post("/v1/assets", json=body, headers=h), 201)
        body = {"kind": "tire", "ref": f"TRK-001-P{n + 1}",
                "attributes": {"truck": "TRK-001", "position": f"P{n + 1}"}}  # fmt: skip
        ok(client.post("/v1/assets", json=body, headers=h), 201)
    depot = {"code": "CENTRAL", "name": "C", "latitude": 50.8, "longitude": 4.3}
    ok(client.post("/v1/depots", json=depot, headers=operator_headers), 201)
    clock = ManualClock(T0)
    op_key = operator_headers["Authorization"].removeprefix("Bearer ")
    customer = ProductAPI("http://testserver", acme.key, client=client)
    operator = ProductAPI("http://testserver", op_key, client=client)
    flights, trucks = FlightOps(customer, operator, clock), TruckOps(customer, operator, clock)
    assert flights.setup() == 1 and trucks.setup() == 1
    clock.advance(timedelta(hours=1))
    flights.step()
    tail, truck = flights.carriers["D-AC-001"], trucks.carriers["TRK-001"]
    flown = ok(client.get(f"/v1/carriers/{tail}/itinerary", headers=h))
    assert flown
    # the truck's legs renumbered to start at the tail's first one: the same leg numbers
    tail_legs = sent_leg_numbers(flights, flights.schedule[0])
    shift = tail_legs[0] - sent_leg_numbers(trucks, trucks.schedule[0])[0]
    trucks.schedule = [Renumbered(trucks.schedule[0], shift)]
    assert sent_leg_numbers(trucks, trucks.schedule[0])[0] == tail_legs[0]
    trucks.step()
    driven = ok(client.get(f"/v1/carriers/{truck}/itinerary", headers=h))
    assert driven
    assert not {leg["leg_ref"] for leg in flown} & {leg["leg_ref"] for leg in driven}
    assert ok(client.get(f"/v1/carriers/{tail}/itinerary", headers=h)) == flown
