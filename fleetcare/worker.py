"""One loop for every background worker: jobs, a wake-up channel, one pool, stats, backoff, stop.

A worker (``dispatch``, ``billing worker``, ``webhooks``, ``score``) gives the runner one job
per loop thread. A job takes a connection from the process's pool, does one unit of work in
a transaction it owns (it commits; services never do) and returns how much it did: more
than 0 runs it again at once (``drain``), 0 waits for a NOTIFY on ``channel`` (one dedicated
LISTEN connection) or for ``interval`` seconds, whichever comes first; a job that knows better
returns ``Ran(done, more)``. A ``wake`` filter may let a notification's payload decide whether
it is worth waking a loop (the webhook sender skips endpoints it already works on). A
database error backs off (doubling up to ``backoff_max``) and the loop goes on; any other
error is logged, counted and retried after ``interval``, so one bad job never stops the
worker. SIGTERM and SIGINT (when run from the main thread) or ``stop`` end it after the jobs
in flight.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool, PoolTimeout

from fleetcare.db import connect, open_pool, wait_for_database
from fleetcare.settings import Settings

log = logging.getLogger(__name__)

Pool = ConnectionPool[Connection[Any]]


@dataclass(frozen=True)
class Ran:
    """What a job did, when its count alone cannot say whether work is left: ``more`` False
    means it stopped because it found nothing more to do (its loop waits for a wake-up)."""

    done: int
    more: bool


# One unit of work on connections from the pool; returns how much it did (0: nothing to do;
# more than 0: run again at once), or a ``Ran`` that says so explicitly.
Job = Callable[[Pool], "int | Ran"]


@dataclass
class WorkerStats:
    """Counters a caller (or a test) can watch; every worker's own counters extend these."""

    runs: int = 0  # jobs finished (successfully or not)
    work: int = 0  # the sum of what the jobs returned
    errors: int = 0  # jobs that raised
    ran: threading.Event = field(default_factory=threading.Event)  # set after every job
    idle: threading.Event = field(default_factory=threading.Event)  # set while waiting
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, work: int = 0, error: bool = False) -> None:
        """One finished job."""
        with self.lock:
            self.runs += 1
            self.work += work
            self.errors += int(error)
        self.ran.set()


class Wakeup:
    """A generation counter that LISTEN bumps; idle loops wait for it to change.

    A notification wakes one idle loop; a loop that found work wakes the next, so that a
    burst spreads over the loops without every event waking all of them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def current(self) -> int:
        """The generation now (read before a job, waited on after it)."""
        with self._cond:
            return self._generation

    def bump(self, *, everyone: bool = False) -> None:
        """Something may be waiting: wake one idle loop (or all of them)."""
        with self._cond:
            self._generation += 1
            if everyone:
                self._cond.notify_all()
            else:
                self._cond.notify()

    def wait(self, seen: int, timeout: float) -> None:
        """Wait until the generation moves past ``seen`` or ``timeout`` seconds pass."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout=timeout)


def listen(
    database_url: str,
    channel: str,
    wakeup: Wakeup,
    stop: threading.Event,
    poll_s: float,
    wake: Callable[[str], bool] | None = None,
) -> None:
    """Bump ``wakeup`` on every NOTIFY on ``channel`` (whose payload ``wake``, when given, says
    is worth a wake-up); reconnect when the database drops."""
    while not stop.is_set():
        try:
            with connect(database_url, autocommit=True) as conn:
                conn.execute(f"LISTEN {channel}")
                wakeup.bump(everyone=True)  # anything committed while we were not listening
                while not stop.is_set():
                    for note in conn.notifies(timeout=poll_s):
                        if wake is None or wake(note.payload):
                            wakeup.bump()
                        if stop.is_set():
                            break
        except Exception as exc:  # keep listening; the poll covers the gap
            log.warning("listener on %s lost the database (%s); reconnecting", channel, exc)
            stop.wait(1.0)


