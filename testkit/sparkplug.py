"""A Sparkplug B edge node for tests and benches: a real MQTT client (paho-mqtt 2) that
publishes protobuf payloads of the official schema — NBIRTH with bdSeq and the rebirth
control, DBIRTH declaring aliases, DDATA by alias only, NDEATH as its will — and answers a
host's NCMD ``Node Control/Rebirth`` by being born again. Never imported by the product."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from esio_spb_builder.core import sparkplug_b_pb2 as spb
from paho.mqtt.enums import CallbackAPIVersion

BOOLEAN, INT64, DOUBLE = 11, 4, 10


def _metric(payload: Any, name: str | None, alias: int | None, datatype: int, value: Any) -> None:
    m = payload.metrics.add()
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    m.datatype = datatype
    if datatype == BOOLEAN:
        m.boolean_value = bool(value)
    elif datatype == INT64:
        m.long_value = int(value) & ((1 << 64) - 1)
    else:
        m.double_value = float(value)


class EdgeNode:
    """One edge node with one device; ``metrics`` are the device's metric names, each given
    alias 100, 101, ... in DBIRTH. ``seq`` counts every message of the session but NDEATH."""

    def __init__(
        self, url: str, group: str, node: str, device: str, metrics: list[str], *, bd_seq: int = 0
    ) -> None:
        parts = urlsplit(url)
        self.group, self.node, self.device = group, node, device
        self.metrics = list(metrics)
        self.aliases = {name: 100 + i for i, name in enumerate(self.metrics)}
        self.bd_seq = bd_seq
        self.seq = 0
        self.rebirths = 0
        self.rebirth_asked = threading.Event()
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"spb-{node}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
        )
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.will_set(self.topic("NDEATH"), self._death_payload(), qos=1)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"spBv1.0/{group}/NCMD/{node}", qos=0)
        if not self.subscribed.wait(10):
            raise TimeoutError("edge node did not subscribe to its NCMD topic")

    def topic(self, kind: str) -> str:
        base = f"spBv1.0/{self.group}/{kind}/{self.node}"
        return f"{base}/{self.device}" if kind.startswith("D") else base

    def _death_payload(self) -> bytes:
        p = spb.Payload(timestamp=int(time.time() * 1000))
        _metric(p, "bdSeq", None, INT64, self.bd_seq)
        return p.SerializeToString()

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    def _publish(self, kind: str, payload: Any) -> None:
        info = self.client.publish(self.topic(kind), payload.SerializeToString(), qos=1)
        info.wait_for_publish(10)

    def birth(self, values: dict[str, float], ts_ms: int) -> None:
        """NBIRTH (seq 0, bdSeq, the rebirth control) then DBIRTH (names, aliases, values)."""
        with self.lock:
            self.seq = 0
            nb = spb.Payload(timestamp=ts_ms, seq=self._next_seq())
            _metric(nb, "bdSeq", None, INT64, self.bd_seq)
            _metric(nb, "Node Control/Rebirth", None, BOOLEAN, False)
            self._publish("NBIRTH", nb)
            db = spb.Payload(timestamp=ts_ms, seq=self._next_seq())
            for name in self.metrics:
                _metric(db, name, self.aliases[name], DOUBLE, values[name])
            self._publish("DBIRTH", db)

    def data(self, values: dict[str, float], ts_ms: int, *, skip_seq: int = 0) -> None:
        """DDATA by alias only; ``skip_seq`` leaves a gap in the sequence first."""
        with self.lock:
            self.seq = (self.seq + skip_seq) % 256
            p = spb.Payload(timestamp=ts_ms, seq=self._next_seq())
            for name, value in values.items():
                _metric(p, None, self.aliases[name], DOUBLE, value)
            self._publish("DDATA", p)

    def device_death(self, ts_ms: int) -> None:
        with self.lock:
            self._publish("DDEATH", spb.Payload(timestamp=ts_ms, seq=self._next_seq()))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = spb.Payload.FromString(msg.payload)
        if any(m.name == "Node Control/Rebirth" and m.boolean_value for m in payload.metrics):
            self.rebirths += 1
            self.rebirth_asked.set()

    def close(self, *, clean: bool = True) -> None:
        """Disconnect; ``clean=False`` drops the socket so the broker publishes the will."""
        if clean:
            self.client.disconnect()
        else:
            sock = self.client.socket()
            if sock is not None:
                sock.close()
        self.client.loop_stop()
