"""Ingest benchmark: N readings through the broker into PostgreSQL, against the raw COPY limit.

    python -m bench.ingest [--readings 1000000] [--ingestors 1]

Starts its own Mosquitto (the repo's no-drop configuration) and a fresh migrated database on
the local PostgreSQL (or ``--server-url``), dropped at the end. A separate process publishes
the readings at QoS 1, at 50 and at 1 reading(s) per message; the ingestors (the production
``IngestWorker``, one process each) store them. Each phase is timed from the first publish
to the last commit. The raw limit is one binary COPY of the same rows into a table with the
same columns and unique key. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import queue
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from bench import sparkplug
from bench.cpu_timeline import CpuTimeline, render
from fleet import service as fleet
from fleet.schemas import AssetCreate, Principal
from fleetcare import migrate
from fleetcare.db import connect
from fleetcare.services import LOCAL_PG, start_mosquitto
from ingest import profile_service
from ingest import repository as repo
from ingest import service as devices
from ingest.schemas import BatchResult, DeviceCreate, IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from kinds.service import apply_builtin

OPERATOR = Principal(key_id=0, role="operator")
PHASES = (
    "raw",
    "batch50",
    "single",
    "batch50-autosave30",
    "batch50-confirmed",
    "batch50-profile",
    "ddata50-sparkplug",
)
# the JSON-profile phase: a gateway of its own format (psi, epoch ms, its own field names)
PROFILE_DEVICE = "bench-gw-json"
PSI_TO_KPA = 6.894757
BENCH_PROFILE: dict[str, Any] = {
    "name": "bench-json",
    "format": "json",
    "batch": "data",
    "asset": "id",
    "time": {"field": "t", "format": "epoch_ms"},
    "metrics": {"pressure_kpa": {"field": "p", "scale": PSI_TO_KPA}},
}
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
            apply_builtin(conn)
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
        profile_service.apply_profile(conn, OPERATOR, BENCH_PROFILE, source="bench")
        spb_profile = sparkplug.sparkplug_profile(refs, METRIC)
        profile_service.apply_profile(conn, OPERATOR, spb_profile, source="bench")
        devices.create_device(
            conn, OPERATOR, DeviceCreate(customer_id=customer.id, ref=sparkplug.SPARKPLUG_DEVICE)
        )
        devices.create_device(
            conn,
            OPERATOR,
            DeviceCreate(customer_id=customer.id, ref=PROFILE_DEVICE, profile="bench-json"),
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


def build_payloads(
    assets: list[str],
    n: int,
    per_message: int,
    base_ms: int,
    numbered: bool = False,
    profiled: bool = False,
) -> list[bytes]:
    """The phase's messages: n distinct readings, one metric each (``numbered``: each batch
    carries the device's message number, so the ingestor confirms it; ``profiled``: in the
    bench JSON profile's format instead of v1)."""
    out: list[bytes] = []
    k = len(assets)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    if profiled:
        for start in range(0, n, per_message):
            data = [
                {
                    "id": assets[i % k],
                    "t": reading_time_ms(base_ms, i, k),
                    "p": round((700.0 + (i % 200) * 0.5) / PSI_TO_KPA, 4),
                }
                for i in range(start, min(start + per_message, n))
            ]
            out.append(dumps({"data": data}).encode())
        return out
    for start in range(0, n, per_message):
        readings = [
            {
                "asset": assets[i % k],
                "ts": reading_time_ms(base_ms, i, k),
                "metrics": {METRIC: 700.0 + (i % 200) * 0.5},
            }
            for i in range(start, min(start + per_message, n))
        ]
        doc: dict[str, Any] = readings[0] if per_message == 1 else {"readings": readings}
        if numbered:
            doc["seq"] = len(out) + 1
        out.append(dumps(doc).encode())
    return out


