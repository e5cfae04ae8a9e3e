"""`fleetcare dispatch`: the policy as a worker, woken by new predictions.

It LISTENs on ``fleetcare_predictions`` (the trigger of 0004) and also polls every
``poll_interval`` seconds, so a missed notification only delays work. Queue rows are taken
with FOR UPDATE SKIP LOCKED: run as many dispatchers as you like. Each batch is one
transaction that this worker owns; events are written in it (outbox).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from fleetcare.clock import Clock, SystemClock
from fleetcare.db import connect
from maintenance.logistics import repository as logistics_repo
from maintenance.policy import service as policy
from maintenance.subscriptions import service as subscriptions

log = logging.getLogger(__name__)

CHANNEL = "fleetcare_predictions"


@dataclass
class DispatchStats:
    """Counters a caller (or a test) can watch."""

    handled: int = 0
    batches: int = 0
    lifecycle_changes: int = 0
    errors: int = 0
    idle: threading.Event = field(default_factory=threading.Event)


def run_dispatcher(
    database_url: str,
    *,
    stop: threading.Event,
    clock: Clock | None = None,
    poll_interval: float = 2.0,
    batch_size: int = 50,
    lifecycle_interval: float = 60.0,
    stats: DispatchStats | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> DispatchStats:
    """Run the policy until ``stop`` is set."""
    clock = clock or SystemClock()
    stats = stats or DispatchStats()
    last_lifecycle = 0.0
    with connect(database_url, autocommit=True) as listener, connect(database_url) as work:
        with work.transaction():
            logistics_repo.sync_parts_catalogue(work)
        listener.execute(f"LISTEN {CHANNEL}")
        log.info("dispatch: listening on %s", CHANNEL)
        while not stop.is_set():
            try:
                if time.monotonic() - last_lifecycle >= lifecycle_interval:
                    with work.transaction():
                        stats.lifecycle_changes += subscriptions.advance_lifecycles(work, clock)
                    last_lifecycle = time.monotonic()
                drained = _drain(work, clock, batch_size, stats, on_batch, stop)
            except psycopg.OperationalError as exc:
                stats.errors += 1
                log.warning("dispatch: database error, retrying: %s", exc)
                stop.wait(poll_interval)
                continue
            if drained:
                continue
            stats.idle.set()
            # Wait for a notification (or the poll interval); drain them all, then loop.
            for _ in listener.notifies(timeout=poll_interval, stop_after=1):
                pass
            stats.idle.clear()
    return stats


def _drain(
    work: psycopg.Connection[tuple[object, ...]],
    clock: Clock,
    batch_size: int,
    stats: DispatchStats,
    on_batch: Callable[[int], None] | None,
    stop: threading.Event,
) -> int:
    """Handle queued predictions batch by batch until the queue is empty; how many."""
    total = 0
    while not stop.is_set():
        with work.transaction():
            handled = policy.process_queue(work, clock, limit=batch_size)
        if handled == 0:
            break
        total += handled
        stats.handled += handled
        stats.batches += 1
        if on_batch:
            on_batch(handled)
    return total
