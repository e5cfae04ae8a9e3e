"""The ingestor as a Sparkplug B 3.0 primary host: its STATE birth (retained, QoS 1) after it
connects, its will announcing its death on ``kill -9``, its own offline STATE on a clean stop,
and answering a stray offline STATE on its own host id by announcing itself again."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleetcare.services import mosquitto_installed
from ingest.sparkplug_state import PrimaryHost, parse_state, state_payload, state_topic
from tests.ingest_helpers import mqtt_address, started_ingestor

TIMEOUT = 60
REPO = Path(__file__).resolve().parents[1]


def test_state_payloads_and_the_answer_to_a_stray_offline() -> None:
    assert state_topic("host-1") == "spBv1.0/STATE/host-1"
    assert json.loads(state_payload(True, 5)) == {"online": True, "timestamp": 5}
    assert parse_state(state_payload(False, 7)) == (False, 7)
    for bad in (b"ONLINE", b"{}", b'{"online": "true", "timestamp": 1}', b"[1]", b"\xff"):
        assert parse_state(bad) is None, bad

    sent: list[tuple[str, bytes, int, bool]] = []

    class Recorder:
        def will_set(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
            sent.append((f"will:{topic}", payload, qos, retain))

        def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
            sent.append((topic, payload, qos, retain))

        def is_connected(self) -> bool:
            return False

    client: Any = Recorder()
    host = PrimaryHost("h")
    host.before_connect(client)
    stamp = host.timestamp_ms
    host.announce(client)
    assert sent == [
        ("will:spBv1.0/STATE/h", state_payload(False, stamp), 1, True),
        ("spBv1.0/STATE/h", state_payload(True, stamp), 1, True),
    ]
    host.on_state(client, state_payload(True, stamp))  # our own birth coming back: nothing
    host.on_state(client, b"garbage")
    assert len(sent) == 2
    host.on_state(client, state_payload(False, stamp - 10))  # a late will of ours
    assert sent[-1] == ("spBv1.0/STATE/h", state_payload(True, stamp), 1, True)
    assert host.announcements == 2
    assert host.sign_off(client) is False  # not connected: the broker's will says it
    host.on_state(client, state_payload(False, stamp))  # stopping: no answer
    assert host.announcements == 2


class StateWatcher:
    """A client that records every STATE message of one host id (retained ones included)."""

    def __init__(self, url: str, host_id: str) -> None:
        host, port, user, password = mqtt_address(url)
        self.states: queue.Queue[tuple[bool, int, bool]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}"
        )
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(state_topic(host_id), qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        state = parse_state(msg.payload)
        assert state is not None, msg.payload
        self.states.put((*state, bool(msg.retain)))

    def next(self) -> tuple[bool, int, bool]:
        """(online, timestamp, retained) of the next STATE."""
        return self.states.get(timeout=TIMEOUT)

    def until(self, online: bool) -> tuple[int, bool]:
        while True:
            got, stamp, retained = self.next()
            if got == online:
                return stamp, retained

    def publish(self, host_id: str, payload: bytes) -> None:
        self.client.publish(state_topic(host_id), payload, qos=1, retain=True).wait_for_publish(
            TIMEOUT
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")


def test_state_online_after_start_again_after_a_stray_offline_and_offline_after_stop(
    db_url: str, mqtt_url: str, topic_root: str
) -> None:
    host_id = f"fc-{uuid.uuid4().hex[:8]}"
    worker = started_ingestor(mqtt_url, db_url, topic_root, TIMEOUT, sparkplug_host_id=host_id)
    watcher = StateWatcher(mqtt_url, host_id)
    try:
        # the birth is retained: a client subscribing after it gets it
        online, stamp, retained = watcher.next()
        assert online and retained
        assert stamp == worker.host.timestamp_ms
        # an offline STATE on its host id while it runs (a will delivered late): it answers
        # with its birth again, same timestamp, so the retained STATE is online again
        watcher.publish(host_id, state_payload(False, stamp))
        assert watcher.next()[:2] == (False, stamp)
        assert watcher.until(True)[0] == stamp
        late = StateWatcher(mqtt_url, host_id)
        try:
            assert late.next() == (True, stamp, True)
        finally:
            late.close()
    finally:
        worker.stop()
    # a clean stop: its own offline STATE (a DISCONNECT discards the will), newer than its birth
    offline_at, _ = watcher.until(False)
    assert offline_at >= stamp
    watcher.close()
    after = StateWatcher(mqtt_url, host_id)
    try:
        assert after.next() == (False, offline_at, True)
    finally:
        after.close()


def test_state_offline_by_the_will_when_the_ingestor_is_killed(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    host_id = f"fc-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FLEETCARE_DATABASE_URL": db_url,
        "FLEETCARE_MQTT_URL": mqtt_url,
        "FLEETCARE_TOPIC_ROOT": topic_root,
        "FLEETCARE_INGEST_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}",
        "FLEETCARE_SPARKPLUG_HOST_ID": host_id,
    }
    watcher = StateWatcher(mqtt_url, host_id)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest"], env=env, stdout=out, stderr=out, cwd=REPO
        )
    try:
        try:
            stamp, _ = watcher.until(True)
        except queue.Empty:
            raise AssertionError(log.read_text()[-2000:]) from None
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
        # the broker publishes the will registered in its CONNECT: the same timestamp
        assert watcher.next()[:2] == (False, stamp)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        watcher.close()
    after = StateWatcher(mqtt_url, host_id)
    try:
        assert after.next() == (False, stamp, True)
    finally:
        after.close()


def test_a_bad_host_id_is_refused_by_the_settings() -> None:
    from pydantic import ValidationError

    from fleetcare.settings import load_settings

    for bad in ("a/b", "a+", "#", "has space", ""):
        with pytest.raises(ValidationError, match="sparkplug_host_id"):
            load_settings(sparkplug_host_id=bad)