class LeanPublisher:
    """A minimal MQTT 5 QoS 1 publisher on a plain socket, standing in for many devices.

    paho costs ~70 µs of CPU per publish here (measured), more than the ingestor itself; on a
    2-core machine shared by publisher, broker, ingestor and PostgreSQL that would measure
    the load generator. This one writes PUBLISH packets in bulk and counts PUBACKs, keeping
    at most ``window`` messages unacknowledged (below Mosquitto's in-flight limit).
    """

    def __init__(self, host: str, port: int, window: int = 500) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.window = window
        self.buffer = b""
        client_id = f"bench-pub-{uuid.uuid4().hex[:8]}".encode()
        # CONNECT: "MQTT", version 5, clean start, keepalive 60 s, no properties
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(client_id).to_bytes(2, "big") + client_id
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        kind, connack = self._read_packet()
        if kind != 0x20 or connack[1] != 0:
            raise RuntimeError(f"broker refused the bench publisher: {connack!r}")

    def _read_packet(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buffer):
                    b = self.buffer[i]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = -1
                if i > 0 and len(self.buffer) >= i + length:
                    kind, body = self.buffer[0] & 0xF0, self.buffer[i : i + length]
                    self.buffer = self.buffer[i + length :]
                    return kind, body
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("broker closed the bench publisher's connection")
            self.buffer += chunk

    def publish_all(self, topic: str, payloads: list[bytes]) -> None:
        """Publish every payload at QoS 1 and return once each has its PUBACK."""
        topic_b = topic.encode()
        head = len(topic_b).to_bytes(2, "big") + topic_b
        inflight, pending = 0, []
        for i, payload in enumerate(payloads):
            body = head + (i % 65535 + 1).to_bytes(2, "big") + b"\x00" + payload
            pending.append(b"\x32" + _varint(len(body)) + body)
            inflight += 1
            if len(pending) >= 64 or inflight >= self.window:
                self.sock.sendall(b"".join(pending))
                pending = []
            while inflight >= self.window:
                inflight -= self._read_pubacks()
        if pending:
            self.sock.sendall(b"".join(pending))
        while inflight > 0:
            inflight -= self._read_pubacks()

    def _read_pubacks(self) -> int:
        kind, body = self._read_packet()
        if kind != 0x40:
            raise RuntimeError(f"unexpected packet {kind:#x} for the bench publisher")
        if len(body) > 2 and body[2] >= 0x80:
            raise RuntimeError(f"broker refused a publish: reason {body[2]:#x}")
        acked = 1
        while len(self.buffer) >= 4 and self.buffer[0] & 0xF0 == 0x40:
            kind, body = self._read_packet()
            if len(body) > 2 and body[2] >= 0x80:
                raise RuntimeError(f"broker refused a publish: reason {body[2]:#x}")
            acked += 1
        return acked

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


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
    numbered: bool = False,
    profiled: bool = False,
    sparkplug_b: bool = False,
) -> None:
    """In the publisher process: build payloads, connect, wait for go, publish at QoS 1
    (``sparkplug_b``: the edge node's births first, untimed, then DDATA)."""
    from ingest.mqtt_client import mqtt_endpoint

    host, port, _, _, _ = mqtt_endpoint(mqtt_url)
    publisher = LeanPublisher(host, port)
    if sparkplug_b:
        k = len(assets)
        payloads = sparkplug.ddata_payloads(
            k,
            n,
            per_message,
            lambda i: 700.0 + (i % 200) * 0.5,
            lambda i: reading_time_ms(base_ms, i, k),
        )
        for birth_topic, birth in sparkplug.births(k, base_ms):
            publisher.publish_all(birth_topic, [birth])
    else:
        payloads = build_payloads(assets, n, per_message, base_ms, numbered, profiled)
    ready.set()
    go.wait()
    first = time.time()
    publisher.publish_all(topic, payloads)
    report.put({"first_publish": first, "last_puback": time.time(), "messages": len(payloads)})
    publisher.close()


def ingestor_main(
    url: str,
    mqtt_url: str,
    client_id: str,
    writers: int,
    subscribed: Any,
    stop: Any,
    commits: Any,
    batch_bytes: int = IngestConfig.batch_max_bytes,
    batch_min_bytes: int | None = IngestConfig.batch_min_bytes,
    switch_interval_s: float | None = None,
) -> None:
    """In an ingestor process: the production IngestWorker, reporting each commit
    (``switch_interval_s``: its GIL switch interval, to compare; None: the worker's default)."""

    def on_batch(r: BatchResult) -> None:
        commits.put((r.stored, r.duplicates, time.time(), r.messages))

    worker = IngestWorker(
        IngestConfig(
            mqtt_url=mqtt_url,
            database_url=url,
            client_id=client_id,
            limits=IngestLimits(topic_root=TOPIC_ROOT, max_past=timedelta(days=2)),
            writer_threads=writers,
            batch_max_bytes=batch_bytes,
            batch_min_bytes=batch_min_bytes,
            gil_switch_interval_s=(
                IngestConfig.gil_switch_interval_s
                if switch_interval_s is None
                else switch_interval_s
            ),
        ),
        on_batch=on_batch,
    )
    worker.start()
    if worker.subscribed.wait(60):
        subscribed.set()
    stop.wait()
    worker.stop()


