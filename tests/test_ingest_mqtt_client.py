"""The consumer's PUBLISH fast path decodes exactly what paho decodes."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_client import BufferedClient, BufferedSocket


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


def _queued(client: mqtt.Client) -> bytes:
    return b"".join(bytes(p["packet"]) for p in client._out_packet)


@pytest.mark.parametrize("mids", [[1], [1, 2, 65535, 300], list(range(1, 2001))])
def test_acks_in_one_write_are_the_pubacks_paho_sends(mids: list[int]) -> None:
    """``ack_many`` queues the very bytes of paho's per-message ``ack``, as one packet."""
    ours = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    paho._thread = ours._thread = object()  # type: ignore[assignment]  # queue, do not write
    ours.ack_many(mids)
    for mid in mids:
        paho.ack(mid, 1)
    assert len(ours._out_packet) == 1
    assert _queued(ours) == _queued(paho)
    assert len(_queued(ours)) == 4 * len(mids)


def test_no_acks_queue_nothing() -> None:
    ours = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    ours.ack_many([])
    assert not ours._out_packet


class _FakeSocket:
    """Serves ``chunks`` to ``recv`` one at a time, then would block."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, _size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def close(self) -> None:
        self.chunks = []


def _wire(command: int, body: bytes) -> bytes:
    length, out = len(body), bytearray([command])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out + body)


def test_publishes_read_together_are_the_messages_paho_reads() -> None:
    """Every packet of a stream reaches the consumer once, in order, with paho's topic, packet
    id, payload and QoS, whether read in bulk (``on_publishes``) or by paho (``on_message``),
    the stream cut anywhere."""
    sent: list[tuple[bytes, int, bytes, int]] = []
    stream = b""
    for i in range(40):
        qos = 0 if i % 13 == 5 else 1
        props = b"\x09\x26\x00\x01k\x00\x01v\x01\x01" if i % 11 == 7 else b"\x00"
        topic, payload = f"fleetcare/v1/gw-{i}/telemetry".encode(), b"x" * (i * 9)
        mid = b"" if qos == 0 else (1000 + i).to_bytes(2, "big")
        body = len(topic).to_bytes(2, "big") + topic + mid + props + payload
        stream += _wire(0x30 | qos << 1 | (i % 2), body)
        sent.append((topic, 1000 + i if qos else 0, payload, qos))
    for cut in (7, 64, 300, len(stream)):
        client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
        got: list[tuple[bytes, int, bytes, int]] = []
        bulk: list[int] = []

        def one(_c: Any, _u: Any, m: mqtt.MQTTMessage, got: list[Any] = got) -> None:
            got.append((m._topic, m.mid if m.qos else 0, bytes(m.payload), m.qos))

        def many(packets: list[Any], got: list[Any] = got, bulk: list[int] = bulk) -> None:
            bulk.append(len(packets))
            got.extend((p.topic, p.mid, p.payload, (p.flags >> 1) & 3) for p in packets)

        client.on_message = one
        client.on_publishes = many
        chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
        client._sock = BufferedSocket(_FakeSocket(chunks))
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
        for _ in range(len(stream)):
            if len(got) == len(sent):
                break
            client.loop_read()
        assert got == sent
        if cut == len(stream):
            assert sum(bulk) > 20  # most went in bulk


def test_take_publishes_stops_at_what_paho_must_read() -> None:
    topic = b"a/b"
    q1 = _wire(0x32, len(topic).to_bytes(2, "big") + topic + b"\x00\x07\x00" + b"{}")
    q0 = _wire(0x30, len(topic).to_bytes(2, "big") + topic + b"{}")
    sock = BufferedSocket(_FakeSocket([q1 + q1 + q0 + q1]))
    assert sock.recv(1) == q1[:1]
    sock._pos = 0  # the whole chunk is buffered; read it from the start
    assert [p.mid for p in sock.take_publishes()] == [7, 7]
    assert sock.pending() == len(q0) + len(q1)
    assert sock.take_publishes() == []  # a QoS 0 packet is next: left to paho
    sock._pos += len(q0)
    assert [(p.topic, p.payload) for p in sock.take_publishes()] == [(topic, b"{}")]
    partial = BufferedSocket(_FakeSocket([q1[:-1]]))
    partial.recv(1)
    partial._pos = 0
    assert partial.take_publishes() == [] and partial.pending() == len(q1) - 1
