"""An ingestor's counters (thread-safe) and their Prometheus view."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.schemas import BatchResult, IngestorStatus
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
        # messages the broker dropped while this ingestor watched its $SYS counter (see
        # record_broker_dropped); None until the first $SYS tick shows the counter is readable
        self.broker_dropped: int | None = None
        self._dropped_last: int | None = None  # the broker's counter as last seen
        self.broker_ticks = 0  # $SYS uptime messages seen (one every sys_interval)
        self.subscriptions_total = 0  # subscriptions the broker acknowledged (each connection)
        self.lag_s = 0.0
        self.connected = False
        self.protocol = ""
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic time, stored)

    def snapshot(self, client_id: str, now: datetime, queue_depth: int) -> IngestorStatus:
        """The status row's figures as of ``now`` (rate filled in by the writer)."""
        with self.lock:
            return IngestorStatus(
                client_id=client_id,
                started_at=datetime.fromtimestamp(self.started_at, tz=now.tzinfo),
                updated_at=now,
                connected=self.connected,
                messages_total=self.messages_total,
                stored_total=self.stored_total,
                duplicates_total=self.duplicates_total,
                quarantined_total=self.quarantined_total,
                readings_per_s=0.0,
                lag_s=self.lag_s,
                queue_depth=queue_depth,
                broker_dropped=self.broker_dropped,
                subscription=self.subscription,
                sessions_lost=self.sessions_lost_total,
                broker_restarts=self.broker_restarts_total,
                unsubscribed_s=self.unsubscribed_s,
                alert=self.alert,
                alert_at=(
                    datetime.fromtimestamp(self.alert_at, tz=now.tzinfo) if self.alert_at else None
                ),
            )

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

    def record_broker_dropped(self, dropped: int, *, retained: bool) -> int:
        """The broker's count of messages it dropped ($SYS/broker/publish/messages/dropped).

        Mosquitto publishes the counter only when it changes, retained with a 60 s expiry: an
        ingestor that subscribes later than that after the last change gets no value at all.
        So this counts what the broker dropped *while we watched*: the retained value that
        comes on subscription is the baseline; each live value adds its increase over the last
        one. A live value with no baseline is counted whole (it may include older drops: an
        alert too many rather than one missed). A lower value means the broker restarted and
        counts from zero again. Returns the increase counted.
        """
        with self.lock:
            last = self._dropped_last
            self._dropped_last = dropped
            if self.broker_dropped is None:
                self.broker_dropped = 0
            increase = 0
            if not retained:
                increase = dropped if last is None or dropped < last else dropped - last
                self.broker_dropped += increase
            self.lock.notify_all()
        return increase

    def record_subscribed(self) -> None:
        """The broker acknowledged our telemetry subscription (at each (re)connection)."""
        with self.lock:
            self.connected = True
            self.subscriptions_total += 1
            self.lock.notify_all()

    def record_broker_tick(self) -> None:
        """A $SYS tick (the broker's uptime) came: the dropped counter is readable, and had it
        changed since we subscribed its new value would have come before the tick."""
        with self.lock:
            self.broker_ticks += 1
            if self.broker_dropped is None:
                self.broker_dropped = 0
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
