"""Sparkplug B 3.0: the ingestor as a primary host application, announcing its ``STATE``.

A primary host publishes ``spBv1.0/STATE/<host id>`` retained at QoS 1: ``{"online": true,
"timestamp": T}`` once connected and subscribed, where T (epoch ms) is also the timestamp of
the MQTT will it registered in that CONNECT, ``{"online": false, "timestamp": T}``; so the
broker announces its death when the connection drops (``kill -9``, a lost network), and a
clean stop publishes ``{"online": false, ...}`` itself before disconnecting (a DISCONNECT
discards the will). An edge node configured with this host id as its primary host waits for
``online: true`` before its NBIRTH and, on an ``online: false`` at least as new as the last
``online: true`` it saw, ends its session and holds its data until the host is back
(docs/telemetry.md, "Primary host STATE").

The host subscribes to its own STATE topic: an ``online: false`` delivered while it is
connected (the will of its previous connection arriving late, or another process using the
same host id) makes it publish ``online: true`` again with its current connection's
timestamp, as the specification asks. Host ids must be unique: each ingestor has its own
(by default its MQTT client id).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from ingest.sparkplug import NAMESPACE

log = logging.getLogger(__name__)

HOST_ID_PATTERN = r"^[^/+#\s]{1,200}$"  # one MQTT topic level


def state_topic(host_id: str) -> str:
    """Where the primary host ``host_id`` announces itself."""
    return f"{NAMESPACE}/STATE/{host_id}"


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The Sparkplug 3.0 STATE payload (JSON, UTF-8)."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def parse_state(payload: bytes) -> tuple[bool, int] | None:
    """``(online, timestamp)`` of a STATE payload; None when it is not one."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    online, stamp = doc.get("online"), doc.get("timestamp")
    if type(online) is not bool or type(stamp) is not int:
        return None
    return online, stamp


class PrimaryHost:
    """The STATE birth and death of one ingestor's MQTT connection.

    Wire it to the client: :meth:`before_connect` as ``on_pre_connect`` (a new will for every
    CONNECT, reconnects included), :meth:`announce` once the connection's subscriptions are
    sent (they include :attr:`topic`), :meth:`on_state` for messages on :attr:`topic`, and
    :meth:`sign_off` before a clean disconnect.
    """

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.topic = state_topic(host_id)
        self.timestamp_ms = 0  # of the current (or next) connection
        self.announcements = 0  # online STATEs published (births and re-announcements)
        self._stopping = threading.Event()
        self._foreign_logged = False

    def before_connect(self, client: mqtt.Client, _userdata: Any = None) -> None:
        """Register this connection's death certificate as the MQTT will."""
        self.timestamp_ms = int(time.time() * 1000)
        client.will_set(self.topic, state_payload(False, self.timestamp_ms), qos=1, retain=True)

    def announce(self, client: mqtt.Client) -> None:
        """Publish ``online: true`` with this connection's timestamp (retained, QoS 1)."""
        if self._stopping.is_set():
            return
        self.announcements += 1
        client.publish(self.topic, state_payload(True, self.timestamp_ms), qos=1, retain=True)

    def on_state(self, client: mqtt.Client, payload: bytes) -> None:
        """A STATE on our own host id: answer an ``online: false`` by announcing again."""
        state = parse_state(payload)
        if state is None:
            log.warning("%s: not a Sparkplug STATE payload: %r", self.topic, payload[:100])
            return
        online, stamp = state
        if online and stamp != self.timestamp_ms and not self._foreign_logged:
            self._foreign_logged = True  # an older connection of ours, or another process
            log.info(
                "%s: online STATE of timestamp %d (ours is %d)",
                self.topic,
                stamp,
                self.timestamp_ms,
            )
        if not online and not self._stopping.is_set():
            log.info(
                "%s: offline STATE (timestamp %d) while connected; online again", self.topic, stamp
            )
            self.announce(client)

    def sign_off(self, client: mqtt.Client, timeout: float = 5.0) -> bool:
        """Publish ``online: false`` (now as its timestamp) before a clean disconnect, and
        wait for the broker to take it; False when it did not in time."""
        self._stopping.set()
        if not client.is_connected():
            return False  # the broker publishes the will when it notices
        info = client.publish(
            self.topic,
            state_payload(False, max(int(time.time() * 1000), self.timestamp_ms)),
            qos=1,
            retain=True,
        )
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
