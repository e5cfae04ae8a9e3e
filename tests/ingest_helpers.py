"""Helpers for ingest tests: a small fleet (customers, assets, devices) and a publisher."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import AssetCreate, Principal
from ingest import service as devices
from ingest.schemas import DeviceCreate, IngestLimits, RawMessage
from ingest.worker import IngestConfig, IngestWorker

OPERATOR = Principal(key_id=0, role="operator")


@dataclass
class SmallFleet:
    """Customer A with tires and a device, customer B with an elevator and a device."""

    customer_a: int
    customer_b: int
    device_a: str
    device_b: str
    secret_a: str
    secret_b: str
    tires: list[str]
    tire_ids: dict[str, int]
    elevator: str
    elevator_id: int
    device_ids: dict[str, int] = field(default_factory=dict)


def make_fleet(conn: Connection[Any], tires: int = 3) -> SmallFleet:
    """Create (and commit) two customers, their assets and one device each."""
    tag = uuid.uuid4().hex[:6]
    a = fleet.ensure_customer(conn, f"a-{tag}", "Alpha")
    b = fleet.ensure_customer(conn, f"b-{tag}", "Beta")
    tire_ids: dict[str, int] = {}
    for i in range(tires):
        ref = f"TRK-{i}-FL"
        asset = fleet.create_asset(
            conn, OPERATOR, AssetCreate(customer_id=a.id, kind="tire", ref=ref)
        )
        tire_ids[ref] = asset.id
    elevator = fleet.create_asset(
        conn, OPERATOR, AssetCreate(customer_id=b.id, kind="elevator", ref="ELV-1")
    )
    dev_a = devices.create_device(conn, OPERATOR, DeviceCreate(customer_id=a.id, ref=f"gw-a-{tag}"))
    dev_b = devices.create_device(conn, OPERATOR, DeviceCreate(customer_id=b.id, ref=f"gw-b-{tag}"))
    conn.commit()
    return SmallFleet(
        customer_a=a.id,
        customer_b=b.id,
        device_a=dev_a.ref,
        device_b=dev_b.ref,
        secret_a=dev_a.secret,
        secret_b=dev_b.secret,
        tires=list(tire_ids),
        tire_ids=tire_ids,
        elevator="ELV-1",
        elevator_id=elevator.id,
        device_ids={dev_a.ref: dev_a.id, dev_b.ref: dev_b.id},
    )


def reading(asset: str, ts: Any, **metrics: Any) -> dict[str, Any]:
    return {"asset": asset, "ts": ts, "metrics": metrics}


def raw(topic: str, payload: Any, received_at: datetime | None = None) -> RawMessage:
    """A RawMessage from a JSON-able payload (or bytes as they are)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, received_at or datetime.now(UTC))


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def mqtt_address(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


class Publisher:
    """A QoS 1 publisher with a persistent session that can wait for all its PUBACKs."""

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    ) -> None:
        host, port, user, pw = mqtt_address(url)
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=None if v5 else False,
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        if username or user:
            self.client.username_pw_set(username or user, password or pw)
        self.connected = threading.Event()
        self.acked = threading.Condition()
        self.acked_count = 0
        self.published_count = 0
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        if v5:
            props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("publisher did not connect")

    def _on_connect(self, *args: Any) -> None:
        self.connected.set()

    def _on_publish(self, *args: Any) -> None:
        with self.acked:
            self.acked_count += 1
            self.acked.notify_all()

    def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Publish at QoS 1; while disconnected paho keeps the message and sends it later."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1)
        self.published_count += 1

    def publish_many(self, topic: str, payloads: Sequence[bytes | dict[str, Any]]) -> None:
        for p in payloads:
            self.publish(topic, p)

    def wait_all_acked(self, timeout: float = 30) -> None:
        """Wait until the broker acknowledged every message published so far."""
        with self.acked:
            if not self.acked.wait_for(lambda: self.acked_count >= self.published_count, timeout):
                raise TimeoutError(f"{self.acked_count} of {self.published_count} acknowledged")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def started_ingestor(
    mqtt_url: str, db_url: str, topic_root: str, timeout: float = 30, **overrides: Any
) -> IngestWorker:
    """An in-process ingestor under a fresh client id, started and subscribed (the caller
    stops it)."""
    options: dict[str, Any] = {
        "mqtt_url": mqtt_url,
        "database_url": db_url,
        "client_id": f"ingest-{uuid.uuid4().hex[:8]}",
        "limits": IngestLimits(topic_root=topic_root),
        "batch_max_wait_s": 0.05,
    } | overrides
    worker = IngestWorker(IngestConfig(**options))
    worker.start()
    if not worker.subscribed.wait(timeout):
        worker.stop()
        raise TimeoutError("ingestor did not subscribe")
    return worker
