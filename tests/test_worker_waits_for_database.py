"""A worker started before its database waits for it (one line per attempt, backing off) and
starts working when the server appears, not a PoolTimeout traceback after 30 s."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.private_pg import PrivatePostgres, postgres_bin
from tests.fixtures.services import migrated_database

FLEETCARE = str(Path(sys.executable).with_name("fleetcare"))


@pytest.fixture
def stopped_db() -> Iterator[tuple[PrivatePostgres, str]]:
    """A migrated database on a cluster of this test's own, stopped (its port answers no one)."""
    if postgres_bin() is None:
        pytest.skip("needs initdb and pg_ctl")
    cluster = PrivatePostgres()
    try:
        url = migrated_database(cluster.url, "fleetcare")
        cluster.stop("fast")
        yield cluster, url
    finally:
        cluster.remove()


class Lines:
    """A process's stderr, line by line, read in a thread so a wait can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stderr is not None
        stream = proc.stderr

        def read() -> None:
            for line in stream:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=read, daemon=True).start()

    def wait_for(self, words: str, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while sum(words in line for line in self.seen) < count:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:  # the process ended
                return False
            self.seen.append(line)
        return True


@pytest.mark.parametrize(
    "command, ready",
    [
        (["dispatch", "--poll", "1"], "dispatch: 1 loop(s)"),
        (["billing", "worker", "--interval", "1"], "loop(s)"),
    ],
)
def test_a_worker_started_before_its_database_waits_and_starts_when_it_comes_up(
    stopped_db: tuple[PrivatePostgres, str], command: list[str], ready: str, tmp_path: Path
) -> None:
    cluster, url = stopped_db
    env = {
        **os.environ,
        "FLEETCARE_DATABASE_URL": url,
        "FLEETCARE_DATA_DIR": str(tmp_path),
        "FLEETCARE_LOG_LEVEL": "INFO",
    }
    proc = subprocess.Popen(
        [FLEETCARE, *command], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    lines = Lines(proc)
    try:
        # attempts 1 s, 2 s apart: three lines, each naming the server and the wait
        assert lines.wait_for(
            f"database not reachable at 127.0.0.1:{cluster.port}", timeout=30, count=3
        ), "".join(lines.seen)
        waits = [line for line in lines.seen if "database not reachable" in line]
        assert "Connection refused" in waits[0] and "; retrying in 1s" in waits[0], waits
        assert "; retrying in 2s" in waits[1], waits
        assert proc.poll() is None
        cluster.start()
        assert lines.wait_for(ready, timeout=60), "".join(lines.seen)
        assert proc.poll() is None  # working, not ended
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not any("Traceback" in line for line in lines.seen), "".join(lines.seen)


def test_a_worker_waiting_for_its_database_stops_on_sigterm(tmp_path: Path) -> None:
    """A supervisor stopping a worker that still waits for the server: it ends, at once."""
    env = {
        **os.environ,
        "FLEETCARE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        "FLEETCARE_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [FLEETCARE, "models", "watch"], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    lines = Lines(proc)
    try:
        assert lines.wait_for("database not reachable at 127.0.0.1:1", timeout=60, count=2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not any("Traceback" in line for line in lines.seen), "".join(lines.seen)