@dataclass
class WorkerRunner:
    """Runs jobs in loop threads until stopped; one pool per runner (per worker process)."""

    name: str
    database_url: str
    interval: float
    channel: str | None = None
    drain: bool = True
    settings: Settings | None = None
    pool_max_size: int | None = None
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    stats: WorkerStats = field(default_factory=WorkerStats)
    # Which notifications wake a loop (None: every one), given their payload.
    wake: Callable[[str], bool] | None = None
    # What wakes the idle loops (the listener bumps it; a job may too).
    wakeup: Wakeup = field(default_factory=Wakeup)
    _pool: Pool | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be > 0")

    @property
    def pool(self) -> Pool:
        """The pool job connections come from (opened on first use, closed by ``run``)."""
        if self._pool is None:
            self._pool = open_pool(
                self.database_url, self.settings, name=self.name, max_size=self.pool_max_size
            )
        return self._pool

    def run(
        self,
        jobs: Sequence[Job],
        stop: threading.Event,
        *,
        on_ready: Callable[[], None] | None = None,
    ) -> WorkerStats:
        """Run each job in a loop thread of its own until ``stop`` is set (or SIGTERM/SIGINT)."""
        if not jobs:
            raise ValueError("a worker needs at least one job")
        wakeup = self.wakeup
        restore = _stop_on_signals(stop)
        # a worker started before its database waits for it (SIGTERM still stops it)
        if self._pool is None and not wait_for_database(self.database_url, stop):
            restore()
            return self.stats
        pool = self.pool
        threads: list[threading.Thread] = []
        if self.channel is not None:
            threads.append(
                threading.Thread(
                    target=listen,
                    args=(
                        self.database_url,
                        self.channel,
                        wakeup,
                        stop,
                        min(self.interval, 1.0),
                        self.wake,
                    ),
                    name=f"{self.name}-listen",
                    daemon=True,
                )
            )
        loops = [
            threading.Thread(
                target=self._loop,
                args=(job, pool, wakeup, stop, len(jobs) > 1),
                name=f"{self.name}-{i}",
                daemon=True,
            )
            for i, job in enumerate(jobs)
        ]
        threads += loops
        for thread in threads:
            thread.start()
        log.info(
            "%s: %d loop(s), %s",
            self.name,
            len(loops),
            f"LISTEN {self.channel}" if self.channel else f"every {self.interval:g} s",
        )
        try:
            if on_ready:
                on_ready()
            while not stop.wait(0.5):
                pass
        finally:
            stop.set()
            wakeup.bump(everyone=True)  # idle loops stop waiting
            for thread in threads:
                thread.join()
            pool.close()
            self._pool = None
            restore()
        return self.stats

    def _loop(
        self, job: Job, pool: Pool, wakeup: Wakeup, stop: threading.Event, share: bool
    ) -> None:
        backoff = 0.0
        while not stop.is_set():
            seen = wakeup.current()
            try:
                result = job(pool)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                backoff = min(max(backoff * 2, self.backoff_min), self.backoff_max)
                log.warning("%s: database error, retrying in %.1f s: %s", self.name, backoff, exc)
                self.stats.count(error=True)
                stop.wait(backoff)
                continue
            except Exception:
                log.exception("%s: job failed, retrying in %.1f s", self.name, self.interval)
                self.stats.count(error=True)
                stop.wait(self.interval)
                continue
            backoff = 0.0
            done, more = (
                (result.done, result.more) if isinstance(result, Ran) else (result, result > 0)
            )
            self.stats.count(work=done)
            if more and self.drain:
                if share:
                    wakeup.bump()  # there may be more: let an idle loop look too
                continue
            self.stats.idle.set()
            wakeup.wait(seen, self.interval)
            self.stats.idle.clear()


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """From the main thread: SIGTERM and SIGINT set ``stop``; returns what undoes that."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
