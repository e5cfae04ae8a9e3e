"""The consumer's PUBLISH fast path decodes exactly what paho decodes."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_client import BufferedClient


def _publish_packet(
    topic: bytes, mid: int, payload: bytes, properties: bytes, flags: int
) -> tuple[int, bytearray]:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + properties + payload
    return 0x30 | flags, bytearray(body)


def _decode(client_cls: type[mqtt.Client], command: int, packet: bytearray) -> dict[str, Any]:
    client = client_cls(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, m: got.append(m)
    client._in_packet["command"] = command
    client._in_packet["packet"] = bytearray(packet)
    assert client._handle_publish() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    [m] = got
    return {
        "topic": m.topic,
        "mid": m.mid,
        "qos": m.qos,
        "dup": m.dup,
        "retain": m.retain,
        "payload": bytes(m.payload),
        "user_properties": getattr(m.properties, "UserProperty", None),
    }


@pytest.mark.parametrize(
    ("properties", "flags", "payload"),
    [
        (b"\x00", 0x02, b'{"asset":"A","ts":1,"metrics":{"x":1}}'),  # QoS 1, no properties
        (b"\x00", 0x02 | 0x08 | 0x01, b""),  # dup and retain, empty payload
        (b"\x09\x26\x00\x01k\x00\x01v\x01\x01", 0x02, b"{}"),  # user property: paho's path
    ],
)
def test_the_publish_fast_path_matches_paho(properties: bytes, flags: int, payload: bytes) -> None:
    command, packet = _publish_packet(
        b"fleetcare/v1/gw-1/telemetry", 4242, payload, properties, flags
    )
    assert _decode(BufferedClient, command, packet) == _decode(mqtt.Client, command, packet)
