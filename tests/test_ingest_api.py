"""Ingest health and a device's quarantine through the API, scoped per customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import AssetCreate
from fleetcare.clock import SystemClock
from ingest import repository as repo
from ingest import service as devices
from ingest.pipeline import store_messages
from ingest.schemas import DeviceCreate, IngestLimits, IngestorStatus
from tests.conftest import OPERATOR, Tenant
from tests.ingest_helpers import raw, reading


def test_health_and_quarantine_are_scoped_per_customer(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    topic_root: str,
) -> None:
    a, b = make_tenant(), make_tenant()
    fleet.create_asset(
        conn, OPERATOR, AssetCreate(customer_id=a.customer.id, kind="tire", ref="T-1")
    )
    dev_a = devices.create_device(
        conn, OPERATOR, DeviceCreate(customer_id=a.customer.id, ref=f"gw-{a.customer.slug}")
    )
    dev_b = devices.create_device(
        conn, OPERATOR, DeviceCreate(customer_id=b.customer.id, ref=f"gw-{b.customer.slug}")
    )
    now = datetime.now(UTC)
    limits = IngestLimits(topic_root=topic_root)
    t = f"{topic_root}/{dev_a.ref}/telemetry"
    store_messages(
        conn,
        [
            raw(t, reading("T-1", now.isoformat(), speed_kmh=-5)),
            raw(t, b"not json \xff"),
            raw(f"{topic_root}/{dev_b.ref}/telemetry", reading("X", now.isoformat(), a=1)),
        ],
        limits=limits,
        clock=SystemClock(),
    )
    repo.upsert_ingestor_status(
        conn,
        IngestorStatus(
            client_id="ingest-test",
            started_at=now,
            updated_at=now,
            connected=True,
            messages_total=3,
            stored_total=0,
            duplicates_total=0,
            quarantined_total=3,
            readings_per_s=12.5,
            lag_s=0.1,
            queue_depth=0,
            broker_dropped=0,
        ),
    )
    conn.commit()

    page = client.get(f"/v1/devices/{dev_a.id}/quarantine", headers=a.headers)
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    # newest first (message-level rejections are written before item-level ones)
    assert [i["reason"] for i in items] == ["out_of_bounds", "bad_encoding"]
    assert items[1]["payload_text"].startswith("not json") and items[1]["payload_size"] == 10
    first = client.get(
        f"/v1/devices/{dev_a.id}/quarantine", params={"limit": 1}, headers=a.headers
    ).json()
    assert len(first["items"]) == 1 and first["next_before"] == items[0]["id"]
    rest = client.get(
        f"/v1/devices/{dev_a.id}/quarantine",
        params={"before": first["next_before"]},
        headers=a.headers,
    ).json()
    assert [i["reason"] for i in rest["items"]] == ["bad_encoding"]
    # another customer's device answers 404, like a device that does not exist
    for device_id in (dev_b.id, 999_999):
        other = client.get(f"/v1/devices/{device_id}/quarantine", headers=a.headers)
        assert other.status_code == 404
    assert (
        client.get(f"/v1/devices/{dev_a.id}/quarantine", headers=operator_headers).json()["items"]
        == items
    )

    health_a = client.get("/v1/ingest/health", headers=a.headers).json()
    assert {(q["device_ref"], q["reason"], q["count"]) for q in health_a["quarantine"]} == {
        (dev_a.ref, "out_of_bounds", 1),
        (dev_a.ref, "bad_encoding", 1),
    }
    assert health_a["ingestors"] == []
    health_op = client.get("/v1/ingest/health", headers=operator_headers).json()
    assert len(health_op["quarantine"]) == 3
    assert [i["client_id"] for i in health_op["ingestors"]] == ["ingest-test"]
    assert health_op["broker_dropped"] == 0
    bad = client.get("/v1/ingest/health", params={"since": "yesterday"}, headers=a.headers)
    assert bad.status_code == 422

    metrics = client.get("/metrics", headers=operator_headers)
    assert metrics.status_code == 200
    assert f'fleetcare_quarantined_24h{{device="{dev_a.ref}",reason="out_of_bounds"}} 1.0' in (
        metrics.text
    )
    assert 'fleetcare_ingestor_readings_per_second{ingestor="ingest-test"} 12.5' in metrics.text
    assert client.get("/metrics", headers=a.headers).status_code == 403
    assert client.get("/metrics").status_code == 401
