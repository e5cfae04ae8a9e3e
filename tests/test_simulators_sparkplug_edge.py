"""The reference Sparkplug B edge node against a real broker and a real ingestor: it waits for
the primary host's STATE before its birth, stores while the host is away (not yet started,
then stopped: its offline STATE), forwards the store as historical DDATA after a new birth,
answers a rebirth request; 0 readings lost, each stored once, ``seq`` unbroken per session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as spb
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.services import mosquitto_installed
from ingest.sparkplug import rebirth_payload, rebirth_topic
from ingest.worker import IngestWorker
from kinds import service as kinds
from simulators import service
from simulators.fleet import Fleet
from simulators.schemas import FleetSpec
from simulators.sparkplug_edge import SparkplugEdgeNode
from simulators.sparkplug_fleet import SparkplugLink, SparkplugSetup
from simulators.worker import FleetRunner
from tests.ingest_helpers import mqtt_address, started_ingestor
from tests.test_ingest_sparkplug import mapped_group, wait_until
from tests.test_simulators_generic import PUMP_FILE

TIMEOUT = 60
REPO = Path(__file__).resolve().parents[1]
METRICS = ["Pressure/psi", "Temperature"]


class Sniffer:
    """Records every message of a Sparkplug group: (type, seq, [(timestamp, historical)])."""

    def __init__(self, url: str, group: str) -> None:
        host, port, user, password = mqtt_address(url)
        self.seen: list[tuple[str, int | None, list[tuple[int, bool]]]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sniff-{group}")
        if user:
            self.client.username_pw_set(user, password)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"spBv1.0/{group}/#", qos=1)
        assert subscribed.wait(TIMEOUT)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.split("/")[2]
        if kind in ("NCMD", "DCMD"):
            return
        p = spb.Payload.FromString(msg.payload)
        metrics = [(m.timestamp, m.is_historical) for m in p.metrics if m.alias]
        with self.lock:
            self.seen.append((kind, p.seq if p.HasField("seq") else None, metrics))

    def messages(self) -> list[tuple[str, int | None, list[tuple[int, bool]]]]:
        with self.lock:
            return list(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_store_is_bounded_and_checks_its_input() -> None:
    node = SparkplugEdgeNode(
        "mqtt://127.0.0.1:1", "g", "e", {"d": METRICS}, primary_host="h", max_stored=3
    )
    for i in range(5):  # never started: all stored, the oldest go beyond 3
        node.record("d", 1_000 + i, {"Temperature": float(i)})
    assert node.stored == 3 and node.stats.dropped == 2 and node.stats.recorded == 5
    with pytest.raises(KeyError, match="no metric Vibration"):
        node.record("d", 1, {"Vibration": 1.0})
    with pytest.raises(ValueError, match="one topic level"):
        SparkplugEdgeNode("mqtt://x", "g/1", "e", {"d": METRICS}, primary_host=None)
    with pytest.raises(ValueError, match="scheme"):
        SparkplugEdgeNode("http://x", "g", "e", {"d": METRICS}, primary_host=None)


@pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")
class KilledIngestor:
    """An ingestor in its own process, to be ended by ``kill -9`` (its will is the STATE)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "ingest", "--batch-wait-ms", "50"],
                env={**os.environ, **env, "PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=out,
                cwd=REPO,
            )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)


