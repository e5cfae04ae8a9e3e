"""The demo's flight operations desk flies tails through the real API: stations, lanes,
carriers with their engines, itineraries and positions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from simulators.api_client import ProductAPI
from simulators.flight_ops import SHOPS, FlightOps
from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.maintenance import T0


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
