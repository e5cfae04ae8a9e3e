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
from ingest import profile_service, service
from tests.ingest_helpers import OPERATOR, make_fleet, mqtt_address

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


def broker_with_generated_auth(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> tuple[Any, str, str]:
    """A Mosquitto with the password and ACL files generated from the registry: (broker,
    its URL, the ingestor's secret)."""
    passwd, acl, secret = service.write_broker_config(
        conn, tmp_path / "auth", topic_root=topic_root
    )
    auth = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    broker, url = start_mosquitto(tmp_path / "broker", auth=auth)
    return broker, url, secret


def test_generated_password_and_acl_files_confine_devices(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> None:
    small = make_fleet(conn, tires=1)
    broker, url, secret = broker_with_generated_auth(conn, topic_root, tmp_path)
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


def test_acl_grants_profile_topics_and_sparkplug_nodes(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> None:
    """A device whose profile has a topic of its own may publish there (with its own ref
    only); a device mapped as a Sparkplug edge node may publish its node's topics and read
    its commands and the ingestors' primary host STATE; the ingestor reads both, may ask for a
    rebirth and announces its STATE."""
    small = make_fleet(conn, tires=1)
    tag = uuid.uuid4().hex[:6]
    own_topic = f"acme-{tag}/{{device}}/up"
    profile_service.apply_profile(
        conn,
        OPERATOR,
        {
            "name": f"json-{tag}",
            "format": "json",
            "topic": own_topic,
            "asset": "a",
            "time": {"field": "t"},
            "metrics": {"pressure_kpa": {"field": "p"}},
        },
        source="t",
    )
    group = f"g{tag}"
    profile_service.apply_profile(
        conn,
        OPERATOR,
        {
            "name": f"spb-{tag}",
            "format": "sparkplug_b",
            "sparkplug": [
                {
                    "group": group,
                    "edge_node": "edge-1",
                    "device": "tpms",
                    "fleetcare_device": small.device_b,
                    "metrics": {"P": {"asset": "T", "metric": "pressure_kpa"}},
                }
            ],
        },
        source="t",
    )
    conn.execute("UPDATE devices SET profile = %s WHERE ref = %s", (f"json-{tag}", small.device_a))
    conn.commit()
    broker, url, secret = broker_with_generated_auth(conn, topic_root, tmp_path)
    clients: list[Client] = []
    try:
        ingestor = Client(url, service.INGESTOR_USER, secret)
        device_a = Client(url, small.device_a, small.secret_a)
        node_b = Client(url, small.device_b, small.secret_b)
        clients += [ingestor, device_a, node_b]
        for c in clients:
            assert not c.connected().is_failure
        for pattern in (own_topic.replace("{device}", "+"), f"spBv1.0/{group}/DDATA/+/+"):
            assert not ingestor.subscribe(pattern).is_failure
        mine = own_topic.replace("{device}", small.device_a)
        assert device_a.publish(mine, b"a").value == 0
        got = ingestor.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (mine, b"a")
        forged = own_topic.replace("{device}", small.device_b)
        assert device_a.publish(forged, b"x").getName() == "Not authorized"
        ddata = f"spBv1.0/{group}/DDATA/edge-1/tpms"
        assert device_a.publish(ddata, b"x").getName() == "Not authorized"
        assert node_b.publish(ddata, b"b").value == 0
        got = ingestor.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (ddata, b"b")
        assert ingestor.messages.empty()
        # the node reads its commands; the ingestor may send them
        ncmd = f"spBv1.0/{group}/NCMD/edge-1"
        node_b.subscribe(ncmd)
        assert ingestor.publish(ncmd, b"rebirth").value == 0
        got = node_b.messages.get(timeout=TIMEOUT)
        assert (got.topic, got.payload) == (ncmd, b"rebirth")
        assert device_a.publish(ncmd, b"forged").getName() == "Not authorized"
        # the ingestor announces its primary host STATE (and reads it back); the edge node
        # reads it; a device that is no edge node reads none; no device may forge it (last:
        # Mosquitto drops a client's connection after a refused publish, paho reconnects)
        state = "spBv1.0/STATE/fleetcare-ingest-1"
        plain = Client(url, small.device_a, small.secret_a)
        clients.append(plain)
        assert not plain.connected().is_failure
        for reader in (node_b, plain):
            reader.subscribe("spBv1.0/STATE/+")
        assert not ingestor.subscribe(state).is_failure
        assert ingestor.publish(state, b'{"online":true,"timestamp":1}').value == 0
        for reader in (node_b, ingestor):
            got = reader.messages.get(timeout=TIMEOUT)
            assert (got.topic, got.payload) == (state, b'{"online":true,"timestamp":1}')
        with pytest.raises(queue.Empty):
            plain.messages.get(timeout=1.0)
        for forger in (node_b, plain):
            assert forger.publish(state, b'{"online":false,"timestamp":2}').getName() == (
                "Not authorized"
            )
    finally:
        for c in clients:
            c.close()
        broker.stop()
