"""`fleetcare up`'s supervisor starts a dead worker again (with a back-off), never after stop."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from cli.supervisor import RESTART_FIRST_S, RESTART_RESET_AFTER_S, Supervisor, watch

# A worker that says it ran, then dies.
DIES = [sys.executable, "-c", "print('run', flush=True); raise SystemExit(3)"]
# A worker that runs until it is stopped.
RUNS = [sys.executable, "-c", "import time; print('run', flush=True); time.sleep(600)"]


def _runs(log: Path) -> int:
    return log.read_text().count("run\n") if log.exists() else 0


def _wait_dead(supervisor: Supervisor, name: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while name not in {c.name for c in supervisor.dead()}:
        assert time.monotonic() < deadline, f"{name} did not exit"
        time.sleep(0.02)


def test_a_dead_worker_is_started_again_after_a_back_off_that_doubles(tmp_path: Path) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    child = supervisor.start("dispatch", argv=DIES, restart=True)
    _wait_dead(supervisor, "dispatch")
    t0 = child.started_at + 1.0  # it died within its first second

    assert supervisor.revive(t0) == []  # due after the back-off, not at once
    assert child.restart_at == t0 + RESTART_FIRST_S
    assert supervisor.revive(t0 + RESTART_FIRST_S) == [child]
    assert child.restarts == 1
    _wait_dead(supervisor, "dispatch")
    assert _runs(child.log_path) == 2  # the same command again, into the same log

    supervisor.revive(t0 + 2)  # died quickly again: twice the wait
    assert child.restart_at == t0 + 2 + 2 * RESTART_FIRST_S
    assert supervisor.revive(t0 + 3) == []
    assert supervisor.revive(t0 + 4) == [child]
    _wait_dead(supervisor, "dispatch")

    # one that ran a while before it died starts over at the first back-off
    later = child.started_at + RESTART_RESET_AFTER_S + 5
    supervisor.revive(later)
    assert child.restart_at == later + RESTART_FIRST_S
    supervisor.stop()


def test_workers_not_asking_are_not_restarted_and_none_is_after_stop(tmp_path: Path) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    simulator = supervisor.start("simulate-demo", argv=DIES)  # a new one would start over
    worker = supervisor.start("score", argv=RUNS, restart=True)
    _wait_dead(supervisor, "simulate-demo")
    now = time.monotonic()
    assert supervisor.revive(now) == [] and supervisor.revive(now + 120) == []
    assert _runs(simulator.log_path) == 1

    supervisor.stop()  # the running worker dies by our SIGTERM: not a reason to restart it
    assert worker.proc.poll() is not None
    assert supervisor.revive(time.monotonic() + 120) == []
    assert worker.restarts == 0


def test_the_watcher_restarts_a_worker_that_died(tmp_path: Path) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    child = supervisor.start("webhooks", argv=DIES, restart=True)
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(supervisor, stop, 0.05), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while _runs(child.log_path) < 2:  # its first run and at least one more
        assert time.monotonic() < deadline, "the watcher did not start the worker again"
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    supervisor.stop()
    assert child.restarts >= 1
