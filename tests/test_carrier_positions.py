"""Carriers' positions from telemetry (issue 25, point 1): a device's position messages, native
or through a ``carries: positions`` profile, are stored once per (carrier, time), move the
carrier's latest position (never back), and are shown by the API and the dashboard's map;
bad ones are quarantined with a reason, another customer's carrier included."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from ingest.pipeline import store_messages
from ingest.positions import position_ref_from_topic
from ingest.schemas import BatchResult, IngestLimits, RawMessage
from simulators.api_client import ProductAPI
from simulators.flight_ops import FlightOps
from simulators.position_feed import PositionFeed
from tests.conftest import Tenant
from tests.ingest_helpers import Publisher, started_ingestor

NOW = datetime.now(UTC).replace(microsecond=0)


def ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


class Airline:
    """A customer with two airports, a tail and a device; ids and refs for the tests."""

    def __init__(self, client: TestClient, tenant: Tenant, tail: str, profile: str | None = None):
        h = self.headers = tenant.headers
        self.sites = {
            ref: ok(client.post("/v1/sites", json={"ref": ref, "name": ref, "latitude": lat,
                                                   "longitude": lon}, headers=h))["id"]
            for ref, lat, lon in (("FRA", 50.03, 8.57), ("MUC", 48.35, 11.79))
        }  # fmt: skip
        self.tail = tail
        body = {"ref": tail, "carrier_type": "aircraft"}
        self.carrier = ok(client.post("/v1/carriers", json=body, headers=h))["id"]
        device: dict[str, Any] = {"ref": f"gps-{tail}"}
        if profile:
            device["profile"] = profile
        created = ok(client.post("/v1/devices", json=device, headers=h))
        self.device = created["ref"]
        self.credentials = (created["ref"], created["secret"])


def store(db_url: str, topic: str, *payloads: Any, root: str) -> BatchResult:
    """Store messages as one ingest batch would, and commit."""
    limits = IngestLimits(topic_root=root)
    messages = [
        RawMessage(topic, p if isinstance(p, bytes) else orjson.dumps(p), NOW) for p in payloads
    ]
    with connect(db_url) as conn:
        result = store_messages(conn, messages, limits=limits, clock=ManualClock(NOW))
        conn.commit()
    return result


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def quarantined(db_url: str) -> list[tuple[str, str]]:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT reason, detail FROM quarantine ORDER BY id").fetchall()
    return [(r[0], r[1]) for r in rows]


def test_position_topic() -> None:
    assert position_ref_from_topic("r/gw-1/position", "r") == "gw-1"
    assert position_ref_from_topic("a/b/gw-1/position", "a/b") == "gw-1"
    for bad in ("r/position", "r//position", "r/x/y/position", "q/x/position", "r/x/telemetry"):
        assert position_ref_from_topic(bad, "r") is None, bad


def test_positions_from_telemetry_are_stored_once_and_shown(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant], topic_root: str
) -> None:
    air = Airline(client, make_tenant(), "D-AIBA")
    topic = f"{topic_root}/{air.device}/position"
    t0, t1, t2 = (
        NOW - timedelta(minutes=30),
        NOW - timedelta(minutes=20),
        NOW - timedelta(minutes=10),
    )
    flying = {"carrier": "D-AIBA", "ts": iso(t1), "latitude": 49.2, "longitude": 10.1}
    landed = {
        "positions": [{"carrier": "D-AIBA", "ts": int(t2.timestamp() * 1000), "station": "MUC"}]
    }

    first = store(db_url, topic, flying, landed, root=topic_root)
    assert (first.positions_stored, first.positions_duplicates, dict(first.quarantined)) == (
        2,
        0,
        {},
    )
    carrier = ok(client.get(f"/v1/carriers/{air.carrier}", headers=air.headers))
    assert carrier["at_site_id"] == air.sites["MUC"]
    assert (carrier["latitude"], carrier["longitude"]) == (48.35, 11.79)  # the station's
    assert carrier["position_source"] == "telemetry"
    assert datetime.fromisoformat(carrier["position_at"]) == t2

    # the same readings again (a redelivery, a device's resend): stored once
    again = store(db_url, topic, flying, landed, root=topic_root)
    assert (again.positions_stored, again.positions_duplicates) == (0, 2)
    # an older position joins the history and leaves the latest where it is
    late = store(db_url, topic, {"carrier": "D-AIBA", "ts": iso(t0), "latitude": 50.0,
                                 "longitude": 8.6}, root=topic_root)  # fmt: skip
    assert late.positions_stored == 1
    assert ok(client.get(f"/v1/carriers/{air.carrier}", headers=air.headers)) == carrier

    history = ok(client.get(f"/v1/carriers/{air.carrier}/positions", headers=air.headers))
    assert [(p["ts"], p["station"], p["source"], p["device_ref"]) for p in history] == [
        (iso(t2), "MUC", "telemetry", air.device),
        (iso(t1), None, "telemetry", air.device),
        (iso(t0), None, "telemetry", air.device),
    ]
    page = ok(client.get(f"/v1/carriers/{air.carrier}/positions?limit=1&before={iso(t2)}",
                         headers=air.headers))  # fmt: skip
    assert [p["ts"] for p in page] == [iso(t1)]
    listed = ok(client.get("/v1/carriers", headers=air.headers))["items"]
    assert [(c["ref"], c["at_site_id"]) for c in listed] == [("D-AIBA", air.sites["MUC"])]
    shown = ok(client.get("/dashboard/carriers.json", headers=air.headers))["carriers"]
    assert [(c["ref"], c["at_station"], c["latitude"]) for c in shown] == [("D-AIBA", "MUC", 48.35)]

    page = client.get("/dashboard/carriers", headers=air.headers)
    assert page.status_code == 200 and 'data-source="telemetry"' in page.text
    # the API's position is recorded the same way and, being newer, is the latest
    ok(client.put(f"/v1/carriers/{air.carrier}/position", json={"station": "FRA"},
                  headers=air.headers))  # fmt: skip
    carrier = ok(client.get(f"/v1/carriers/{air.carrier}", headers=air.headers))
    assert (carrier["at_site_id"], carrier["position_source"]) == (air.sites["FRA"], "api")
    history = ok(client.get(f"/v1/carriers/{air.carrier}/positions", headers=air.headers))
    assert [(p["station"], p["source"], p["device_ref"]) for p in history[:2]] == [
        ("FRA", "api", None),
        ("MUC", "telemetry", air.device),
    ]
    # a device's position older than the API's leaves the latest alone
    store(db_url, topic, {"carrier": "D-AIBA", "ts": iso(NOW), "station": "MUC"}, root=topic_root)
    assert (
        ok(client.get(f"/v1/carriers/{air.carrier}", headers=air.headers))["at_site_id"]
        == (air.sites["FRA"])
    )


def test_bad_positions_are_quarantined_with_a_reason_and_the_good_one_kept(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant], topic_root: str
) -> None:
    alpha = Airline(client, make_tenant(), "D-AAAA")
    beta = Airline(client, make_tenant(), "D-BBBB")  # another customer's tail and stations
    topic = f"{topic_root}/{alpha.device}/position"
    ts = iso(NOW - timedelta(minutes=1))

    def fix(**fields: Any) -> dict[str, Any]:
        return {"carrier": "D-AAAA", "ts": ts} | fields

    message = {
        "positions": [
            fix(latitude=50.1, longitude=8.7),
            fix(latitude=91.0, longitude=8.7, ts=iso(NOW - timedelta(minutes=2))),
            fix(carrier="NOPE", station="FRA"),
            fix(carrier="D-BBBB", latitude=48.0, longitude=11.0),
            fix(station="XXX", ts=iso(NOW - timedelta(minutes=3))),
            fix(latitude=50.0, longitude=8.0, ts=iso(NOW + timedelta(days=2))),
            fix(latitude=50.0, ts=iso(NOW - timedelta(minutes=4))),
            fix(latitude="50", longitude=8.0, ts=iso(NOW - timedelta(minutes=5))),
            fix(ts="yesterday", station="FRA"),
            fix(speed=800, station="FRA"),
        ]
    }
    result = store(db_url, topic, message, b'{"carrier": "D-AAAA", "ts": ', root=topic_root)
    assert result.positions_stored == 1
    assert [(reason, detail.split(":")[0]) for reason, detail in quarantined(db_url)] == [
        ("bad_json", "Expecting value"),
        ("out_of_bounds", "positions[1]"),
        ("unknown_carrier", "positions[2]"),
        ("unknown_carrier", "positions[3]"),
        ("unknown_station", "positions[4]"),
        ("ts_in_future", "positions[5]"),
        ("bad_structure", "positions[6]"),
        ("not_a_number", "positions[7]"),
        ("bad_timestamp", "positions[8]"),
        ("bad_structure", "positions[9]"),
    ]
    details = dict((d.split(":")[0], d) for _, d in quarantined(db_url))
    assert "no carrier 'D-BBBB' of this customer" in details["positions[3]"]
    assert "latitude = 91.0 outside [-90, 90]" in details["positions[1]"]
    # customer B's tail did not move, and A's history holds the good position only
    theirs = ok(client.get(f"/v1/carriers/{beta.carrier}", headers=beta.headers))
    assert theirs["position_at"] is None and theirs["latitude"] is None
    history = ok(client.get(f"/v1/carriers/{alpha.carrier}/positions", headers=alpha.headers))
    assert [(p["latitude"], p["longitude"]) for p in history] == [(50.1, 8.7)]
    # over HTTP with the device's credentials: the same checks, the answer after the commit
    url = "/v1/telemetry/position"
    theirs_fix = orjson.dumps(fix(carrier="D-BBBB", latitude=1.0, longitude=2.0))
    refused = ok(client.post(url, content=theirs_fix, auth=alpha.credentials))
    assert (refused["positions_stored"], refused["quarantined"]) == (0, {"unknown_carrier": 1})
    good = orjson.dumps(fix(latitude=50.2, longitude=8.8, ts=iso(NOW - timedelta(seconds=30))))
    assert ok(client.post(url, content=good, auth=alpha.credentials))["positions_stored"] == 1
    assert ok(client.post(url, content=good, auth=alpha.credentials))["positions_duplicates"] == 1
    assert client.post(url, content=good, auth=(alpha.device, "wrong")).status_code == 401
    assert client.post(url, content=good, auth=beta.credentials).json()["quarantined"] == {
        "unknown_carrier": 1
    }
    assert (
        ok(client.get(f"/v1/carriers/{alpha.carrier}", headers=alpha.headers))["latitude"] == 50.2
    )
    # and a customer cannot read another's history (404, as every object of another customer)
    r = client.get(f"/v1/carriers/{alpha.carrier}/positions", headers=beta.headers)
    assert r.status_code == 404 and r.json()["code"] == "carrier_not_found"


def test_positions_through_a_payload_profile(
    client: TestClient,
    db_url: str,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    topic_root: str,
) -> None:
    profile = {
        "name": "acme-gps",
        "format": "json",
        "carries": "positions",
        "batch": "fixes",
        "asset": "tail",
        "time": {"field": "t", "format": "epoch_s"},
        "metrics": {"latitude": {"field": "lat_e7", "scale": 1e-7},
                    "longitude": {"field": "lon_e7", "scale": 1e-7}},
        "station": "apt",
    }  # fmt: skip
    ok(client.post("/v1/profiles", json=profile, headers=operator_headers))
    for bad, problem in (
        (profile | {"format": "csv", "columns": ["tail", "t"], "batch": None}, "carries"),
        (profile | {"metrics": {"latitude": {"field": "lat"}}}, "both"),
        (profile | {"carries": "readings"}, "station"),
    ):
        r = client.post("/v1/profiles", json=bad | {"name": "bad-gps"}, headers=operator_headers)
        assert r.status_code == 422 and problem in r.text, r.text
    air = Airline(client, make_tenant(), "D-AIBC", profile="acme-gps")
    t = int((NOW - timedelta(minutes=5)).timestamp())
    message = {
        "fixes": [
            {"tail": "D-AIBC", "t": t, "lat_e7": 500_300_000, "lon_e7": 85_700_000},
            {"tail": "D-AIBC", "t": t + 60, "apt": "FRA"},
            {"tail": "D-AIBC", "t": t + 120, "lat_e7": 2_000_000_000, "lon_e7": 0},
            {"tail": "NOPE", "t": t + 180, "apt": "FRA"},
        ]
    }
    # a device speaking the profile: its messages carry positions on its telemetry topic too
    result = store(db_url, f"{topic_root}/{air.device}/telemetry", message, root=topic_root)
    refused = {"out_of_bounds": 1, "unknown_carrier": 1}
    assert (result.positions_stored, dict(result.quarantined)) == (2, refused)
    history = ok(client.get(f"/v1/carriers/{air.carrier}/positions", headers=air.headers))
    assert [(p["station"], round(p["latitude"], 4)) for p in history] == [
        ("FRA", 50.03),
        (None, 50.03),
    ]
    assert round(history[1]["longitude"], 4) == 8.57
    assert [d.split(" = ")[0] for _, d in quarantined(db_url)] == [
        "fixes[2]: latitude",
        "fixes[3]: no carrier 'NOPE' of this customer",
    ]
    # over HTTP (device credentials), the same message again: stored once
    json_body = {"content-type": "application/json"}
    posted = client.post(
        "/v1/telemetry", content=orjson.dumps(message), headers=json_body, auth=air.credentials
    )
    receipt = ok(posted)
    assert (receipt["positions_stored"], receipt["positions_duplicates"]) == (0, 2)
    assert receipt["quarantined"] == refused


def test_a_device_publishes_positions_over_mqtt(
    client: TestClient,
    db_url: str,
    mqtt_url: str,
    make_tenant: Callable[..., Tenant],
    topic_root: str,
) -> None:
    air = Airline(client, make_tenant(), "D-AIBD")
    stored = threading.Event()
    worker = started_ingestor(mqtt_url, db_url, topic_root)

    def on_batch(result: BatchResult) -> None:
        if result.positions_stored:
            stored.set()

    worker.on_batch = on_batch
    publisher = Publisher(mqtt_url)
    try:
        fix = {"carrier": "D-AIBD", "ts": iso(datetime.now(UTC)), "station": "FRA"}
        publisher.publish(f"{topic_root}/{air.device}/position", fix)
        publisher.wait_all_acked()
        assert stored.wait(30), "the ingestor stored no position"
    finally:
        publisher.close()
        worker.stop()
    carrier = ok(client.get(f"/v1/carriers/{air.carrier}", headers=air.headers))
    assert (carrier["at_site_id"], carrier["position_source"]) == (air.sites["FRA"], "telemetry")


def test_the_demo_desk_reports_positions_through_the_carriers_trackers(
    client: TestClient,
    db_url: str,
    mqtt_url: str,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    topic_root: str,
    tmp_path: Path,
) -> None:
    acme = make_tenant()
    for n in range(4):
        body = {
            "kind": "engine",
            "ref": f"AC-00{n // 2 + 1}-E{n % 2 + 1}",
            "attributes": {"aircraft": f"AC-00{n // 2 + 1}", "position": n % 2 + 1},
        }
        ok(client.post("/v1/assets", json=body, headers=acme.headers))
    depot = {"code": "CENTRAL", "name": "C", "latitude": 50.8, "longitude": 4.3}
    ok(client.post("/v1/depots", json=depot, headers=operator_headers))
    own = ProductAPI("http://testserver", acme.key, client=client)
    op_key = operator_headers["Authorization"].removeprefix("Bearer ")
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    feed = PositionFeed(own, mqtt_url, topic_root, tmp_path)
    ops = FlightOps(own, ProductAPI("http://testserver", op_key, client=client), clock, feed=feed)
    stored = threading.Condition()
    totals = [0]

    def on_batch(result: BatchResult) -> None:
        with stored:
            totals[0] += result.positions_stored
            stored.notify_all()

    worker = started_ingestor(mqtt_url, db_url, topic_root)
    worker.on_batch = on_batch
    try:
        assert ops.setup() == 2
        clock.advance(timedelta(hours=1))  # 120 schedule hours: both tails have flown
        ops.step()
        assert len(feed.links) == 2 and feed.published == 2
        with stored:
            assert stored.wait_for(lambda: totals[0] >= 2, 30), totals
    finally:
        feed.close()
        worker.stop()
    carriers = ok(client.get("/v1/carriers", headers=acme.headers))["items"]
    assert [(c["ref"], c["position_source"]) for c in carriers] == [
        ("D-AC-001", "telemetry"),
        ("D-AC-002", "telemetry"),
    ]
    devices = {d["ref"] for d in ok(client.get("/v1/devices", headers=acme.headers))["items"]}
    assert {"tracker-D-AC-001", "tracker-D-AC-002"} <= devices
    assert (tmp_path / "tracker-secrets.json").stat().st_mode & 0o077 == 0
