"""Ingest benchmark: N readings through the broker into PostgreSQL, against the raw COPY limit.

    python -m bench.ingest [--readings 1000000] [--ingestors 1]

Starts its own Mosquitto (the repo's no-drop configuration) and a fresh migrated database on
the local PostgreSQL (or ``--server-url``), dropped at the end. A separate process publishes
the readings at QoS 1, at 50 and at 1 reading(s) per message; the ingestor (the production
``IngestWorker``, in this process) stores them. Each phase is timed from the first publish
to the last commit. The raw limit is one binary COPY of the same rows into a table with the
same columns and unique key. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fleetcare import migrate
from fleetcare.db import connect
from fleetcare.fleet import repository as fleet_repo
from fleetcare.fleet import service as fleet
from fleetcare.fleet.schemas import AssetCreate, Principal
from fleetcare.services import LOCAL_PG, start_mosquitto
from ingest import repository as repo
from ingest import service as devices
from ingest.schemas import BatchResult, DeviceCreate, IngestLimits
from ingest.worker import IngestConfig, IngestWorker

OPERATOR = Principal(key_id=0, role="operator")
TOPIC_ROOT = "bench/v1"
METRIC = "pressure_kpa"


@dataclass(frozen=True)
class Fleet:
    device: str
    assets: list[str]
    asset_ids: list[int]
    metric_id: int


@contextmanager
def bench_database(server_url: str, keep: bool) -> Iterator[str]:
    """A fresh, migrated database for this run; dropped afterwards unless ``keep``."""
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        migrate.apply_migrations(url, storage_choice="auto")
        with connect(url) as conn, conn.transaction():
            fleet_repo.sync_catalogue(conn)
        yield url
    finally:
        if not keep:
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def seed(url: str, assets: int) -> Fleet:
    """One customer, ``assets`` tires and one device."""
    with connect(url) as conn:
        customer = fleet.ensure_customer(conn, "bench", "Bench")
        ids, refs = [], []
        for i in range(assets):
            ref = f"TRK-{i:05d}"
            a = fleet.create_asset(
                conn, OPERATOR, AssetCreate(customer_id=customer.id, kind="tire", ref=ref)
            )
            ids.append(a.id)
            refs.append(ref)
        device = devices.create_device(
            conn, OPERATOR, DeviceCreate(customer_id=customer.id, ref="bench-gw")
        )
        row = conn.execute(
            "SELECT id FROM metrics WHERE kind = 'tire' AND name = %s", (METRIC,)
        ).fetchone()
        assert row is not None
        conn.commit()
    return Fleet(device.ref, refs, ids, int(row[0]))


def reading_time_ms(base_ms: int, i: int, n_assets: int) -> int:
    """Reading i: asset i % n_assets, one millisecond apart per asset."""
    return base_ms + i // n_assets


def build_payloads(assets: list[str], n: int, per_message: int, base_ms: int) -> list[bytes]:
    """The phase's messages: n distinct readings, one metric each."""
    out: list[bytes] = []
    k = len(assets)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for start in range(0, n, per_message):
        readings = [
            {
                "asset": assets[i % k],
                "ts": reading_time_ms(base_ms, i, k),
                "metrics": {METRIC: 700.0 + (i % 200) * 0.5},
            }
            for i in range(start, min(start + per_message, n))
        ]
        doc = readings[0] if per_message == 1 else {"readings": readings}
        out.append(dumps(doc).encode())
    return out


