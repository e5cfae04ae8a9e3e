"""paho-mqtt 2 pieces of the consumer: the broker URL, an MQTT 5 probe, and a client that
reads through a buffer (paho's per-packet system calls dominated single-reading messages)."""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

_PUBACK_HEAD = 0x4002 << 16  # PUBACK, remaining length 2, then the packet id
# What one read of the socket may take. Each read needs the GIL, which a writer running Python
# holds for up to the switch interval: the more a read takes, the fewer such waits per message.
READ_BYTES = 1 << 20


def mqtt_endpoint(url: str) -> tuple[str, int, str | None, str | None, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {parts.scheme!r}")
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), user, password, tls


def probe_mqtt5(url: str, timeout: float = 5.0) -> bool:
    """True when the broker accepts an MQTT 5 connection (amqtt speaks only 3.1.1)."""
    host, port, user, password, tls = mqtt_endpoint(url)
    answered = threading.Event()
    accepted: list[bool] = []
    probe = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"fleetcare-probe-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    if user:
        probe.username_pw_set(user, password)
    if tls:
        probe.tls_set()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        accepted.append(not rc.is_failure or rc.getName() != "Unsupported protocol version")
        answered.set()

    def on_disconnect(*_args: Any) -> None:
        answered.set()

    probe.on_connect = on_connect
    probe.on_disconnect = on_disconnect
    try:
        probe.connect(host, port, keepalive=10)
    except OSError:
        raise
    probe.loop_start()
    try:
        answered.wait(timeout)
    finally:
        probe.disconnect()
        probe.loop_stop()
    return bool(accepted and accepted[0])


class Publish(NamedTuple):
    """A QoS 1 PUBLISH as read from the buffer: topic (bytes), packet id, payload, first
    byte (its dup and retain flags)."""

    topic: bytes
    mid: int
    payload: bytes
    flags: int


class BufferedSocket:
    """Reads the broker's socket up to 1 MiB at a time and serves paho's small reads from memory.

    paho reads each packet with several ``recv`` calls (type byte, length bytes, body) after
    a ``select``; with many small messages those system calls dominated the network thread
    (profiled). paho skips waiting in ``select`` while ``pending()`` reports buffered bytes,
    as it does for TLS sockets.
    """

    __slots__ = ("_data", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._data):
            self._data = self._sock.recv(max(bufsize, READ_BYTES))  # BlockingIOError passes up
            self._pos = 0
            if not self._data:
                return b""
        end = self._pos + bufsize
        chunk = self._data[self._pos : end]
        self._pos = min(end, len(self._data))
        return chunk

    def pending(self) -> int:
        return len(self._data) - self._pos

    def take_publishes(self) -> list[Publish]:
        """The complete QoS 1 PUBLISH packets without properties at the head of the buffer,
        consumed; stops at anything else (another packet type, properties, a packet not yet
        whole, a malformed length), which is left for paho to read."""
        data, pos, end = self._data, self._pos, len(self._data)
        out: list[Publish] = []
        while pos < end:
            first = data[pos]
            if first & 0xF6 != 0x32:  # PUBLISH (dup and retain flags free) at QoS 1
                break
            i, length, shift = pos + 1, 0, 0
            while i < end and shift <= 21:  # the remaining length: at most 4 bytes
                byte = data[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break
            body_end = i + length
            topic_end = i + 2 + int.from_bytes(data[i : i + 2], "big")
            if body_end > end or topic_end + 3 > body_end or data[topic_end + 2] != 0:
                break
            mid = int.from_bytes(data[topic_end : topic_end + 2], "big")
            out.append(Publish(data[i + 2 : topic_end], mid, data[topic_end + 3 : body_end], first))
            pos = body_end
        self._pos = pos
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading through ``BufferedSocket`` (plain TCP only; TLS has its own).

    ``on_publishes``, when set (MQTT 5, manual acknowledgement), is handed the QoS 1 PUBLISH
    packets without properties that arrived together, as ``Publish`` tuples, in order, instead
    of one ``on_message`` call with paho's ``MQTTMessage`` each: paho's packet reader and
    message objects were ~20% of the ingestor's CPU per single-reading message (py-spy).
    Anything else still goes through paho and ``on_message``.
    """

    on_publishes: Callable[[list[Publish]], None] | None = None

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if self._ssl or self._transport != "tcp":
            return sock
        return BufferedSocket(sock)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """PUBLISH at QoS 1 under MQTT 5 with no properties (what devices send) without paho's
        ``Properties`` object: building and clearing it was ~40% of the network thread per
        single-reading message (py-spy). Anything else goes through paho unchanged."""
        command: int = self._in_packet["command"]
        packet: bytes = self._in_packet["packet"]
        if self._protocol != mqtt.MQTTv5 or (command & 0x06) != 0x02 or not self._manual_ack:
            return super()._handle_publish()
        length = len(packet)
        topic_end = 2 + (int.from_bytes(packet[:2], "big") if length >= 2 else length)
        if length < topic_end + 3 or packet[topic_end + 2] != 0:  # properties present
            return super()._handle_publish()
        message = mqtt.MQTTMessage(
            mid=int.from_bytes(packet[topic_end : topic_end + 2], "big"),
            topic=packet[2:topic_end],
        )
        message.dup = bool(command & 0x08)
        message.qos = 1
        message.retain = bool(command & 0x01)
        message.payload = packet[topic_end + 3 :]
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (manual ack) with their PUBACKs in one write.

        paho's ``ack`` queues one packet per message, each waking the network thread (a byte
        on its socket pair) and written with its own ``send``: ~15% of the ingestor's CPU per
        single-reading message (py-spy). These are the same 4-byte PUBACKs (reason 0, no
        properties), queued as one packet; paho drops unsent packets on reconnect, so they
        never reach a later connection.
        """
        if not mids:
            return
        packet = struct.pack(f"!{len(mids)}I", *[_PUBACK_HEAD | mid for mid in mids])
        self._packet_queue(mqtt.PUBACK, packet, 0, 0)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # No per-topic callbacks here: skip paho's topic matcher and call on_message directly.
        on_message = self.on_message
        if on_message is None:
            return
        try:
            on_message(self, self._userdata, message)
        except Exception:
            log.exception("error in on_message; message left unacknowledged")

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read every complete packet already buffered, not one per ``select``."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        for _ in range(1000):
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is not sock:
                break
            if not isinstance(sock, BufferedSocket) or not sock.pending():
                break
            if self._take_publishes(sock):
                continue
            rc = super().loop_read(max_packets)
        return rc

    def _take_publishes(self, sock: BufferedSocket) -> bool:
        """Hand the buffered QoS 1 PUBLISH packets to ``on_publishes``; False when there were
        none to take here (paho reads the next packet)."""
        on_publishes = self.on_publishes
        if (
            on_publishes is None
            or self._protocol != mqtt.MQTTv5
            or not self._manual_ack
            or self._in_packet["command"]  # paho is inside a packet
        ):
            return False
        found = sock.take_publishes()
        if not found:
            return False
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()  # paho's clock for keepalive
        try:
            on_publishes(found)
        except Exception:
            log.exception("error in on_publishes; messages left unacknowledged")
        return True
