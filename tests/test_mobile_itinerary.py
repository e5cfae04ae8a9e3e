"""Carriers, stations, lanes and itinerary uploads: good, broken rows, duplicates, another
customer's carrier."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.mobile import at, leg, make_airline

CSV_HEADER = "leg_id,carrier,from,to,scheduled_departure,scheduled_arrival,stand\n"


def test_itinerary_put_is_idempotent_and_replaces_the_plan_from_its_first_leg(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    air = make_airline(client, alice, operator_headers, lanes={"FRA": (12, 100)})
    url = f"/v1/carriers/{air.carrier['id']}/itinerary"
    legs = [
        leg("LH1", "FRA", "MUC", 2, 3),
        leg("LH2", "MUC", "TXL", 4, 5, stand="B12"),
        leg("LH3", "TXL", "FRA", 30, 31),
    ]
    first = ok(client.put(url, json={"legs": legs}, headers=alice.headers))
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    again = ok(client.put(url, json={"legs": legs}, headers=alice.headers))
    assert (again["created"], again["updated"], again["unchanged"], again["cancelled"]) == (
        0,
        0,
        3,
        0,
    )
    # from LH2 on the plan is replaced: LH2 delayed, LH3 dropped, LH4 new
    change = ok(
        client.put(
            url,
            json={
                "legs": [
                    leg("LH2", "MUC", "TXL", 4, 5, estimated_arrival=at(7), stand="B12"),
                    leg("LH4", "TXL", "MUC", 40, 41),
                ]
            },
            headers=alice.headers,
        )
    )
    assert (change["created"], change["updated"], change["cancelled"]) == (1, 1, 1)
    planned = ok(client.get(url, headers=alice.headers))
    assert [x["leg_ref"] for x in planned] == ["LH1", "LH2", "LH4"]
    assert planned[1]["arrival_stand"] == "B12" and planned[1]["to_station"] == "TXL"


def test_bulk_upload_csv_and_json_with_row_precise_errors(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    make_airline(client, alice, operator_headers, lanes={})
    ok(
        client.post(
            "/v1/carriers",
            json={"ref": "D-AIBB", "carrier_type": "aircraft"},
            headers=alice.headers,
        ),
        201,
    )
    good = (
        CSV_HEADER
        + f"A1,D-AIBA,FRA,MUC,{at(1)},{at(2)},\n"
        + f"B1,D-AIBB,MUC,TXL,{at(1)},{at(2)},C3\n"
    )
    h = alice.headers | {"content-type": "text/csv"}
    result = ok(client.post("/v1/itineraries", content=good, headers=h))
    assert result["created"] == 2 and result["carriers"] == ["D-AIBA", "D-AIBB"]
    assert ok(client.post("/v1/itineraries", content=good, headers=h))["unchanged"] == 2

    broken = (
        CSV_HEADER
        + f"A2,D-AIBA,FRA,XXX,{at(3)},{at(4)},\n"  # unknown station
        + f"A3,D-AIBA,FRA,MUC,not-a-time,{at(4)},\n"  # bad time
        + f"A2,D-AIBA,MUC,FRA,{at(5)},{at(6)},\n"  # duplicate leg id
        + f"A4,NOPE,MUC,FRA,{at(5)},{at(6)},\n"  # unknown carrier
        + f"A5,D-AIBA,MUC,FRA,{at(6)},{at(5)},\n"  # arrives before it leaves
        + f"A6,,MUC,FRA,{at(5)},{at(6)},\n"  # no carrier
    )
    r = client.post("/v1/itineraries", content=broken, headers=h)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_rows"
    fields = {p["field"] for p in body["problems"]}
    assert {"rows[1].to", "rows[3].leg_id", "rows[4].carrier", "rows[6].carrier"} <= fields
    assert any(f.startswith("rows[2].scheduled_departure") for f in fields)
    assert any(f.startswith("rows[5]") for f in fields)
    assert "rows[3].leg_id" in fields and "repeats rows[1]" in str(body["problems"])
    # all or nothing: nothing of the broken file was written
    legs = ok(client.get("/v1/carriers/1/itinerary", headers=alice.headers))
    assert [x["leg_ref"] for x in legs] == ["A1"]

    # JSON, and a header that does not fit
    doc = {"legs": [dict(leg("J1", "TXL", "FRA", 8, 9), carrier="D-AIBB")]}
    assert ok(client.post("/v1/itineraries", json=doc, headers=alice.headers))["created"] == 1
    r = client.post("/v1/itineraries", content="leg,when\nx,y\n", headers=h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "header"
    for bad in (b"\xff\xfe", b'{"legs": 3}', b"[1,2]", b"{"):
        r = client.post(
            "/v1/itineraries",
            content=bad,
            headers=alice.headers | {"content-type": "application/json"},
        )
        assert r.status_code == 422, (bad, r.text)


def test_another_customers_carrier_is_refused_without_a_leak(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    air = make_airline(client, alice, operator_headers, lanes={})
    cid = air.carrier["id"]
    body = {"legs": [leg("X1", "FRA", "MUC", 1, 2)]}
    r = client.put(f"/v1/carriers/{cid}/itinerary", json=body, headers=bob.headers)
    assert r.status_code == 404 and r.json()["code"] == "carrier_not_found"
    for path in (
        f"/v1/carriers/{cid}",
        f"/v1/carriers/{cid}/itinerary",
        f"/v1/carriers/{cid}/assets",
    ):
        assert client.get(path, headers=bob.headers).status_code == 404
    r = client.put(
        f"/v1/carriers/{cid}/position", json={"latitude": 1, "longitude": 2}, headers=bob.headers
    )
    assert r.status_code == 404
    # naming alice's carrier in bob's bulk upload: no such carrier for bob (not 403)
    doc = {"legs": [dict(leg("X1", "FRA", "MUC", 1, 2), carrier="D-AIBA")]}
    r = client.post("/v1/itineraries", json=doc, headers=bob.headers)
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} >= {"rows[1].carrier", "rows[1].from"}
    assert ok(client.get(f"/v1/carriers/{cid}/itinerary", headers=alice.headers)) == []
    # bob cannot mount alice's engine on his own carrier either
    bobs = ok(
        client.post(
            "/v1/carriers", json={"ref": "N1", "carrier_type": "truck"}, headers=bob.headers
        ),
        201,
    )
    r = client.put(f"/v1/carriers/{bobs['id']}/assets/{air.asset_id}", json={}, headers=bob.headers)
    assert r.status_code == 404


def test_stations_lanes_positions_and_mounts_check_their_input(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    air = make_airline(client, alice, operator_headers, lanes={"MUC": (6, 50)})
    h = alice.headers
    fra = air.sites["FRA"]
    for bad, where in (
        ({"kinds": ["gearbox"]}, "kinds[0]"),
        ({"kinds": ["engine"], "components": ["engine/fan"]}, "components[0]"),
        ({"opens_at": "08:00"}, "opens_at"),
        ({"technicians": 0}, "technicians"),
    ):
        r = client.put(f"/v1/sites/{fra}/station", json=bad, headers=h)
        assert r.status_code == 422 and where in r.text, (bad, r.text)
    station = ok(
        client.put(
            f"/v1/sites/{fra}/station",
            json={"kinds": ["engine"], "opens_at": "06:00", "closes_at": "22:00", "technicians": 4},
            headers=h,
        )
    )
    assert station["opens_at"] == "06:00:00"
    # lanes are the operator's (its depots); a site that is no station has none
    r = client.post(
        "/v1/lanes", json={"depot_id": air.depot_id, "site_id": fra, "lead_hours": 5}, headers=h
    )
    assert r.status_code == 403
    r = client.post(
        "/v1/lanes",
        json={"depot_id": air.depot_id, "site_id": air.sites["BCN"], "lead_hours": 5},
        headers=operator_headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "station_not_found"
    r = client.post(
        "/v1/lanes",
        json={"depot_id": air.depot_id, "site_id": air.sites["MUC"], "lead_hours": 5},
        headers=operator_headers,
    )
    assert r.status_code == 409
    assert len(ok(client.get("/v1/lanes", headers=h))["items"]) == 1
    cid = air.carrier["id"]
    pos = ok(client.put(f"/v1/carriers/{cid}/position", json={"station": "MUC"}, headers=h))
    assert pos["at_site_id"] == air.sites["MUC"] and pos["latitude"] == 48.35
    for bad in ({"latitude": 1}, {}, {"station": "XXX"}, {"latitude": 91, "longitude": 0}):
        r = client.put(f"/v1/carriers/{cid}/position", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    # an elevator does not ride on a carrier
    site = air.sites["FRA"]
    lift = ok(
        client.post(
            "/v1/assets", json={"kind": "elevator", "ref": "L-1", "site_id": site}, headers=h
        ),
        201,
    )
    r = client.put(f"/v1/carriers/{cid}/assets/{lift['id']}", json={}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "not_mobile"
    mounts = ok(client.get(f"/v1/carriers/{cid}/assets", headers=h))
    assert [(m["asset_id"], m["position"]) for m in mounts] == [(air.asset_id, "ENG1")]
    assert client.delete(f"/v1/carriers/{cid}/assets/{air.asset_id}", headers=h).status_code == 204
    assert client.delete(f"/v1/carriers/{cid}/assets/{air.asset_id}", headers=h).status_code == 404


def test_one_carriers_itinerary_names_refused_legs_like_the_apis_body_errors(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    air = make_airline(client, alice, operator_headers, lanes={})
    url = f"/v1/carriers/{air.carrier['id']}/itinerary"
    legs = [leg("P1", "FRA", "MUC", 1, 2), leg("P1", "MUC", "XXX", 3, 4)]
    r = client.put(url, json={"legs": legs}, headers=alice.headers)
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"legs.1.leg_id", "legs.1.to"}
    assert "repeats legs.0" in r.text
    bad_time = [dict(leg("P2", "FRA", "MUC", 1, 2), scheduled_arrival="soon")]
    r = client.put(url, json={"legs": bad_time}, headers=alice.headers)
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == ["legs.0.scheduled_arrival"]
