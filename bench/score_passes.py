"""Warm scoring passes on a copy of a kept ``bench.score`` database: CPU per pass, per statement.

For A/B rounds on a loaded machine, where one bench run's seconds prove little: run this
module alternately from two checkouts (``PYTHONPATH=<checkout>``) against the same kept
database (``python -m bench.score --keep`` leaves one: ``scorebench_...``). Each run:

- copies the kept database (``CREATE DATABASE ... TEMPLATE``), applies the checkout's pending
  migrations, and marks every persisted readings window as built now (a window's age counts
  towards the readings cache's ``max_age_s`` in wall-clock time: a copy of a database kept
  for more than 15 minutes would otherwise rebuild 200 windows a pass from full reads);
- adds one reading to every live tire with values that depend only on the asset and the
  hour (the bench's own ``add_reading_to_all`` draws ``random()``), then runs a fresh
  worker's cold pass that persists every window it advanced, ``gc.freeze`` as the worker does
  after a model load, then ``--passes`` warm passes (one thread), each committed;
- per warm pass: wall seconds, this process's CPU seconds, the connection's server process's
  CPU seconds (``/proc/PID/schedstat``, ns; ``/proc/PID/stat`` counts 10 ms ticks), the steps
  of ``PassResult.seconds``; with ``--statements``, the server CPU of each statement and when
  the predictions writes ran; with ``--perf FILE``, ``perf record -g`` of the server process
  during the warm passes only (``perf report -i FILE``);
- the SHA-256 of what each pass wrote (predictions with explanations, scoring state with the
  persisted window bytes, latest predictions, asset health, policy queue; not the wall-clock
  ``window_built_at`` and ``updated_at``): two checkouts that write the same rows print the
  same ``hash``.

    PYTHONPATH=$PWD python -m bench.score_passes scorebench_... [--passes 4] [--statements]

The last line is JSON. The copy is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TextIO

import psycopg
from psycopg import sql

from fleetcare import migrate
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from models.scoring import (
    ModelCache,
    PassResult,
    ReadingsCache,
    keep_out_of_collections,
    score_pass,
)
from testkit.databases import SERVER_URL, create_database, drop_database

# What a pass at ``time`` wrote, one query per table, each in a stable order.
WRITTEN = (
    "SELECT asset_id, component, model_version_id, rul, rul_low, rul_high, coverage,"
    " failure_probability, horizon, anomaly_score, usage_rate_per_day, due_at,"
    " due_at_conservative, data_until, explanation::text, low_confidence FROM predictions"
    " WHERE time = %s ORDER BY asset_id, component",
    "SELECT asset_id, seen_at, data_until, renewed_at, window_key, window_renewed_at,"
    " md5(window_rows) FROM asset_scoring_state WHERE scored_at = %s ORDER BY asset_id",
    "SELECT asset_id, component, model_version_id, rul, rul_low, rul_high,"
    " failure_probability, anomaly_score, due_at, due_at_conservative FROM latest_predictions"
    " WHERE time = %s ORDER BY asset_id, component",
    "SELECT asset_id, component, model_version_id, rul, rul_low, rul_high,"
    " failure_probability, anomaly_score, due_at, due_at_conservative FROM asset_health"
    " WHERE predicted_at = %s ORDER BY asset_id",
    "SELECT asset_id, component FROM policy_queue WHERE prediction_time = %s"
    " ORDER BY asset_id, component",
)
PREDICTIONS_WRITE = "WITH stored AS ( INSERT INTO predictions"  # models.repository


def server_cpu_ns(pid: int) -> int:
    """CPU nanoseconds used so far by process ``pid`` (the connection's server process)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def add_reading(conn: psycopg.Connection[Any], at: datetime, step: int) -> None:
    """One reading of every metric but tread per live tire at ``at``, values a function of the
    asset and ``step`` only (the odometer 400 km on); moves last_seen_at."""
    conn.execute(
        """
        INSERT INTO telemetry (time, asset_id, metric_id, value)
        SELECT %(t)s, a.id, m.id, CASE m.name
                 WHEN 'odometer_km' THEN coalesce((SELECT max(value) FROM telemetry t
                      WHERE t.asset_id = a.id AND t.metric_id = m.id), 0) + 400
                 WHEN 'pressure_kpa' THEN 790 + ((a.id * 7 + %(s)s) %% 8)
                 WHEN 'temperature_c' THEN 60 + ((a.id * 3 + %(s)s) %% 3)
                 WHEN 'load_kg' THEN 3000 + ((a.id * 13 + %(s)s) %% 300)
                 ELSE 80 + ((a.id + %(s)s) %% 10) END
          FROM assets a JOIN metrics m ON m.kind = a.kind
         WHERE a.retired_at IS NULL AND a.kind = 'tire' AND m.name <> 'tread_depth_mm'
        """,
        {"t": at, "s": step},
    )
    conn.execute(
        "UPDATE asset_seen s SET last_seen_at = %s FROM assets a"
        " WHERE a.id = s.asset_id AND a.retired_at IS NULL AND a.kind = 'tire'",
        (at,),
    )


def written_digest(conn: psycopg.Connection[Any], at: datetime) -> list[str]:
    """SHA-256 of what the pass at ``at`` wrote: all tables first, then each table's."""
    whole = hashlib.sha256()
    tables = []
    for query in WRITTEN:
        table = hashlib.sha256()
        for row in conn.execute(query, (at,)).fetchall():
            whole.update(repr(row).encode())
            table.update(repr(row).encode())
        whole.update(b"|")
        tables.append(table.hexdigest()[:12])
    return [whole.hexdigest(), *tables]


class StatementCPU:
    """Server CPU of each statement of the watched connection: its statements run one at a
    time (the scoring writer thread shares it), so the server process's CPU around each is
    that statement's. Installed by wrapping ``psycopg.Cursor.execute``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.on = False
        self.ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.spans: list[tuple[float, float, str]] = []  # wall start, end, statement

    def install(self) -> None:
        """Wrap ``psycopg.Cursor.execute`` (this process only)."""
        original = psycopg.Cursor.execute
        watch = self

        def execute(cur: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            if not watch.on:
                return original(cur, query, params, **kw)
            text = query.as_string(cur) if isinstance(query, sql.Composable) else str(query)
            label = " ".join(text.split())[:80]
            ns0, wall0 = server_cpu_ns(watch.pid), time.perf_counter()
            try:
                return original(cur, query, params, **kw)
            finally:
                watch.ns[label] += server_cpu_ns(watch.pid) - ns0
                watch.calls[label] += 1
                watch.spans.append((wall0, time.perf_counter(), label))

        psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]


class PerfRecorder:
    """``perf record -g`` of one process, switched on only around what is measured."""

    def __init__(self, pid: int, output: str) -> None:
        control, ack = output + ".ctl", output + ".ack"
        for fifo in (control, ack):
            if os.path.exists(fifo):
                os.unlink(fifo)
            os.mkfifo(fifo)
        self.process = subprocess.Popen(
            [
                *("perf", "record", "-g", "-F", "999", "-D", "-1"),
                *("--control", f"fifo:{control},{ack}", "-p", str(pid), "-o", output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.control: TextIO = open(control, "w")  # noqa: SIM115 (open for the run)
        self.ack: TextIO = open(ack)  # noqa: SIM115

    def command(self, word: str) -> None:
        """``enable`` or ``disable``, acknowledged by perf."""
        self.control.write(word + "\n")
        self.control.flush()
        self.ack.readline()

    def stop(self) -> None:
        """End the recording (the file is written on exit)."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        self.control.close()
        self.ack.close()


def timed(
    conn: psycopg.Connection[Any], run: Callable[[], PassResult]
) -> tuple[dict[str, float], PassResult]:
    """Run one pass in its own transaction: wall, process and server CPU seconds, result."""
    pid = conn.info.backend_pid
    cpu0, ns0, wall0 = time.process_time(), server_cpu_ns(pid), time.perf_counter()
    with conn.transaction():
        result = run()
    times = {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "db_cpu_s": (server_cpu_ns(pid) - ns0) / 1e9,
    }
    return {k: round(v, 4) for k, v in times.items()}, result


def run(template: str, passes: int, statements: bool, perf_file: str, keep: bool) -> dict[str, Any]:
    """Copy ``template``, run a cold and ``passes`` warm passes; what they cost and wrote."""
    name = f"scorepasses_{uuid.uuid4().hex[:10]}"
    url = create_database(SERVER_URL, name, template=template)
    out: dict[str, Any] = {"bench": "score_passes", "template": template, "copy": name}
    try:
        migrate.apply_migrations(url)
        with connect(url) as conn:
            conn.execute(
                "UPDATE asset_scoring_state SET window_built_at = now()"
                " WHERE window_built_at IS NOT NULL"
            )
            row = conn.execute(
                "SELECT greatest((SELECT max(scored_at) FROM asset_scoring_state),"
                " (SELECT max(last_seen_at) FROM asset_seen))"
            ).fetchone()
            conn.commit()
            if row is None or row[0] is None:
                raise SystemExit(f"{template}: not a scored bench.score database")
            base = row[0].replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            clock = ManualClock(base + timedelta(days=1))
            pid = conn.info.backend_pid
            watch = StatementCPU(pid)
            if statements:
                watch.install()
            models = ModelCache()
            # the cold pass persists every window it advances, so the warm passes persist
            # none (as in bench.score, whose first pass reads and persists every window)
            cache = ReadingsCache(persist_after_rows=0, persists_per_pass=10**9)
            with conn.transaction():
                add_reading(conn, base, 0)
            clock.advance(60)
            cold, result = timed(
                conn, lambda: score_pass(conn, clock, models=models, cache=cache, threads=1)
            )
            out["cold"] = {**cold, "predictions": result.predictions}
            digests = [written_digest(conn, clock.now())]
            conn.commit()
            keep_out_of_collections()
            cache.persist_after_rows, cache.persists_per_pass = 8, 1_000
            perf = PerfRecorder(pid, perf_file) if perf_file else None
            warm: list[dict[str, Any]] = []
            for i in range(passes):
                with conn.transaction():
                    add_reading(conn, base + timedelta(hours=1 + i), i + 1)
                clock.advance(60)
                watch.on = True
                if perf is not None:
                    perf.command("enable")
                started = time.perf_counter()
                times, result = timed(
                    conn, lambda: score_pass(conn, clock, models=models, cache=cache, threads=1)
                )
                if perf is not None:
                    perf.command("disable")
                watch.on = False
                entry: dict[str, Any] = {**times, "predictions": result.predictions}
                entry["steps"] = {k: round(v, 4) for k, v in result.seconds.items()}
                writes = [(a - started, b - started) for a, b, k in watch.spans if
                          k.startswith(PREDICTIONS_WRITE)]  # fmt: skip
                if writes:
                    # when the server started on the predictions, and how long the last
                    # write ran after the process had computed everything
                    entry["first_write_at_s"] = round(writes[0][0], 4)
                    entry["last_write_s"] = round(writes[-1][1] - writes[-1][0], 4)
                watch.spans.clear()
                warm.append(entry)
                digests.append(written_digest(conn, clock.now()))
                conn.commit()
            if perf is not None:
                perf.stop()
        out["warm"] = warm
        out["hash"] = hashlib.sha256("".join(d[0] for d in digests).encode()).hexdigest()
        out["pass_table_hashes"] = [d[1:] for d in digests]
        if statements:
            out["statements"] = sorted(
                (
                    {
                        "db_cpu_s_per_pass": round(ns / 1e9 / passes, 4),
                        "calls_per_pass": watch.calls[label] / passes,
                        "statement": label,
                    }
                    for label, ns in watch.ns.items()
                ),
                key=lambda s: -float(s["db_cpu_s_per_pass"]),
            )
    finally:
        if not keep:
            drop_database(SERVER_URL, name)
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    return out


def main() -> int:
    """Parse the arguments, run, print a summary and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", help="a database kept by python -m bench.score --keep")
    parser.add_argument("--passes", type=int, default=4, help="warm passes")
    parser.add_argument("--statements", action="store_true", help="server CPU per statement")
    parser.add_argument("--perf", default="", metavar="FILE", help="perf record the server")
    parser.add_argument("--keep", action="store_true", help="keep the copy")
    args = parser.parse_args()
    if args.passes < 1:
        parser.error("--passes must be >= 1")
    out = run(args.template, args.passes, args.statements, args.perf, args.keep)
    for entry in out["warm"]:
        print(
            f"warm pass: {entry['wall_s']:.3f} s, CPU {entry['cpu_s']:.3f} s,"
            f" server CPU {entry['db_cpu_s']:.3f} s",
            file=sys.stderr,
        )
    for s in out.get("statements", []):
        print(f"  {s['db_cpu_s_per_pass']:.4f} s  {s['statement']}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
