"""Devices that behave like devices: gateways that batch, go offline, drift, and misbehave.

A ``Gateway`` is the pure behaviour of one device (a truck's TPMS gateway, a building's
elevator controller, an aircraft's engine monitoring unit): it takes readings for its
assets, stamps them with its own (skewed) clock, keeps them in a bounded buffer while it is
offline, and turns the buffer into batched payloads of the telemetry contract. ``MqttLink``
is its connection: paho-mqtt 2, MQTT v5, QoS 1, the device's own credentials, a last will.
``SensorFaults`` corrupts sensor values the way real sensors do (stuck, spikes, dropouts).
``malformed_payload`` builds the bad payloads that exercise ingest's quarantine.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kinds.schemas import KindDefinition
from simulators.physics import FloatArray, IntArray

log = logging.getLogger(__name__)


def telemetry_topic(topic_root: str, device_ref: str) -> str:
    """The topic a device publishes readings on."""
    return f"{topic_root}/{device_ref}/telemetry"


def status_topic(topic_root: str, device_ref: str) -> str:
    """The topic of a device's online/offline status (its last will)."""
    return f"{topic_root}/{device_ref}/status"


class Reading(NamedTuple):
    """One reading as a device sends it: asset reference, device time, measured values."""

    asset: str
    ts_ms: int
    metrics: dict[str, float]


