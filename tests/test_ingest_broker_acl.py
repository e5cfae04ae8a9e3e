"""A Mosquitto started with the generated password and ACL files enforces the device contract."""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import Connection

from fleetcare.services import mosquitto_installed, start_mosquitto
from ingest import service
from tests.ingest_helpers import make_fleet, mqtt_address

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")

TIMEOUT = 10


class Client:
    """A v5 client that records PUBACK and SUBACK reason codes and received messages."""

    def __init__(self, url: str, user: str, password: str) -> None:
        host, port, _, _ = mqtt_address(url)
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.c.username_pw_set(user, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.changed = threading.Condition()
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = lambda _c, _u, m: self.messages.put(m)
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self.changed:
            self.pubacks[mid] = rc
            self.changed.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self.changed:
            self.subacks[mid] = rcs
            self.changed.notify_all()

    def connected(self) -> ReasonCode:
        return self.connack.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        mid = self.c.publish(topic, payload, qos=1).mid
        with self.changed:
            assert self.changed.wait_for(lambda: mid in self.pubacks, TIMEOUT)
            return self.pubacks[mid]

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.c.subscribe(topic, qos=1)
        assert mid is not None
        with self.changed:
            assert self.changed.wait_for(lambda: mid in self.subacks, TIMEOUT)
            return self.subacks[mid][0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_generated_password_and_acl_files_confine_devices(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> None:
    small = make_fleet(conn, tires=1)
    passwd, acl, secret = service.write_broker_config(
        conn, tmp_path / "auth", topic_root=topic_root
    )
    auth = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    broker, url = start_mosquitto(tmp_path / "broker", auth=auth)
    clients: list[Client] = []
    try:
        ingestor = Client(url, service.INGESTOR_USER, secret)
        clients.append(ingestor)
        assert not ingestor.connected().is_failure
        assert ingestor.subscribe(f"$share/ingest/{topic_root}/+/telemetry").value == 1

        device = Client(url, small.device_a, small.secret_a)
        clients.append(device)
        assert not device.connected().is_failure  # the stored $7$ hash is accepted
        own, other = f"{topic_root}/{small.device_a}/telemetry", f"{topic_root}/{small.device_b}"
        assert device.publish(f"{other}/telemetry", b"forged").getName() == "Not authorized"
        assert not device.publish(f"{topic_root}/{small.device_a}/status", b"online").is_failure
        assert device.publish(own, b"mine").value == 0
        # the forged message never reached the ingestor; the own one did
        got = ingestor.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (own, b"mine")
        assert ingestor.messages.empty()
        # a device reads nothing. Mosquitto 2.0 grants the SUBACK but checks "read" on every
        # delivery: device b's telemetry reaches the ingestor, never device a.
        for pattern in (f"{topic_root}/+/telemetry", f"{topic_root}/#", "#"):
            device.subscribe(pattern)
        other_device = Client(url, small.device_b, small.secret_b)
        clients.append(other_device)
        assert not other_device.connected().is_failure
        assert other_device.publish(f"{other}/telemetry", b"theirs").value == 0
        got = ingestor.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (f"{other}/telemetry", b"theirs")
        # deliveries of one publish go out together: a forbidden one would be here by now
        with pytest.raises(queue.Empty):
            device.messages.get(timeout=1.0)
        # acknowledgements: the ingestor writes them, each device reads only its own and
        # cannot forge one
        mine, theirs = f"{topic_root}/{small.device_a}/ack", f"{other}/ack"
        assert not ingestor.publish(theirs, b'{"seq":1}').is_failure
        assert ingestor.publish(mine, b'{"seq":2}').value == 0
        got = device.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (mine, b'{"seq":2}')
        # (its overlapping subscriptions may each deliver its own; never device b's)
        more = []
        with contextlib.suppress(queue.Empty):
            while True:
                more.append(device.messages.get(timeout=1.0).topic)
        assert set(more) <= {mine}
        assert device.publish(mine, b'{"seq":9}').getName() == "Not authorized"

        intruder = Client(url, small.device_b, "wrong-secret")
        clients.append(intruder)
        assert intruder.connected().is_failure
    finally:
        for c in clients:
            c.close()
        broker.stop()
