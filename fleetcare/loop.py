"""`fleetcare up`'s whole loop: every worker as a child process, supervised, stopped with us.

Workers run as the same commands an operator runs alone (`fleetcare ingest`, `score`,
`dispatch`, `webhooks`, `simulate`), each with the chosen services in its environment, so the
demo exercises exactly the production code paths. Each child asks Linux to end it when its
parent dies, so not even a SIGKILL of `up` leaves workers behind.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


# --- first run: train a model per kind in parallel, with progress -------------------------------

# A lighter model than `models train`'s default, so a first run is quick; train and promote a
# fuller one later with `fleetcare models train --kind K`.
FIRST_RUN_TRAIN_ARGS = (
    "--param", "max_iter=80", "--param", "calibration_folds=3", "--risk-param", "max_iter=80",
    "--threads", "1",
)  # fmt: skip
_STEP = re.compile(r"^train (?P<kind>\S+): step (?P<done>\d+)/(?P<total>\d+) (?P<what>.*?) \(")
_DONE = re.compile(r"^model version \d+ \((?P<kind>\S+)\) trained in")


@dataclass
class Training:
    """A `fleetcare models train` child of one kind and what its log says so far."""

    kind: str
    child: Child
    started: float
    step: str = "starting"
    done: int = 0
    total: int = 7
    finished: float | None = None

    def refresh(self) -> None:
        """Read the newest step line of the child's log."""
        try:
            lines = self.child.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in reversed(lines):
            if _DONE.match(line):
                self.step, self.done = "done", self.total
                return
            m = _STEP.match(line)
            if m:
                self.step, self.done = m["what"], int(m["done"]) - 1
                self.total = max(self.total, int(m["total"]))
                return

    def describe(self, now: float) -> str:
        end = self.finished if self.finished is not None else now
        return f"{self.kind} {self.step} ({end - self.started:.0f} s)"


def start_training(supervisor: Supervisor, kinds: list[str]) -> list[Training]:
    """Start one trainer per kind at once, each on one native thread, logs in the log dir."""
    out = []
    for kind in kinds:
        # a previous run's log would be read as this run's progress
        (supervisor.log_dir / f"train-{kind}.log").unlink(missing_ok=True)
        child = supervisor.start(
            f"train-{kind}", "models", "train", "--kind", kind, *FIRST_RUN_TRAIN_ARGS
        )
        out.append(Training(kind, child, time.monotonic()))
    return out


def wait_for_training(
    supervisor: Supervisor,
    trainings: list[Training],
    echo: Callable[[str], None],
    *,
    interactive: bool,
    every_s: float = 10.0,
    poll_s: float = 0.5,
) -> None:
    """Wait for every trainer; show a progress bar per kind on a terminal, otherwise a
    progress line every ``every_s`` seconds and one per finished kind. Raise when one fails.
    Finished trainers leave the supervisor's children (they are not workers)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=not interactive
    )
    tasks = {t.kind: bar.add_task(f"training {t.kind}", total=t.total) for t in trainings}
    last_line = time.monotonic()
    with bar:
        while True:
            now = time.monotonic()
            for t in trainings:
                if t.finished is not None:
                    continue
                t.refresh()
                code = t.child.proc.poll()
                if code is not None:
                    t.refresh()
                    t.finished = now
                    supervisor.children.remove(t.child)
                    if code != 0:
                        raise RuntimeError(
                            f"training {t.kind} failed with exit code {code}; see "
                            f"{t.child.log_path}"
                        )
                    t.step, t.done = "done", t.total
                    echo(f"fleetcare: {t.kind} model trained in {now - t.started:.0f} s")
                bar.update(tasks[t.kind], completed=t.done, total=t.total,
                           description=f"training {t.kind}: {t.step}")  # fmt: skip
            if all(t.finished is not None for t in trainings):
                return
            if not interactive and now - last_line >= every_s:
                last_line = now
                echo("fleetcare: training " + "; ".join(t.describe(now) for t in trainings))
            time.sleep(poll_s)


def follow_training(
    supervisor: Supervisor,
    trainings: list[Training],
    echo: Callable[[str], None],
    *,
    interactive: bool,
    every_s: float = 10.0,
) -> Callable[[], None]:
    """Show the trainers' progress from now on (while the rest of the loop starts), in a
    thread; return the function that waits for them and raises when one failed."""
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            wait_for_training(supervisor, trainings, echo, interactive=interactive, every_s=every_s)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=follow, name="training-progress", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failure:
            raise failure[0]

    return wait
