"""How one ingestor runs (``ingest.worker.IngestWorker``): its settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ingest.schemas import IngestLimits

Protocol = Literal["auto", "v5", "v311"]


@dataclass(frozen=True)
class IngestConfig:
    """How one ingestor runs."""

    mqtt_url: str
    database_url: str
    client_id: str
    limits: IngestLimits = field(default_factory=IngestLimits)
    protocol: Protocol = "auto"
    # MQTT 5 shared subscription, so that several ingestors split the load: only on a broker
    # that keeps shared subscriptions across restarts (see ingest.subscription). Mosquitto 2.0
    # does not (measured with 2.0.11: messages published before the ingestor re-subscribes
    # get "No matching subscribers" and are dropped); the default plain subscription in the
    # ingestor's persistent session loses nothing across broker restarts.
    shared_subscription: bool = False
    batch_max_messages: int = 5000
    batch_max_bytes: int = 4_000_000  # 1 MB → 4 MB: -25% PostgreSQL CPU per reading
    # adaptive batches (Inbox.take): a writer's share of what waits, at least this and at most
    # batch_max_bytes; None: always gather up to batch_max_bytes
    batch_min_bytes: int | None = 500_000
    batch_max_wait_s: float = 0.2
    # a batch also closes once no message came for this long (the stream paused or ended)
    batch_idle_s: float = 0.02
    queue_max_messages: int = 10_000
    queue_max_bytes: int = 64 * 1024 * 1024
    receive_maximum: int = 10_000  # MQTT 5: most unacknowledged messages the broker sends us
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    status_interval_s: float = 2.0
    # Two writers overlap one batch's validation (Python) with another's COPY and commit
    # (PostgreSQL); acknowledgements still go out in batch order.
    writer_threads: int = 2
    # The interpreter's GIL switch interval, set for the whole process when the worker starts
    # (None: leave it). A writer back from PostgreSQL (its COPY done, the next statement to
    # send) waits for the GIL that the writer preparing the next batch holds, up to this long,
    # while PostgreSQL idles. 1 ms looked better at load 12-16 but not on a quiet machine
    # (docs/scaling.md): left at Python's 5 ms unless set.
    gil_switch_interval_s: float | None = None
    sparkplug_host_id: str | None = None  # Sparkplug primary host id; None: the client id

    @property
    def topic_root(self) -> str:
        return self.limits.topic_root
