"""The whole loop, shortened, through the real components: readings in over MQTT, a prediction
from the real scoring code, an order and a shipment from the real policy, a signed webhook at a
local receiver, the order completed by a technician, the asset renewed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from psycopg import Connection
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from fleet import service as fleet
from fleet.schemas import AssetCreate, Principal, SiteCreate
from fleetcare.clock import ManualClock
from fleetcare.db import connect, open_pool
from fleetcare.services import mosquitto_installed
from ingest import service as devices
from ingest.schemas import DeviceCreate, IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import ShipRequest
from maintenance.orders import service as orders
from maintenance.orders.schemas import CompleteRequest
from maintenance.policy import service as policy
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import SubscriptionCreate
from maintenance.webhooks import service as webhooks
from maintenance.webhooks.schemas import EndpointCreate
from maintenance.webhooks.worker import WebhookSender
from models.scoring import ModelCache, score_pass
from testkit import synthetic
from tests.fixtures.maintenance import plan_id, stock_depot
from tests.fixtures.wear import train_fast
from tests.fixtures.webhook_receiver import Receiver
from tests.ingest_helpers import Publisher, epoch_ms

Conn = Connection[Any]
OPERATOR = Principal(key_id=0, role="operator")
TIMEOUT = 30.0
ROWS = 30  # rows of the current life, as many as in a training life
STEP = timedelta(hours=20)  # a reading every 20 hours: 30 rows span 24 days (ingest takes 30)
LIFE_KM = 75_000.0
WORN_SHARE = 0.97  # the worn tire has done 97% of its life: its replacement is due
FRESH_SHARE = 0.2  # the fresh tire on the same site: nothing is due

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


def wait_until(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def scalar(db_url: str, query: str, *params: Any) -> Any:
    """One value from a fresh connection (sees what other threads committed)."""
    with connect(db_url) as c:
        row = c.execute(query, params).fetchone()
    return row[0] if row else None


def tire_readings(asset_ref: str, start: datetime, share: float, seed: int) -> list[dict[str, Any]]:
    """Readings of a tire over ``share`` of its life, wearing the way the training lives wear
    (tread read every 5 rows)."""
    rng = np.random.default_rng(seed)
    km = np.linspace(0.0, LIFE_KM * share, ROWS)
    wear = km / LIFE_KM
    values = {
        "odometer_km": km,
        "tread_depth_mm": 16.0 - 14.4 * wear**1.2 + rng.normal(0, 0.15, ROWS),
        "pressure_kpa": 820.0 - 60.0 * wear + rng.normal(0, 4.0, ROWS),
        "temperature_c": 45.0 + 25.0 * wear**2 + rng.normal(0, 1.5, ROWS),
        "load_kg": 3000.0 + rng.normal(0, 150.0, ROWS),
        "speed_kmh": 80.0 + rng.normal(0, 5.0, ROWS),
    }
    out = []
    for i in range(ROWS):
        metrics = {
            name: round(float(v[i]), 3)
            for name, v in values.items()
            if name != "tread_depth_mm" or i % 5 == 0
        }
        out.append({"asset": asset_ref, "ts": epoch_ms(start + i * STEP), "metrics": metrics})
    return out


def test_readings_to_renewal_through_the_real_loop(
    conn: Conn, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(now)
    tag = uuid.uuid4().hex[:6]

    # A model trained by the real training code on recorded lifetimes of another customer.
    history = fleet.ensure_customer(conn, f"history-{tag}", "History")
    synthetic.write_tire_fleet(
        conn,
        history.id,
        n_assets=10,
        lives_per_asset=2,
        rows_per_life=30,
        current_rows=20,
        start=now - timedelta(days=30),
        seed=1,
        ref_prefix="HIST",
    )
    conn.commit()
    trained = train_fast(conn, clock)
    assert trained.model is not None
    assert scalar(db_url, "SELECT count(*) FROM model_versions WHERE status = 'active'") == 1

    # The customer: a site subscribed to Proactive with a worn and a fresh tire, a gateway,
    # a stocked depot nearby, a webhook endpoint at a local receiver.
    customer = fleet.ensure_customer(conn, f"loop-{tag}", "Loop Co")
    site = fleet.create_site(
        conn,
        OPERATOR,
        SiteCreate(
            customer_id=customer.id, ref="YARD-1", name="Yard", latitude=50.0, longitude=4.0
        ),
    )
    tires = {}
    for ref in ("TRK-1-FL", "TRK-1-FR"):
        tires[ref] = fleet.create_asset(
            conn,
            OPERATOR,
            AssetCreate(
                customer_id=customer.id,
                site_id=site.id,
                kind="tire",
                ref=ref,
                installed_at=now - timedelta(days=28),
            ),
        )
    asset, fresh = tires["TRK-1-FL"], tires["TRK-1-FR"]
    device = devices.create_device(
        conn, OPERATOR, DeviceCreate(customer_id=customer.id, ref=f"gw-loop-{tag}")
    )
    subscriptions.create_subscription(
        conn,
        OPERATOR,
        SubscriptionCreate(
            customer_id=customer.id,
            plan_id=plan_id(conn, "proactive"),
            scope="site",
            site_id=site.id,
            starts_at=now - timedelta(days=1),
        ),
        clock,
    )
    conn.commit()
    stock_depot(conn, f"DEP-{tag}", on_hand=2, shipping_days=2, latitude=50.1, longitude=4.1)
    receiver = Receiver().start()
    endpoint = webhooks.create_endpoint(
        conn,
        OPERATOR,
        EndpointCreate(customer_id=customer.id, url=receiver.url),
        allow_private=True,
    )
    conn.commit()
    renewed_before = scalar(db_url, "SELECT renewed_at FROM assets WHERE id = %s", asset.id)

    worker = IngestWorker(
        IngestConfig(
            mqtt_url=mqtt_url,
            database_url=db_url,
            client_id=f"ingest-{tag}",
            limits=IngestLimits(topic_root=topic_root),
            batch_max_wait_s=0.05,
        )
    )
    publisher: Publisher | None = None
    pool = open_pool(db_url, name="e2e-webhooks")
    try:
        # 1. Readings in: the gateway publishes over MQTT, the real ingestor stores them.
        worker.start()
        assert worker.subscribed.wait(TIMEOUT), "ingestor did not subscribe"
        publisher = Publisher(mqtt_url)
        start = now - ROWS * STEP
        readings = tire_readings(asset.ref, start, WORN_SHARE, seed=3)
        fresh_readings = tire_readings(fresh.ref, start, FRESH_SHARE, seed=4)
        topic = f"{topic_root}/{device.ref}/telemetry"
        for chunk in range(0, ROWS, 10):
            batch = readings[chunk : chunk + 10] + fresh_readings[chunk : chunk + 10]
            publisher.publish(topic, json.dumps({"readings": batch}).encode())
        publisher.wait_all_acked(TIMEOUT)
        expected = sum(len(r["metrics"]) for r in readings)

        def stored_rows() -> dict[int, int]:
            with connect(db_url) as c:
                rows = c.execute(
                    "SELECT asset_id, count(*) FROM telemetry WHERE asset_id = ANY(%s)"
                    " GROUP BY asset_id",
                    ([asset.id, fresh.id],),
                ).fetchall()
            return {int(a): int(n) for a, n in rows}

        wait_until(
            "telemetry stored",
            lambda: stored_rows() == {asset.id: expected, fresh.id: expected},
        )
        last_seen = scalar(
            db_url, "SELECT last_seen_at FROM asset_seen WHERE asset_id = %s", asset.id
        )
        assert last_seen is not None
        assert scalar(db_url, "SELECT count(*) FROM quarantine") == 0

        # 2. A prediction from the real scoring pass, due soon.
        with conn.transaction():
            scored = score_pass(conn, clock, models=ModelCache(), cache=None)
        assert scored.predictions >= 1
        predicted = {
            int(a): (rul, rul_low, due)
            for a, rul, rul_low, due in conn.execute(
                "SELECT asset_id, rul, rul_low, due_at_conservative FROM predictions"
                " WHERE asset_id = ANY(%s)",
                ([asset.id, fresh.id],),
            ).fetchall()
        }
        conn.commit()
        assert set(predicted) == {asset.id, fresh.id}
        rul, rul_low, due_soon = predicted[asset.id]
        fresh_rul, _, due_later = predicted[fresh.id]
        assert 0 <= rul_low <= rul < fresh_rul
        # lead time (14 days) + shipping (2 days): the worn tire is inside, the fresh one not
        assert due_soon is not None and due_soon < now + timedelta(days=16)
        assert due_later is not None and due_later > now + timedelta(days=16)

        # 3. The policy raises one order and ships the part from the depot.
        policy.process_queue(conn, clock)
        conn.commit()
        open_orders = conn.execute(
            "SELECT id, status, reason FROM maintenance_orders WHERE asset_id = %s",
            (asset.id,),
        ).fetchall()
        assert len(open_orders) == 1
        order_id, status, reason = open_orders[0]
        assert (status, reason) == ("raised", "predicted")
        fresh_orders = scalar(
            db_url, "SELECT count(*) FROM maintenance_orders WHERE asset_id = %s", fresh.id
        )
        assert fresh_orders == 0
        [shipment] = logistics.shipments_of_order(conn, order_id)
        assert shipment.status == "pending"
        conn.commit()

        # 4. The part travels: shipped by the depot, delivered at the site.
        clock.advance(3600)
        logistics.ship(conn, OPERATOR, shipment.id, ShipRequest(carrier="e2e"), clock)
        conn.commit()
        clock.advance(86_400)
        technician = Principal(key_id=0, role="technician", customer_id=customer.id)
        delivered = logistics.deliver(conn, technician, shipment.id, clock)
        conn.commit()
        assert delivered.status == "delivered"

        # 5. The technician completes the order: the life is recorded, the asset renewed.
        clock.advance(3600)
        detail = orders.complete_order(conn, technician, order_id, CompleteRequest(), clock)
        conn.commit()
        assert detail.status == "completed" and detail.completed_at == clock.now()
        assert [s.status for s in detail.shipments] == ["delivered"]
        renewed_after = scalar(db_url, "SELECT renewed_at FROM assets WHERE id = %s", asset.id)
        assert renewed_after == clock.now() and renewed_after != renewed_before
        lives = conn.execute(
            "SELECT end_reason, usage_at_end FROM asset_lives"
            " WHERE asset_id = %s AND order_id = %s",
            (asset.id, order_id),
        ).fetchall()
        conn.commit()
        assert len(lives) == 1 and lives[0][0] == "replacement"
        assert lives[0][1] == pytest.approx(LIFE_KM * WORN_SHARE, rel=1e-3)

        # 6. The webhook sender delivers the customer's events, signed.
        sender = WebhookSender(
            pool, allow_private=True, clock=ManualClock(datetime.now(UTC)), timeout_s=2.0
        )
        try:
            assert sender.drain() >= 1
        finally:
            sender.close()
        statuses = [
            r[0]
            for r in conn.execute(
                "SELECT status FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint.id,)
            ).fetchall()
        ]
        conn.commit()
        assert statuses and set(statuses) == {"delivered"}
        got = receiver.wait_for(len(statuses), timeout=TIMEOUT)
        assert len(got) == len(statuses)
        assert all(r.path == "/hooks/fleetcare?src=test" for r in got)
        verified = [Webhook(endpoint.secret).verify(r.body, r.headers) for r in got]
        by_type = {p["type"]: p for p in verified}
        assert [p["type"] for p in verified].count("order.created") == 1
        for expected_type in (
            "order.created",
            "shipment.shipped",
            "shipment.delivered",
            "order.completed",
            "asset.renewed",
        ):
            assert expected_type in by_type, (expected_type, sorted(by_type))
        created = by_type["order.created"]["data"]["order"]
        assert (created["id"], created["asset_id"]) == (order_id, asset.id)
        assert by_type["order.completed"]["data"]["order"]["status"] == "completed"
        # a wrong secret does not verify
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").verify(
                got[0].body, got[0].headers
            )
    finally:
        if publisher is not None:
            publisher.close()
        worker.stop()
        pool.close()
        receiver.stop()
