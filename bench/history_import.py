"""History import benchmark: rows/s and peak memory of ``fleetcare history import``.

    python -m bench.history_import [--rows 1000000] [--small 250000]

Writes whitespace-separated text files of ``--small`` and ``--rows`` rows (unit, cycle, one
sensor: one telemetry value per row, 1,000 units), imports each into a fresh migrated
database with the real command in a child process (its peak RSS is the child's maximum
resident set), and measures in the same run the baseline: one binary COPY of the same rows
into a table like telemetry (same unique key). Memory is flat in file size when the peak of
the large file is about that of the small one. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from fleet.service import ensure_customer
from fleetcare import migrate
from fleetcare.db import connect
from fleetcare.services import LOCAL_PG
from ingest import repository as repo
from kinds.service import apply_builtin

UNITS = 1000
PROFILE = {
    "name": "bench-rows",
    "format": "text",
    "columns": ["unit", "cycle", "t24"],
    "asset": "unit",
    "time": {"field": "cycle", "format": "cycle", "origin": "2020-01-01T00:00:00Z", "step_s": 60},
    "metrics": {"t24_r": {"field": "t24"}},
}


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh migrated database with the shipped kinds, dropped afterwards."""
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        migrate.apply_migrations(url, storage_choice="auto")
        with connect(url) as conn, conn.transaction():
            apply_builtin(conn)
            ensure_customer(conn, "bench", "Bench")
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def write_rows(path: Path, rows: int) -> None:
    """``rows`` lines ``unit cycle t24`` (units interleaved, like a fleet's log)."""
    i = np.arange(rows)
    unit, cycle = i % UNITS + 1, i // UNITS + 1
    value = 600.0 + (i % 997) * 0.05
    with path.open("w") as f:
        for start in range(0, rows, 200_000):
            stop = min(rows, start + 200_000)
            f.write(
                "\n".join(
                    f"{u} {c} {v:.2f}"
                    for u, c, v in zip(
                        unit[start:stop].tolist(),
                        cycle[start:stop].tolist(),
                        value[start:stop].tolist(),
                        strict=True,
                    )
                )
            )
            f.write("\n")


def import_file(url: str, path: Path, profile_path: Path) -> dict[str, float]:
    """Run the real command in a child; its report, wall seconds and peak RSS (MB)."""
    env = {**os.environ, "FLEETCARE_DATABASE_URL": url, "FLEETCARE_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "cli"]
    subprocess.run([*cmd, "profiles", "apply", str(profile_path)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [
            *cmd,
            "history",
            "import",
            "--customer",
            "bench",
            "--kind",
            "engine",
            "--profile",
            "bench-rows",
            "--in-service",
            "--json",
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(done.stdout.splitlines()[-1])
    return {
        "rows": report["rows_read"],
        "stored": report["values_stored"],
        "rejected": report["rows_rejected"] + report["values_rejected"],
        "import_s": report["seconds"],
        "wall_s": wall,
        # ru_maxrss of children is the largest child so far: valid when runs grow in size
        "peak_rss_mb": max(peak_kb, before) / 1024,
    }


def raw_copy_rows_per_s(url: str, rows: int, *, in_key_order: bool = False) -> float:
    """Rows/s of one binary COPY of ``rows`` rows into a table like telemetry, in the file's
    order (``in_key_order``: sorted by the key first, as the import sorts each block)."""
    i = np.arange(rows, dtype=np.int64)
    times = 1_577_836_800_000_000 + (i // UNITS + 1) * 60_000_000
    values = (600.0 + i % 997).astype(np.float64)
    data = repo.encode_telemetry_copy(
        times, i % UNITS + 1, np.full(rows, 1), values, in_key_order=in_key_order
    )
    with connect(url) as conn:
        conn.execute("CREATE TABLE bench_raw (LIKE telemetry INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_raw (time, asset_id, metric_id, value) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.write(data)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_raw")
        conn.commit()
    return rows / elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the last line printed is JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.history_import")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000)
    parser.add_argument("--server-url", default=LOCAL_PG)
    args = parser.parse_args(argv)
    if args.small <= 0 or args.rows < args.small:
        print("error: need 0 < --small <= --rows", file=sys.stderr)
        return 2
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profile_path = folder / "bench-rows.json"
        profile_path.write_text(json.dumps(PROFILE))
        small, large = folder / "small.txt", folder / "large.txt"
        write_rows(small, args.small)
        write_rows(large, args.rows)
        with bench_database(args.server_url) as url:
            first = import_file(url, small, profile_path)
        with bench_database(args.server_url) as url:
            second = import_file(url, large, profile_path)
            again = import_file(url, large, profile_path)  # idempotent: nothing new
            raw = raw_copy_rows_per_s(url, args.rows)
            raw_sorted = raw_copy_rows_per_s(url, args.rows, in_key_order=True)
    rows_per_s = second["rows"] / second["import_s"]
    print(
        f"{args.small:,} rows: {first['rows'] / first['import_s']:,.0f} rows/s, "
        f"peak RSS {first['peak_rss_mb']:.0f} MB"
    )
    print(
        f"{args.rows:,} rows: {rows_per_s:,.0f} rows/s ({second['import_s']:.2f} s, "
        f"{second['wall_s']:.2f} s with process start), peak RSS {second['peak_rss_mb']:.0f} MB"
    )
    print(f"again (all duplicates): {again['rows'] / again['import_s']:,.0f} rows/s, "
          f"stored {again['stored']:.0f}")  # fmt: skip
    print(
        f"raw limit (one binary COPY, same key): {raw:,.0f} rows/s; sorted by the key first: "
        f"{raw_sorted:,.0f} rows/s; load average {load_start} → {os.getloadavg()[0]:.2f}"
    )
    result = {
        "rows": int(second["rows"]),
        "stored": int(second["stored"]),
        "rejected": int(second["rejected"]),
        "rows_per_s": round(rows_per_s),
        "raw_copy_rows_per_s": round(raw),
        "ratio_vs_raw_copy": round(rows_per_s / raw, 3),
        # the same COPY with the rows sorted by the key first (as the import sorts each block)
        "raw_copy_sorted_rows_per_s": round(raw_sorted),
        "ratio_vs_sorted_raw_copy": round(rows_per_s / raw_sorted, 3),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "reimport_rows_per_s": round(again["rows"] / again["import_s"]),
        "reimport_stored": int(again["stored"]),
        "peak_rss_mb_small": round(first["peak_rss_mb"], 1),
        "peak_rss_mb": round(second["peak_rss_mb"], 1),
        "memory_ratio_large_vs_small": round(second["peak_rss_mb"] / first["peak_rss_mb"], 3),
        "small_rows": args.small,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
