"""`fleetcare models watch`: the model watch on a schedule (hourly by default).

Each run checks every kind with an active model for drift (one transaction per kind, events
in it) and retrains the kinds that are due, each retraining in a transaction of its own (it
can take minutes). Running several watchers is harmless but wasteful: a second one may record
a second check or retrain again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from fleetcare.clock import Clock, SystemClock
from fleetcare.errors import Invalid
from fleetcare.worker import Pool, WorkerRunner, WorkerStats
from maintenance.modelwatch.service import WatchSettings, check_kind, retrain_trigger
from models import service as models
from models.schemas import DriftCheck, RetrainDecision

log = logging.getLogger(__name__)


@dataclass
class WatchStats(WorkerStats):
    """The runner's counters plus the watch's."""

    checks: list[DriftCheck] = field(default_factory=list)
    events: int = 0
    decisions: list[RetrainDecision] = field(default_factory=list)


def watch_once(
    pool: Pool,
    clock: Clock,
    settings: WatchSettings,
    stats: WatchStats,
    *,
    retrain: bool = True,
) -> None:
    """One round over every kind with an active model."""
    with pool.connection() as conn:
        kinds = models.kinds_with_active_model(conn)
    for kind in kinds:
        with pool.connection() as conn, conn.transaction():
            check, raised = check_kind(conn, kind, clock.now(), settings)
            trigger = retrain_trigger(
                conn, kind, clock.now(), bool(check and check.drifted), settings
            )
        if check is not None:
            stats.checks.append(check)
            log.info(
                "drift %s: max PSI %s over %d row(s)%s",
                kind,
                f"{check.max_psi:.3f}" if check.max_psi is not None else "-",
                check.rows,
                f"; drifted: {', '.join(check.drifted_signals)}" if check.drifted else "",
            )
        stats.events += int(raised)
        if not retrain or trigger is None:
            continue
        try:
            with pool.connection() as conn, conn.transaction():
                outcome = models.retrain(
                    conn,
                    kind,
                    clock,
                    trigger=trigger,
                    drift_check_id=check.id if check and trigger == "drift" else None,
                )
        except Invalid as exc:  # no lifetimes to train on yet
            log.info("retrain %s (%s) skipped: %s", kind, trigger, exc.detail)
            continue
        stats.decisions.append(outcome.decision)
        log.info("retrain %s (%s): %s", kind, trigger, outcome.decision.reason)


def run_model_watch(
    database_url: str,
    *,
    stop: threading.Event,
    clock: Clock | None = None,
    interval: float = 3600.0,
    settings: WatchSettings | None = None,
    retrain: bool = True,
    stats: WatchStats | None = None,
) -> WatchStats:
    """Watch every ``interval`` seconds until ``stop``."""
    clock = clock or SystemClock()
    settings = settings or WatchSettings()
    stats = stats or WatchStats()

    def watch(pool: Pool) -> int:
        """One round; 0, so the next waits ``interval``."""
        watch_once(pool, clock, settings, stats, retrain=retrain)
        return 0

    runner = WorkerRunner(
        "models-watch", database_url, interval=interval, drain=False, stats=stats, pool_max_size=1
    )
    runner.run([watch], stop)
    return stats