def format_ts(ts_ms: int, style: str) -> int | str:
    """A device timestamp as epoch milliseconds or RFC 3339 (``Z``, milliseconds)."""
    if style == "epoch_ms":
        return ts_ms
    when = datetime.fromtimestamp(ts_ms / 1000.0, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def encode_batch(readings: Sequence[Reading], ts_style: str = "epoch_ms") -> bytes:
    """A ``{"readings": [...]}`` payload (floats in shortest round-trip form)."""
    if ts_style == "epoch_ms":
        body = [{"asset": a, "ts": t, "metrics": m} for a, t, m in readings]
    else:
        stamps: dict[int, int | str] = {}  # a batch shares few distinct times
        body = [
            {
                "asset": a,
                "ts": stamps.get(t) or stamps.setdefault(t, format_ts(t, ts_style)),
                "metrics": m,
            }
            for a, t, m in readings
        ]
    # orjson: ten times json's speed, shortest round-trip floats. Readings never carry NaN
    # (a missing value is left out), which orjson would write as null.
    return orjson.dumps({"readings": body})


class Malformed(StrEnum):
    """The kinds of bad payload a gateway can send on request."""

    BAD_JSON = "bad_json"
    UNKNOWN_ASSET = "unknown_asset"
    UNKNOWN_METRIC = "unknown_metric"
    OUT_OF_BOUNDS = "out_of_bounds"
    NON_FINITE = "non_finite"
    FAR_FUTURE = "far_future"
    OVERSIZED = "oversized"


# The reason ingest gives each kind in quarantine (ingest.schemas.QuarantineReason values).
QUARANTINE_REASON: dict[Malformed, str] = {
    Malformed.BAD_JSON: "bad_json",
    Malformed.UNKNOWN_ASSET: "unknown_asset",
    Malformed.UNKNOWN_METRIC: "unknown_metric",
    Malformed.OUT_OF_BOUNDS: "out_of_bounds",
    Malformed.NON_FINITE: "not_finite",
    Malformed.FAR_FUTURE: "ts_in_future",
    Malformed.OVERSIZED: "oversized",
}


def malformed_payload(
    kind: Malformed,
    asset: str,
    asset_kind: KindDefinition,
    ts_ms: int,
    *,
    oversized_bytes: int = 512 * 1024,
) -> bytes:
    """One payload that breaks the telemetry contract in exactly the way ``kind`` names."""
    metric = asset_kind.metrics[0]
    good = (metric.low + metric.high) / 2.0
    if kind is Malformed.BAD_JSON:
        return b'{"readings": [{"asset": "' + asset.encode() + b'", "ts": 17'
    if kind is Malformed.UNKNOWN_ASSET:
        reading = {"asset": f"NO-SUCH-{asset}", "ts": ts_ms, "metrics": {metric.name: good}}
    elif kind is Malformed.UNKNOWN_METRIC:
        reading = {"asset": asset, "ts": ts_ms, "metrics": {"flux_capacitor_gw": 1.21}}
    elif kind is Malformed.OUT_OF_BOUNDS:
        too_high = metric.high + max(1.0, abs(metric.high)) * 10.0
        reading = {"asset": asset, "ts": ts_ms, "metrics": {metric.name: too_high}}
    elif kind is Malformed.NON_FINITE:
        # JSON has no NaN; many device stacks emit it anyway (Python's json does)
        text = json.dumps({"asset": asset, "ts": ts_ms, "metrics": {metric.name: math.nan}})
        return text.encode()
    elif kind is Malformed.FAR_FUTURE:
        future = ts_ms + int(timedelta(days=400).total_seconds() * 1000)
        reading = {"asset": asset, "ts": future, "metrics": {metric.name: good}}
    elif kind is Malformed.OVERSIZED:
        one = {"asset": asset, "ts": ts_ms, "metrics": {metric.name: good}}
        size = len(json.dumps(one)) + 1
        readings = [one] * (oversized_bytes // size + 1)
        return json.dumps({"readings": readings}, separators=(",", ":")).encode()
    else:  # pragma: no cover - exhaustive
        raise ValueError(kind)
    return json.dumps(reading, separators=(",", ":")).encode()


@dataclass
class FaultRates:
    """How often sensors misbehave (per value, per reading)."""

    stuck_start: float = 0.0005  # a metric of an asset starts repeating its last value
    stuck_readings: tuple[int, int] = (5, 60)  # for this many readings
    spike: float = 0.0005  # a single value jumps (within the metric's bounds)
    dropout: float = 0.002  # a value is missing from the reading

    @classmethod
    def none(cls) -> FaultRates:
        """Perfect sensors."""
        return cls(stuck_start=0.0, spike=0.0, dropout=0.0)

    @property
    def any(self) -> bool:
        return self.stuck_start > 0 or self.spike > 0 or self.dropout > 0


class SensorFaults:
    """Stuck values, spikes and dropouts applied to the rows of a population's frame."""

    def __init__(
        self, kind: KindDefinition, size: int, rng: np.random.Generator, rates: FaultRates
    ) -> None:
        self.kind = kind
        self.rng = rng
        self.rates = rates
        names = [m.name for m in kind.metrics if m.name != kind.usage_metric]
        self.names = tuple(names)
        self.stuck_left = {n: np.zeros(size, np.int64) for n in names}
        self.last = {n: np.full(size, np.nan) for n in names}

    def apply(self, assets: IntArray, metrics: dict[str, FloatArray]) -> dict[str, FloatArray]:
        """Corrupt the values of ``assets``' rows; NaN marks a value that went missing."""
        if not self.rates.any or assets.size == 0:
            return metrics
        out = dict(metrics)
        rng, rates = self.rng, self.rates
        n = assets.size
        draws = rng.random((3, len(self.names), n))  # stuck start, spike, dropout
        jumps = rng.uniform(1.5, 3.0, (len(self.names), n))
        for j, name in enumerate(self.names):
            values = np.array(out[name], dtype=float)
            left = self.stuck_left[name]
            start = (left[assets] == 0) & (draws[0, j] < rates.stuck_start)
            if start.any():
                left[assets[start]] = rng.integers(*rates.stuck_readings, size=int(start.sum()))
            stuck = left[assets] > 0
            if stuck.any():
                remembered = self.last[name][assets]
                values = np.where(stuck & ~np.isnan(remembered), remembered, values)
                left[assets[stuck]] -= 1
            spiked = draws[1, j] < rates.spike
            if spiked.any():
                metric = self.kind.metric(name)
                jumped = values * jumps[j] + (metric.high - metric.low) * 0.05
                values = np.where(spiked, np.clip(jumped, metric.low, metric.high), values)
            fresh = ~np.isnan(values) & ~stuck
            self.last[name][assets[fresh]] = values[fresh]
            dropped = draws[2, j] < rates.dropout
            if dropped.any():
                values = np.where(dropped, np.nan, values)
            out[name] = values
        return out


@dataclass
class GatewayBehaviour:
    """How a gateway's network and clock behave (real seconds)."""

    batch_max: int = 500  # readings per payload
    buffer_limit: int = 200_000  # readings kept while offline; the oldest go first
    offline_per_hour: float = 2.0  # mean offline periods per hour online (tunnels, dead spots)
    offline_seconds: tuple[float, float] = (5.0, 60.0)
    clock_skew_s: float = 0.5  # standard deviation of the clock offset
    badly_set_clock: float = 0.1  # share of gateways whose clock is minutes off
    rfc3339_share: float = 0.3  # share of gateways that send RFC 3339 instead of epoch ms

    @classmethod
    def steady(cls) -> GatewayBehaviour:
        """Always online, exact clock, epoch milliseconds (benchmarks, exact tests)."""
        return cls(offline_per_hour=0.0, clock_skew_s=0.0, badly_set_clock=0.0, rfc3339_share=0.0)


@dataclass
class Gateway:
    """One device reporting for several assets: buffer, skewed clock, online/offline."""

    ref: str
    assets: tuple[str, ...]
    rng: np.random.Generator
    behaviour: GatewayBehaviour = field(default_factory=GatewayBehaviour)
    online: bool = True
    offline_until_s: float = 0.0
    dropped_readings: int = 0
    skew_ms: int = 0
    ts_style: str = "epoch_ms"

    def __post_init__(self) -> None:
        b = self.behaviour
        skew_s = self.rng.normal(0.0, b.clock_skew_s) if b.clock_skew_s > 0 else 0.0
        if self.rng.random() < b.badly_set_clock:
            skew_s += self.rng.choice([-1.0, 1.0]) * self.rng.uniform(60.0, 300.0)
        self.skew_ms = int(np.rint(skew_s * 1000.0))
        self.ts_style = "rfc3339" if self.rng.random() < b.rfc3339_share else "epoch_ms"
        self.buffer: deque[Reading] = deque()

    def device_time_ms(self, true_ms: int) -> int:
        """What this device's clock says at the true time ``true_ms``."""
        return true_ms + self.skew_ms

    def collect(self, readings: Sequence[tuple[str, int, dict[str, float]]]) -> None:
        """Take (asset, true epoch ms, metrics) readings into the buffer, device-stamped."""
        if self.skew_ms == 0:
            self.buffer.extend(map(Reading._make, readings))
        else:
            skew = self.skew_ms
            self.buffer.extend(Reading(a, t + skew, m) for a, t, m in readings)
        overflow = len(self.buffer) - self.behaviour.buffer_limit
        for _ in range(max(0, overflow)):
            self.buffer.popleft()
            self.dropped_readings += 1

    def update_connectivity(self, now_s: float, elapsed_s: float) -> bool:
        """Go offline now and then, come back after a while; return whether online."""
        b = self.behaviour
        if self.online:
            if b.offline_per_hour > 0 and self.rng.random() < -math.expm1(
                -b.offline_per_hour * elapsed_s / 3600.0
            ):
                self.online = False
                self.offline_until_s = now_s + self.rng.uniform(*b.offline_seconds)
        elif now_s >= self.offline_until_s:
            self.online = True
        return self.online

    def go_offline(self, until_s: float) -> None:
        """Lose the network until ``until_s`` (tests, demos)."""
        self.online = False
        self.offline_until_s = until_s

    def drain(self) -> list[bytes]:
        """Everything buffered, as batched payloads (empty while offline)."""
        if not self.online:
            return []
        payloads = []
        while self.buffer:
            take = min(len(self.buffer), self.behaviour.batch_max)
            batch = [self.buffer.popleft() for _ in range(take)]
            payloads.append(encode_batch(batch, self.ts_style))
        return payloads


def _parse_broker(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (use mqtt://host:port)")
    return parts.hostname or "127.0.0.1", parts.port or 1883


# How long a device refused by the broker tries again before giving up: `fleetcare up`'s broker
# reads new devices' credentials within a second or two of their registration.
REFUSED_RETRY_S = 15.0

# The longest a device waits for a confirmation before sending its unconfirmed messages again.
RESEND_MAX_S = 900.0


class MqttLink:
    """A device's MQTT v5 connection with its own credentials; QoS 1 with ack counting.

    With ``confirm`` (the default) it follows the device contract's confirmation
    (docs/telemetry.md#confirmation): each batch payload gets a message number (``seq``,
    increasing for ever: it starts from the time in µs), is kept in a bounded buffer until
    fleetcare confirms a number at least as high on the device's acknowledgement topic (at
    most ``max_unconfirmed`` messages and ``max_unconfirmed_bytes``; beyond, the oldest go and
    are counted in ``dropped_unconfirmed``), and
    everything still unconfirmed is sent again after every reconnect, and after
    ``resend_after_s`` with no new confirmation (doubling while nothing is confirmed, up to
    RESEND_MAX_S; checked by ``publish`` and ``wait_confirmed``, the device's own loop). The
    broker's PUBACK only means the broker holds the message; a broker crash can still lose it.
    """

    def __init__(
        self,
        broker_url: str,
        device_ref: str,
        secret: str,
        topic_root: str,
        *,
        max_inflight: int = 1000,
        confirm: bool = True,
        max_unconfirmed: int = 10_000,
        max_unconfirmed_bytes: int = 16 * 1024 * 1024,
        resend_after_s: float | None = 60.0,  # None: only after a reconnect or a "from"
        topic: str | None = None,  # where it publishes; default its telemetry topic
        refused_retry_s: float = REFUSED_RETRY_S,
    ) -> None:
        self.host, self.port = _parse_broker(broker_url)
        self.refused_retry_s = refused_retry_s
        self.device_ref = device_ref
        self.topic = topic or telemetry_topic(topic_root, device_ref)
        self.status = status_topic(topic_root, device_ref)
        self.ack = f"{topic_root}/{device_ref}/ack"
        self.confirm = confirm
        self.max_unconfirmed = max_unconfirmed
        self.max_unconfirmed_bytes = max_unconfirmed_bytes
        self.resend_after_s = resend_after_s
        self._resend_wait = resend_after_s or 0.0  # the current wait for a confirmation
        self._quiet_since = time.monotonic()  # the last confirmation, resend or first message
        self._unconfirmed_bytes = 0
        self._unconfirmed: OrderedDict[int, bytes] = OrderedDict()  # seq → payload
        self._seq = time.time_ns() // 1000
        self._connections = 0
        self.confirmed_seq = 0
        self._resent_below: int | None = None  # the last ``from`` that made us send again
        self.resent = 0
        self.dropped_unconfirmed = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sim-{device_ref}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(unquote(device_ref), secret)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.will_set(self.status, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK came, accepting or refusing
        self._active = False
        self._acks = threading.Condition()
        self.published = 0
        self.acked = 0
        self.refused: str | None = None

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
        else:
            self.refused = None
            if self.confirm:
                self.client.subscribe(self.ack, qos=1)
                if self._connections:
                    self._resend_unconfirmed()
            self._connections += 1
            self._connected.set()
        self._answered.set()

    def _resend_unconfirmed(self) -> None:
        """After a reconnect: whatever fleetcare has not confirmed may be lost (a broker
        crash after its PUBACK), so send it again; stored once, a resend is harmless."""
        with self._acks:
            again = list(self._unconfirmed.values())
            self.published += len(again)
            self._quiet_since = time.monotonic()
        for payload in again:
            self.client.publish(self.topic, payload, qos=1)
        self.resent += len(again)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        """A confirmation ``{"seq": hi, "from": lo}``: every message numbered lo..hi was
        handled; buffered ones below lo never reached fleetcare: send them again, once per new
        ``from``. Without ``from``: everything up to hi (docs/telemetry.md)."""
        if message.topic != self.ack:
            return
        try:
            doc = json.loads(message.payload)
            seq, lo = doc["seq"], doc.get("from")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("device %s: unreadable confirmation %r", self.device_ref, message.payload)
            return
        if type(seq) is not int or (lo is not None and type(lo) is not int):
            return
        again: list[bytes] = []
        with self._acks:
            self.confirmed_seq = max(self.confirmed_seq, seq)
            unconfirmed = self._unconfirmed
            held = len(unconfirmed)
            if lo is None:
                while unconfirmed and next(iter(unconfirmed)) <= seq:
                    self._unconfirmed_bytes -= len(unconfirmed.popitem(last=False)[1])
            else:
                for n in [n for n in unconfirmed if lo <= n <= seq]:
                    self._unconfirmed_bytes -= len(unconfirmed.pop(n))
                if lo != self._resent_below:  # not once more for every confirmation of a run
                    again = [payload for n, payload in unconfirmed.items() if n < lo]
                    self._resent_below = lo
                    self.published += len(again)
            if len(unconfirmed) < held or again:  # heard: the wait for silence starts over
                self._quiet_since = time.monotonic()
                self._resend_wait = self.resend_after_s or 0.0
            self._acks.notify_all()
        for payload in again:  # in order, before anything newer is sent
            self.client.publish(self.topic, payload, qos=1)
        self.resent += len(again)

    @property
    def unconfirmed(self) -> int:
        """Messages published and not yet confirmed by fleetcare."""
        with self._acks:
            return len(self._unconfirmed)

    def wait_confirmed(self, timeout: float = 60.0) -> bool:
        """Wait until fleetcare has confirmed everything published, sending again what stays
        unconfirmed too long (:meth:`resend_if_silent`); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            with self._acks:
                if self._acks.wait_for(lambda: not self._unconfirmed, max(0.0, min(left, 0.5))):
                    return True
            if left <= 0:
                return False
            self.resend_if_silent()

    def resend_if_silent(self) -> int:
        """Send again, in order, what is unconfirmed when no confirmation came for the current
        wait (``resend_after_s``, doubled after each such resend up to RESEND_MAX_S); how many
        were sent. Needed when the device sends nothing newer: what the broker dropped at the
        end of a burst (no subscriber) has no later message to start a run above it, and the
        retained confirmation that a new SUBSCRIBE brings may be the one from before the loss
        (docs/telemetry.md, step 3)."""
        if not self.confirm or self.resend_after_s is None or not self.connected:
            return 0
        with self._acks:
            if not self._unconfirmed or time.monotonic() - self._quiet_since < self._resend_wait:
                return 0
            self._resend_wait = min(2 * self._resend_wait, RESEND_MAX_S)
            held = len(self._unconfirmed)
        log.info("device %s: %d message(s) unconfirmed, sent again", self.device_ref, held)
        self._resend_unconfirmed()
        return held

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        self._connected.clear()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
        with self._acks:
            self.acked += 1
            self._acks.notify_all()

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted us and the connection is up right now."""
        return self._connected.is_set()

    @property
    def active(self) -> bool:
        """Whether the device means to be online: between ``connect`` and ``disconnect``.
        While active, paho reconnects by itself after a lost connection and queues what is
        published meanwhile (QoS 1, resent on the persistent session)."""
        return self._active

    def connect(self, timeout: float = 10.0) -> None:
        """Connect (persistent session) and start the network thread; raise on refusal. A
        refusal is tried again for ``refused_retry_s``: a device registered a moment ago is
        refused until the broker has read its password file again."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        retry_until = time.monotonic() + self.refused_retry_s
        while True:
            self.refused = None
            self._answered.clear()
            self.client.connect(
                self.host, self.port, keepalive=30, clean_start=False, properties=props
            )
            self.client.loop_start()
            if self._answered.wait(timeout) and self._connected.is_set():
                break
            self.client.loop_stop()
            if self.refused is None or time.monotonic() >= retry_until:
                reason = self.refused or f"no answer within {timeout:.0f} s"
                raise ConnectionError(f"device {self.device_ref}: broker refused: {reason}")
            log.info("device %s: broker refused (%s); trying again", self.device_ref, self.refused)
            time.sleep(0.5)
        self._active = True
        self.client.publish(self.status, b"online", qos=1, retain=True)
        self._count_published(1)

    def _count_published(self, n: int) -> None:
        with self._acks:
            self.published += n

    def publish(self, payload: bytes) -> None:
        """Publish one telemetry payload with QoS 1 (acknowledged later, counted); a batch
        payload is numbered and kept until confirmed (``confirm``)."""
        self.resend_if_silent()
        if self.confirm and payload.startswith(b'{"readings":') and payload.endswith(b"}"):
            with self._acks:
                if not self._unconfirmed:  # the wait for a confirmation starts now
                    self._quiet_since = time.monotonic()
                self._seq += 1
                payload = payload[:-1] + b',"seq":%d}' % self._seq
                self._unconfirmed[self._seq] = payload
                self._unconfirmed_bytes += len(payload)
                while len(self._unconfirmed) > 1 and (  # bounded: the oldest go
                    len(self._unconfirmed) > self.max_unconfirmed
                    or self._unconfirmed_bytes > self.max_unconfirmed_bytes
                ):
                    self._unconfirmed_bytes -= len(self._unconfirmed.popitem(last=False)[1])
                    self.dropped_unconfirmed += 1
        info = self.client.publish(self.topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"device {self.device_ref}: publish failed ({info.rc})")
        self._count_published(1)

    def wait_acked(self, timeout: float = 30.0) -> bool:
        """Wait until the broker has acknowledged everything published; False on timeout."""
        with self._acks:
            return self._acks.wait_for(lambda: self.acked >= self.published, timeout)

    def disconnect(self, *, send_will: bool = False, timeout: float = 30.0) -> None:
        """Disconnect after outstanding acks (``send_will``: as if the network was lost)."""
        if self.connected:
            self.wait_acked(timeout)
            if send_will:
                self.client.disconnect(
                    reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
                )
            else:
                self.client.publish(self.status, b"offline", qos=1, retain=True)
                self._count_published(1)
                self.wait_acked(timeout)
                self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        self._active = False
