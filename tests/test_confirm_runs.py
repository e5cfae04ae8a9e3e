"""Confirmation runs (ingest.confirm_runs): which numbers the ingestor may confirm as handled,
and what the pipeline hands it (docs/telemetry.md, "Confirmation: acknowledged means stored")."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import Connection

from fleetcare.clock import ManualClock
from ingest.confirm_runs import Confirmation, RunTracker
from ingest.mqtt_client import Publish
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from tests.ingest_helpers import make_fleet, raw, reading

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_a_run_grows_within_an_epoch_and_across_batches() -> None:
    runs = RunTracker()
    assert runs.confirm([("d", 10, 1), ("d", 11, 1), ("d", 12, 1)]) == [Confirmation("d", 10, 12)]
    # the next batch: the run goes on from 10; a gap in the numbers the device itself left
    # (a message refused before its seq was read) is inside the run
    assert runs.confirm([("d", 14, 1)]) == [Confirmation("d", 10, 14)]
    assert Confirmation("d", 10, 14).payload() == b'{"seq":14,"from":10}'


def test_the_first_message_after_process_start_starts_a_run() -> None:
    # a new tracker (a restarted ingestor) knows nothing of earlier runs
    assert RunTracker().confirm([("d", 500, 0), ("d", 501, 0)]) == [Confirmation("d", 500, 501)]


def test_a_new_epoch_starts_a_new_run_even_when_the_number_grows() -> None:
    runs = RunTracker()
    runs.confirm([("d", 1, 1), ("d", 2, 1)])
    # 3..40 were dropped by the broker while the ingestor's subscription was gone
    assert runs.confirm([("d", 41, 2), ("d", 42, 2)]) == [Confirmation("d", 41, 42)]


def test_a_number_going_back_starts_a_new_run() -> None:
    runs = RunTracker()
    runs.confirm([("d", 41, 2), ("d", 42, 2)])
    # the device resends 3..5 (below the "from" it was told), then goes on with 43
    assert runs.confirm([("d", 3, 2), ("d", 4, 2), ("d", 5, 2), ("d", 43, 2)]) == [
        Confirmation("d", 3, 43)
    ]
    # a repeated number (a redelivery) is not growth either
    assert runs.confirm([("d", 43, 2)]) == [Confirmation("d", 43, 43)]


def test_several_segments_in_one_batch_are_confirmed_each_in_order() -> None:
    runs = RunTracker()
    seen = [
        ("a", 1, 1),
        ("b", 100, 1),
        ("a", 2, 1),
        ("a", 20, 2),  # new epoch: a second segment for a
        ("b", 101, 2),  # and for b
        ("a", 5, 2),  # back: a third for a
        ("a", 6, 2),
    ]
    assert runs.confirm(seen) == [
        Confirmation("a", 1, 2),
        Confirmation("b", 100, 100),
        Confirmation("a", 20, 20),
        Confirmation("b", 101, 101),
        Confirmation("a", 5, 6),
    ]
    # the device's last confirmation is its current run
    assert runs.confirm([("a", 7, 2)]) == [Confirmation("a", 5, 7)]


def test_devices_runs_are_independent() -> None:
    runs = RunTracker()
    runs.confirm([("a", 1, 1), ("b", 50, 1)])
    assert runs.confirm([("b", 51, 1), ("a", 2, 1)]) == [
        Confirmation("b", 50, 51),
        Confirmation("a", 1, 2),
    ]
    assert runs.confirm([]) == []


def test_the_pipeline_hands_over_numbered_messages_in_arrival_order_with_their_epoch(
    conn: Connection[Any], topic_root: str
) -> None:
    small = make_fleet(conn)
    limits = IngestLimits(topic_root=topic_root)
    t = f"{topic_root}/{small.device_a}/telemetry"
    tire = small.tires[0]

    def numbered(seq: int, epoch: int, ts: int) -> Any:
        msg = raw(t, {"readings": [reading(tire, ts, pressure_kpa=800.0)], "seq": seq})
        return dataclasses.replace(msg, epoch=epoch)

    now_ms = int(NOW.timestamp() * 1000)
    batch = [
        numbered(7, 3, now_ms - 3000),
        raw(t, b'{"readings": [oops'),  # refused before its seq could be read: not listed
        raw(t, reading(tire, now_ms - 2000, pressure_kpa=801.0)),  # no seq: not listed
        numbered(9, 3, now_ms - 1000),
        numbered(4, 4, now_ms - 1000),  # a duplicate reading, still handled: listed
        numbered(5, 4, now_ms),
    ]
    result = store_messages(conn, batch, limits=limits, clock=ManualClock(NOW))
    assert result.quarantined_total == 1 and result.duplicates == 1
    assert result.confirmed == [
        (small.device_a, 7, 3),
        (small.device_a, 9, 3),
        (small.device_a, 4, 4),
        (small.device_a, 5, 4),
    ]
    assert RunTracker().confirm(result.confirmed) == [
        Confirmation(small.device_a, 7, 9),
        Confirmation(small.device_a, 4, 5),
    ]


def test_the_worker_marks_messages_after_a_connack_without_its_session_with_a_new_epoch(
    db_url: str,
) -> None:
    """The network thread's side: a CONNACK with session present 0 (the broker lost our
    subscription), a broker restart or a growing dropped counter moves the epoch, and every
    message received after it carries the new one."""
    worker = IngestWorker(
        IngestConfig(mqtt_url="mqtt://127.0.0.1:9", database_url=db_url, client_id="epochs")
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="epochs")  # never connected
    ok = ReasonCode(PacketTypes.CONNACK, "Success")
    telemetry = b"fleetcare/v1/dev-a/telemetry"
    epochs: list[int] = []

    def receive() -> None:
        worker._on_publishes([Publish(telemetry, 1, b"{}", 0x32)])
        taken = worker.queue.take(10, 1 << 20, 0.1, 0.1, 0.0)
        epochs.extend(m.epoch for m in taken)

    worker._on_connect(client, None, ConnectFlags(session_present=False), ok, None)
    receive()
    worker._on_connect(client, None, ConnectFlags(session_present=True), ok, None)
    receive()  # the session was kept: the same epoch
    worker._on_connect(client, None, ConnectFlags(session_present=False), ok, None)
    receive()
    worker._on_publishes([Publish(b"$SYS/broker/publish/messages/dropped", 0, b"5", 0x30)])
    receive()  # the broker dropped messages while we watched
    assert epochs == [1, 1, 2, 3]