def run_phase(
    url: str,
    mqtt_url: str,
    fleet_: Fleet,
    n: int,
    per_message: int,
    base_ms: int,
    ingestors: int,
    broker_pid: int,
    writers: int = 2,
    numbered: bool = False,
    profiled: bool = False,
    sparkplug_b: bool = False,
    show_timeline: bool = False,
    batch_bytes: int = IngestConfig.batch_max_bytes,
    batch_min_bytes: int | None = IngestConfig.batch_min_bytes,
    switch_interval_s: float | None = None,
) -> dict[str, float]:
    """Publish n readings at ``per_message`` per message; time first publish → last commit.

    Each ingestor runs in its own process (like ``fleetcare ingest``), under the same client
    id in every phase: a stopped member of a shared subscription with a persistent session
    still gets its share, queued until it returns.
    """
    ctx = mp.get_context("spawn")
    stop, commits = ctx.Event(), ctx.Queue()
    procs = []
    for i in range(ingestors):
        subscribed = ctx.Event()
        proc = ctx.Process(
            target=ingestor_main,
            args=(
                url,
                mqtt_url,
                f"bench-ingest-{i}",
                writers,
                subscribed,
                stop,
                commits,
                batch_bytes,
                batch_min_bytes,
                switch_interval_s,
            ),
        )
        proc.start()
        if not subscribed.wait(120):
            raise SystemExit("bench: ingestor did not subscribe")
        procs.append(proc)
    ready, go, report = ctx.Event(), ctx.Event(), ctx.Queue()
    device = PROFILE_DEVICE if profiled else fleet_.device
    topic = f"{TOPIC_ROOT}/{device}/telemetry"
    if sparkplug_b:
        topic = sparkplug.topic("DDATA")
    pub = ctx.Process(
        target=publisher_main,
        args=(
            mqtt_url,
            topic,
            fleet_.assets,
            n,
            per_message,
            base_ms,
            ready,
            go,
            report,
            numbered,
            profiled,
            sparkplug_b,
        ),
    )
    pub.start()
    if not ready.wait(300):
        raise SystemExit("bench: publisher not ready")
    groups = {
        "ingestor": [p.pid for p in procs if p.pid],
        "publisher": [pub.pid] if pub.pid else [],
        "broker": [broker_pid],
        "postgres": database_backends(url),
    }
    cpu = CpuMeter(groups)
    timeline = CpuTimeline(groups).start()
    go.set()
    stored = duplicates = batches = 0
    first_commit, last_commit = 0.0, 0.0
    batch_log: list[tuple[float, int]] = []  # (commit time, messages) of each batch
    deadline = time.monotonic() + 60 + n / 2000
    while stored + duplicates < n and time.monotonic() < deadline:
        try:
            s, d, at, messages = commits.get(timeout=1.0)
        except queue.Empty:
            continue
        batch_log.append((at, messages))
        stored, duplicates, batches = stored + s, duplicates + d, batches + 1
        first_commit = first_commit or at
        last_commit = max(last_commit, at)
    published = report.get(timeout=120)
    cpu_s = cpu.used()
    timeline.stop()
    pub.join(30)
    stop.set()
    for proc in procs:
        proc.join(30)
    first = published["first_publish"]
    elapsed = last_commit - first
    if show_timeline and elapsed > 0:
        print(
            f"  timeline, {elapsed:.2f} s in 10 slices (cores busy; first commit after "
            f"{first_commit - first:.3f} s, publisher done after "
            f"{published['last_puback'] - first:.3f} s, last commit "
            f"{last_commit - published['last_puback']:.3f} s after that):\n"
            + render(timeline.cores(first, last_commit, 10))
            + "\n  batches (commit s: messages): "
            + ", ".join(f"{at - first:.2f}: {m}" for at, m in batch_log)
        )
    busy = timeline.used(first, last_commit) if elapsed > 0 else {}
    return {
        "seconds": elapsed,
        "first_commit_s": first_commit - first,
        "tail_s": last_commit - published["last_puback"],
        **{f"cores_busy_{k}": v / elapsed for k, v in busy.items()},
        "readings_per_s": n / elapsed if elapsed > 0 else 0.0,
        "publish_seconds": published["last_puback"] - published["first_publish"],
        "redelivered": float(duplicates),
        "stored_by_ingestor": float(stored),
        "batches": float(batches),
        **{f"cpu_us_per_reading_{k}": v / n * 1e6 for k, v in cpu_s.items()},
    }


