"""The consumer through the real broker and the real database: exactly once, quarantine,
redelivery, SIGKILL, PostgreSQL outage, broker restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from psycopg import Connection, sql

from fleetcare.db import connect
from fleetcare.services import free_port, mosquitto_installed, start_amqtt, start_mosquitto
from ingest.schemas import IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from tests.fixtures.services import server_of
from tests.ingest_helpers import (
    Publisher,
    SmallFleet,
    epoch_ms,
    make_fleet,
    reading,
)

TIMEOUT = 60
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn, tires=10)


WorkerFactory = Callable[..., IngestWorker]


@pytest.fixture
def start_worker(db_url: str, mqtt_url: str, topic_root: str) -> Iterator[WorkerFactory]:
    """Start in-process ingestors (stopped at the end of the test)."""
    started: list[IngestWorker] = []

    def start(url: str | None = None, **overrides: Any) -> IngestWorker:
        options: dict[str, Any] = {
            "mqtt_url": url or mqtt_url,
            "database_url": db_url,
            "client_id": f"ingest-{uuid.uuid4().hex[:8]}",
            "limits": IngestLimits(topic_root=topic_root, max_readings_per_message=100),
            "batch_max_wait_s": 0.05,
        }
        options.update(overrides)
        worker = IngestWorker(IngestConfig(**options))
        worker.start()
        started.append(worker)
        assert worker.subscribed.wait(TIMEOUT), "ingestor did not subscribe"
        return worker

    yield start
    for w in started:
        w.stop()


def stream(small: SmallFleet, readings: int, per_message: int, start: datetime) -> list[bytes]:
    """Payloads of ``readings`` distinct readings (one metric each) over the fleet's tires."""
    out: list[bytes] = []
    base = epoch_ms(start)
    rows = [
        reading(
            small.tires[i % len(small.tires)],
            base + i // len(small.tires),
            pressure_kpa=800 + i % 50,
        )
        for i in range(readings)
    ]
    import json

    for i in range(0, readings, per_message):
        chunk = rows[i : i + per_message]
        out.append(json.dumps(chunk[0] if per_message == 1 else {"readings": chunk}).encode())
    return out


def count_telemetry(db_url: str) -> int:
    with connect(db_url) as c:
        row = c.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


def wait_for_count(db_url: str, expected: int, timeout: float = TIMEOUT) -> int:
    """Poll the database until ``expected`` rows are there (or time runs out)."""
    deadline = time.monotonic() + timeout
    n = count_telemetry(db_url)
    while n < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        n = count_telemetry(db_url)
    return n


