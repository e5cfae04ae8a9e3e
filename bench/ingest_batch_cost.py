"""What one ingest batch costs besides its readings: PostgreSQL's and the client's CPU per batch,
statement by statement.

    python -m bench.ingest_batch_cost [--messages-per-batch 2] [--batches 1000]

Stores the bench's messages (``bench.ingest``: 50 readings each over 100 assets) with
``store_messages`` in batches of ``--messages-per-batch``, each committed in its own
transaction as the ingest writer does, and reads the backend's CPU from ``/proc`` around each
repository call and the commit. Small batches show the fixed cost (lookups, the assets' and
devices' last-seen updates, commit); ``--messages-per-batch 1078`` is the writer's full 4 MB
batch. The backend's CPU is counted in clock ticks (10 ms), so take many batches. The last line
printed is JSON.

Since the writes after the COPY go in one pipelined round trip (``ingest.pipeline``), the
assets' and devices' last-seen updates return before the server has run them: their server
time shows in ``all`` (and the batch's wall time), not on their own lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.ingest import TOPIC_ROOT, bench_database, build_payloads, seed
from fleetcare.clock import SystemClock
from fleetcare.db import connect
from fleetcare.services import LOCAL_PG
from fleetcare.tenancy import system_session
from ingest import pipeline
from ingest import repository as repo
from ingest.schemas import IngestLimits, RawMessage

TICKS = os.sysconf("SC_CLK_TCK")
CALLS = (
    "find_devices",
    "find_assets",
    "insert_telemetry",
    "update_assets_seen",
    "update_devices_seen",
)


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local PostgreSQL backend."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_batch_cost")
    parser.add_argument("--messages-per-batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--server-url", default=LOCAL_PG)
    args = parser.parse_args(argv)
    per, count = args.messages_per_batch, args.batches
    limits = IngestLimits(topic_root=TOPIC_ROOT, max_past=timedelta(days=2))
    backend: defaultdict[str, float] = defaultdict(float)
    client: defaultdict[str, float] = defaultdict(float)
    pid = 0

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*a: Any, **k: Any) -> Any:
            b, c = backend_cpu(pid), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                backend[name] += backend_cpu(pid) - b
                client[name] += time.thread_time() - c

        return call

    originals = {name: getattr(repo, name) for name in CALLS}
    for name, fn in originals.items():
        setattr(repo, name, timed(name, fn))
    try:
        with bench_database(args.server_url, False) as url:
            fleet_ = seed(url, 100)
            base_ms = int(time.time() * 1000) - 36 * 3600 * 1000
            topic = f"{TOPIC_ROOT}/{fleet_.device}/telemetry"
            payloads = build_payloads(fleet_.assets, per * count * 50, 50, base_ms)
            now = datetime.now(UTC)
            messages = [RawMessage(topic, p, now) for p in payloads]
            with connect(url, autocommit=True) as conn:
                system_session(conn, "system:ingest")
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                pid = int(row[0])
                b0, c0, w0 = backend_cpu(pid), time.thread_time(), time.perf_counter()
                for start in range(0, len(messages), per):
                    tx = conn.transaction()
                    tx.__enter__()
                    pipeline.store_messages(
                        conn,
                        messages[start : start + per],
                        limits=limits,
                        clock=SystemClock(),
                        optimistic=True,
                    )
                    timed("commit", tx.__exit__)(None, None, None)
                backend["all"] = backend_cpu(pid) - b0
                client["all"] = time.thread_time() - c0
                wall = time.perf_counter() - w0
    finally:
        for name, fn in originals.items():
            setattr(repo, name, fn)
    readings = per * count * 50
    print(f"{count} batches of {per} messages ({per * 50} readings), load {os.getloadavg()}")
    for name in (*CALLS, "commit", "all"):
        print(
            f"  {name}: PostgreSQL {1e3 * backend[name] / count:.2f} ms, "
            f"client {1e3 * client[name] / count:.2f} ms per batch"
        )
    print(
        json.dumps(
            {
                "messages_per_batch": per,
                "batches": count,
                "backend_ms_per_batch": {k: round(1e3 * v / count, 3) for k, v in backend.items()},
                "client_ms_per_batch": {k: round(1e3 * v / count, 3) for k, v in client.items()},
                "backend_us_per_reading": round(1e6 * backend["all"] / readings, 3),
                "client_us_per_reading": round(1e6 * client["all"] / readings, 3),
                "wall_ms_per_batch": round(1e3 * wall / count, 3),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
