"""fleetcare's reference Sparkplug B edge node: births, aliases, ``seq``, and store and forward
while the primary host is away (Sparkplug 3.0; docs/telemetry.md, "The reference edge node").

An edge node stands for one group/edge-node id and its devices (each with its metric names).
Every reading the application records (:meth:`SparkplugEdgeNode.record`) goes into a bounded
local store first; the node's own thread sends the store as DDATA (metrics by alias, each with
its own timestamp) only while it is *live*: connected, its primary host announced
``{"online": true}`` on ``spBv1.0/STATE/<host id>``, and its NBIRTH and DBIRTHs out. Readings
recorded while it was not live go out with ``is_historical`` set. A reading leaves the store
when the broker acknowledged the DDATA that carried it (QoS 1, see below); what was in flight
when a connection dropped goes back to the store.

The session, as the specification asks of an edge node with a primary host:

* each MQTT connection is a new session (clean session) with a new ``bdSeq``: its will is the
  NDEATH carrying that ``bdSeq``; the node subscribes to its NCMD/DCMD and to the host's STATE;
* it publishes NBIRTH (``seq`` 0, ``bdSeq``, ``Node Control/Rebirth``) and a DBIRTH per device
  (every metric with its name, alias and data type; value null: the birth declares, the data
  that follows is what gets stored) only after an ``online: true`` STATE;
* an ``online: false`` STATE with a timestamp at least that of the last ``online: true`` ends
  the session: NDEATH, disconnect, connect again (new ``bdSeq``) and wait for the host; STATE
  messages older than the last ``online: true`` are ignored (a late will);
* an NCMD ``Node Control/Rebirth`` makes it publish its births again (same ``bdSeq``,
  ``seq`` from 0) before any more data.

One deliberate departure: Sparkplug publishes DATA at QoS 0. Between the moment a host
disappears and the moment its offline STATE reaches the node, QoS 0 data is lost; fleetcare's
ingestor keeps a persistent session that queues QoS 1, so the reference node sends DATA at
QoS 1 (``data_qos``) and no reading is lost in that window. No SQL here, MQTT only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from esio_spb_builder.core import sparkplug_b_pb2 as spb
from google.protobuf.message import DecodeError
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from ingest.sparkplug import BD_SEQ, BOOLEAN, DOUBLE, INT64, NAMESPACE, REBIRTH_METRIC
from ingest.sparkplug_state import parse_state, state_topic

log = logging.getLogger(__name__)

TOPIC_LEVEL_FORBIDDEN = frozenset("/+#")


class StoredReading(NamedTuple):
    """One device's values at one time, as the node keeps them until they are sent."""

    device: str
    ts_ms: int
    values: Mapping[str, float]
    historical: bool  # recorded while the node was not live


@dataclass
class EdgeStats:
    """What the node did (tests, logs)."""

    recorded: int = 0  # readings the application gave
    recorded_values: int = 0  # their metric values
    sent_live: int = 0  # readings sent (and acknowledged) as current data
    forwarded: int = 0  # readings sent (and acknowledged) from the store, historical
    dropped: int = 0  # the store was full: the oldest went
    sessions: int = 0  # MQTT connections accepted (each a bdSeq)
    births: int = 0  # NBIRTHs published (sessions born, rebirths included)
    rebirths_asked: int = 0  # NCMD Node Control/Rebirth received
    host_offline: int = 0  # sessions ended by an offline STATE of the primary host
    requeued: int = 0  # readings put back in the store (in flight when a connection dropped)
    timeline: list[str] = field(default_factory=list)  # "NBIRTH 3", "NDEATH 3", ... in order


def _check_level(what: str, value: str) -> str:
    if not value or any(c in TOPIC_LEVEL_FORBIDDEN or c.isspace() for c in value):
        raise ValueError(f"Sparkplug {what} {value!r}: one topic level, no '/', '+', '#', spaces")
    return value