def wait_until_subscribed(db_url: str, client_id: str, timeout: float = TIMEOUT) -> bool:
    """Poll the ingestor's status row until it reports itself connected and subscribed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(db_url) as c:
            row = c.execute(
                "SELECT connected FROM ingestors WHERE client_id = %s", (client_id,)
            ).fetchone()
        if row and row[0]:
            return True
        time.sleep(0.1)
    return False


def topic(root: str, device: str) -> str:
    return f"{root}/{device}/telemetry"


def test_every_reading_stored_once_and_bad_input_never_stops_the_consumer(
    start_worker: WorkerFactory, small: SmallFleet, mqtt_url: str, topic_root: str, db_url: str
) -> None:
    worker = start_worker()
    now = datetime.now(UTC) - timedelta(minutes=5)
    good = stream(small, 3000, 50, now) + stream(small, 300, 1, now + timedelta(minutes=1))
    t = topic(topic_root, small.device_a)
    tire = small.tires[0]
    ok = epoch_ms(now)
    bad: list[tuple[str, str, bytes | dict[str, Any]]] = [
        ("bad_json", t, b"{nope"),
        ("bad_encoding", t, b"\xff\xfe"),
        ("bad_structure", t, {"asset": tire}),
        ("unknown_device", topic(topic_root, "ghost"), reading(tire, ok, speed_kmh=1)),
        ("unknown_asset", t, reading("NOPE", ok, speed_kmh=1)),
        ("unknown_asset", t, reading(small.elevator, ok, trip_count=1)),  # another customer's
        ("unknown_metric", t, reading(tire, ok, warp=9)),
        ("out_of_bounds", t, reading(tire, ok, speed_kmh=1e9)),
        (
            "not_finite",
            t,
            b'{"asset": "TRK-0-FL", "ts": %d, "metrics": {"speed_kmh": Infinity}}' % ok,
        ),
        ("ts_in_future", t, reading(tire, epoch_ms(now + timedelta(days=1)), speed_kmh=1)),
        ("ts_too_old", t, reading(tire, epoch_ms(now - timedelta(days=400)), speed_kmh=1)),
        ("too_many_readings", t, {"readings": [reading(tire, ok, speed_kmh=1)] * 101}),
        ("oversized", t, b" " * (300 * 1024)),
    ]
    partly_bad = {"readings": [reading(tire, ok + 7, speed_kmh=20, bogus=1)]}
    pub = Publisher(mqtt_url)
    try:
        half = len(good) // 2
        pub.publish_many(t, good[:half])
        for _, bad_topic, payload in bad:
            pub.publish(bad_topic, payload)
        pub.publish(t, partly_bad)
        pub.publish_many(t, good[half:])
        pub.wait_all_acked()
        total_messages = len(good) + len(bad) + 1
        assert worker.stats.wait_for(lambda s: s.messages_total >= total_messages, TIMEOUT)
        # the same messages again: a redelivery changes nothing
        pub.publish_many(t, good[:5])
        pub.wait_all_acked()
        assert worker.stats.wait_for(lambda s: s.messages_total >= total_messages + 5, TIMEOUT)
    finally:
        pub.close()
    assert count_telemetry(db_url) == 3300 + 1  # + the good value of the partly bad message
    s = worker.stats
    assert (s.stored_total, s.duplicates_total) == (3301, 5 * 50)
    with connect(db_url) as c:
        reasons = c.execute("SELECT reason FROM quarantine ORDER BY reason").fetchall()
    expected = sorted([r for r, _, _ in bad] + ["unknown_metric"])
    assert [r[0] for r in reasons] == expected
    assert s.quarantined[(small.device_a, "out_of_bounds")] == 1
    assert s.quarantined[("ghost", "unknown_device")] == 1
    metrics_text = "\n".join(str(m) for m in worker.registry.collect())
    assert "fleetcare_ingest_quarantined" in metrics_text


def _restrict_connections(db_url: str, allow: bool) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(server_of(db_url), autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if allow else "false")
            )
        )
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_database_outage_loses_nothing_and_recovers_alone(
    start_worker: WorkerFactory,
    small: SmallFleet,
    mqtt_url: str,
    topic_root: str,
    db_url: str,
) -> None:
    # a small queue and receive window, so the outage also exercises backpressure
    worker = start_worker(
        queue_max_messages=100,
        receive_maximum=100,
        batch_max_messages=50,
        retry_initial_s=0.2,
        retry_max_s=2.0,
    )
    payloads = stream(small, 20_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    t = topic(topic_root, small.device_a)
    pub = Publisher(mqtt_url)
    try:
        pub.publish_many(t, payloads[:50])
        assert worker.stats.wait_for(lambda s: s.batches_total >= 1, TIMEOUT)
        _restrict_connections(db_url, allow=False)
        try:
            pub.publish_many(t, payloads[50:])
            # the database stays away while each of the 2 writers fails 7 attempts (~10 s)
            assert worker.stats.wait_for(lambda s: s.database_errors_total >= 14, TIMEOUT)
            assert worker.queue.qsize() <= 100
        finally:
            _restrict_connections(db_url, allow=True)
        pub.wait_all_acked()
        assert wait_for_count(db_url, 20_000) == 20_000
    finally:
        pub.close()
    assert worker.stats.stored_total == 20_000
    # the broker's own counter: our configuration dropped nothing while the ingestor watched.
    # A drop is published at the broker's next $SYS update, before the uptime that follows it:
    # two more uptime ticks and any drop of this test has been seen.
    ticks = worker.stats.broker_ticks
    assert worker.stats.wait_for(lambda s: s.broker_ticks >= ticks + 2, TIMEOUT)
    assert worker.stats.broker_dropped == 0


def test_broker_restart_loses_nothing(
    start_worker: WorkerFactory, small: SmallFleet, topic_root: str, db_url: str, tmp_path: Path
) -> None:
    data, port = tmp_path / "broker", free_port()
    broker, url = start_mosquitto(data, port)
    try:
        # Mosquitto 2.0 forgets shared subscriptions on restart (see IngestConfig): the
        # single-ingestor set-up on Mosquitto uses a plain, persisted subscription
        worker = start_worker(url, shared_subscription=False)
        payloads = stream(small, 20_000, 50, datetime.now(UTC) - timedelta(minutes=5))
        t = topic(topic_root, small.device_a)
        pub = Publisher(url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        pub.client.reconnect_delay_set(1, 1)
        try:
            pub.publish_many(t, payloads[:100])
            assert worker.stats.wait_for(lambda s: s.stored_total >= 1000, TIMEOUT)
            broker.stop()  # SIGTERM: Mosquitto saves sessions and queues to disk
            pub.publish_many(t, payloads[100:300])  # held by the publisher while away
            broker, _ = start_mosquitto(data, port)
            pub.publish_many(t, payloads[300:])
            pub.wait_all_acked(TIMEOUT)
            assert wait_for_count(db_url, 20_000) == 20_000
        finally:
            pub.close()
        assert worker.stats.stored_total == 20_000
    finally:
        broker.stop()


def _ingest_process(
    db_url: str, mqtt_url: str, topic_root: str, client_id: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FLEETCARE_DATABASE_URL": db_url,
        "FLEETCARE_MQTT_URL": mqtt_url,
        "FLEETCARE_TOPIC_ROOT": topic_root,
        "FLEETCARE_INGEST_CLIENT_ID": client_id,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest", "--batch-wait-ms", "50"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def test_sigkilled_ingestor_restarts_and_stores_everything_once(
    small: SmallFleet, mqtt_url: str, topic_root: str, db_url: str, tmp_path: Path
) -> None:
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "ingest.log"
    payloads = stream(small, 30_000, 50, datetime.now(UTC) - timedelta(minutes=5))
    t = topic(topic_root, small.device_a)
    proc = _ingest_process(db_url, mqtt_url, topic_root, client_id, log)
    pub = Publisher(mqtt_url)
    done = threading.Event()

    # The first two thirds go out while the ingestor runs; the rest only once it is dead, so
    # the kill always lands mid-stream however fast this machine stores.
    before_kill = len(payloads) * 2 // 3

    def publish_all() -> None:
        pub.publish_many(t, payloads[:before_kill])
        done.set()

    try:
        assert wait_until_subscribed(db_url, client_id), log.read_text()[-2000:]
        pub.publish(t, payloads[0])
        assert wait_for_count(db_url, 50) == 50, log.read_text()[-2000:]
        publisher = threading.Thread(target=publish_all)
        publisher.start()
        assert wait_for_count(db_url, 5000) >= 5000
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = count_telemetry(db_url)
        assert done.wait(TIMEOUT)
        publisher.join()
        pub.publish_many(t, payloads[before_kill:])
        pub.wait_all_acked()
        proc = _ingest_process(db_url, mqtt_url, topic_root, client_id, log)
        assert wait_for_count(db_url, 30_000) == 30_000, log.read_text()[-2000:]
        assert killed_at < 30_000, "the kill came too late to test anything"
    finally:
        pub.close()
        proc.terminate()
        proc.wait(10)
    assert count_telemetry(db_url) == 30_000


def test_mqtt311_broker_falls_back_to_a_plain_subscription(
    start_worker: WorkerFactory, small: SmallFleet, topic_root: str, db_url: str, tmp_path: Path
) -> None:
    broker, url = start_amqtt(tmp_path / "amqtt")
    try:
        worker = start_worker(url)
        assert worker.stats.protocol == "3.1.1" and not worker.shared
        payloads = stream(small, 500, 50, datetime.now(UTC) - timedelta(minutes=5))
        pub = Publisher(url, protocol=mqtt.MQTTv311)
        try:
            pub.publish_many(topic(topic_root, small.device_a), payloads)
            pub.wait_all_acked()
            assert worker.stats.wait_for(lambda s: s.stored_total >= 500, TIMEOUT)
        finally:
            pub.close()
        assert count_telemetry(db_url) == 500
    finally:
        broker.stop()


def test_profile_topics_are_subscribed_at_start_and_when_applied(
    start_worker: WorkerFactory, small: SmallFleet, db_url: str, mqtt_url: str
) -> None:
    """A profile's own topic pattern works over MQTT: subscribed when the ingestor starts,
    and a profile applied while it runs is subscribed without a restart."""
    from ingest import profile_service
    from tests.ingest_helpers import OPERATOR

    tag = uuid.uuid4().hex[:8]

    def apply(name: str, pattern: str) -> None:
        with connect(db_url) as c:
            profile_service.apply_profile(
                c,
                OPERATOR,
                {
                    "name": name,
                    "format": "json",
                    "topic": pattern,
                    "asset": "id",
                    "time": {"field": "t", "format": "epoch_ms"},
                    "metrics": {"pressure_kpa": {"field": "psi", "scale": 6.894757}},
                },
                source="test",
            )
            c.execute("UPDATE devices SET profile = %s WHERE ref = %s", (name, small.device_a))
            c.commit()

    apply(f"early-{tag}", f"acme-{tag}/{{device}}/up")
    worker = start_worker()
    assert f"acme-{tag}/+/up" in worker.profile_filters
    t0 = epoch_ms(datetime.now(UTC) - timedelta(minutes=5))
    pub = Publisher(mqtt_url)
    try:
        body = {"id": small.tires[0], "t": t0, "psi": 100.0}
        pub.publish(f"acme-{tag}/{small.device_a}/up", body)
        pub.wait_all_acked()
        assert wait_for_count(db_url, 1) == 1
        # a profile applied now: its topic is subscribed within the profile cache's age
        apply(f"late-{tag}", f"late-{tag}/{{device}}/data")
        deadline = time.monotonic() + TIMEOUT
        while f"late-{tag}/+/data" not in worker.profile_filters:
            assert time.monotonic() < deadline, "the new profile's topic was not subscribed"
            time.sleep(0.1)
        # the SUBSCRIBE may still be on its way: publish until a reading is stored
        body = {"id": small.tires[0], "t": t0 + 1, "psi": 101.0}
        while count_telemetry(db_url) < 2:
            assert time.monotonic() < deadline, "nothing stored from the new profile's topic"
            pub.publish(f"late-{tag}/{small.device_a}/data", body)
            pub.wait_all_acked()
            wait_for_count(db_url, 2, timeout=1.0)
        assert count_telemetry(db_url) == 2  # re-sent copies are duplicates, not new rows
    finally:
        pub.close()
