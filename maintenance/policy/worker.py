"""`fleetcare dispatch`: the policy as a worker, woken by new predictions.

It runs on the shell's worker runner: LISTEN on ``fleetcare_predictions`` (the trigger of
0004) with a poll every ``poll_interval`` seconds as the fallback, so a missed notification
only delays work. Queue rows are taken with FOR UPDATE SKIP LOCKED: run as many dispatchers
as you like. Each batch is one transaction that the job owns; events are written in it
(outbox). Subscription lifecycles (trials ending, renewals) advance every
``lifecycle_interval`` seconds in a transaction of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetcare.clock import Clock, SystemClock
from fleetcare.worker import Pool, WorkerRunner, WorkerStats
from maintenance.policy import service as policy
from maintenance.subscriptions import contracts

CHANNEL = "fleetcare_predictions"


@dataclass
class DispatchStats(WorkerStats):
    """The runner's counters plus the policy's."""

    handled: int = 0
    batches: int = 0
    lifecycle_changes: int = 0


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
    """Run the policy until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
    clock = clock or SystemClock()
    stats = stats or DispatchStats()
    runner = WorkerRunner(
        "dispatch",
        database_url,
        interval=poll_interval,
        channel=CHANNEL,
        stats=stats,
        pool_max_size=1,
    )
    last_lifecycle = float("-inf")

    def dispatch_batch(pool: Pool) -> int:
        """Advance lifecycles when due, then handle one batch of queued predictions."""
        nonlocal last_lifecycle
        with pool.connection() as conn:
            if time.monotonic() - last_lifecycle >= lifecycle_interval:
                with conn.transaction():
                    changed = contracts.advance_lifecycles(conn, clock)
                stats.lifecycle_changes += changed
                last_lifecycle = time.monotonic()
            with conn.transaction():
                handled = policy.process_queue(conn, clock, limit=batch_size)
        if handled:
            stats.handled += handled
            stats.batches += 1
            if on_batch:
                on_batch(handled)
        return handled

    runner.run([dispatch_batch], stop)
    return stats
