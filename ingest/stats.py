"""An ingestor's counters (thread-safe) and their Prometheus view."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.schemas import BatchResult
from ingest.subscription import Alert


class IngestStats:
    """Counters of one ingestor, thread-safe; read by /metrics, the status row and tests."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.started_at = time.time()
        self.messages_total = 0
        self.stored_total = 0
        self.duplicates_total = 0
        self.quarantined_total = 0
        self.batches_total = 0
        self.database_errors_total = 0
        self.acks_skipped_total = 0  # committed on a connection that has since gone
        self.subscription = "session"  # or "shared"
        self.sessions_lost_total = 0  # reconnects where the broker had not kept our session
        self.broker_restarts_total = 0  # broker restarts seen across our reconnects
        self.unsubscribed_s = 0.0  # the last window without a shared subscription, seconds
        self.alert: str | None = None  # the last subscription alert, and when (wall time)
        self.alert_at: float | None = None
        self.quarantined: Counter[tuple[str, str]] = Counter()  # (device, reason)
        self.broker_dropped: int | None = None
        self.lag_s = 0.0
        self.connected = False
        self.protocol = ""
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic time, stored)

    def record_batch(self, result: BatchResult, lag_s: float) -> None:
        """Count a committed batch and wake whoever waits for one."""
        with self.lock:
            self.batches_total += 1
            self.messages_total += result.messages
            self.stored_total += result.stored
            self.duplicates_total += result.duplicates
            self.quarantined_total += result.quarantined_total
            for (device, reason), n in result.quarantined_by_device.items():
                self.quarantined[(device or "", reason)] += n
            self.lag_s = lag_s
            now = time.monotonic()
            self._recent.append((now, result.stored + result.duplicates))
            self.lock.notify_all()

    def record_subscription_event(self, *, restarted: bool, alert: Alert | None) -> None:
        """Count a broker restart and/or a subscription alert (lost session, unsubscribed
        window)."""
        with self.lock:
            if restarted:
                self.broker_restarts_total += 1
            if alert is not None:
                if alert.kind == "session_lost":
                    self.sessions_lost_total += 1
                if alert.kind == "unsubscribed_window":
                    self.unsubscribed_s = alert.unsubscribed_s
                self.alert, self.alert_at = alert.detail, time.time()
            self.lock.notify_all()

    def record_broker_dropped(self, dropped: int) -> None:
        """The broker's own count of messages it dropped ($SYS, published every few seconds)."""
        with self.lock:
            self.broker_dropped = dropped
            self.lock.notify_all()

    def readings_per_s(self, window_s: float = 10.0) -> float:
        """Readings written (new or duplicate) per second over the last ``window_s``."""
        with self.lock:
            now = time.monotonic()
            while self._recent and self._recent[0][0] < now - window_s:
                self._recent.popleft()
            if not self._recent:
                return 0.0
            span = max(now - self._recent[0][0], 1.0)
            return sum(n for _, n in self._recent) / span

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float) -> bool:
        """Wait until ``predicate(stats)`` holds (checked at each batch or database error)."""
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self), timeout)


class IngestCollector(Collector):
    """Prometheus view of an ingestor's counters."""

    def __init__(self, stats: IngestStats, queue_depth: Callable[[], int]) -> None:
        self.stats = stats
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        with s.lock:
            totals = [
                ("messages", "MQTT messages processed", s.messages_total),
                ("readings_stored", "readings stored", s.stored_total),
                (
                    "readings_duplicate",
                    "readings already stored (redeliveries)",
                    s.duplicates_total,
                ),
                ("batches", "batches committed", s.batches_total),
                ("database_errors", "failed batch attempts (retried)", s.database_errors_total),
                (
                    "sessions_lost",
                    "reconnects where the broker had not kept our session (queued messages lost)",
                    s.sessions_lost_total,
                ),
                (
                    "broker_restarts",
                    "broker restarts seen across reconnects",
                    s.broker_restarts_total,
                ),
            ]
            unsubscribed, shared = s.unsubscribed_s, s.subscription == "shared"
            quarantined = dict(s.quarantined)
            lag, connected, dropped = s.lag_s, s.connected, s.broker_dropped
        for name, doc, value in totals:
            yield CounterMetricFamily(f"fleetcare_ingest_{name}", doc, value=value)
        by_reason = CounterMetricFamily(
            "fleetcare_ingest_quarantined",
            "items quarantined, per device and reason",
            labels=["device", "reason"],
        )
        for (device, reason), n in sorted(quarantined.items()):
            by_reason.add_metric([device, reason], n)
        yield by_reason
        yield GaugeMetricFamily(
            "fleetcare_ingest_readings_per_second",
            "readings written per second (10 s)",
            value=s.readings_per_s(),
        )
        yield GaugeMetricFamily(
            "fleetcare_ingest_lag_seconds",
            "receipt of a batch's oldest message to its commit",
            value=lag,
        )
        yield GaugeMetricFamily(
            "fleetcare_ingest_queue_depth",
            "messages received, not yet in a batch",
            value=self.queue_depth(),
        )
        yield GaugeMetricFamily(
            "fleetcare_ingest_connected", "1 when connected to the broker", value=int(connected)
        )
        yield GaugeMetricFamily(
            "fleetcare_ingest_shared_subscription",
            "1 when subscribed through $share/ingest/..., 0 for the per-ingestor session",
            value=int(shared),
        )
        yield GaugeMetricFamily(
            "fleetcare_ingest_unsubscribed_seconds",
            "after the last broker restart, how long the shared subscription was missing "
            "(what devices published then was dropped by a broker that forgets it)",
            value=unsubscribed,
        )
        if dropped is not None:
            yield GaugeMetricFamily(
                "fleetcare_broker_dropped_messages",
                "the broker's $SYS/broker/publish/messages/dropped",
                value=dropped,
            )
