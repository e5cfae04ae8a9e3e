"""The policy for a carried engine: the visit and lane it chooses, re-planning on a delay, a
diversion after the part left and a tail swap (no duplicate orders or shipments), and the AOG
risk alert."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from maintenance.mobility import visits
from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.maintenance import T0, count, event_types
from tests.fixtures.mobile import at, leg, make_airline, predict_engine

ROTATION = [
    leg("LH1", "FRA", "MUC", 2, 3),  # 1 h on the ground at MUC: too short for the job
    leg("LH2", "MUC", "TXL", 4, 5, stand="B12"),  # a night at TXL
    leg("LH3", "TXL", "FRA", 30, 31),
    leg("LH4", "FRA", "MUC", 48, 49),
]


def _events(db_url: str, customer_id: int, type_: str) -> list[dict[str, Any]]:
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT payload FROM events WHERE customer_id = %s AND type = %s ORDER BY id",
            (customer_id, type_),
        ).fetchall()
    return [r[0] for r in rows]


def _only_order(client: TestClient, h: dict[str, str], asset_id: int) -> dict[str, Any]:
    items = ok(client.get("/v1/orders", params={"asset_id": asset_id}, headers=h))["items"]
    assert len(items) == 1, items
    return dict(items[0])


def test_diversion_after_the_part_left_redirects_it_and_nothing_is_duplicated(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    # TXL: cheap and in time (4 h); FRA: dearer and faster; MUC: fast
    air = make_airline(
        client,
        alice,
        operator_headers,
        lanes={"TXL": (4, 100), "FRA": (2, 300), "MUC": (1, 50)},
    )
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=5)
    order = _only_order(client, h, air.asset_id)
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    # the first stop with ground time for 40 labour hours (8 technicians, 1 h turnaround)
    assert crew["station"] == "TXL" and crew["arrives_at"] == at(5).replace("+00:00", "Z")
    assert crew["stand"] == "B12" and crew["asset_position"] == "ENG1"
    assert crew["ground_hours"] == 25 and crew["aog_risk"] is False
    [part] = crew["parts"]
    assert part["status"] == "pending" and part["sku"] == "ENG-HPC-OVH"
    shipments = ok(client.get("/v1/shipments", headers=h))["items"]
    assert len(shipments) == 1 and shipments[0]["site_id"] == air.sites["TXL"]
    assert shipments[0]["eta"].startswith((T0 + timedelta(hours=4)).strftime("%Y-%m-%dT%H"))
    planned = _events(db_url, alice.customer.id, "order.visit_planned")
    assert len(planned) == 1 and planned[0]["crew"]["carrier_ref"] == "D-AIBA"

    # the part leaves the depot; then the aircraft is diverted to FRA instead of TXL
    client.app.state.clock = ManualClock(T0 + timedelta(hours=1))  # type: ignore[attr-defined]
    ok(client.post(f"/v1/shipments/{shipments[0]['id']}/ship", json={}, headers=operator_headers))
    diverted = [
        leg("LH2", "MUC", "FRA", 4, 5),
        leg("LH3", "FRA", "TXL", 30, 31),
        leg("LH4", "TXL", "MUC", 48, 49),
    ]
    result = ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": diverted}, headers=h))
    assert result["orders_replanned"] == [order["id"]]
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["station"] == "FRA"
    shipments = ok(client.get("/v1/shipments", headers=h))["items"]
    assert len(shipments) == 1, "redirected, not raised again"
    moved = shipments[0]
    assert moved["site_id"] == air.sites["FRA"] and moved["status"] == "shipped"
    assert moved["redirects"] == 1
    # onward on the depot's FRA lane: there at T0+3h, before the aircraft (T0+5h)
    assert moved["eta"] < crew["arrives_at"]
    [redirected] = _events(db_url, alice.customer.id, "shipment.redirected")
    assert "TXL" in redirected["reason"] and "FRA" in redirected["reason"]
    [rescheduled] = _events(db_url, alice.customer.id, "order.rescheduled")
    assert rescheduled["crew"]["station"] == "FRA" and "itinerary" in rescheduled["reason"]

    # the same itinerary again changes nothing
    again = ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": diverted}, headers=h))
    assert again["orders_replanned"] == [] and again["unchanged"] == 3
    assert len(_events(db_url, alice.customer.id, "order.rescheduled")) == 1

    # a delay at FRA moves the visit's time, not the part
    delayed = [dict(diverted[0], estimated_arrival=at(8), estimated_departure=at(7)), *diverted[1:]]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": delayed}, headers=h))
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["station"] == "FRA" and crew["arrives_at"].startswith(at(8)[:13])
    assert len(_events(db_url, alice.customer.id, "order.rescheduled")) == 2
    assert len(ok(client.get("/v1/shipments", headers=h))["items"]) == 1

    # the part is received at the station: the crew sees it there
    technician = ok(client.post("/v1/api-keys", json={"role": "technician"}, headers=h), 201)
    th = {"Authorization": f"Bearer {technician['key']}"}
    ok(client.post(f"/v1/shipments/{moved['id']}/deliver", headers=th))
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=th))
    assert crew["parts"][0]["at_station"] is True
    with connect(db_url) as conn:
        assert count(conn, "SELECT count(*) FROM maintenance_orders") == 1
        assert count(conn, "SELECT count(*) FROM reservations") == 1
        assert count(conn, "SELECT count(*) FROM order_visits") == 1


def test_a_tail_swap_moves_the_plan_and_redirects_a_pending_shipment(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100), "MUC": (1, 50)})
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=5)
    order = _only_order(client, h, air.asset_id)
    assert ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))["station"] == "TXL"
    ok(
        client.post("/v1/carriers", json={"ref": "D-AIBB", "carrier_type": "aircraft"}, headers=h),
        201,
    )
    # operations swap tails: D-AIBB flies LH2..LH4; D-AIBA stays at MUC after LH1
    swap = [dict(x, carrier="D-AIBB") for x in ROTATION[1:]]
    result = ok(client.post("/v1/itineraries", json={"legs": swap}, headers=h))
    assert result["tail_swaps"] == 3 and result["orders_replanned"] == [order["id"]]
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["station"] == "MUC" and crew["departs_at"] is None  # parked: end of its plan
    [shipment] = ok(client.get("/v1/shipments", headers=h))["items"]
    assert shipment["site_id"] == air.sites["MUC"] and shipment["status"] == "pending"
    with connect(db_url) as conn:
        assert count(conn, "SELECT count(*) FROM shipments") == 1
        assert count(conn, "SELECT count(*) FROM maintenance_orders") == 1
    # a second prediction of the same due period raises nothing more
    predict_engine(db_url, air.asset_id, due_in_days=5, now=T0 + timedelta(minutes=5))
    _only_order(client, h, air.asset_id)


def test_a_pending_shipment_from_a_depot_without_a_lane_is_released_and_replaced(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100)})
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=5)
    order = _only_order(client, h, air.asset_id)
    # a second depot serves FRA only
    other = ok(
        client.post(
            "/v1/depots",
            json={"code": "FRA-STORES", "name": "F", "latitude": 50, "longitude": 8.6},
            headers=operator_headers,
        ),
        201,
    )
    part = ok(client.get("/v1/parts", params={"kind": "engine"}, headers=h))["items"][0]
    ok(
        client.put(
            f"/v1/depots/{other['id']}/inventory/{part['id']}",
            json={"on_hand": 1},
            headers=operator_headers,
        )
    )
    ok(
        client.post(
            "/v1/lanes",
            json={"depot_id": other["id"], "site_id": air.sites["FRA"], "lead_hours": 1},
            headers=operator_headers,
        ),
        201,
    )
    diverted = [leg("LH2", "MUC", "FRA", 4, 5), leg("LH3", "FRA", "TXL", 30, 31)]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": diverted}, headers=h))
    assert ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))["station"] == "FRA"
    shipments = ok(client.get("/v1/shipments", headers=h))["items"]
    assert [(s["status"], s["depot_id"]) for s in shipments] == [
        ("cancelled", air.depot_id),
        ("pending", other["id"]),
    ]
    with connect(db_url) as conn:
        reservations = conn.execute(
            "SELECT depot_id, status FROM reservations ORDER BY id"
        ).fetchall()
        held = conn.execute(
            "SELECT depot_id, reserved FROM inventory WHERE reserved > 0"
        ).fetchall()
    assert reservations == [(air.depot_id, "released"), (other["id"], "held")]
    assert held == [(other["id"], 1)]
    types = event_types_of(db_url, alice.customer.id)
    assert types.count("part.released") == 1 and types.count("shipment.created") == 2


def event_types_of(db_url: str, customer_id: int) -> list[str]:
    with connect(db_url) as conn:
        return event_types(conn, customer_id)


def test_no_fitting_visit_before_the_due_date_is_an_aog_risk_alert(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"MUC": (2, 100)}, stations=("MUC",))
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    # due in 2 days: only MUC services engines, and its stops are 1 h turnarounds
    predict_engine(db_url, air.asset_id, due_in_days=1.5)
    order = _only_order(client, h, air.asset_id)
    assert order["at_risk"] is True and order["at_risk_reason"].startswith("AOG risk")
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["aog_risk"] is True and crew["station"] is None
    [alert] = _events(db_url, alice.customer.id, "order.aog_risk")
    assert alert["carrier_ref"] == "D-AIBA" and "no stop before" in alert["reason"]
    assert ok(client.get("/v1/shipments", headers=h))["items"] == []
    # a new plan with a night at MUC: the risk clears, the part ships there
    fixed = [leg("LH2", "MUC", "TXL", 20, 21), leg("LH3", "TXL", "FRA", 30, 31)]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": fixed}, headers=h))
    order = _only_order(client, h, air.asset_id)
    assert order["at_risk"] is False
    with connect(db_url) as conn:
        assert count(conn, "SELECT count(*) FROM events WHERE type = 'order.aog_risk'") == 1
        assert count(conn, "SELECT count(*) FROM events WHERE type = 'order.risk_cleared'") == 1


def test_concurrent_replans_of_one_carrier_raise_one_shipment(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100), "FRA": (2, 300)})
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=5)
    # the plan changes under the planner's feet; two planners run at once
    with connect(db_url) as conn:
        conn.execute(
            "UPDATE carrier_legs SET to_site_id = %s WHERE leg_ref = 'LH2'", (air.sites["FRA"],)
        )
        conn.execute(
            "UPDATE carrier_legs SET from_site_id = %s WHERE leg_ref = 'LH3'", (air.sites["FRA"],)
        )
        conn.commit()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def replan() -> None:
        try:
            with connect(db_url) as conn:
                start.wait(timeout=30)
                visits.replan_carriers(conn, [cid], T0, cause="test")
                conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replan) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with connect(db_url) as conn:
        live = conn.execute(
            "SELECT site_id, redirects FROM shipments WHERE status <> 'cancelled'"
        ).fetchall()
        assert count(conn, "SELECT count(*) FROM events WHERE type = 'order.rescheduled'") == 1
    assert live == [(air.sites["FRA"], 1)]


def test_the_dashboard_maps_carriers_and_the_crew_records_the_part_at_the_station(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100)})
    cid = air.carrier["id"]
    ok(client.put(f"/v1/carriers/{cid}/position", json={"station": "FRA"}, headers=h))
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": ROTATION}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=5)
    order = _only_order(client, h, air.asset_id)
    [shipment] = ok(client.get("/v1/shipments", headers=h))["items"]
    ok(client.post(f"/v1/shipments/{shipment['id']}/ship", json={}, headers=operator_headers))

    data = ok(client.get("/dashboard/carriers.json", headers=h))
    [carrier] = data["carriers"]
    assert carrier["ref"] == "D-AIBA" and carrier["at_station"] == "FRA"
    assert carrier["next_stop"] == "MUC" and carrier["assets"] == 1
    assert {s["ref"] for s in data["stations"]} == {"FRA", "MUC", "TXL"}
    [transit] = data["shipments"]
    assert transit["station"] == "TXL" and transit["depot"] == "HAM-STORES"
    [visit] = data["visits"]
    assert visit["order_id"] == order["id"] and visit["station"] == "TXL"
    assert ok(client.get("/dashboard/carriers.json", headers=bob.headers)) == {
        "carriers": [],
        "stations": [],
        "shipments": [],
        "visits": [],
    }
    page = client.get("/dashboard/carriers", headers=operator_headers)
    assert page.status_code == 200
    assert "/static/vendor/leaflet.js" in page.text and 'id="carrier-map"' in page.text
    assert f"/dashboard/shipments/{shipment['id']}/receive" in page.text
    # times read as times (the next stop's arrival, the visit's window and due date), never
    # as the JSON data's ISO text
    assert re.search(r"MUC <span class=\"muted\">\d{4}-\d\d-\d\d \d\d:\d\d UTC</span>", page.text)
    assert "+00:00" not in page.text
    # no tile server anywhere: the page and its script load only our own files
    script = client.get("/static/map.js").text
    assert "tile" not in script.lower() or "no tiles" in script.lower()
    assert "http" not in script
    # bob cannot receive alice's part; the technician can, from the dashboard
    bob_tech = ok(
        client.post("/v1/api-keys", json={"role": "technician"}, headers=bob.headers), 201
    )
    bh = {"Authorization": f"Bearer {bob_tech['key']}"}
    r = client.post(f"/dashboard/shipments/{shipment['id']}/receive", data={}, headers=bh)
    assert r.status_code == 404
    # a customer key does not confirm deliveries (shipments:work is the crew's): the access
    # table refuses it with the Not allowed page, and nothing changes
    r = client.post(f"/dashboard/shipments/{shipment['id']}/receive", data={}, headers=h)
    assert r.status_code == 403 and "Not allowed" in r.text
    assert ok(client.get(f"/v1/shipments/{shipment['id']}", headers=h))["status"] == "shipped"
    technician = ok(client.post("/v1/api-keys", json={"role": "technician"}, headers=h), 201)
    th = {"Authorization": f"Bearer {technician['key']}"}
    r = client.post(
        f"/dashboard/shipments/{shipment['id']}/receive",
        data={},
        headers=th,
        follow_redirects=False,
    )
    assert r.status_code == 303
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=th))
    assert crew["parts"][0]["at_station"] is True
    assert "received at the station" in client.get("/dashboard/carriers", headers=th).text


def test_a_manual_order_for_a_carried_engine_is_planned_at_a_visit(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100)})
    ok(
        client.put(
            f"/v1/carriers/{air.carrier['id']}/itinerary", json={"legs": ROTATION}, headers=h
        )
    )
    body = {"asset_id": air.asset_id, "component": "hpc_module", "due_at": at(5 * 24)}
    order = ok(client.post("/v1/orders", json=body, headers=h), 201)
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["station"] == "TXL" and crew["aog_risk"] is False
    [shipment] = ok(client.get("/v1/shipments", headers=h))["items"]
    assert shipment["site_id"] == air.sites["TXL"] and shipment["order_id"] == order["id"]
    assert client.post("/v1/orders", json=body, headers=h).status_code == 409


def test_a_failure_report_on_a_carried_engine_plans_its_order_at_the_next_fitting_visit(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    air = make_airline(client, alice, operator_headers, lanes={"TXL": (4, 100), "FRA": (2, 300)})
    ok(
        client.put(
            f"/v1/carriers/{air.carrier['id']}/itinerary", json={"legs": ROTATION}, headers=h
        )
    )
    body = {"asset_id": air.asset_id, "component": "hpc_module", "description": "EGT exceedance"}
    report = ok(client.post("/v1/failures", json=body, headers=h), 201)
    assert report["missed"] is True and report["order_id"] is not None
    # at once, not at the next re-plan: the first stop with the ground time (TXL, a night)
    crew = ok(client.get(f"/v1/orders/{report['order_id']}/visit", headers=h))
    assert crew["station"] == "TXL" and crew["aog_risk"] is False
    [shipment] = ok(client.get("/v1/shipments", headers=h))["items"]
    assert shipment["site_id"] == air.sites["TXL"], "to the visit, not the asset's site"
    assert shipment["order_id"] == report["order_id"]
    assert len(_events(db_url, alice.customer.id, "order.visit_planned")) == 1


def test_a_failure_report_with_no_fitting_visit_raises_the_aog_risk_alert(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    # only MUC services engines, and the tail has an hour on the ground there
    air = make_airline(client, alice, operator_headers, lanes={"MUC": (2, 100)}, stations=("MUC",))
    legs = ROTATION[:2]  # then a night at TXL and no more legs known
    ok(client.put(f"/v1/carriers/{air.carrier['id']}/itinerary", json={"legs": legs}, headers=h))
    body = {"asset_id": air.asset_id, "component": "hpc_module"}
    report = ok(client.post("/v1/failures", json=body, headers=h), 201)
    crew = ok(client.get(f"/v1/orders/{report['order_id']}/visit", headers=h))
    assert crew["aog_risk"] is True and crew["station"] is None
    [alert] = _events(db_url, alice.customer.id, "order.aog_risk")
    assert alert["order"]["id"] == report["order_id"] and "AOG risk" in alert["reason"]
    assert ok(client.get("/v1/shipments", headers=h))["items"] == [], "nothing shipped blindly"


def test_the_visit_margin_is_a_plan_setting(
    client: TestClient, operator_headers: dict[str, str]
) -> None:
    plan = {"code": "engine-aog", "name": "AOG-sensitive", "kinds": ["engine"],
            "includes_orders": True, "fee_per_asset_month_minor": 100}  # fmt: skip
    made = ok(client.post("/v1/plans", json=plan | {"visit_margin_hours": 24},
                          headers=operator_headers), 201)  # fmt: skip
    assert made["visit_margin_hours"] == 24
    default = ok(client.post("/v1/plans", json=plan | {"code": "engine-std"},
                             headers=operator_headers), 201)  # fmt: skip
    assert default["visit_margin_hours"] == 12
    bad = client.post("/v1/plans", json=plan | {"code": "x", "visit_margin_hours": 721},
                      headers=operator_headers)  # fmt: skip
    assert bad.status_code == 422 and "visit_margin_hours" in bad.text
