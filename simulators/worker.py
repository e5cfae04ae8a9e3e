"""The fleet's loop: advance the physics with the clock, publish over MQTT, record the truth.

Each gateway publishes on its own MQTT connection with its own credentials. A gateway that
goes offline disconnects (its last will says so) and keeps buffering; when it comes back it
reconnects and flushes the backlog in batches. The ground truth and the ends of lives go to
a ``TruthSink`` (the database in production), never to the telemetry path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from fleetcare.clock import Clock
from fleetcare.db import connect
from simulators import service
from simulators.devices import Malformed, MqttLink, malformed_payload
from simulators.failures import FailureReporter
from simulators.fleet import Fleet, at_ms, ms_of
from simulators.schemas import LifeEnd, TruthRow
from simulators.sparkplug_fleet import SparkplugLink, SparkplugSetup

log = logging.getLogger(__name__)


class TruthSink(Protocol):
    """Where the simulator's knowledge goes (evaluation only)."""

    def record_life_ends(self, ends: list[LifeEnd]) -> None: ...

    def record_truth(self, rows: list[TruthRow]) -> None: ...


class DatabaseTruthSink:
    """Records ground truth and ends of lives in PostgreSQL, one transaction per call; with
    ``failures``, failures are also reported to the product, through its API, as the
    customer would report them (reports that could not be sent yet go again each call)."""

    def __init__(
        self, database_url: str, asset_ids: dict[str, int], failures: FailureReporter | None = None
    ) -> None:
        self.conn = connect(database_url)
        self.asset_ids = asset_ids
        self.failures = failures

    def record_life_ends(self, ends: list[LifeEnd]) -> None:
        with self.conn.transaction():
            for life in ends:
                service.record_life_end(
                    self.conn, life, self.asset_ids, "live", failures=self.failures
                )
        if self.failures is not None:
            self.failures.flush()

    def record_truth(self, rows: list[TruthRow]) -> None:
        with self.conn.transaction():
            service.record_truth(self.conn, rows, self.asset_ids)
        if self.failures is not None and self.failures.pending:
            self.failures.flush()

    def close(self) -> None:
        self.conn.close()


class Link(Protocol):
    """A gateway's connection to the broker (``MqttLink``; tests may record instead)."""

    @property
    def active(self) -> bool: ...

    def connect(self, timeout: float = 10.0) -> None: ...

    def publish(self, payload: bytes) -> None: ...

    def disconnect(self, *, send_will: bool = False, timeout: float = 30.0) -> None: ...


class Technician(Protocol):
    """Anything that works on the fleet each tick (see ``simulators.technician``)."""

    def work(self, now: datetime) -> list[LifeEnd]: ...


@dataclass
class RunStats:
    """What a run did, for logs and benchmarks."""

    ticks: int = 0
    readings: int = 0
    payloads: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    life_ends: int = 0
    offline_periods: int = 0
    dropped_readings: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "readings": self.readings, "payloads": self.payloads,
            "malformed": dict(self.malformed), "life_ends": self.life_ends,
            "offline_periods": self.offline_periods, "dropped_readings": self.dropped_readings,
        }  # fmt: skip


LinkFactory = Callable[[str, str], MqttLink]


