"""The shell's worker runner: jobs on a pool, LISTEN wake-up, drain, backoff, stop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.worker import Pool, WorkerRunner, WorkerStats

CHANNEL = "fleetcare_test_runner"


@contextmanager
def running(runner: WorkerRunner, jobs: list[Callable[[Pool], int]]) -> Iterator[threading.Event]:
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=runner.run, args=(jobs, stop), kwargs={"on_ready": ready.set}, daemon=True
    )
    thread.start()
    try:
        assert ready.wait(30), "the runner did not start"
        yield stop
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the runner did not stop"


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        pause.wait(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def queue(conn: Connection[Any]) -> Connection[Any]:
    conn.execute("CREATE TABLE runner_queue (id serial PRIMARY KEY, done boolean DEFAULT false)")
    conn.commit()
    return conn


def take_one(pool: Pool) -> int:
    """A job that owns its transaction: mark one queued row done."""
    with pool.connection() as c, c.transaction():
        row = c.execute(
            "UPDATE runner_queue SET done = true WHERE id = (SELECT id FROM runner_queue"
            " WHERE NOT done ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
        ).fetchone()
    return 0 if row is None else 1


def pending(conn: Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM runner_queue WHERE NOT done").fetchone()
    conn.rollback()
    assert row is not None
    return int(row[0])


def test_a_notify_wakes_the_jobs_and_they_drain_the_queue(
    db_url: str, queue: Connection[Any]
) -> None:
    stats = WorkerStats()
    # An hour's poll: only the NOTIFY can wake the loops.
    runner = WorkerRunner("test", db_url, interval=3600, channel=CHANNEL, stats=stats)
    with running(runner, [take_one, take_one]):
        wait_until(stats.idle.is_set)
        queue.execute("INSERT INTO runner_queue SELECT FROM generate_series(1, 25)")
        queue.execute(f"NOTIFY {CHANNEL}")
        queue.commit()
        wait_until(lambda: pending(queue) == 0)
    assert stats.work == 25 and stats.errors == 0


def test_without_a_channel_the_poll_interval_runs_the_job(
    db_url: str, queue: Connection[Any]
) -> None:
    stats = WorkerStats()
    runner = WorkerRunner("test", db_url, interval=0.05, stats=stats)
    with running(runner, [take_one]):
        queue.execute("INSERT INTO runner_queue SELECT FROM generate_series(1, 3)")
        queue.commit()
        wait_until(lambda: pending(queue) == 0)
        runs = stats.runs
        wait_until(lambda: stats.runs > runs + 2)  # idle polls go on
    assert stats.work == 3


def test_a_lost_connection_backs_off_and_the_worker_goes_on(
    db_url: str, queue: Connection[Any]
) -> None:
    stats = WorkerStats()
    killed = threading.Event()

    def drop_connection_once(pool: Pool) -> int:
        if not killed.is_set():
            killed.set()
            with pool.connection() as c:
                # the server ends this backend: the job sees a real OperationalError
                with connect(db_url, autocommit=True) as admin:
                    pid = c.info.backend_pid
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                c.execute("SELECT 1")
        return take_one(pool)

    def failing_job(pool: Pool) -> int:
        raise ValueError("a bug in one job")

    runner = WorkerRunner("test", db_url, interval=0.05, stats=stats, backoff_min=0.05)
    with running(runner, [drop_connection_once, failing_job]):
        queue.execute("INSERT INTO runner_queue SELECT FROM generate_series(1, 5)")
        queue.commit()
        wait_until(lambda: pending(queue) == 0)
    assert killed.is_set()
    assert stats.errors >= 2  # the dropped connection and at least one failing_job
    assert stats.work == 5


def test_stop_ends_a_runner_that_waits_for_a_long_poll(db_url: str) -> None:
    stats = WorkerStats()
    runner = WorkerRunner("test", db_url, interval=3600, stats=stats)
    with running(runner, [lambda pool: 0]):
        wait_until(stats.idle.is_set)
    assert stats.runs == 1


def test_the_runner_refuses_a_bad_interval_and_no_jobs(db_url: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        WorkerRunner("test", db_url, interval=0)
    with pytest.raises(ValueError, match="at least one job"):
        WorkerRunner("test", db_url, interval=1).run([], threading.Event())
