"""Fault suite: a private Mosquitto (shipped configuration) killed with -9, with and without
the devices' confirmation, and a private PostgreSQL cluster taken down for 30 s. See the table
in docs/telemetry.md (guarantees per failure).

The other failures of that table have their tests in tests/test_ingest_mqtt.py (ingestor
kill -9, broker clean restart) and tests/test_ingest_subscription.py (a client id switching
subscription modes, lost sessions)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.services import ChildBroker, free_port, mosquitto_installed, start_mosquitto
from ingest.schemas import IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from simulators.devices import MqttLink
from tests.fixtures.private_pg import PrivatePostgres, postgres_bin
from tests.fixtures.services import migrated_database
from tests.ingest_helpers import Publisher, SmallFleet, make_fleet
from tests.test_ingest_mqtt import count_telemetry, stream, topic, wait_for_count

TIMEOUT = 90

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn, tires=10)


class Broker:
    """A private Mosquitto on its own port and data folder, that a test may kill."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.child: ChildBroker
        self.url = ""
        self.start()

    def start(self) -> None:
        self.child, self.url = start_mosquitto(self.data, self.port)

    def kill(self) -> None:
        """kill -9: no chance to save its store."""
        self.child.proc.send_signal(signal.SIGKILL)
        self.child.proc.wait(10)
        self.child.stop()

    def saved_after(self, when: float, timeout: float = 10.0) -> bool:
        """Wait until the broker has written its store after ``when`` (a wall time)."""
        store = self.data / "mosquitto.db"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if store.exists() and store.stat().st_mtime > when:
                return True
            time.sleep(0.05)
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    yield b
    b.child.stop()


def _ingestor(
    broker: Broker, db_url: str, root: str, client_id: str, **options: Any
) -> IngestWorker:
    worker = IngestWorker(
        IngestConfig(
            mqtt_url=broker.url,
            database_url=db_url,
            client_id=client_id,
            limits=IngestLimits(topic_root=root, max_readings_per_message=100),
            batch_max_wait_s=0.05,
            **options,
        )
    )
    worker.start()
    assert worker.subscribed.wait(TIMEOUT), "ingestor did not subscribe"
    return worker


def _has(db_url: str, value: float) -> bool:
    with connect(db_url) as c:
        return (
            c.execute("SELECT 1 FROM telemetry WHERE value = %s", (value,)).fetchone() is not None
        )


