"""The MQTT consumer: paho's network thread only enqueues; a writer thread batches, stores in
one transaction (``ingest.pipeline.store_messages``), commits, and only then acknowledges.

Delivery guarantees, in order of the path:

* QoS 1 with a persistent session (``clean_start=False`` and a session expiry) under a fixed
  client id, so the broker keeps what we have not acknowledged while we are away.
* Manual acknowledgement: a PUBACK only after the batch that carried the message committed;
  a crash before makes the broker redeliver, harmless under the (asset, metric, time) key.
* An acknowledgement goes only on the connection that delivered the message (packet ids are
  per connection): after a reconnect the broker redelivers the older ones.
* Backpressure: unacknowledged messages are bounded by the MQTT 5 receive maximum and by a
  bounded queue: when it is full the network thread waits in ``put``, stops reading the
  socket, and the broker keeps the rest.
* PostgreSQL down: the writer keeps the batch, retries with capped backoff, logs each failure
  and carries on when the database is back. Nothing is acknowledged before its commit.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client.registry import CollectorRegistry

from fleetcare.clock import Clock, SystemClock
from fleetcare.tenancy import system_session
from ingest import repository as repo
from ingest.baton import Baton
from ingest.confirm_runs import RunTracker
from ingest.inbox import AckToken, Inbox, send_acks
from ingest.mqtt_client import BufferedClient, Publish, mqtt_endpoint, probe_mqtt5
from ingest.pipeline import store_messages, store_one_by_one, transient
from ingest.profile_service import PROFILE_CACHE_MAX_AGE_S, PROFILES
from ingest.schemas import BatchResult, IngestorStatus, RawMessage
from ingest.service import BROKER_DROPPED_TOPIC, ack_topic
from ingest.sparkplug import SparkplugHost, parse_topic
from ingest.sparkplug_sessions import StoredSessions
from ingest.sparkplug_state import PrimaryHost
from ingest.stats import IngestCollector, IngestStats
from ingest.subscription import (
    BROKER_UPTIME_TOPIC,
    SessionWatch,
    parse_uptime,
    position_filter,
    profile_filters,
    telemetry_filter,
)
from ingest.worker_config import IngestConfig as IngestConfig

log = logging.getLogger(__name__)


class IngestWorker:
    """One ingestor: an MQTT session, a bounded queue, and a writer thread."""

    def __init__(
        self,
        config: IngestConfig,
        *,
        clock: Clock | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.on_batch = on_batch
        self.stats = IngestStats()
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue = Inbox(config.queue_max_messages, config.queue_max_bytes)
        self.registry.register(IngestCollector(self.stats, self.queue.qsize))
        self._stop = threading.Event()
        self._conn_lock = threading.Lock()
        self._connection = 0  # bumped on every CONNACK
        self._epoch = 0  # bumped where messages may have been lost (ingest.confirm_runs)
        self._runs = RunTracker()  # used in batch order, under ``_turn``
        self._connected = False
        self._client: mqtt.Client | None = None
        self._writers: list[threading.Thread] = []
        self._local = threading.local()  # each writer's own database connection
        self._connections: list[psycopg.Connection[Any]] = []
        self._take_lock = threading.Lock()
        # one writer at a time does a batch's Python work (it holds the GIL anyway); it hands
        # on when its batch's writes start, so the next batch is prepared during this COPY
        # rather than both writers decoding, then both copying, in step
        self._prepare_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._turn = threading.Condition()  # acknowledgements in batch order
        self._next_seq = 0
        self._acked_seq = -1
        self._last_status = 0.0
        self._waiting_logged = False
        # set once subscribed and (MQTT 5) the other mode's old subscription is gone (UNSUBACK)
        self.subscribed = threading.Event()
        self._suback_seen = False
        self._cleanup_mid: int | None = None
        self.shared = False
        self._watch = SessionWatch(shared=False)
        self._v5 = True
        # payload profiles' own topics ({device} as +), subscribed at start and as they come
        self.profile_filters: list[str] = []
        self._filters_checked = 0.0
        resume = StoredSessions(config.database_url, self._connections)  # sessions outlive us
        self.sparkplug = SparkplugHost(self._publish_command, resume=resume)
        self.host = PrimaryHost(config.sparkplug_host_id or config.client_id)  # its STATE

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying in the background while the broker is away) and start writing."""
        cfg = self.config
        if cfg.gil_switch_interval_s is not None:  # process-wide: `fleetcare ingest` is its own
            sys.setswitchinterval(cfg.gil_switch_interval_s)
        host, port, user, password, tls = mqtt_endpoint(cfg.mqtt_url)
        v5 = cfg.protocol == "v5" or (cfg.protocol == "auto" and self._probe_with_retry())
        self.shared = v5 and cfg.shared_subscription
        self._v5 = v5
        self._watch = SessionWatch(shared=self.shared)
        self.stats.protocol = "5" if v5 else "3.1.1"
        self.stats.subscription = "shared" if self.shared else "session"
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if user:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_pre_connect = self.host.before_connect  # a new will for every CONNECT
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publishes = self._on_publishes
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        properties: Properties | None = None
        if v5:
            properties = Properties(mqtt.PacketTypes.CONNECT)
            properties.SessionExpiryInterval = cfg.session_expiry_s
            properties.ReceiveMaximum = cfg.receive_maximum
        self._client = client
        self._load_profile_filters()
        self._writers = [
            threading.Thread(
                target=self._write_loop, args=(i,), name=f"ingest-writer-{i}", daemon=True
            )
            for i in range(max(1, cfg.writer_threads))
        ]
        for writer in self._writers:
            writer.start()
        client.connect_async(
            host,
            port,
            keepalive=cfg.keepalive_s,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        client.loop_start()
        log.info(
            "ingest %s: MQTT %s at %s:%d, %s, topic root %s",
            cfg.client_id,
            self.stats.protocol,
            host,
            port,
            "shared subscription" if self.shared else "plain subscription",
            cfg.topic_root,
        )

    def _probe_with_retry(self) -> bool:
        delay = self.config.retry_initial_s
        while not self._stop.is_set():
            try:
                return probe_mqtt5(self.config.mqtt_url)
            except OSError as exc:
                log.warning("broker unreachable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.retry_max_s)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, let the writers finish (commit and ack) their batches, disconnect."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()
        deadline = time.monotonic() + timeout
        for writer in self._writers:
            writer.join(max(0.0, deadline - time.monotonic()))
        if self._client is not None:
            self.host.sign_off(self._client)  # Sparkplug STATE offline: a DISCONNECT drops the will
            self._client.disconnect()
            self._client.loop_stop()
        self.stats.connected = False
        if not any(w.is_alive() for w in self._writers):
            try:  # best effort: tell the status row we are gone
                with psycopg.connect(
                    self.config.database_url, autocommit=True, connect_timeout=2
                ) as conn:
                    self._last_status = 0.0
                    self._write_status(conn, None)
            except psycopg.Error:
                pass
            for conn in self._connections:
                conn.close()

    def __enter__(self) -> IngestWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Run until stopped (SIGTERM/SIGINT in the CLI)."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    # --- network thread: decode, enqueue, return ------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, rc: ReasonCode, _p: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        with self._conn_lock:
            self._connection += 1
            self._connected = True
        root = self.config.topic_root
        telemetry = telemetry_filter(root, self.shared)
        session_present = bool(getattr(flags, "session_present", False))
        if not session_present:  # a fresh subscription: devices' messages may have been dropped
            self._epoch += 1
        alert = self._watch.on_connack(session_present, time.time())
        if alert is not None:
            log.warning("ingest %s: %s", self.config.client_id, alert.detail)
            self.stats.record_subscription_event(restarted=False, alert=alert)
        self._suback_seen, self._cleanup_mid = False, None
        positions = position_filter(root, self.shared)  # carriers' positions (ingest.positions)
        extra = [(positions, 1)] + [(f, 1) for f in self.profile_filters] + [(self.host.topic, 0)]
        client.subscribe(
            [(telemetry, 1), *extra, (BROKER_DROPPED_TOPIC, 0), (BROKER_UPTIME_TOPIC, 0)]
        )
        self.host.announce(client)  # Sparkplug STATE online, after the subscriptions
        if self._v5:
            # The other mode's subscription, left in this client id's session by an earlier
            # run, would deliver every message twice: drop it after the new one is in place
            # (nothing unmatched in between; `subscribed` waits for its UNSUBACK).
            _rc, self._cleanup_mid = client.unsubscribe(
                [telemetry_filter(root, not self.shared), position_filter(root, not self.shared)]
            )
        log.info(
            "connected (session %s); subscribing to %s",
            "resumed" if session_present else "new",
            telemetry,
        )

    def _on_subscribe(
        self, _c: Any, _u: Any, _mid: int, reason_codes: list[ReasonCode], _p: Any
    ) -> None:
        if reason_codes and reason_codes[0].is_failure:
            log.error("the broker refused the telemetry subscription: %s", reason_codes[0])
            return
        self._watch.on_subscribed(time.time())
        self.stats.record_subscribed()
        self._last_status = 0.0  # tell the status row soon
        self._suback_seen = True
        if self._cleanup_mid is None:
            self.subscribed.set()

    def _on_unsubscribe(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        """The other mode's old subscription is gone (any reason code: it is not there)."""
        if mid == self._cleanup_mid:
            self._cleanup_mid = None
            if self._suback_seen:
                self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self._conn_lock:
            self._connected = False
        self._watch.on_disconnect(time.time())
        self.stats.connected = False
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", rc)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        flags = 0x30 | message.qos << 1 | message.retain
        self._on_publishes([Publish(message._topic, message.mid, bytes(message.payload), flags)])

    def _on_publishes(self, packets: list[Publish]) -> None:
        """Messages read together (``BufferedClient``; one from paho's ``on_message``) into
        the queue, in arrival order (a Sparkplug node's aliases and seq are a session)."""
        now = self.clock.now()
        connection = self._connection
        receive = self.sparkplug.receive
        for topic_bytes, mid, payload, flags in packets:
            try:
                topic = topic_bytes.decode()
            except UnicodeDecodeError:
                topic = repr(topic_bytes)
            if topic == self.host.topic and self._client is not None:
                self.host.on_state(self._client, payload)
                continue
            if topic[:1] == "$":
                self._on_broker_status(topic, payload, retained=bool(flags & 0x01))
                continue
            sp_topic = parse_topic(topic) if topic[:8] == "spBv1.0/" else None
            item = RawMessage(
                topic,
                payload,
                now,
                AckToken(mid, (flags >> 1) & 0x03, connection),
                receive(sp_topic, payload) if sp_topic is not None else None,
                self._epoch,  # read per message: a $SYS notice before it may have moved it
            )
            if not self._enqueue(item):
                return

    def _enqueue(self, item: RawMessage) -> bool:
        """Queue ``item``; False when stopping first. A full queue blocks this thread, so paho
        stops reading the socket and the broker keeps the rest (bounded by the receive
        maximum). Waking up regularly lets a stop through; what was not queued then is not
        acknowledged and will be redelivered."""
        while not self.queue.put(item, timeout=0.5):
            if self._stop.is_set():
                return False
            if not self._waiting_logged:
                log.info("queue full (%d): holding the broker back", self.queue.maxsize)
                self._waiting_logged = True
        return True

    def _publish_command(self, topic: str, payload: bytes) -> None:
        if self._client is not None:  # Sparkplug commands are QoS 0
            self._client.publish(topic, payload, qos=0)

    def _wanted_filters(self, conn: psycopg.Connection[Any]) -> list[str]:
        loaded = PROFILES.get(conn)
        return profile_filters(loaded.topic_filters(), loaded.sparkplug_groups(), self.shared)

    def _load_profile_filters(self) -> None:
        try:
            with psycopg.connect(self.config.database_url, connect_timeout=5) as conn:
                self.profile_filters = self._wanted_filters(conn)
        except psycopg.Error as exc:  # the writers retry the database; topics come later
            log.warning("could not read payload profiles' topics: %s", type(exc).__name__)
        self._filters_checked = time.monotonic()

    def _subscribe_new_profiles(self, conn: psycopg.Connection[Any]) -> None:
        """Subscribe to the topics of profiles applied since (a new profile's topic works
        within PROFILE_CACHE_MAX_AGE_S, without a restart)."""
        if time.monotonic() - self._filters_checked < PROFILE_CACHE_MAX_AGE_S:
            return
        self._filters_checked = time.monotonic()
        wanted = self._wanted_filters(conn)
        new = [f for f in wanted if f not in self.profile_filters]
        self.profile_filters = wanted
        if new and self._client is not None and self._connected:
            log.info("subscribing to the topics of new payload profiles: %s", ", ".join(new))
            self._client.subscribe([(f, 1) for f in new])

    def _on_broker_status(self, topic: str, payload: bytes, *, retained: bool) -> None:
        if topic == BROKER_DROPPED_TOPIC:
            with contextlib.suppress(ValueError):
                if self.stats.record_broker_dropped(int(payload), retained=retained):
                    self._epoch += 1  # the broker dropped messages: maybe some for us

        elif topic == BROKER_UPTIME_TOPIC and (uptime := parse_uptime(payload)) is not None:
            self.stats.record_broker_tick()
            restarted, alert = self._watch.on_uptime(uptime, time.time())
            if alert is not None:
                log.warning("ingest %s: %s", self.config.client_id, alert.detail)
            if restarted:
                self._epoch += 1
            if restarted or alert is not None:
                self.stats.record_subscription_event(restarted=restarted, alert=alert)
                self._last_status = 0.0

    # --- writer thread ----------------------------------------------------------------------

    def _collect(self) -> list[RawMessage]:
        cfg = self.config
        return self.queue.take(
            cfg.batch_max_messages,
            cfg.batch_max_bytes,
            0.1,
            cfg.batch_max_wait_s,
            cfg.batch_idle_s,
            min_bytes=cfg.batch_min_bytes,
            share=max(1, cfg.writer_threads),
        )

    def _write_loop(self, index: int) -> None:
        try:  # connect early (an outage is handled when the first batch comes)
            self._database()
        except psycopg.Error:
            self._drop_database()
        while not self._stop.is_set():
            try:
                if not self._write_one_batch(index):
                    return
            except Exception:  # never let a writer die: what was not acked is redelivered
                log.exception("ingest writer: unexpected error; carrying on")
                self._stop.wait(self.config.retry_initial_s)

    def _write_one_batch(self, index: int) -> bool:
        """Collect, store, commit, acknowledge one batch; False when stopping."""
        with Baton(self._prepare_lock) as baton:
            return self._write_batch(index, baton)

    def _write_batch(self, index: int, baton: Baton) -> bool:
        with self._take_lock:
            batch = self._collect()
            seq = self._next_seq
            if batch:
                self._next_seq += 1
        if index == 0:
            try:
                self._subscribe_new_profiles(self._database())
            except psycopg.Error:
                self._drop_database()
        if not batch:
            if index == 0:
                self._status_when_due()  # a heartbeat while idle
            return True
        self._waiting_logged = False
        try:
            result = self._store_with_retry(batch, baton.hand_on)
            baton.hand_on()
            with self._turn:  # the previous batch's acknowledgements go first
                self._turn.wait_for(lambda: self._acked_seq == seq - 1 or self._stop.is_set())
                in_turn = self._acked_seq == seq - 1
                if result is not None and in_turn:
                    self._acknowledge(batch)
                    self._confirm(result)
        finally:
            with self._turn:
                self._turn.wait_for(lambda: self._acked_seq >= seq - 1 or self._stop.is_set())
                self._acked_seq = max(self._acked_seq, seq)
                self._turn.notify_all()
        if result is None:  # stopping before the batch could commit: nothing acknowledged
            return False
        oldest = min(m.received_at for m in batch)
        lag = (self.clock.now() - oldest).total_seconds()
        self.stats.record_batch(result, lag)
        self._status_when_due()
        if self.on_batch is not None:
            self.on_batch(result)
        return True

    def _database(self) -> psycopg.Connection[Any]:
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            if db is not None:
                db.close()
            db = psycopg.connect(self.config.database_url, autocommit=True, connect_timeout=5)
            system_session(db, "system:ingest")
            self._local.db = db
            self._connections.append(db)
        return db

    def _drop_database(self) -> None:
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is not None and (db.closed or db.broken):
            db.close()
            self._local.db = None

    def _store_with_retry(
        self, batch: list[RawMessage], before_writes: Callable[[], None] | None = None
    ) -> BatchResult | None:
        delay = self.config.retry_initial_s
        failures = 0
        optimistic = True  # no savepoint around the COPY until the key refuses a reading
        while True:
            try:
                conn = self._database()
                try:
                    with conn.transaction():
                        result = store_messages(
                            conn,
                            batch,
                            limits=self.config.limits,
                            clock=self.clock,
                            optimistic=optimistic,
                            before_writes=before_writes,
                        )
                except Exception as exc:
                    if optimistic and isinstance(exc, psycopg.errors.UniqueViolation):
                        optimistic = False  # some readings are stored already: again, keyed
                        continue
                    if isinstance(exc, psycopg.Error) and transient(exc, conn):
                        raise
                    log.exception("batch of %d failed; storing it message by message", len(batch))
                    result = store_one_by_one(
                        conn, batch, limits=self.config.limits, clock=self.clock
                    )
                if failures:
                    log.info("database back after %d failed attempt(s)", failures)
                return result
            except psycopg.Error as exc:
                failures += 1
                with self.stats.lock:
                    self.stats.database_errors_total += 1
                    self.stats.lock.notify_all()
                log.warning(
                    "database unavailable (%s: %s); keeping %d message(s) unacknowledged, "
                    "retry %d in %.1f s",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    len(batch),
                    failures,
                    delay,
                )
                self._drop_database()
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self.config.retry_max_s)

    def _acknowledge(self, batch: Iterable[RawMessage]) -> None:
        client = self._client
        assert client is not None
        with self._conn_lock:
            skipped = send_acks(client, batch, self._connection if self._connected else -1)
        if skipped:
            with self.stats.lock:
                self.stats.acks_skipped_total += skipped
            log.info(
                "%d committed message(s) came on a lost connection: the broker redelivers "
                "them and the duplicates are ignored",
                skipped,
            )

    def _confirm(self, result: BatchResult) -> None:
        """Tell each device that numbers its messages which of them are now handled:
        ``{"seq": hi, "from": lo}`` per run segment (ingest.confirm_runs), retained QoS 1 on its
        own acknowledgement topic (docs/telemetry.md). Called in batch order."""
        client = self._client
        if not result.confirmed or client is None:
            return
        root = self.config.topic_root
        for c in self._runs.confirm(result.confirmed):
            client.publish(ack_topic(root, c.device), c.payload(), qos=1, retain=True)

    # --- status -------------------------------------------------------------------------------

    def status(self) -> IngestorStatus:
        return self.stats.snapshot(self.config.client_id, self.clock.now(), self.queue.qsize())

    def _write_status(self, conn: psycopg.Connection[Any], pending: BatchResult | None) -> None:
        """Upsert this ingestor's status row (in its own short transaction)."""
        status = self.status()
        status.readings_per_s = self.stats.readings_per_s()
        if pending is not None:
            status.messages_total += pending.messages
            status.stored_total += pending.stored
            status.duplicates_total += pending.duplicates
            status.quarantined_total += pending.quarantined_total
        with conn.transaction():
            repo.upsert_ingestor_status(conn, status)

    def _status_when_due(self) -> None:
        """Record the status row at most every status_interval_s (any writer may)."""
        now = time.monotonic()
        with self._status_lock:
            if now - self._last_status < self.config.status_interval_s:
                return
            self._last_status = now
        try:
            self._write_status(self._database(), None)
        except psycopg.Error as exc:
            self._drop_database()
            log.warning("could not record ingest status: %s", type(exc).__name__)


def default_client_id() -> str:
    """A client id stable for this host, when settings give none."""
    return f"fleetcare-ingest-{socket.gethostname()}"[:64]
