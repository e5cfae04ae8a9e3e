"""paho-mqtt 2 pieces of the consumer: the broker URL, an MQTT 5 probe, and a client that
reads through a buffer (paho's per-packet system calls dominated single-reading messages)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


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


class BufferedSocket:
    """Reads the broker's socket 64 KiB at a time and serves paho's small reads from memory.

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
            self._data = self._sock.recv(max(bufsize, 1 << 16))  # BlockingIOError passes up
            self._pos = 0
            if not self._data:
                return b""
        end = self._pos + bufsize
        chunk = self._data[self._pos : end]
        self._pos = min(end, len(self._data))
        return chunk

    def pending(self) -> int:
        return len(self._data) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading through ``BufferedSocket`` (plain TCP only; TLS has its own)."""

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
            rc = super().loop_read(max_packets)
        return rc
