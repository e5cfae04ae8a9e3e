"""The Mosquitto that `fleetcare up` starts: only registered devices and the ingestor connect,
each device only on its own topics (password and ACL files from the registry, reloaded as
devices are added). Real Mosquitto, real database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.services import mosquitto_installed, running_services
from fleetcare.settings import Settings
from ingest import service as devices
from ingest.broker_sync import BrokerAccess
from ingest.mqtt_client import mqtt_endpoint
from ingest.schemas import DeviceCreate, IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from simulators.devices import MqttLink
from tests.ingest_helpers import OPERATOR, epoch_ms, make_fleet, reading

TIMEOUT = 60

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


def connack(url: str, user: str | None = None, password: str | None = None) -> str:
    """The broker's answer to a connection (``Success`` or why not)."""
    host, port, _, _, _ = mqtt_endpoint(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    if user is not None:
        client.username_pw_set(user, password)
    answers: list[str] = []
    answered = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        answers.append(rc.getName())
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        assert answered.wait(TIMEOUT), "the broker did not answer"
    finally:
        client.disconnect()
        client.loop_stop()
    return answers[0]


def telemetry_of(db_url: str, asset_id: int) -> int:
    with connect(db_url) as c:
        row = c.execute("SELECT count(*) FROM telemetry WHERE asset_id = %s", (asset_id,))
        return int(row.fetchone()[0])  # type: ignore[index]


def wait_for(check: Any, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_up_broker_keeps_each_device_to_its_own_topics(
    conn: Connection[Any], db_url: str, topic_root: str, tmp_path: Path
) -> None:
    small = make_fleet(conn, tires=1)
    settings = Settings(database_url=db_url, mqtt_url="mosquitto", data_dir=tmp_path / "data",
                        topic_root=topic_root, demo=False)  # fmt: skip
    access = BrokerAccess(tmp_path / "access", topic_root)
    stop = threading.Event()
    # as `fleetcare up` starts it
    with running_services(settings, broker_login=access.login()) as services:
        assert services.guarded_broker_pid is not None
        access.keep_current(db_url, services.guarded_broker_pid, stop, every_s=0.2)
        plain = f"mqtt://127.0.0.1:{mqtt_endpoint(services.mqtt_url)[1]}"
        worker = IngestWorker(
            IngestConfig(
                mqtt_url=services.mqtt_url,  # the ingestor's login
                database_url=db_url,
                client_id=f"ingest-{uuid.uuid4().hex[:8]}",
                limits=IngestLimits(topic_root=topic_root),
                batch_max_wait_s=0.05,
            )
        )
        worker.start()
        links: list[MqttLink] = []
        try:
            assert worker.subscribed.wait(TIMEOUT), "ingestor did not subscribe"
            assert connack(plain) == "Not authorized"  # anonymous
            assert connack(plain, small.device_a, "not-its-secret") != "Success"
            now = epoch_ms(datetime.now(UTC) - timedelta(minutes=1))
            # A's device writes into B's telemetry topic, naming B's elevator
            intruder = MqttLink(plain, small.device_a, small.secret_a, topic_root, confirm=False,
                                topic=f"{topic_root}/{small.device_b}/telemetry")  # fmt: skip
            links.append(intruder)
            intruder.connect(timeout=TIMEOUT)
            forged = reading(small.elevator, now, trip_count=1)
            intruder.publish(json.dumps(forged).encode())
            # then its own reading, on its own topic, from the same connection: once that is
            # stored, the one before it would have been too
            own = MqttLink(plain, small.device_a, small.secret_a, topic_root, confirm=False)
            intruder.client.publish(own.topic, json.dumps(reading(small.tires[0], now,
                                    pressure_kpa=812)).encode(), qos=1)  # fmt: skip
            tire = small.tire_ids[small.tires[0]]
            assert wait_for(lambda: telemetry_of(db_url, tire) == 1)
            assert telemetry_of(db_url, small.elevator_id) == 0
            with connect(db_url) as c:
                quarantined = c.execute("SELECT count(*) FROM quarantine").fetchone()
            assert quarantined == (0,)
            # a device registered while the broker runs connects once the files are reloaded
            late = devices.create_device(
                conn,
                OPERATOR,
                DeviceCreate(customer_id=small.customer_b, ref=f"gw-b-late-{uuid.uuid4().hex[:6]}"),
            )
            conn.commit()
            newcomer = MqttLink(plain, late.ref, late.secret, topic_root, confirm=False)
            links.append(newcomer)
            newcomer.connect(timeout=TIMEOUT)
            newcomer.publish(json.dumps(reading(small.elevator, now, trip_count=3)).encode())
            assert wait_for(lambda: telemetry_of(db_url, small.elevator_id) == 1)
            assert access.reloads >= 2
        finally:
            for link in links:
                link.disconnect(timeout=5)
            worker.stop()
            stop.set()
