"""`fleetcare up`'s whole loop: every worker as a child process, supervised, stopped with us.

Workers run as the same commands an operator runs alone (`fleetcare ingest`, `score`,
`dispatch`, `webhooks`, `simulate`), each with the chosen services in its environment, so the
demo exercises exactly the production code paths. Each child asks Linux to end it when its
parent dies, so not even a SIGKILL of `up` leaves workers behind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


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


@dataclass
class Supervisor:
    """Starts workers, notices when one dies, and stops them all."""

    env: dict[str, str]
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        """The argv of a fleetcare command run by this Python."""
        return [sys.executable, "-m", "fleetcare", *args]

    def run_step(self, name: str, *args: str) -> None:
        """Run a fleetcare command to completion, its output shown; raise when it fails."""
        log.info("up: %s", " ".join(args))
        result = subprocess.run(
            self.command(*args), env=self.env, stdin=subprocess.DEVNULL, check=False,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {result.returncode}")

    def start(self, name: str, *args: str, argv: list[str] | None = None) -> Child:
        """Start a worker in the background, its output in ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        out = log_path.open("ab")
        full = argv or self.command(*args)
        proc = subprocess.Popen(
            full, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        out.close()
        child = Child(name, full, proc, log_path)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Workers that have exited."""
        return [c for c in self.children if c.proc.poll() is not None]

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every worker, wait, then SIGKILL what is left."""
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


def watch(supervisor: Supervisor, stop: threading.Event, interval_s: float = 2.0) -> None:
    """Log (once) any worker that died, with where to read why."""
    reported: set[str] = set()
    while not stop.wait(interval_s):
        for c in supervisor.dead():
            if c.name not in reported:
                reported.add(c.name)
                log.error(
                    "up: worker %s exited with code %s; see %s", c.name, c.proc.returncode,
                    c.log_path,
                )  # fmt: skip


def child_env(database_url: str, mqtt_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every worker: the chosen services, the same data folder."""
    env = dict(os.environ)
    env.update(
        FLEETCARE_DATABASE_URL=database_url,
        FLEETCARE_MQTT_URL=mqtt_url,
        FLEETCARE_DATA_DIR=str(data_dir.resolve()),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