class CpuMeter:
    """CPU seconds (user + system) used by groups of processes since construction."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.procs = {k: [psutil.Process(pid) for pid in pids] for k, pids in groups.items()}
        self.start = {k: self._total(ps) for k, ps in self.procs.items()}

    @staticmethod
    def _total(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def used(self) -> dict[str, float]:
        return {k: self._total(ps) - self.start[k] for k, ps in self.procs.items()}


def database_backends(url: str) -> list[int]:
    """PostgreSQL backend pids connected to the bench database (the ingestors' writers)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


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


def raw_copy_limit(
    url: str, fleet_: Fleet, n: int, base_ms: int, *, in_key_order: bool = False
) -> float:
    """Rows/s of one binary COPY of n rows into a table like telemetry (same unique key), in
    the order they are published (``in_key_order``: sorted by the key first, as the ingestor
    sorts each batch)."""
    k = len(fleet_.assets)
    times = [reading_time_ms(base_ms, i, k) * 1000 for i in range(n)]
    assets = [fleet_.asset_ids[i % k] for i in range(n)]
    metrics = [fleet_.metric_id] * n
    values = [700.0 + (i % 200) * 0.5 for i in range(n)]
    data = repo.encode_telemetry_copy(times, assets, metrics, values, in_key_order=in_key_order)
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
    parser.add_argument("--writers", type=int, default=2, help="writer threads per ingestor")
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=IngestConfig.batch_max_bytes,
        help="the writers' batch bound (IngestConfig.batch_max_bytes)",
    )
    parser.add_argument(
        "--batch-min-bytes",
        type=int,
        default=IngestConfig.batch_min_bytes or 0,
        help="the adaptive batches' least bound (IngestConfig.batch_min_bytes; 0: fixed batches)",
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="the ingestors' GIL switch interval in ms (default: IngestConfig's, which leaves "
        "Python's 5 ms)",
    )
    parser.add_argument(
        "--server-url", default=os.environ.get("FLEETCARE_BENCH_SERVER_URL", LOCAL_PG)
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma list, run in this order (raw first)"
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print each phase's cores busy per process"
    )
    args = parser.parse_args(argv)
    if args.readings < 1 or args.assets < 1 or args.ingestors < 1:
        print("error: --readings, --assets and --ingestors must be positive", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    n = args.readings
    phases = list(dict.fromkeys(args.phases.split(",")))  # run in the order given
    if not phases or set(phases) - set(PHASES):
        print(f"error: --phases takes a comma list of {', '.join(PHASES)}", file=sys.stderr)
        return 2
    # each phase has its own time range, within the last day
    now_ms = int(time.time() * 1000)
    span = n // args.assets + 1000
    bases = {
        "ddata50-sparkplug": now_ms - 7 * span - 60_000,
        "batch50-profile": now_ms - 6 * span - 60_000,
        "batch50-confirmed": now_ms - 5 * span - 60_000,
        "batch50-autosave30": now_ms - 4 * span - 60_000,
        "batch50": now_ms - 3 * span - 60_000,
        "single": now_ms - 2 * span - 60_000,
        "raw": now_ms - span - 60_000,
    }
    results: dict[str, Any] = {}
    load_start = [round(x, 2) for x in os.getloadavg()]
    with (
        tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp,
        bench_database(args.server_url, args.keep) as url,
    ):
        broker, mqtt_url = start_mosquitto(Path(tmp) / "mosquitto")
        try:
            fleet_ = seed(url, args.assets)
            print(
                f"bench: {n:,} readings, {args.assets} assets, {args.ingestors} ingestor(s), "
                f"{os.cpu_count()} CPUs, load average {load_start}"
            )
            raw = raw_copy_limit(url, fleet_, n, bases["raw"]) if "raw" in phases else 0.0
            raw_sorted = 0.0
            if raw:
                raw_sorted = raw_copy_limit(url, fleet_, n, bases["raw"], in_key_order=True)
                print(
                    f"raw limit (one binary COPY, same key): {raw:,.0f} rows/s; "
                    f"the same rows sorted by the key first: {raw_sorted:,.0f} rows/s"
                )
            else:
                print("raw limit: not measured (not in --phases)")
            lost = duplicated = 0
            for name in phases:
                if name == "raw":
                    continue
                per = 1 if name == "single" else 50
                phase_broker, phase_url = broker, mqtt_url
                if name == "batch50-autosave30":  # the broker saving every 30 s, to compare
                    phase_broker, phase_url = start_mosquitto(
                        Path(tmp) / "mosquitto-autosave30", autosave_s=30
                    )
                try:
                    r = run_phase(
                        url,
                        phase_url,
                        fleet_,
                        n,
                        per,
                        bases[name],
                        args.ingestors,
                        phase_broker.proc.pid,
                        args.writers,
                        numbered=name == "batch50-confirmed",
                        profiled=name == "batch50-profile",
                        sparkplug_b=name == "ddata50-sparkplug",
                        show_timeline=args.timeline,
                        batch_bytes=args.batch_bytes,
                        batch_min_bytes=args.batch_min_bytes or None,
                        switch_interval_s=(
                            args.switch_interval_ms / 1000 if args.switch_interval_ms else None
                        ),
                    )
                finally:
                    if phase_broker is not broker:
                        phase_broker.stop()
                phase_lost, phase_dup = count_phase(url, fleet_, bases[name], n)
                lost, duplicated = lost + phase_lost, duplicated + phase_dup
                results[name] = r
                ratio = f"{r['readings_per_s'] / raw:.2f}" if raw else "not measured"
                print(
                    f"{name}: {r['readings_per_s']:,.0f} readings/s end to end "
                    f"({r['seconds']:.2f} s first publish → last commit; publisher done in "
                    f"{r['publish_seconds']:.2f} s; {int(r['batches'])} batches; "
                    f"{int(r['redelivered'])} redelivered); ratio to raw {ratio}; "
                    f"lost {phase_lost}, duplicated {phase_dup}"
                )
                print(
                    "  CPU µs per reading: "
                    + ", ".join(
                        f"{k[len('cpu_us_per_reading_') :]} {v:.2f}"
                        for k, v in r.items()
                        if k.startswith("cpu_us_per_reading_")
                    )
                    + "; cores busy first publish → last commit: "
                    + ", ".join(
                        f"{k[len('cores_busy_') :]} {v:.2f}"
                        for k, v in r.items()
                        if k.startswith("cores_busy_")
                    )
                )
        finally:
            broker.stop()
    b50 = results.get("batch50", {}).get("readings_per_s", 0.0)
    single = results.get("single", {}).get("readings_per_s", 0.0)
    b50_autosave30 = results.get("batch50-autosave30", {}).get("readings_per_s", 0.0)
    b50_confirmed = results.get("batch50-confirmed", {}).get("readings_per_s", 0.0)
    b50_profile = results.get("batch50-profile", {}).get("readings_per_s", 0.0)
    spb50 = results.get("ddata50-sparkplug", {}).get("readings_per_s", 0.0)
    print(
        json.dumps(
            {
                "readings_per_s_batch50": round(b50),
                "ratio_batch50": round(b50 / raw, 3) if raw else None,
                "readings_per_s_single": round(single),
                # the baseline above (rows in publish order), and the same COPY of the rows
                # sorted by the key first (as the ingestor sorts each batch): the stricter one
                "raw_copy_rows_per_s": round(raw),
                "raw_copy_sorted_rows_per_s": round(raw_sorted),
                "ratio_batch50_vs_sorted_raw": round(b50 / raw_sorted, 3) if raw_sorted else None,
                "load_average_start": load_start,
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
                # the shipped broker (store saved every second) against one saving every
                # 30 s: what the small crash window costs in throughput
                "readings_per_s_batch50_autosave30": round(b50_autosave30),
                "ratio_broker_autosave_1s": (
                    round(b50 / b50_autosave30, 3) if b50 and b50_autosave30 else None
                ),
                # numbered batches that the ingestor confirms (a retained message per device
                # and batch) against plain ones: what confirmation costs ingest
                "readings_per_s_batch50_confirmed": round(b50_confirmed),
                "ratio_confirmation": (
                    round(b50_confirmed / b50, 3) if b50 and b50_confirmed else None
                ),
                # the same readings from a gateway speaking a JSON profile (field paths, unit
                # scale, epoch ms) against native v1, both 50 per message
                "readings_per_s_batch50_profile": round(b50_profile),
                "ratio_profile_vs_native": (
                    round(b50_profile / b50, 3) if b50 and b50_profile else None
                ),
                # the same readings as Sparkplug B DDATA (protobuf, 50 metrics by alias, each
                # with its timestamp) from one edge node, against native v1 batch50
                "readings_per_s_ddata50_sparkplug": round(spb50),
                "ratio_sparkplug_vs_native": round(spb50 / b50, 3) if b50 and spb50 else None,
                # per phase: CPU µs per reading of each process group, the cores each kept busy
                # from first publish to last commit, first commit and tail (seconds)
                "phases": {
                    name: {
                        k: round(v, 3)
                        for k, v in r.items()
                        if k.startswith(("cpu_us_per_reading_", "cores_busy_"))
                        or k in ("seconds", "first_commit_s", "tail_s")
                    }
                    for name, r in results.items()
                },
                "lost": lost,
                "duplicated": duplicated,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
