"""`fleetcare up`'s worker processes: started, watched, restarted when they die, stopped with us.

Each child asks Linux to end it when its parent dies, so not even a SIGKILL of `up` leaves
workers behind. A worker started with ``restart=True`` (the loop's stateless workers: ingest,
score, dispatch, webhooks, the models watcher, the demo receiver) that exits on its own is
started again with the same command and environment, its output appended to the same log,
after a back-off that doubles with each quick death (1 s up to a minute; a worker that ran a
minute starts over at 1 s), as a process manager such as systemd (``Restart=on-failure``) or
Kubernetes would in production. Without it, one worker that died (a lost database connection
it did not survive, a bug) left the demo without, say, its dispatcher: predictions kept coming
and no order was raised. Simulators are not restarted: a new one would start its fleet's wear
over; their death is logged.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
# A worker that ran this long before it died was healthy: its back-off starts over.
RESTART_RESET_AFTER_S = 60.0


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One supervised worker process."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = False
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    backoff_s: float = RESTART_FIRST_S
    restart_at: float | None = None  # when a dead worker is due to start again


@dataclass
class Supervisor:
    """Starts workers, notices when one dies (restarting those that ask), and stops them all."""

    env: dict[str, str]
    log_dir: Path
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def command(self, *args: str) -> list[str]:
        """The argv of a fleetcare command run by this Python."""
        return [sys.executable, "-m", "cli", *args]

    def run_step(self, name: str, *args: str) -> None:
        """Run a fleetcare command to completion, its output shown; raise when it fails."""
        log.info("up: %s", " ".join(args))
        result = subprocess.run(
            self.command(*args), env=self.env, stdin=subprocess.DEVNULL, check=False,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {result.returncode}")

    def start(
        self,
        name: str,
        *args: str,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        restart: bool = False,
    ) -> Child:
        """Start a worker in the background, its output in ``<log_dir>/<name>.log``; ``env``
        adds to the workers' environment for this one (its own API key); ``restart``: start
        it again whenever it exits on its own (``watch``)."""
        full = argv or self.command(*args)
        child_env = self.env | (env or {})
        child = Child(
            name, full, self._spawn(name, full, child_env), self.log_dir / f"{name}.log",
            env=child_env, restart=restart,
        )  # fmt: skip
        self.children.append(child)
        return child

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as out:
            return subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )  # fmt: skip

    def dead(self) -> list[Child]:
        """Workers that have exited."""
        return [c for c in self.children if c.proc.poll() is not None]

    def revive(self, now: float) -> list[Child]:
        """Start again, once their back-off has passed, the dead workers that ask to be
        restarted; the ones started. Nothing is started once ``stop`` has begun."""
        started = []
        with self._lock:
            if self.stopping:
                return []
            for c in self.dead():
                if not c.restart:
                    continue
                if c.restart_at is None:
                    if now - c.started_at >= RESTART_RESET_AFTER_S:
                        c.backoff_s = RESTART_FIRST_S
                    c.restart_at = now + c.backoff_s
                    log.error(
                        "up: worker %s exited with code %s; starting it again in %.0f s; see %s",
                        c.name, c.proc.returncode, c.backoff_s, c.log_path,
                    )  # fmt: skip
                    c.backoff_s = min(c.backoff_s * 2, RESTART_MAX_S)
                if now >= c.restart_at:
                    c.proc = self._spawn(c.name, c.argv, c.env)
                    c.started_at, c.restart_at = now, None
                    c.restarts += 1
                    log.warning("up: worker %s started again (restart %d)", c.name, c.restarts)
                    started.append(c)
        return started

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every worker, wait, then SIGKILL what is left; none is restarted after."""
        with self._lock:
            self.stopping = True
        for c in self.children:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        for c in self.children:
            try:
                c.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("up: %s did not stop in %.0f s; killing it", c.name, timeout_s)
                c.proc.kill()
                c.proc.wait(5)


def watch(
    supervisor: Supervisor,
    stop: threading.Event,
    interval_s: float = 2.0,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Restart the workers that ask for it when they die; log (once) any other that died,
    with where to read why."""
    reported: set[str] = set()
    while not stop.wait(interval_s):
        supervisor.revive(monotonic())
        for c in supervisor.dead():
            if not c.restart and c.name not in reported:
                reported.add(c.name)
                log.error(
                    "up: worker %s exited with code %s; see %s", c.name, c.proc.returncode,
                    c.log_path,
                )  # fmt: skip
