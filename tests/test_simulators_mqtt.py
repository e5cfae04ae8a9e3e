"""Simulated devices on a real broker: a replayed C-MAPSS unit arrives row for row, an
offline backlog arrives complete after reconnecting, and ``fleetcare simulate`` runs a fleet
registered through the product."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import Connection
from typer.testing import CliRunner

from cli.main import app
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.services import mosquitto_installed, start_mosquitto
from ingest import service as devices
from simulators import service
from simulators.cmapss_levels import CMAPSS_SENSORS, CMAPSS_SETTINGS
from simulators.devices import QUARANTINE_REASON, GatewayBehaviour, Malformed, MqttLink
from simulators.fleet import Fleet
from simulators.replay import load_cmapss
from simulators.schemas import FleetSpec
from simulators.worker import FleetRunner
from tests.ingest_helpers import started_ingestor

CMAPSS = Path("/work/shared/data/cmapss/train_FD001.txt")
START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class Subscriber:
    """Collects every message under a topic root; waits on a condition, never sleeps."""

    def __init__(
        self, url: str, topic_root: str, user: str | None = None, password: str | None = None
    ) -> None:
        parts = urlsplit(url)
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            client.username_pw_set(user, password)
        topics = [(f"{topic_root}/+/telemetry", 1), (f"{topic_root}/+/status", 1)]
        client.on_connect = lambda c, *_: c.subscribe(topics)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        assert subscribed.wait(10), "subscriber did not subscribe"
        self.client = client

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def readings(self) -> list[dict[str, Any]]:
        with self._cond:
            out = []
            for topic, payload in self.messages:
                if topic.endswith("/telemetry"):
                    out.extend(json.loads(payload)["readings"])
            return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_readings(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        self.wait_for(
            lambda: sum(self._count(p) for t, p in self.messages if t.endswith("/telemetry")) >= n,
            timeout,
        )
        return self.readings()

    @staticmethod
    def _count(payload: bytes) -> int:
        return len(json.loads(payload)["readings"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str, topic_root: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, topic_root)
    yield sub
    sub.close()


def runner_for(fleet: Fleet, mqtt_url: str, topic_root: str, clock: ManualClock) -> FleetRunner:
    secrets = {ref: "test-secret" for ref in fleet.gateways}  # the test broker is anonymous
    # no ingestor here to confirm anything: without confirmation a device sends each message
    # once, which is what these tests look at on the wire (confirmation: test_ingest_faults)
    return FleetRunner.over_mqtt(fleet, mqtt_url, topic_root, secrets, clock, confirm=False)


@pytest.mark.skipif(not CMAPSS.exists(), reason="C-MAPSS data not on this machine")
def test_a_replayed_cmapss_unit_publishes_exactly_the_files_rows(
    mqtt_url: str, topic_root: str, subscriber: Subscriber
) -> None:
    units = load_cmapss(CMAPSS)[:2]
    spec = FleetSpec(customer="sim-replay", tires=0, elevators=0, engines=2, speedup=86_400.0)
    fleet = Fleet(spec, cmapss_units=units, behaviour=GatewayBehaviour.steady())
    clock = ManualClock(START)
    runner = runner_for(fleet, mqtt_url, topic_root, clock)
    runner.open()
    engine = "AC-001-E1"
    while not fleet.is_failed(engine, "hpc_module"):
        clock.advance(1.0)
        runner.tick()
    runner.close()
    expected = units[0].cycles
    assert expected == 192
    got = subscriber.wait_readings(runner.stats.readings)
    rows = [r for r in got if r["asset"] == engine]
    assert len(rows) == expected
    # against the file's own text, independently of the parser: unit, cycle, settings, s1..s21
    unit_1 = [line.split() for line in CMAPSS.read_text().splitlines() if line.split()[0] == "1"]
    assert len(unit_1) == expected
    names = (*CMAPSS_SETTINGS, *CMAPSS_SENSORS)
    for reading, columns in zip(rows, unit_1, strict=True):
        assert reading["metrics"]["flight_cycles"] == float(columns[1])
        assert [reading["metrics"][n] for n in names] == [float(v) for v in columns[2:]]
        assert len(reading["metrics"]) == len(names) + 1


def test_an_offline_backlog_arrives_complete_after_reconnecting(
    mqtt_url: str, topic_root: str, subscriber: Subscriber
) -> None:
    spec = FleetSpec(
        customer="sim-offline",
        tires=12,
        elevators=0,
        engines=0,
        speedup=10_000,
        batch_max=10,
        warmup=False,
    )
    fleet = Fleet(spec, behaviour=GatewayBehaviour(batch_max=10, offline_per_hour=0.0))
    clock = ManualClock(START)
    runner = runner_for(fleet, mqtt_url, topic_root, clock)
    runner.open()
    for _ in range(3):
        clock.advance(1.0)
        runner.tick()
    online_part = runner.stats.readings
    assert subscriber.wait_readings(online_part) and len(subscriber.readings()) == online_part
    truck = fleet.devices[0].ref
    runner.take_offline(truck, seconds=20)
    assert subscriber.wait_for(
        lambda: (f"{topic_root}/{truck}/status", b"offline") in subscriber.messages
    )
    for _ in range(10):  # offline: the truck buffers, the other truck keeps publishing
        clock.advance(1.0)
        runner.tick()
    backlog = len(fleet.gateways[truck].buffer)
    assert backlog == 10 * 6
    assert not runner.links[truck].active
    for _ in range(15):  # back online after 20 s: reconnect and flush in batches of 10
        clock.advance(1.0)
        runner.tick()
    runner.close()
    got = subscriber.wait_readings(runner.stats.readings)
    assert len(got) == runner.stats.readings
    keys = [(r["asset"], r["ts"]) for r in got]
    assert len(set(keys)) == len(keys), "no duplicates"
    mine = [r for r in got if r["asset"].startswith("TRK-001-")]
    assert len(mine) == 6 * 28
    batches = [
        json.loads(p) for t, p in subscriber.messages if t == f"{topic_root}/{truck}/telemetry"
    ]
    assert max(len(b["readings"]) for b in batches) <= 10


def test_fleetcare_simulate_registers_and_publishes_with_device_credentials(
    mqtt_url: str,
    topic_root: str,
    db_url: str,
    tmp_path: Path,
    subscriber: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_MQTT_URL", mqtt_url)
    monkeypatch.setenv("FLEETCARE_TOPIC_ROOT", topic_root)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    args = [
        "simulate",
        "--tires",
        "6",
        "--elevators",
        "3",
        "--engines",
        "2",
        "--customer",
        "sim-cli",
    ]
    result = CliRunner().invoke(
        app, [*args, "--duration", "2", "--speedup", "50000", "--no-offline"]
    )
    assert result.exit_code == 0, result.output
    assert "11 assets, 3 devices" in result.output
    with connect(db_url) as conn:
        devices = {r[0] for r in conn.execute("SELECT ref FROM devices").fetchall()}
        truth = conn.execute("SELECT count(*) FROM sim_ground_truth").fetchone()
    assert devices == {"sim-cli-trk-001", "sim-cli-bldg-01", "sim-cli-ac-001"}
    assert truth is not None and truth[0] >= 6 + 3 * 2 + 2
    assert subscriber.wait_for(
        lambda: {t.split("/")[-2] for t, _ in subscriber.messages} >= devices
    )
    secrets = json.loads((tmp_path / "sim-device-secrets.json").read_text())
    assert set(secrets) == devices
    # a second run reuses the registered fleet and its secrets, and writes history only
    # (history of every kind is covered in test_simulators_ingest; engines are the quickest)
    history_args = [*args[:2], "0", "--elevators", "0", *args[5:], "--duration", "0"]
    history_args += ["--history", "1"]
    again = CliRunner().invoke(app, history_args)
    assert again.exit_code == 0, again.output
    assert "quarantined 0" in again.output
    with connect(db_url) as conn:
        lives = conn.execute(
            "SELECT a.kind, count(*) FROM asset_lives l JOIN assets a ON a.id = l.asset_id"
            " WHERE a.ref LIKE 'H-%%' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        installed = conn.execute(
            "SELECT bool_and(installed_at <= now()) FROM assets WHERE ref NOT LIKE 'H-%%'"
        ).fetchone()
    assert [k for k, n in lives if n >= 1] == ["engine"]
    assert installed == (True,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tires", "-1"], "error: --tires"),
        (["--customer", "Bad Slug"], "error: --customer"),
        (["--replay", "/nonexistent/train_FD001.txt"], "error: --replay"),
        (["--tires", "0", "--elevators", "0", "--engines", "0"], "error: nothing to simulate"),
        (["--replay", str(CMAPSS), "--history", "100"], "error: --replay train_FD001.txt has 100"),
        (["--history", "-1"], "error: --history"),
        (["--technician"], "error: --technician needs --api-key"),
    ],
)
def test_simulate_meets_bad_input_with_a_one_line_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    assert result.output.strip().startswith(message), result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")
def test_devices_publish_with_their_own_credentials_on_an_authenticating_broker(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> None:
    fleet = Fleet(FleetSpec(customer="sim-auth", tires=6, elevators=3, engines=0, speedup=20_000))
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
    passwd, acl, ingestor_secret = devices.write_broker_config(
        conn, tmp_path / "auth", topic_root=topic_root
    )
    auth = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    broker, url = start_mosquitto(tmp_path / "broker", auth=auth)
    try:
        ingestor = Subscriber(url, topic_root, devices.INGESTOR_USER, ingestor_secret)
        clock = ManualClock(START)
        runner = FleetRunner.over_mqtt(fleet, url, topic_root, registration.secrets, clock)
        runner.open()
        for _ in range(5):
            clock.advance(1.0)
            runner.tick()
        stats = runner.close()
        got = ingestor.wait_readings(stats.readings)
        ingestor.close()
        assert len(got) == stats.readings > 0
        assert {t.split("/")[-2] for t, _ in ingestor.messages} == set(registration.secrets)
        device = next(iter(registration.secrets))
        with pytest.raises(ConnectionError, match="refused"):
            MqttLink(url, device, "not-its-secret", topic_root, refused_retry_s=1).connect(
                timeout=5
            )
    finally:
        broker.stop()


class RecordingMqttLink(MqttLink):
    """A device's real MQTT link that also keeps what it published."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payloads: list[bytes] = []

    def publish(self, payload: bytes) -> None:
        super().publish(payload)
        self.payloads.append(payload)


