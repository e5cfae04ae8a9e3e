"""`fleetcare billing worker`: closes last month on schedule.

Every ``interval`` seconds it refreshes the drafts of the month that just ended (and of the
months before it, up to the adjustment look-back, so that it catches up after downtime) and,
once ``grace`` has passed since a month's end, issues them. Each run is one transaction that
this worker owns. Running several workers is safe: invoices are unique per customer and
period and locked while a worker computes them, so the others wait and then find nothing to
change.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from fleetcare.clock import Clock, SystemClock
from fleetcare.db import connect
from fleetcare.errors import FleetcareError
from maintenance.billing import service as billing

log = logging.getLogger(__name__)


@dataclass
class BillingStats:
    """Counters a caller (or a test) can watch."""

    runs: int = 0
    invoices: int = 0
    issued: int = 0
    failures: int = 0
    errors: int = 0
    ran: threading.Event = field(default_factory=threading.Event)


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
    while not stop.is_set():
        try:
            with connect(database_url) as conn, conn.transaction():
                results = billing.bill_due_periods(conn, clock, grace)
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
        except (psycopg.OperationalError, FleetcareError) as exc:
            stats.errors += 1
            log.warning("billing: run failed, retrying: %s", exc)
        stats.runs += 1
        stats.ran.set()
        stop.wait(interval)
    return stats
