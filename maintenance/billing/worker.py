"""`fleetcare billing worker`: closes last month on schedule, assesses failures for service
credits, sends the value reports, then runs dunning.

Every ``interval`` seconds it refreshes the drafts of the month that just ended (and of the
months before it, up to the adjustment look-back, so that it catches up after downtime) and,
once ``grace`` has passed since a month's end, issues them. Each run is one transaction that
this worker owns. Running several workers is safe: invoices are unique per customer and
period and locked while a worker computes them, so the others wait and then find nothing to
change. After closing, each run takes the dunning steps that fell due (reminders, past due,
orders paused); each step is a unique row, so two workers never take one twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from fleetcare.clock import Clock, SystemClock
from fleetcare.worker import Pool, WorkerRunner, WorkerStats
from maintenance.billing import service as billing
from maintenance.documents import credits
from maintenance.dunning import service as dunning
from maintenance.value import service as value

log = logging.getLogger(__name__)


@dataclass
class BillingStats(WorkerStats):
    """The runner's counters (``runs``, ``errors``, ``ran``) plus billing's."""

    invoices: int = 0
    issued: int = 0
    failures: int = 0
    value_reports: int = 0
    credits: int = 0
    reminders: int = 0
    past_due: int = 0
    orders_paused: int = 0


def run_billing_worker(
    database_url: str,
    *,
    stop: threading.Event,
    clock: Clock | None = None,
    interval: float = 3600.0,
    grace: timedelta = timedelta(days=3),
    stats: BillingStats | None = None,
) -> BillingStats:
    """Close (and after ``grace``, issue) last month every ``interval`` seconds until ``stop``."""
    clock = clock or SystemClock()
    stats = stats or BillingStats()

    def close_due_periods(pool: Pool) -> int:
        """One run: close the due periods in one transaction; 0, so the next waits."""
        with pool.connection() as conn, conn.transaction():
            stats.credits += credits.assess_recent_failures(conn, clock.now())
            results = billing.bill_due_periods(conn, clock, grace)
            for result in results:  # each month's value report, once its invoices are out
                stats.value_reports += value.send_monthly_reports(conn, result.period, clock.now())
        for result in results:
            stats.invoices += len(result.invoices)
            stats.issued += sum(1 for i in result.invoices if i.status == "issued")
            stats.failures += len(result.failures)
            for failure in result.failures:
                log.warning(
                    "billing: customer %s, period %s: %s",
                    failure.customer_id,
                    result.period,
                    failure.error,
                )
            log.info("billing: period %s, %d invoice(s)", result.period, len(result.invoices))
        # dunning in its own transaction: a closing error does not hold reminders back
        with pool.connection() as conn, conn.transaction():
            dunned = dunning.run_dunning(conn, clock)
        stats.reminders += dunned.reminders
        stats.past_due += dunned.past_due
        stats.orders_paused += dunned.orders_paused
        return 0

    runner = WorkerRunner(
        "billing", database_url, interval=interval, drain=False, stats=stats, pool_max_size=1
    )
    runner.run([close_due_periods], stop)
    return stats