def publisher_main(
    mqtt_url: str,
    topic: str,
    assets: list[str],
    n: int,
    per_message: int,
    base_ms: int,
    ready: Any,
    go: Any,
    report: Any,
) -> None:
    """In the publisher process: build payloads, connect, wait for go, publish at QoS 1."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest.worker import _mqtt_endpoint

    payloads = build_payloads(assets, n, per_message, base_ms)
    host, port, _, _, _ = _mqtt_endpoint(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    # Our own window below paho's in-flight limit: paho never has to queue a message itself
    # (with 100k+ messages queued inside paho we saw the publisher stall, waiting for PUBACKs).
    window_size = 900
    client.max_inflight_messages_set(window_size + 100)
    window = threading.Semaphore(window_size)
    client.on_publish = lambda *_a: window.release()
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    connected.wait(30)
    ready.set()
    go.wait()
    first = time.time()
    for p in payloads:
        window.acquire()
        client.publish(topic, p, qos=1)
    for _ in range(window_size):
        window.acquire()
    report.put({"first_publish": first, "last_puback": time.time(), "messages": len(payloads)})
    client.disconnect()
    client.loop_stop()


def run_phase(
    url: str,
    mqtt_url: str,
    fleet_: Fleet,
    n: int,
    per_message: int,
    base_ms: int,
    ingestors: int,
) -> dict[str, float]:
    """Publish n readings at ``per_message`` per message; time first publish → last commit."""
    last_commit = [0.0]
    lock = threading.Lock()

    def on_batch(_r: BatchResult) -> None:
        with lock:
            last_commit[0] = time.time()

    workers = [
        IngestWorker(
            IngestConfig(
                mqtt_url=mqtt_url,
                database_url=url,
                # the same sessions in every phase: a stopped member of a shared subscription
                # with a persistent session still gets its share, queued until it returns
                client_id=f"bench-ingest-{i}",
                limits=IngestLimits(topic_root=TOPIC_ROOT, max_past=timedelta(days=2)),
            ),
            on_batch=on_batch,
        )
        for i in range(ingestors)
    ]
    for w in workers:
        w.start()
        if not w.subscribed.wait(30):
            raise SystemExit("bench: ingestor did not subscribe")
    ctx = mp.get_context("spawn")
    ready, go, report = ctx.Event(), ctx.Event(), ctx.Queue()
    topic = f"{TOPIC_ROOT}/{fleet_.device}/telemetry"
    pub = ctx.Process(
        target=publisher_main,
        args=(mqtt_url, topic, fleet_.assets, n, per_message, base_ms, ready, go, report),
    )
    pub.start()
    if not ready.wait(300):
        raise SystemExit("bench: publisher not ready")
    go.set()

    def written() -> int:
        return sum(w.stats.stored_total + w.stats.duplicates_total for w in workers)

    deadline = time.monotonic() + 60 + n / 2000
    while written() < n and time.monotonic() < deadline:
        workers[0].stats.wait_for(lambda _s: written() >= n, 1.0)
    published = report.get(timeout=120)
    pub.join(30)
    stats = [w.stats for w in workers]
    for w in workers:
        w.stop()
    elapsed = last_commit[0] - published["first_publish"]
    return {
        "seconds": elapsed,
        "readings_per_s": n / elapsed if elapsed > 0 else 0.0,
        "publish_seconds": published["last_puback"] - published["first_publish"],
        "redelivered": float(sum(s.duplicates_total for s in stats)),
        "stored_by_ingestor": float(sum(s.stored_total for s in stats)),
        "batches": float(sum(s.batches_total for s in stats)),
    }


def count_phase(url: str, fleet_: Fleet, base_ms: int, n: int) -> tuple[int, int]:
    """(lost, duplicated) readings of a phase, checked in the telemetry table."""
    k = len(fleet_.assets)
    start = datetime.fromtimestamp(base_ms / 1000, UTC)
    stop = datetime.fromtimestamp((reading_time_ms(base_ms, n - 1, k) + 1) / 1000, UTC)
    with connect(url) as conn:
        row = conn.execute(
            """
            SELECT count(*), count(DISTINCT (asset_id, metric_id, time))
              FROM telemetry WHERE time >= %s AND time < %s
            """,
            (start, stop),
        ).fetchone()
    assert row is not None
    total, distinct = int(row[0]), int(row[1])
    return max(n - distinct, 0), (total - distinct) + max(distinct - n, 0)


def raw_copy_limit(url: str, fleet_: Fleet, n: int, base_ms: int) -> float:
    """Rows/s of one binary COPY of n rows into a table like telemetry (same unique key)."""
    k = len(fleet_.assets)
    times = [reading_time_ms(base_ms, i, k) * 1000 for i in range(n)]
    assets = [fleet_.asset_ids[i % k] for i in range(n)]
    metrics = [fleet_.metric_id] * n
    values = [700.0 + (i % 200) * 0.5 for i in range(n)]
    data = repo.encode_telemetry_copy(times, assets, metrics, values)
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
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--ingestors", type=int, default=1, help="ingestors sharing the load")
    parser.add_argument(
        "--server-url", default=os.environ.get("FLEETCARE_BENCH_SERVER_URL", LOCAL_PG)
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--phases", default="raw,batch50,single")
    args = parser.parse_args(argv)
    if args.readings < 1 or args.assets < 1 or args.ingestors < 1:
        print("error: --readings, --assets and --ingestors must be positive", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    n = args.readings
    phases = set(args.phases.split(","))
    # each phase has its own time range, within the last day
    now_ms = int(time.time() * 1000)
    span = n // args.assets + 1000
    bases = {
        "batch50": now_ms - 3 * span - 60_000,
        "single": now_ms - 2 * span - 60_000,
        "raw": now_ms - span - 60_000,
    }
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp,
        bench_database(args.server_url, args.keep) as url,
    ):
        broker, mqtt_url = start_mosquitto(Path(tmp) / "mosquitto")
        try:
            fleet_ = seed(url, args.assets)
            print(
                f"bench: {n:,} readings, {args.assets} assets, {args.ingestors} ingestor(s), "
                f"{os.cpu_count()} CPUs"
            )
            raw = raw_copy_limit(url, fleet_, n, bases["raw"]) if "raw" in phases else 0.0
            print(f"raw limit (one binary COPY, same key): {raw:,.0f} rows/s")
            lost = duplicated = 0
            for name, per in (("batch50", 50), ("single", 1)):
                if name not in phases:
                    continue
                r = run_phase(url, mqtt_url, fleet_, n, per, bases[name], args.ingestors)
                phase_lost, phase_dup = count_phase(url, fleet_, bases[name], n)
                lost, duplicated = lost + phase_lost, duplicated + phase_dup
                results[name] = r
                ratio = r["readings_per_s"] / raw if raw else 0.0
                print(
                    f"{name}: {r['readings_per_s']:,.0f} readings/s end to end "
                    f"({r['seconds']:.2f} s first publish → last commit; publisher done in "
                    f"{r['publish_seconds']:.2f} s; {int(r['batches'])} batches; "
                    f"{int(r['redelivered'])} redelivered); ratio to raw {ratio:.2f}; "
                    f"lost {phase_lost}, duplicated {phase_dup}"
                )
        finally:
            broker.stop()
    b50 = results.get("batch50", {}).get("readings_per_s", 0.0)
    single = results.get("single", {}).get("readings_per_s", 0.0)
    print(
        json.dumps(
            {
                "readings_per_s_batch50": round(b50),
                "ratio_batch50": round(b50 / raw, 3) if raw else None,
                "readings_per_s_single": round(single),
                "lost": lost,
                "duplicated": duplicated,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
