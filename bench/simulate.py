"""Benchmark: how many readings per second one simulator process publishes, batched, over MQTT.

Starts our no-drop Mosquitto (fleetcare/mosquitto.conf) on a free port, builds a fleet of
tires (6 per truck gateway, each gateway on its own MQTT connection with QoS 1), and runs
it as fast as it can on a manual clock (each tick is ``--tick`` simulated-clock seconds at
``--speedup``): physics, sensor faults, batching, JSON encoding and publishing. The time
includes waiting for every PUBACK. A subscriber counts the payloads the broker delivers.

    python -m bench.simulate [--seconds 10] [--trucks 100]

The last line is JSON: {"readings_per_s": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetcare.clock import ManualClock
from fleetcare.services import start_mosquitto
from simulators.devices import GatewayBehaviour
from simulators.fleet import Fleet
from simulators.schemas import FleetSpec
from simulators.worker import FleetRunner

TOPIC_ROOT = "bench/fleetcare/v1"


class PayloadCounter:
    """Counts the telemetry payloads the broker delivers to a subscriber."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.count = 0
        self._cond = threading.Condition()
        ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC_ROOT}/+/telemetry", qos=1)
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = self._on_message
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        if not ready.wait(10):
            raise TimeoutError("the counting subscriber did not subscribe")
        self.client = client

    def _on_message(self, *_args: Any) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(
    trucks: int, seconds: float, speedup: float, tick: float, batch: int, faults: bool
) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tempfile.TemporaryDirectory(prefix="fleetcare-bench-") as tmp:
        broker, url = start_mosquitto(Path(tmp) / "mosquitto")
        try:
            counter = PayloadCounter(url)
            spec = FleetSpec(
                customer="bench", tires=trucks * 6, elevators=0, engines=0, speedup=speedup,
                tick_s=tick, batch_max=batch, faults=faults, offline=False, warmup=False,
            )  # fmt: skip
            fleet = Fleet(spec, behaviour=GatewayBehaviour(batch_max=batch, offline_per_hour=0.0))
            clock = ManualClock(datetime.now(UTC))
            runner = FleetRunner.over_mqtt(
                fleet, url, TOPIC_ROOT, {ref: "bench" for ref in fleet.gateways}, clock
            )
            runner.open()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                clock.advance(timedelta(seconds=tick))
                runner.tick()
            stats = runner.close()  # flushes and waits for every PUBACK
            elapsed = time.perf_counter() - started
            delivered = counter.wait_for(stats.payloads, 60)
            received = counter.count
            counter.close()
        finally:
            broker.stop()
    return {
        "readings_per_s": round(stats.readings / elapsed),
        "readings": stats.readings,
        "payloads": stats.payloads,
        "payloads_delivered_to_subscriber": received,
        "all_delivered": delivered,
        "seconds": round(elapsed, 2),
        "gateways": len(fleet.gateways),
        "assets": len(fleet.assets),
        "batch_max": batch,
        "qos": 1,
        "faults": faults,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trucks", type=int, default=100, help="gateways (6 tires each)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--speedup", type=float, default=216_000.0, help="60 h per 1 s tick")
    parser.add_argument("--tick", type=float, default=1.0, help="clock seconds per tick")
    parser.add_argument("--batch", type=int, default=500, help="readings per payload")
    parser.add_argument("--no-faults", action="store_true", help="perfect sensors")
    args = parser.parse_args()
    result = run(args.trucks, args.seconds, args.speedup, args.tick, args.batch, not args.no_faults)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