class SparkplugEdgeNode:
    """A Sparkplug B edge node with store and forward (see the module's docstring).

    ``devices`` maps each Sparkplug device id to its metric names (aliases 1, 2, ... in that
    order across devices). ``primary_host``: the host id whose STATE the node waits for (None:
    no primary host, born as soon as connected). ``max_stored``: readings kept at most; beyond,
    the oldest go (counted in ``stats.dropped``). Call :meth:`start`, then :meth:`record` from
    any thread, and :meth:`stop` at the end.
    """

    def __init__(
        self,
        broker_url: str,
        group: str,
        edge_node: str,
        devices: Mapping[str, Sequence[str]],
        *,
        primary_host: str | None,
        username: str | None = None,
        password: str | None = None,
        max_stored: int = 100_000,
        batch_max: int = 200,
        data_qos: int = 1,
        reconnect_s: float = 1.0,
    ) -> None:
        parts = urlsplit(broker_url)
        if parts.scheme not in ("mqtt", "tcp", ""):
            raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (mqtt://host:port)")
        if max_stored < 1 or batch_max < 1:
            raise ValueError("max_stored and batch_max are 1 or more")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.username = username if username is not None else unquote(parts.username or "")
        self.password = password if password is not None else unquote(parts.password or "")
        self.group = _check_level("group", group)
        self.edge_node = _check_level("edge node", edge_node)
        self.primary_host = primary_host and _check_level("host id", primary_host)
        self.aliases: dict[tuple[str, str], int] = {}
        for device, metrics in devices.items():
            _check_level("device", device)
            for name in metrics:
                self.aliases[(device, name)] = len(self.aliases) + 1
        self.devices = {d: tuple(m) for d, m in devices.items()}
        self.max_stored = max_stored
        self.batch_max = batch_max
        self.data_qos = data_qos
        self.reconnect_s = reconnect_s
        self.stats = EdgeStats()
        self.bd_seq = -1  # the first session is bdSeq 0
        self._seq = 0
        self._store: deque[StoredReading] = deque()
        self._lock = threading.Condition()
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client: mqtt.Client | None = None
        self._session = 0  # which connection the callbacks speak of
        self._in_flight: dict[int, list[StoredReading]] = {}  # mid → readings (this session)
        self._host_online = primary_host is None
        self._last_online_ms = -1
        self._born = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.live = threading.Event()  # born, host online: data flows
        self.answered = threading.Event()  # the broker answered a CONNECT (see ``refused``)
        self.refused: str | None = None

    # --- what the application calls ---------------------------------------------------------

    def topic(self, message_type: str, device: str = "") -> str:
        """The node's topic for ``message_type`` (and ``device`` for D* messages)."""
        base = f"{NAMESPACE}/{self.group}/{message_type}/{self.edge_node}"
        return f"{base}/{device}" if device else base

    def start(self) -> None:
        """Start the node's thread: it connects, waits for its host, is born, sends data."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"spb-{self.edge_node}", daemon=True
            )
            self._thread.start()

    def record(self, device: str, ts_ms: int, values: Mapping[str, float]) -> None:
        """Keep one reading of ``device`` (epoch ms, metric name → value) for sending."""
        unknown = [n for n in values if (device, n) not in self.aliases]
        if unknown:
            raise KeyError(f"{self.edge_node}/{device}: no metric {', '.join(unknown)} declared")
        with self._lock:
            self._store.append(StoredReading(device, ts_ms, dict(values), not self.live.is_set()))
            self.stats.recorded += 1
            self.stats.recorded_values += len(values)
            while len(self._store) > self.max_stored:
                self._store.popleft()
                self.stats.dropped += 1
        self._events.put(("data", None))

    @property
    def stored(self) -> int:
        """Readings not yet sent and acknowledged (in the store or in flight)."""
        with self._lock:
            return len(self._store) + sum(len(b) for b in self._in_flight.values())

    def wait_sent(self, timeout: float = 60.0) -> bool:
        """Wait until every recorded reading was sent and acknowledged; False on timeout."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._store and not self._in_flight, timeout=timeout
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Send what can be sent (while live, up to ``timeout``), then NDEATH and disconnect."""
        if self.live.is_set():
            self.wait_sent(timeout)
        self._stopping.set()
        self._events.put(("stop", None))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- the node's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._client is None and not self._connect():
                self._stopping.wait(self.reconnect_s)
                continue
            try:
                event, arg = self._events.get(timeout=0.5)
            except queue.Empty:
                event, arg = "tick", None
            self._handle(event, arg)
            if self._client is not None and self._host_online and not self._born:
                self._birth()
            if self._born:
                self._send_stored()
        self._end_session(clean=True)

    def _handle(self, event: str, arg: Any) -> None:
        if event == "state":
            session, online, stamp = arg
            if session != self._session or stamp < self._last_online_ms:
                return  # another connection's news, or older than the last online: a late will
            if online:
                self._last_online_ms = stamp
                self._host_online = True
            else:
                self._host_online = False
                if self._born:  # Sparkplug 3.0: the session ends, the node waits for the host
                    log.info(
                        "%s: primary host %s offline: NDEATH", self.edge_node, self.primary_host
                    )
                    self._end_session(clean=True)
                    # counted once the session has ended (not live any more): a reader that
                    # sees the count never sees the node still live
                    self.stats.host_offline += 1
        elif event == "rebirth" and arg == self._session and self._born:
            self.stats.rebirths_asked += 1
            self._born = False  # born again below, before any more data
            self.live.clear()
        elif event == "acked":
            self._acknowledged(*arg)
        elif event == "lost" and arg == self._session:
            self._end_session(clean=False)

    def _connect(self) -> bool:
        """A new session: new bdSeq, its NDEATH as the will, subscriptions; False on failure."""
        self._session += 1
        session = self._session
        self.bd_seq = (self.bd_seq + 1) % 256
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"spb-{self.group}-{self.edge_node}-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
            reconnect_on_failure=False,  # a lost connection ends the session: a new one follows
        )
        if self.username:
            client.username_pw_set(self.username, self.password or None)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.will_set(self.topic("NDEATH"), self._death(), qos=1, retain=False)
        answered = threading.Event()
        accepted: list[bool] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            accepted.append(not reason.is_failure)
            self.refused = str(reason) if reason.is_failure else None
            answered.set()
            self.answered.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            self._events.put(("lost", session))

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self._on_message(session, msg)

        def on_publish(_c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
            self._events.put(("acked", (session, mid)))

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_message, client.on_publish = on_message, on_publish
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            log.warning("%s: cannot reach the broker: %s", self.edge_node, exc)
            self.refused = f"cannot reach the broker: {exc}"
            self.answered.set()
            return False
        client.loop_start()
        if not answered.wait(10) or not accepted[0]:
            log.warning("%s: broker refused: %s", self.edge_node, self.refused or "no answer")
            client.loop_stop()
            return False
        self._client = client
        self.stats.sessions += 1
        subscriptions = [
            (self.topic("NCMD"), 1),
            (f"{NAMESPACE}/{self.group}/DCMD/{self.edge_node}/+", 1),
        ]
        if self.primary_host:
            subscriptions.append((state_topic(self.primary_host), 1))
        client.subscribe(subscriptions)
        return True

    def _on_message(self, session: int, msg: mqtt.MQTTMessage) -> None:
        """Network thread: decode and hand over, nothing else."""
        if msg.topic.startswith(f"{NAMESPACE}/STATE/"):
            state = parse_state(msg.payload)
            if state is None:
                log.warning("%s: not a STATE payload: %r", self.edge_node, msg.payload[:100])
                return
            self._events.put(("state", (session, *state)))
            return
        try:
            payload = spb.Payload.FromString(msg.payload)
        except DecodeError:
            log.warning("%s: unreadable command on %s", self.edge_node, msg.topic)
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in payload.metrics):
            self._events.put(("rebirth", session))

    def _acknowledged(self, session: int, mid: int) -> None:
        """The broker acknowledged message ``mid`` (births and deaths are not tracked)."""
        with self._lock:
            if session != self._session:
                return
            batch = self._in_flight.pop(mid, None)
            if batch is not None:
                self._count_sent(batch)
                self._lock.notify_all()

    def _count_sent(self, batch: list[StoredReading]) -> None:
        historical = sum(1 for r in batch if r.historical)
        self.stats.forwarded += historical
        self.stats.sent_live += len(batch) - historical

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _death(self) -> bytes:
        p = spb.Payload(timestamp=int(time.time() * 1000))
        m = p.metrics.add()
        m.name, m.datatype, m.long_value = BD_SEQ, INT64, self.bd_seq
        return p.SerializeToString()

    def _publish(self, topic: str, payload: Any, qos: int = 0) -> mqtt.MQTTMessageInfo:
        assert self._client is not None
        return self._client.publish(topic, payload.SerializeToString(), qos=qos)

    def _birth(self) -> None:
        """NBIRTH then a DBIRTH per device, ``seq`` from 0 (Sparkplug: BIRTHs at QoS 0)."""
        now = int(time.time() * 1000)
        self._seq = 0
        nb = spb.Payload(timestamp=now, seq=self._next_seq())
        m = nb.metrics.add()
        m.name, m.datatype, m.long_value = BD_SEQ, INT64, self.bd_seq
        m = nb.metrics.add()
        m.name, m.datatype, m.boolean_value = REBIRTH_METRIC, BOOLEAN, False
        self._publish(self.topic("NBIRTH"), nb)
        for device, metrics in self.devices.items():
            db = spb.Payload(timestamp=now, seq=self._next_seq())
            for name in metrics:
                m = db.metrics.add()
                m.name, m.alias, m.datatype = name, self.aliases[(device, name)], DOUBLE
                m.timestamp, m.is_null = now, True
            self._publish(self.topic("DBIRTH", device), db)
        self._born = True
        self.live.set()
        self.stats.timeline.append(f"NBIRTH {self.bd_seq}")
        self.stats.births += 1

    def _send_stored(self) -> None:
        """DDATA from the store, oldest first, at most ``batch_max`` readings per message."""
        while self._born and self._client is not None:
            with self._lock:
                if not self._store:
                    return
                device = self._store[0].device
                batch: list[StoredReading] = []
                while (
                    self._store and self._store[0].device == device and len(batch) < self.batch_max
                ):
                    batch.append(self._store.popleft())
            p = spb.Payload(timestamp=int(time.time() * 1000), seq=self._next_seq())
            for r in batch:
                for name, value in r.values.items():
                    m = p.metrics.add()
                    m.alias, m.timestamp, m.double_value = (
                        self.aliases[(device, name)],
                        r.ts_ms,
                        value,
                    )
                    if r.historical:
                        m.is_historical = True
            # not under our lock: paho runs on_publish holding a lock of its own that publish
            # takes too. The PUBACK is handled on this thread (an event), after the line below.
            info = self._publish(self.topic("DDATA", device), p, self.data_qos)
            with self._lock:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:  # the connection just dropped
                    self._store.extendleft(reversed(batch))
                    return
                if self.data_qos:
                    self._in_flight[info.mid] = batch
                else:
                    self._count_sent(batch)
                    self._lock.notify_all()

    def _end_session(self, *, clean: bool) -> None:
        """Close the session (``clean``: NDEATH first); what was in flight goes back, oldest
        first, as historical data."""
        client, self._client = self._client, None
        self._session += 1  # late callbacks of that connection are ignored from here
        was_born, self._born = self._born, False
        self.live.clear()
        if self.primary_host is not None:
            self._host_online = False  # the next session waits for the host's STATE again
        if client is not None:
            if clean and client.is_connected():
                if was_born:
                    self.stats.timeline.append(f"NDEATH {self.bd_seq}")
                info = client.publish(self.topic("NDEATH"), self._death(), qos=1)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(5)
                client.disconnect()
            elif was_born:
                self.stats.timeline.append(f"lost {self.bd_seq}")
            client.loop_stop()
        with self._lock:
            back = [r for batch in self._in_flight.values() for r in batch]  # sent order
            self._in_flight.clear()
            self.stats.requeued += len(back)
            self._store.extendleft(reversed([r._replace(historical=True) for r in back]))
            # what waits in the store is historical from now on: the host may not be current
            if self._store and not self._store[-1].historical:
                self._store = deque(r._replace(historical=True) for r in self._store)
            self._lock.notify_all()