def test_a_fleet_flows_through_ingest_and_its_malformed_payloads_land_in_quarantine(
    conn: Connection[Any], db_url: str, mqtt_url: str, topic_root: str
) -> None:
    fleet = Fleet(FleetSpec(customer="sim-e2e", tires=6, elevators=3, engines=2, speedup=30_000))
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
    worker = started_ingestor(mqtt_url, db_url, topic_root, 10)
    try:
        clock = ManualClock(datetime.now(UTC))  # ingest checks times against the real clock
        links = {
            ref: RecordingMqttLink(mqtt_url, ref, secret, topic_root)
            for ref, secret in registration.secrets.items()
        }
        runner = FleetRunner(fleet, links, clock)
        runner.open()
        sent: list[bytes] = []
        for k in range(6):
            clock.advance(1.0)
            runner.tick()
            if k == 2:  # the malformed-payload mode, one of each kind
                for i, kind in enumerate(Malformed):
                    device = fleet.devices[i % len(fleet.devices)].ref
                    sent.append(runner.publish_malformed(device, kind, clock.now()))
        stats = runner.close()
        expected_messages = stats.payloads + len(sent)
        assert worker.stats.wait_for(lambda s: s.messages_total >= expected_messages, 30)
    finally:
        worker.stop()
    good = [p for link in links.values() for p in link.payloads if p not in sent]
    values = sum(len(r["metrics"]) for p in good for r in json.loads(p)["readings"])
    assert len(good) == stats.payloads and values > 500
    stored = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    reasons = sorted(r for (r,) in conn.execute("SELECT reason FROM quarantine").fetchall())
    assert stored == (values,)
    assert reasons == sorted(QUARANTINE_REASON.values())