def _stored_once(db_url: str) -> tuple[int, int]:
    """(rows, distinct readings): the unique key makes them equal; checked all the same."""
    with connect(db_url) as c:
        row = c.execute(
            "SELECT count(*), count(DISTINCT (asset_id, metric_id, time)) FROM telemetry"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_broker_kill_9_with_device_confirmation_loses_nothing(
    broker: Broker, small: SmallFleet, topic_root: str, db_url: str
) -> None:
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    # the ingestor's session exists, then it is away: the broker holds what devices send
    _ingestor(broker, db_url, topic_root, client_id).stop()
    device = MqttLink(broker.url, small.device_a, small.secret_a, topic_root)
    device.client.reconnect_delay_set(1, 1)
    payloads = stream(small, 10_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    device.connect()
    try:
        for p in payloads:
            device.publish(p)
        assert device.wait_acked(TIMEOUT)  # the broker has every message (PUBACK) ...
        broker.kill()  # ... and dies before its next save: what it held is gone
        assert device.unconfirmed == len(payloads)
        broker.start()
        worker = _ingestor(broker, db_url, topic_root, client_id)
        try:
            # the device reconnects, sends again what fleetcare has not confirmed, and empties
            # its buffer as the confirmations come
            assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} unconfirmed"
            assert wait_for_count(db_url, 10_000) == 10_000
        finally:
            worker.stop()
        assert device.resent >= 1
        assert _stored_once(db_url) == (10_000, 10_000)
    finally:
        device.disconnect(timeout=5)


def _drop_subscription(broker: Broker, client_id: str, topic_filter: str) -> bool:
    """Take over ``client_id``'s persistent session, unsubscribe ``topic_filter`` and leave:
    the session stays, without that subscription. True when the session was there."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    present: list[bool] = []
    gone: list[int] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: present.append(flags.session_present)
    client.on_unsubscribe = lambda _c, _u, mid, _rc, _p: gone.append(mid)
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    deadline = time.monotonic() + TIMEOUT
    while not present and time.monotonic() < deadline:
        client.loop(0.1)
    _rc, mid = client.unsubscribe(topic_filter)
    while mid not in gone and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    assert present and mid in gone, "the broker did not answer"
    return present[0]


def test_a_device_whose_session_came_back_without_its_subscription_is_still_confirmed(
    broker: Broker, small: SmallFleet, topic_root: str, db_url: str
) -> None:
    """A broker restored from a save taken between a device's CONNECT and its SUBSCRIBE has
    the session and not the subscription (the fault probe, bench/fault_probe.py, saw devices
    that subscribed only when the session was not present stop hearing confirmations after a
    kill -9). The reference device subscribes to its confirmations on every connection,
    whatever session present says (docs/telemetry.md, device contract, step 3)."""
    worker = _ingestor(broker, db_url, topic_root, f"ingest-{uuid.uuid4().hex[:8]}")
    payloads = stream(small, 4_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    device = MqttLink(broker.url, small.device_a, small.secret_a, topic_root)
    try:
        device.connect()
        for p in payloads[:40]:
            device.publish(p)
        assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} never confirmed"
        device.disconnect(timeout=5)
        # the session as such a save leaves it: there, without the confirmations' subscription
        assert _drop_subscription(broker, f"sim-{small.device_a}", device.ack)
        device.connect()  # session present
        for p in payloads[40:]:
            device.publish(p)
        assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} never confirmed"
        assert wait_for_count(db_url, 4_000) == 4_000
    finally:
        device.disconnect(timeout=5)
        worker.stop()


def test_broker_kill_9_without_confirmation_loses_only_what_came_after_its_last_save(
    broker: Broker, small: SmallFleet, topic_root: str, db_url: str
) -> None:
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    _ingestor(broker, db_url, topic_root, client_id).stop()
    payloads = stream(small, 20_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    before, after = payloads[:200], payloads[200:]
    pub = Publisher(broker.url)
    try:
        pub.publish_many(topic(topic_root, small.device_a), before)
        pub.wait_all_acked(TIMEOUT)
        acked_at = time.time()
        # the shipped configuration saves every second: the first part is on disk soon
        assert broker.saved_after(acked_at + 0.01), "the broker did not save within 10 s"
        pub.publish_many(topic(topic_root, small.device_a), after)
        pub.wait_all_acked(TIMEOUT)
        broker.kill()  # right after the second part's PUBACKs
    finally:
        pub.client.loop_stop()
    broker.start()
    # one writer: batches commit in the order the broker delivers, so once a reading sent
    # after the restart is stored, everything the broker still had is stored too
    worker = _ingestor(broker, db_url, topic_root, client_id, writer_threads=1)
    pub = Publisher(broker.url)
    try:
        sentinel = {"asset": small.tires[0], "ts": int(time.time() * 1000), "metrics": {}}
        sentinel["metrics"] = {"pressure_kpa": 901.5}
        pub.publish(topic(topic_root, small.device_a), sentinel)
        pub.wait_all_acked(TIMEOUT)
        assert wait_for_count(db_url, len(before) * 50 + 1) >= len(before) * 50 + 1
        assert worker.stats.wait_for(lambda s: _has(db_url, 901.5), TIMEOUT)
        stored = count_telemetry(db_url) - 1
    finally:
        pub.close()
        worker.stop()
    rows, distinct = _stored_once(db_url)
    assert rows == distinct == stored + 1
    # everything saved before the crash is there; only the last window can be missing
    assert len(before) * 50 <= stored <= len(payloads) * 50
    lost = len(payloads) * 50 - stored
    print(f"broker kill -9 without confirmation: {lost} of {len(after) * 50} lost")


@pytest.fixture
def private_db() -> Iterator[tuple[PrivatePostgres, str]]:
    """A migrated database on a PostgreSQL cluster of this test's own."""
    if postgres_bin() is None:
        pytest.skip("needs initdb and pg_ctl")
    cluster = PrivatePostgres()
    try:
        yield cluster, migrated_database(cluster.url, "fleetcare")
    finally:
        cluster.remove()


def test_database_down_30_s_loses_nothing_and_stores_each_reading_once(
    broker: Broker, private_db: tuple[PrivatePostgres, str], topic_root: str
) -> None:
    cluster, db_url = private_db
    with connect(db_url) as c:
        small = make_fleet(c, tires=10)
    payloads = stream(small, 30_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    t = topic(topic_root, small.device_a)
    worker = _ingestor(broker, db_url, topic_root, f"ingest-{uuid.uuid4().hex[:8]}")
    pub = Publisher(broker.url)
    try:
        pub.publish_many(t, payloads[:200])
        assert wait_for_count(db_url, 10_000) == 10_000
        cluster.stop("immediate")  # the database crashes ...
        down_at = time.monotonic()
        pub.publish_many(t, payloads[200:400])  # ... while devices go on sending
        pub.wait_all_acked(TIMEOUT)
        assert worker.stats.wait_for(lambda s: s.database_errors_total >= 1, TIMEOUT)
        # held for 30 s: the ingestor keeps its batch, acknowledges nothing, retries
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        pub.publish_many(t, payloads[400:])
        cluster.start()
        assert wait_for_count(db_url, 30_000, timeout=TIMEOUT) == 30_000
        pub.wait_all_acked(TIMEOUT)
    finally:
        pub.close()
        worker.stop()
    assert _stored_once(db_url) == (30_000, 30_000)


def _end_session(broker: Broker, client_id: str) -> None:
    """Connect as ``client_id`` with a clean start and no session expiry, and leave: its
    persistent session and subscriptions are gone (as after a broker crash that lost them)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    answered: list[bool] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: answered.append(flags.session_present)
    client.connect("127.0.0.1", broker.port, clean_start=True, properties=props)
    deadline = time.monotonic() + TIMEOUT
    while not answered and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    client.loop(0.1)
    assert answered == [False], "the broker did not answer"


def _confirm_then_drop(
    device: MqttLink,
    worker: Any,
    broker: Broker,
    client_id: str,
    confirmed: list[bytes],
    dropped: list[bytes],
) -> None:
    """The device's ``confirmed`` messages stored and confirmed; then the ingestor stops and
    its session ends, and the broker acknowledges ``dropped`` and drops them (no subscriber)."""
    device.connect()
    for p in confirmed:
        device.publish(p)
    assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} never confirmed"
    worker.stop()
    _end_session(broker, client_id)  # nobody subscribed now
    for p in dropped:
        device.publish(p)
    assert device.wait_acked(TIMEOUT)
    assert device.unconfirmed == len(dropped)


def test_messages_dropped_while_the_ingestor_had_no_session_are_sent_again_and_stored(
    broker: Broker, small: SmallFleet, topic_root: str, db_url: str
) -> None:
    """Issue 24's hole (the fault probe, kill9-live): the broker lost the ingestor's session,
    so what a device sent before the ingestor subscribed again went nowhere ("no matching
    subscribers", a success PUBACK). A bare high-water mark then confirmed newer numbers and
    the device dropped the lost ones; a confirmation of the run ({"seq", "from"}) makes it send
    them again."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    payloads = stream(small, 3_000, 50, datetime.now(UTC) - timedelta(minutes=5))  # 60 messages
    device = MqttLink(broker.url, small.device_a, small.secret_a, topic_root)
    worker = _ingestor(broker, db_url, topic_root, client_id)
    try:
        _confirm_then_drop(device, worker, broker, client_id, payloads[:20], payloads[20:40])
        worker = _ingestor(broker, db_url, topic_root, client_id)  # session present 0
        for p in payloads[40:]:
            device.publish(p)
        assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} never confirmed"
        assert wait_for_count(db_url, 3_000) == 3_000, "readings the device dropped as confirmed"
        assert device.resent >= 20
        assert _stored_once(db_url) == (3_000, 3_000)
    finally:
        device.disconnect(timeout=5)
        worker.stop()


def test_the_last_messages_dropped_without_an_ingestor_session_are_sent_again_after_silence(
    broker: Broker, small: SmallFleet, topic_root: str, db_url: str
) -> None:
    """The same hole at the end of a burst (the fault probe, kill9-live on MQTT 3.1.1: 34
    messages held, every reading stored, confirmed only after a reconnect): nothing newer comes
    from the device to start a run above the dropped messages, and subscribing again brings
    back the retained confirmation from before the loss. The device sends them again after a
    silence (contract step 3)."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    payloads = stream(small, 2_000, 50, datetime.now(UTC) - timedelta(minutes=5))  # 40 messages
    device = MqttLink(broker.url, small.device_a, small.secret_a, topic_root, resend_after_s=0.5)
    worker = _ingestor(broker, db_url, topic_root, client_id)
    try:  # the last ones are dropped
        _confirm_then_drop(device, worker, broker, client_id, payloads[:20], payloads[20:])
        worker = _ingestor(broker, db_url, topic_root, client_id)  # session present 0
        assert device.wait_confirmed(TIMEOUT), f"{device.unconfirmed} never confirmed"
        assert wait_for_count(db_url, 2_000) == 2_000
        assert device.resent >= 20
        assert _stored_once(db_url) == (2_000, 2_000)
    finally:
        device.disconnect(timeout=5)
        worker.stop()