class FleetRunner:
    """Runs a fleet against a broker in real time (or a test's clock)."""

    def __init__(
        self,
        fleet: Fleet,
        links: Mapping[str, Link],
        clock: Clock,
        *,
        sink: TruthSink | None = None,
        technician: Technician | None = None,
    ) -> None:
        self.fleet = fleet
        self.links = links
        self.clock = clock
        self.sink = sink
        self.technician = technician
        self.stats = RunStats()
        self._malformed_rng = np.random.default_rng([fleet.spec.seed, 0x6D616C])
        self._malformed_cycle = list(Malformed)
        self._last_s: float | None = None
        self._last_truth_s: float | None = None
        self._asset_kinds = {a.ref: fleet.kinds[a.kind].population.kind for a in fleet.assets}

    @classmethod
    def over_mqtt(
        cls,
        fleet: Fleet,
        broker_url: str,
        topic_root: str,
        secrets: dict[str, str],
        clock: Clock,
        *,
        confirm: bool = True,
        sparkplug: SparkplugSetup | None = None,
        **kwargs: Any,
    ) -> FleetRunner:
        """A runner with one MQTT connection per gateway, each with the device's secret
        (``confirm``: keep and resend what fleetcare has not confirmed, see ``MqttLink``);
        with ``sparkplug``, the gateways of its kinds are Sparkplug B edge nodes instead."""
        links: dict[str, Link] = {}
        for device in fleet.devices:
            ref = device.ref
            if sparkplug is not None and device.kind in sparkplug.kinds:
                names = fleet.kinds[device.kind].population.kind.metric_names
                links[ref] = SparkplugLink(broker_url, device, names, secrets[ref], sparkplug)
            else:
                links[ref] = MqttLink(broker_url, ref, secrets[ref], topic_root, confirm=confirm)
        return cls(fleet, links, clock, **kwargs)

    def open(self) -> None:
        """Connect every gateway and pin the fleet's clock to now (unless already pinned)."""
        for link in self.links.values():
            link.connect()
        now = self.clock.now()
        if self.fleet.anchor_ms is None:
            self.fleet.start(now)
        self._last_s = now.timestamp()

    def tick(self, now: datetime | None = None) -> None:
        """One step: physics up to ``now`` (default: the clock's), repairs, the lives that
        ended (failures reported), the technician, truth, then publishing.

        A failure is recorded before the technician works: a component that failed while its
        predicted order was open is reported against that order (not as a missed failure),
        and the technician then completes the order on the failed component."""
        now = now or self.clock.now()
        now_s = now.timestamp()
        elapsed = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        step = self.fleet.advance_to(now)
        ends = list(step.life_ends)
        if self.sink is not None and ends:
            self.sink.record_life_ends(ends)
        worked = self.technician.work(now) if self.technician is not None else []
        if self.sink is not None and worked:
            self.sink.record_life_ends(worked)
        ends += worked
        self.stats.readings += step.readings
        self.stats.life_ends += len(ends)
        for life in ends:
            log.info(
                "%s %s: %s after %.0f %s (%s)",
                life.asset_ref, life.component, life.failure_mode or life.end_reason,
                life.usage_at_end - life.usage_at_start,
                self.fleet.kinds[life.kind].population.kind.life_unit,
                "order" if life.by_order else "simulation",
            )  # fmt: skip
        if self.sink is not None:
            every = self.fleet.spec.truth_every_s
            if self._last_truth_s is None or now_s - self._last_truth_s >= every:
                self.sink.record_truth(self.fleet.truth())
                self._last_truth_s = now_s
        payloads, went_offline = self.fleet.payloads(now_s, elapsed)
        for ref in went_offline:
            self.stats.offline_periods += 1
            self.links[ref].disconnect(send_will=True)
        self._publish(payloads, now)
        self.stats.ticks += 1

    def _publish(self, payloads: list[tuple[str, bytes]], now: datetime) -> None:
        rate = self.fleet.spec.malformed_rate
        for ref, payload in payloads:
            link = self.links[ref]
            if not link.active:  # back from an offline period
                link.connect()
            link.publish(payload)
            self.stats.payloads += 1
            if rate > 0 and self._malformed_rng.random() < rate:
                self.publish_malformed(
                    ref, self._malformed_rng.choice(len(self._malformed_cycle)), now
                )

    def publish_malformed(self, device_ref: str, which: int | Malformed, now: datetime) -> bytes:
        """Publish one malformed payload from ``device_ref`` (a kind by index or name)."""
        kind = which if isinstance(which, Malformed) else self._malformed_cycle[int(which)]
        gateway = self.fleet.gateways[device_ref]
        asset = gateway.assets[0]
        payload = malformed_payload(
            kind, asset, self._asset_kinds[asset], gateway.device_time_ms(ms_of(now))
        )
        link = self.links[device_ref]
        if not link.active:
            link.connect()
        link.publish(payload)
        self.stats.malformed[kind.value] = self.stats.malformed.get(kind.value, 0) + 1
        return payload

    def take_offline(self, device_ref: str, seconds: float) -> None:
        """Cut a gateway's network for ``seconds`` of the clock (demos, tests): its last will
        announces it offline; it buffers until it reconnects and flushes the backlog."""
        self.fleet.gateways[device_ref].go_offline(self.clock.now().timestamp() + seconds)
        self.links[device_ref].disconnect(send_will=True)
        self.stats.offline_periods += 1

    def run(
        self,
        stop: threading.Event,
        duration_s: float | None = None,
        *,
        progress: Callable[[RunStats], None] | None = None,
        progress_every_s: float = 10.0,
    ) -> RunStats:
        """Tick every ``tick_s`` until ``stop`` is set or ``duration_s`` has passed.

        Ticks are scheduled on a fixed grid from the first one (the k-th tick simulates up to
        start + k * tick_s), so a run's readings do not depend on scheduling jitter: the same
        seed gives the same telemetry, shifted only by the start time."""
        tick_s = self.fleet.spec.tick_s
        if self.fleet.anchor_ms is None:
            self.fleet.start(self.clock.now())
        assert self.fleet.anchor_ms is not None
        first = at_ms(self.fleet.anchor_ms)  # the fleet's clock started here
        started = time.monotonic() - (self.clock.now() - first).total_seconds()
        last_report = time.monotonic()
        k = 0
        while True:
            k += 1
            if stop.wait(max(0.0, started + k * tick_s - time.monotonic())):
                break
            self.tick(first + timedelta(seconds=k * tick_s))
            if progress is not None and time.monotonic() - last_report >= progress_every_s:
                progress(self.stats)
                last_report = time.monotonic()
            if duration_s is not None and k * tick_s >= duration_s:
                break
        return self.stats

    def sparkplug_held(self) -> int:
        """Readings Sparkplug edge nodes still hold (their primary host is away)."""
        return sum(
            link.node.stored for link in self.links.values() if isinstance(link, SparkplugLink)
        )

    def close(self, timeout: float = 60.0) -> RunStats:
        """Bring every gateway back online, flush all backlogs, wait for acks, disconnect."""
        for gateway in self.fleet.gateways.values():
            gateway.online = True
            self.stats.dropped_readings += gateway.dropped_readings
        self._publish(
            [(ref, p) for ref, g in self.fleet.gateways.items() for p in g.drain()],
            self.clock.now(),
        )
        for link in self.links.values():
            link.disconnect(timeout=timeout)
        return self.stats
