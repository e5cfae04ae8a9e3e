"""The scoring worker: scores assets with new telemetry (the shell's runner).

It wakes on ``NOTIFY fleetcare_telemetry`` (migration 0160: ingest moving an asset's
last-seen time, a renewal) and polls every ``poll_s`` only as the fallback.

Each pass runs in one transaction of its own (the worker owns it). Several workers split
the fleet with ``shard=(k, n)`` (asset id modulo n); each keeps its own readings cache.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection

from fleetcare.clock import Clock
from fleetcare.db import connect
from fleetcare.worker import Pool, WorkerRunner
from models.scoring import (
    ModelCache,
    PassResult,
    ReadingsCache,
    keep_out_of_collections,
    score_pass,
)

log = logging.getLogger(__name__)

CHANNEL = "fleetcare_telemetry"


@dataclass
class ScoringWorker:
    """Wakes on new telemetry (or every ``poll_s`` seconds); exposes counters and an event per
    finished pass."""

    database_url: str
    clock: Clock
    poll_s: float = 1.0
    kind: str | None = None
    shard: tuple[int, int] = (0, 1)
    use_cache: bool = True
    # One native thread for prediction: a worker shares its machine, and OpenMP threads
    # that wait for each other under load cost far more than they bring; scale with --shard.
    threads: int | None = 1
    passes: int = 0
    predictions_total: int = 0
    last_result: PassResult | None = None
    pass_done: threading.Event = field(default_factory=threading.Event)
    models: ModelCache = field(default_factory=ModelCache)
    cache: ReadingsCache = field(default_factory=ReadingsCache)

    def __post_init__(self) -> None:
        k, n = self.shard
        if n < 1 or not 0 <= k < n:
            raise ValueError(f"shard must be k/n with 0 <= k < n, got {k}/{n}")
        if self.poll_s <= 0:
            raise ValueError("poll_s must be > 0")

    def run_once(self) -> PassResult:
        """Run one pass in its own connection and transaction."""
        with connect(self.database_url, actor="system:score") as conn:
            return self.run_pass(conn)

    def run_pass(self, conn: Connection[Any]) -> PassResult:
        """Run one pass on an open connection (one transaction)."""
        started = time.perf_counter()
        models_loaded = len(self.models.loaded)
        with conn.transaction():
            result = score_pass(
                conn,
                self.clock,
                models=self.models,
                cache=self.cache if self.use_cache else None,
                kind=self.kind,
                shard=self.shard,
                threads=self.threads,
            )
        seconds = time.perf_counter() - started
        if len(self.models.loaded) > models_loaded:
            keep_out_of_collections()  # what was loaded stays: no collection walks it again
        self.passes += 1
        self.predictions_total += result.predictions
        self.last_result = result
        self.pass_done.set()
        if result.changed_assets:
            log.info(
                "scored %d asset(s), %d prediction(s) in %.3f s (%d unchanged, %d not scorable,"
                " %d without a model)",
                result.scored_assets,
                result.predictions,
                seconds,
                result.unchanged_assets,
                result.not_scorable,
                result.no_model,
            )
        return result

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set; survives a failed pass (logged, retried next poll)."""

        def score(pool: Pool) -> int:
            """One pass on a pooled connection; 0: the next waits for a NOTIFY (or ``poll_s``)."""
            with pool.connection() as conn:
                self.run_pass(conn)
            return 0

        runner = WorkerRunner(
            "score",
            self.database_url,
            interval=self.poll_s,
            channel=CHANNEL,
            drain=False,
            pool_max_size=1,
        )
        runner.run([score], stop)