@pytest.mark.parametrize("outage", ["stop", "kill -9"])
def test_store_and_forward_across_an_ingestor_outage_loses_nothing(
    conn: Connection[Any], db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path, outage: str
) -> None:
    """``stop``: a clean stop publishes the offline STATE; ``kill -9``: the broker publishes
    the ingestor's will. Either way the node ends its session and holds its data."""
    small, group = mapped_group(conn)
    host_id = f"fc-{uuid.uuid4().hex[:8]}"
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"  # the same persistent session after a restart
    sniffer = Sniffer(mqtt_url, group)
    node = SparkplugEdgeNode(
        mqtt_url, group, "edge-1", {"tpms": METRICS}, primary_host=host_id,
        username=small.device_a, password=small.secret_a,
    )  # fmt: skip
    t0 = int(time.time() * 1000) - 60_000
    sent: dict[int, tuple[float, float]] = {}

    def record(n: int) -> None:
        for _ in range(n):
            ts = t0 + len(sent) * 10
            sent[ts] = (100.0 + len(sent) % 50, 20.0 + len(sent) % 30)
            node.record("tpms", ts, dict(zip(METRICS, sent[ts], strict=True)))

    def stored_rows() -> int:
        with connect(db_url) as c:
            row = c.execute("SELECT count(*) FROM telemetry").fetchone()
        return row[0] if row else 0

    ingest: IngestWorker | KilledIngestor | None = None
    try:
        node.start()
        record(5)  # the host has never been online: no birth, the node keeps them
        wait_until(lambda: node.stats.sessions == 1, "the node connected")
        assert not node.live.is_set() and node.stored == 5

        if outage == "stop":
            ingest = started_ingestor(
                mqtt_url, db_url, topic_root, TIMEOUT, client_id=client_id,
                sparkplug_host_id=host_id,
            )  # fmt: skip
        else:
            ingest = KilledIngestor(
                {
                    "FLEETCARE_DATABASE_URL": db_url,
                    "FLEETCARE_MQTT_URL": mqtt_url,
                    "FLEETCARE_TOPIC_ROOT": topic_root,
                    "FLEETCARE_INGEST_CLIENT_ID": client_id,
                    "FLEETCARE_SPARKPLUG_HOST_ID": host_id,
                },
                tmp_path / "ingest.log",
            )
        if not node.live.wait(TIMEOUT):
            log = tmp_path / "ingest.log"
            raise AssertionError(log.read_text()[-2000:] if log.exists() else "no birth")
        assert node.wait_sent(TIMEOUT)
        record(10)  # live
        assert node.wait_sent(TIMEOUT)
        wait_until(lambda: stored_rows() == 2 * 15, "15 readings stored")

        ingest.stop()  # its offline STATE (its own, or its will): the node ends its session
        ingest = None
        wait_until(lambda: node.stats.host_offline == 1, "the node saw the host go offline")
        assert not node.live.is_set()
        record(20)  # during the outage
        assert node.stored == 20 and not node.live.is_set()

        ingest = started_ingestor(
            mqtt_url, db_url, topic_root, TIMEOUT, client_id=client_id, sparkplug_host_id=host_id
        )
        assert node.live.wait(TIMEOUT), "no new birth after the host came back"
        assert node.wait_sent(TIMEOUT)
        wait_until(lambda: stored_rows() == 2 * 35, "35 readings stored")

        # a host's rebirth request: births again (seq from 0), then data as before
        births = node.stats.births
        sniffer.client.publish(rebirth_topic(group, "edge-1"), rebirth_payload(), qos=0)
        wait_until(lambda: node.stats.births == births + 1, "a rebirth")
        record(5)
        assert node.wait_sent(TIMEOUT)
        wait_until(lambda: stored_rows() == 2 * 40, "40 readings stored")
    finally:
        node.stop()
        if ingest is not None:
            ingest.stop()
        sniffer.close()

    # 0 lost, each stored once, each value the one recorded
    rows = conn.execute(
        "SELECT (extract(epoch FROM t.time) * 1000)::bigint, m.name, t.value FROM telemetry t"
        " JOIN metrics m ON m.id = t.metric_id ORDER BY 1, 2"
    ).fetchall()
    got: dict[int, dict[str, float]] = {}
    for ts, name, value in rows:
        assert name not in got.setdefault(ts, {}), f"{ts} {name} stored twice"
        got[ts][name] = value
    assert set(got) == set(sent)
    for ts, (psi, temp) in sent.items():
        assert got[ts]["temperature_c"] == pytest.approx(temp)
        assert got[ts]["pressure_kpa"] == pytest.approx(psi * 6.894757)
    no_birth = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    assert no_birth == (0,)
    assert node.stats.dropped == 0 and node.stats.recorded == 40
    assert node.stats.forwarded == 25 and node.stats.sent_live == 15  # 5 before, 20 during
    assert node.stats.timeline[:3] == ["NBIRTH 0", "NDEATH 0", "NBIRTH 1"]

    # on the wire: births before data in every session, seq unbroken from each NBIRTH, the
    # stored readings flagged historical and the live ones not
    seen = sniffer.messages()
    expected_seq = None
    historical = {}
    for kind, seq, metrics in seen:
        if kind == "NBIRTH":
            assert seq == 0
            expected_seq = 1
            continue
        if kind == "NDEATH":
            expected_seq = None
            continue
        assert expected_seq is not None, f"{kind} outside a session"
        assert seq == expected_seq, seen
        expected_seq = (expected_seq + 1) % 256
        if kind == "DDATA":
            for ts, flag in metrics:
                historical[ts] = flag
    assert [k for k, _s, _m in seen if k in ("NBIRTH", "NDEATH")] == [
        "NBIRTH", "NDEATH", "NBIRTH", "NBIRTH", "NDEATH",
    ]  # fmt: skip
    assert set(historical) == set(sent)
    order = sorted(sent)
    assert all(historical[ts] for ts in order[:5] + order[15:35])
    assert not any(historical[ts] for ts in order[5:15] + order[35:])


@pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")
def test_a_simulated_fleet_runs_through_sparkplug_edge_nodes(
    conn: Connection[Any], db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """``fleetcare simulate --kind pump=8 --sparkplug``: the pump gateways are edge nodes mapped
    by a profile applied at registration; every reading they made is stored once."""
    kinds.apply_file(conn, PUMP_FILE)
    definitions = {"pump": kinds.get_kind(conn, "pump")}
    conn.commit()
    customer = f"spb-{uuid.uuid4().hex[:6]}"
    spec = FleetSpec(
        customer=customer, tires=0, elevators=0, engines=0, other={"pump": 8}, speedup=50_000,
        offline=False, malformed_rate=0.0,
    )  # fmt: skip
    fleet = Fleet(spec, definitions=definitions)
    setup = SparkplugSetup(customer, f"fc-{uuid.uuid4().hex[:8]}", frozenset({"pump"}))
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
        service.apply_sparkplug_profile(conn, fleet, setup)
    clock = ManualClock(datetime.now(UTC))  # ingest checks times against the real clock
    runner = FleetRunner.over_mqtt(
        fleet, mqtt_url, topic_root, registration.secrets, clock, sparkplug=setup
    )
    links = [link for link in runner.links.values() if isinstance(link, SparkplugLink)]
    assert len(links) == len(fleet.gateways) == 2
    runner.open()  # connected, not born: no ingestor has announced the host yet
    for _ in range(3):
        clock.advance(1.0)
        runner.tick()
    assert all(not link.node.live.is_set() and link.node.stored > 0 for link in links)
    worker = started_ingestor(
        mqtt_url, db_url, topic_root, TIMEOUT, sparkplug_host_id=setup.primary_host
    )
    try:
        for _ in range(3):
            clock.advance(1.0)
            runner.tick()
        assert all(link.node.live.wait(TIMEOUT) for link in links)
        runner.close()  # sends what the nodes hold, then NDEATH
        assert all(link.node.stored == 0 and link.not_sent == 0 for link in links)
        recorded = sum(link.node.stats.recorded for link in links)
        values = sum(link.node.stats.recorded_values for link in links)
        assert sum(link.node.stats.forwarded for link in links) > 0  # held before the host
        assert recorded == sum(
            link.node.stats.forwarded + link.node.stats.sent_live for link in links
        )

        def stored() -> int:
            with connect(db_url) as c:
                row = c.execute("SELECT count(*) FROM telemetry").fetchone()
            return row[0] if row else 0

        wait_until(lambda: stored() >= values, f"{values} values stored")
    finally:
        worker.stop()
    assert stored() == values  # each once
    per_reading = conn.execute(
        "SELECT count(*) FROM (SELECT asset_id, time FROM telemetry GROUP BY 1, 2) r"
    ).fetchone()
    assert per_reading == (recorded,)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
