"""Subscription modes through a private Mosquitto: the per-ingestor session by default,
switching one client id between shared and plain cleans the old subscription up, and what
the broker did to the subscription (a lost session, a restart that left a shared
subscription missing) shows in the ingestor's counters and in ingest health."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.services import ChildBroker, free_port, mosquitto_installed, start_mosquitto
from ingest import service
from ingest.schemas import IngestLimits
from ingest.stats import IngestStats
from ingest.subscription import SessionWatch, parse_uptime, telemetry_filter
from ingest.worker import IngestConfig, IngestWorker
from tests.ingest_helpers import OPERATOR, Publisher, SmallFleet, make_fleet
from tests.test_ingest_mqtt import stream, topic, wait_for_count

TIMEOUT = 60

needs_mosquitto = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn, tires=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[list[ChildBroker], str, Path, int]]:
    """A private Mosquitto (restartable: the list holds the running one)."""
    data, port = tmp_path / "broker", free_port()
    child, url = start_mosquitto(data, port)
    running = [child]
    yield running, url, data, port
    running[0].stop()


def _processed_at_least(n: int) -> Callable[[IngestStats], bool]:
    return lambda s: s.messages_total >= n


def _worker(url: str, db_url: str, root: str, client_id: str, **options: Any) -> IngestWorker:
    worker = IngestWorker(
        IngestConfig(
            mqtt_url=url,
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


def test_the_default_is_the_per_ingestor_session() -> None:
    config = IngestConfig(mqtt_url="mqtt://x", database_url="postgresql://x", client_id="a")
    assert config.shared_subscription is False
    assert telemetry_filter("fleetcare/v1", False) == "fleetcare/v1/+/telemetry"
    assert telemetry_filter("fleetcare/v1", True) == "$share/ingest/fleetcare/v1/+/telemetry"
    assert parse_uptime(b"1234 seconds") == 1234.0
    assert parse_uptime(b"soon") is None


def test_session_watch_reports_a_lost_session_and_a_window_without_a_shared_subscription() -> None:
    plain = SessionWatch(shared=False)
    assert plain.on_connack(False, 100.0) is None  # a new client id: nothing to lose yet
    assert plain.on_uptime(50.0, 101.0) == (False, None)
    lost = plain.on_connack(False, 200.0)
    assert lost is not None and lost.kind == "session_lost"
    assert plain.on_uptime(10.0, 201.0) == (True, None)  # restarted at 191 > 100

    shared = SessionWatch(shared=True)
    shared.on_connack(False, 100.0)
    shared.on_subscribed(100.1)
    shared.on_disconnect(290.0)
    assert shared.on_connack(True, 300.0) is None
    shared.on_subscribed(303.0)
    restarted, alert = shared.on_uptime(8.0, 304.0)  # started at 296, subscribed at 303
    assert restarted and alert is not None and alert.kind == "unsubscribed_window"
    assert alert.unsubscribed_s == pytest.approx(13.0)  # at most: lost at 290
    assert "7.0 to 13.0 s" in alert.detail
    assert shared.on_uptime(9.0, 305.0) == (False, None)  # once per connection


def test_broker_dropped_counts_what_the_broker_dropped_while_watched() -> None:
    """Mosquitto publishes its dropped counter only on change and lets it expire after 60 s:
    the retained value on subscription is a baseline, live values add their increase."""
    stats = IngestStats()
    assert stats.broker_dropped is None  # nothing read yet: unknown
    stats.record_broker_tick()
    assert (stats.broker_dropped, stats.broker_ticks) == (0, 1)  # readable, unchanged
    stats.record_broker_dropped(7, retained=True)  # older drops, before we subscribed
    assert stats.broker_dropped == 0
    stats.record_broker_dropped(10, retained=False)
    stats.record_broker_dropped(12, retained=False)
    assert stats.broker_dropped == 5
    stats.record_broker_dropped(1, retained=False)  # the broker restarted: counts from zero
    assert stats.broker_dropped == 6
    late = IngestStats()
    late.record_broker_dropped(4, retained=False)  # a change with no baseline: counted whole
    assert late.broker_dropped == 4


@needs_mosquitto
def test_switching_a_client_id_between_shared_and_plain_processes_each_reading_once(
    broker: tuple[list[ChildBroker], str, Path, int],
    small: SmallFleet,
    topic_root: str,
    db_url: str,
) -> None:
    _, url, _, _ = broker
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    payloads = stream(small, 6000, 50, datetime.now(UTC) - timedelta(minutes=5))  # 120 msgs
    t = topic(topic_root, small.device_a)
    pub = Publisher(url)
    try:
        expected = 0
        queued = 0  # messages waiting in the session for the next ingestor
        for round_, shared in enumerate((True, False, True, False)):
            worker = _worker(url, db_url, topic_root, client_id, shared_subscription=shared)
            try:
                assert worker.shared is shared
                live = payloads[round_ * 30 : round_ * 30 + 15]
                pub.publish_many(t, live)  # while this mode's worker runs
                pub.wait_all_acked(TIMEOUT)
                expected += len(live) * 50
                assert wait_for_count(db_url, expected) == expected
                mine = queued + len(live)
                assert worker.stats.wait_for(_processed_at_least(mine), TIMEOUT)
                # each message once: those queued while no ingestor ran and those sent now
                assert worker.stats.messages_total == mine, f"round {round_}"
                assert worker.stats.duplicates_total == 0, f"round {round_}"
            finally:
                worker.stop()
            # queued in the session while no ingestor runs: the next mode must get them once
            away = payloads[round_ * 30 + 15 : round_ * 30 + 30]
            pub.publish_many(t, away)
            pub.wait_all_acked(TIMEOUT)
            expected += len(away) * 50
            queued = len(away)
        last = _worker(url, db_url, topic_root, client_id)
        try:
            assert wait_for_count(db_url, expected) == expected
            assert last.stats.wait_for(lambda s: s.messages_total >= queued, TIMEOUT)
            assert last.stats.messages_total == queued and last.stats.duplicates_total == 0
        finally:
            last.stop()
    finally:
        pub.close()


@needs_mosquitto
def test_a_broker_restart_that_left_the_shared_subscription_missing_is_an_alert(
    broker: tuple[list[ChildBroker], str, Path, int], topic_root: str, db_url: str
) -> None:
    running, url, data, port = broker
    worker = _worker(
        url, db_url, topic_root, f"ingest-{uuid.uuid4().hex[:8]}", shared_subscription=True
    )
    try:
        running[0].stop()
        running[0], _ = start_mosquitto(data, port)
        assert worker.stats.wait_for(lambda s: s.broker_restarts_total >= 1, TIMEOUT)
        assert worker.stats.alert is not None and "shared subscription" in worker.stats.alert
        assert worker.stats.unsubscribed_s > 0
        assert worker.stats.sessions_lost_total == 0  # Mosquitto kept the session itself
        # and ingest health says so (the status row is written within status_interval_s)
        worker.stats.wait_for(lambda s: s.alert_at is not None, TIMEOUT)
        with connect(db_url) as conn:
            deadline = datetime.now(UTC) + timedelta(seconds=TIMEOUT)
            while True:
                health = service.ingest_health(conn, OPERATOR, now=datetime.now(UTC))
                conn.commit()
                if health.alerts or datetime.now(UTC) > deadline:
                    break
                worker.stats.wait_for(lambda s: False, 0.2)
        assert health.alerts and "shared subscription" in health.alerts[0]
        (row,) = health.ingestors
        assert row.subscription == "shared" and row.broker_restarts == 1
    finally:
        worker.stop()


@needs_mosquitto
def test_a_session_the_broker_lost_is_an_alert_and_the_subscription_is_made_again(
    broker: tuple[list[ChildBroker], str, Path, int],
    small: SmallFleet,
    topic_root: str,
    db_url: str,
) -> None:
    running, url, data, port = broker
    worker = _worker(url, db_url, topic_root, f"ingest-{uuid.uuid4().hex[:8]}")
    try:
        running[0].stop()
        (data / "mosquitto.db").unlink()  # the broker comes back without its persistence
        running[0], _ = start_mosquitto(data, port)
        assert worker.stats.wait_for(lambda s: s.sessions_lost_total >= 1, TIMEOUT)
        assert worker.stats.alert is not None and "did not keep" in worker.stats.alert
        # the plain subscription is made again (acknowledged: what is published before that
        # goes to no one — under load the publisher below came first and 0 of 500 arrived)
        assert worker.stats.wait_for(lambda s: s.subscriptions_total >= 2, TIMEOUT)
        # ... and new readings arrive
        pub = Publisher(url)
        try:
            pub.publish_many(
                topic(topic_root, small.device_a),
                stream(small, 500, 50, datetime.now(UTC) - timedelta(minutes=1)),
            )
            pub.wait_all_acked(TIMEOUT)
            assert wait_for_count(db_url, 500) == 500
        finally:
            pub.close()
    finally:
        worker.stop()


@needs_mosquitto
def test_a_broker_restart_that_kept_the_session_is_counted_without_an_alert(
    broker: tuple[list[ChildBroker], str, Path, int], topic_root: str, db_url: str
) -> None:
    running, url, data, port = broker
    worker = _worker(url, db_url, topic_root, f"ingest-{uuid.uuid4().hex[:8]}")
    try:
        running[0].stop()
        running[0], _ = start_mosquitto(data, port)
        assert worker.stats.wait_for(lambda s: s.broker_restarts_total >= 1, TIMEOUT)
        assert worker.stats.sessions_lost_total == 0 and worker.stats.alert is None
    finally:
        worker.stop()
