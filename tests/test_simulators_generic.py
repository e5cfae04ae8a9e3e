"""A kind with no physics of its own is simulated from its definition: a pump defined by a
file wears out around its typical life, its condition metrics drift to their end-of-life
thresholds, and a fleet of pumps publishes over MQTT into ingest and is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import Connection

from fleetcare.clock import ManualClock
from kinds import service as kinds
from kinds.loader import load_file
from simulators import service
from simulators.devices import MqttLink
from simulators.fleet import Fleet
from simulators.generic import GenericPopulation
from simulators.schemas import FleetSpec
from simulators.worker import FleetRunner
from tests.ingest_helpers import started_ingestor

PUMP_FILE = Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml"


def test_a_generic_population_wears_out_around_its_typical_life() -> None:
    pump = load_file(PUMP_FILE)
    population = GenericPopulation(pump, np.random.default_rng(3), groups=25, per_group=4)
    lives: dict[str, list[float]] = {"bearing": [], "seal": []}
    at_failure: dict[str, list[float]] = {"bearing": [], "seal": []}
    usage_before = population.usage.copy()
    rul_before = population.expected_rul("seal")
    h = 0.0
    while min(len(v) for v in lives.values()) < 100:
        frame = population.advance(h, 24.0)
        h += 24.0
        assert np.all(population.usage >= usage_before)
        usage_before = population.usage.copy()
        for f in frame.failures:
            lives[f.component].append(float(population.life_usage(f.component)[f.asset]))
            metric = "bearing_vibration_mm_s" if f.component == "bearing" else "seal_leak_ml_h"
            at_failure[f.component].append(float(frame.metrics[metric][f.asset]))
            population.renew(f.asset, f.component)
        if h == 24.0 * 30:
            assert np.all(population.expected_rul("seal") <= rul_before)
        for m in pump.metrics:  # every reading within the metric's physical bounds
            assert np.all((frame.metrics[m.name] >= m.low) & (frame.metrics[m.name] <= m.high))
    for component, threshold in (("bearing", 11.2), ("seal", 600.0)):
        median = float(np.median(lives[component]))
        assert 0.7 * pump.typical_life < median < 1.3 * pump.typical_life, (component, median)
        # a failing component reads at its end-of-life threshold (within the sensor noise)
        assert abs(float(np.median(at_failure[component])) - threshold) < 0.1 * threshold
    population.renew(0, "seal")
    assert population.wear("seal")[0] == 0.0 and not population.failed("seal")[0]


def test_a_kind_defined_by_a_file_is_simulated_over_mqtt_and_stored(
    conn: Connection[Any], db_url: str, mqtt_url: str, topic_root: str
) -> None:
    kinds.apply_file(conn, PUMP_FILE)
    definitions = {"pump": kinds.get_kind(conn, "pump")}
    conn.commit()
    spec = FleetSpec(
        customer="sim-pump", tires=0, elevators=0, engines=0, other={"pump": 8}, speedup=50_000
    )
    fleet = Fleet(spec, definitions=definitions)
    assert {a.kind for a in fleet.assets} == {"pump"} and len(fleet.assets) == 8
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
    worker = started_ingestor(mqtt_url, db_url, topic_root, 10)
    try:
        clock = ManualClock(datetime.now(UTC))  # ingest checks times against the real clock
        links = {
            ref: RecordingLink(mqtt_url, ref, secret, topic_root)
            for ref, secret in registration.secrets.items()
        }
        runner = FleetRunner(fleet, links, clock)
        runner.open()
        for _ in range(5):
            clock.advance(1.0)
            runner.tick()
        stats = runner.close()
        assert stats.payloads > 0
        assert worker.stats.wait_for(lambda s: s.messages_total >= stats.payloads, 30)
    finally:
        worker.stop()
    sent = [r for link in links.values() for p in link.payloads for r in json.loads(p)["readings"]]
    values = sum(len(r["metrics"]) for r in sent)
    stored = conn.execute(
        """
        SELECT m.name, count(*) FROM telemetry t
          JOIN metrics m ON m.id = t.metric_id JOIN assets a ON a.id = t.asset_id
         WHERE a.kind = 'pump' GROUP BY m.name
        """
    ).fetchall()
    assert sum(n for _, n in stored) == values > 0
    assert {name for name, _ in stored} == set(load_file(PUMP_FILE).metric_names)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


class RecordingLink(MqttLink):
    """A device's MQTT link that keeps what it published."""

    payloads: list[bytes]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payloads = []

    def publish(self, payload: bytes) -> None:
        super().publish(payload)
        self.payloads.append(payload)


def test_the_replayed_cmapss_columns_are_the_engine_kinds_metrics() -> None:
    from kinds.loader import builtin_kinds
    from simulators.cmapss_levels import CMAPSS_SENSORS, CMAPSS_SETTINGS

    engine = builtin_kinds()["engine"]
    assert engine.regime_metrics == CMAPSS_SETTINGS
    assert engine.sensor_names == CMAPSS_SENSORS
