"""Where each microsecond per reading goes in ingest: the stages timed one by one, in process.

    python -m bench.ingest_stages [--readings 200000] [--per-message 50] [--profile]

Builds the bench's messages (``bench.ingest``), then times each stage of the ingestor on its
own, in this process, with no broker and no other process competing for the GIL: reading the
PUBLISH packets from a buffer and queueing them (the network thread), decoding the JSON,
validating and keying the readings, encoding the binary COPY, the database (the client's CPU,
the PostgreSQL backend's CPU, and wall time, of ``store_messages`` batches committed as the
writer does), and acknowledging. CPU time is process time (the backend's is read from
``/proc`` through psutil), so a loaded machine stretches wall time but hardly these figures.
``--profile``: the same readings from a gateway speaking the bench's JSON payload profile
(``bench.ingest.BENCH_PROFILE``), to compare with native v1 stage by stage. The last line
printed is JSON (µs per reading per stage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import PROFILE_DEVICE, TOPIC_ROOT, bench_database, build_payloads, seed
from fleetcare.clock import SystemClock
from fleetcare.db import connect
from fleetcare.services import LOCAL_PG
from fleetcare.tenancy import system_session
from ingest import repository as repo
from ingest.decode import Quarantine, Reading, decode_v1, decode_with_profile
from ingest.inbox import AckToken, send_acks
from ingest.mqtt_client import BufferedClient, BufferedSocket
from ingest.pipeline import store_messages
from ingest.profile_service import PROFILES
from ingest.schemas import BatchResult, IngestLimits, RawMessage
from ingest.worker import IngestConfig, IngestWorker

BATCH_BYTES = IngestConfig.batch_max_bytes
BATCH_MESSAGES = IngestConfig.batch_max_messages


class _Chunks:
    """A socket that serves a byte stream 64 KiB at a time (what the broker's TCP gives)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def recv(self, size: int) -> bytes:
        if self.pos >= len(self.data):
            raise BlockingIOError
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def close(self) -> None:
        self.pos = len(self.data)


def _publish_stream(topic: str, payloads: list[bytes]) -> bytes:
    head = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    out = []
    for i, payload in enumerate(payloads):
        body = head + (i % 65535 + 1).to_bytes(2, "big") + b"\x00" + payload
        length, varint = len(body), bytearray()
        while True:
            byte, length = length & 0x7F, length >> 7
            varint.append(byte | (0x80 if length else 0))
            if not length:
                break
        out.append(b"\x32" + bytes(varint) + body)
    return b"".join(out)


def network_thread_us(url: str, topic: str, payloads: list[bytes]) -> float:
    """CPU µs to read every PUBLISH from the socket buffer and queue it, in total."""
    worker = IngestWorker(
        IngestConfig(
            mqtt_url="mqtt://127.0.0.1:1",
            database_url=url,
            client_id="stages",
            queue_max_messages=len(payloads) + 1,
            queue_max_bytes=1 << 40,
        )
    )
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id="stages", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = worker._on_message
    client.on_publishes = worker._on_publishes
    client._sock = BufferedSocket(_Chunks(_publish_stream(topic, payloads)))
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    started = time.process_time()
    while worker.queue.qsize() < len(payloads):
        client.loop_read()
    return (time.process_time() - started) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Time each stage; print a table and, last, JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_stages")
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--per-message", type=int, default=50)
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument(
        "--batch-bytes", type=int, default=BATCH_BYTES, help="the writer's batch bound"
    )
    parser.add_argument("--server-url", default=LOCAL_PG)
    parser.add_argument(
        "--profile", action="store_true", help="messages in the bench's JSON payload profile"
    )
    args = parser.parse_args(argv)
    if args.readings < 1 or args.per_message < 1 or args.assets < 1:
        print("error: --readings, --per-message and --assets must be positive", file=sys.stderr)
        return 2
    n = args.readings
    load_start = [round(x, 2) for x in os.getloadavg()]
    limits = IngestLimits(topic_root=TOPIC_ROOT, max_past=timedelta(days=2))
    clock = SystemClock()
    with bench_database(args.server_url, keep=False) as url:
        fleet = seed(url, args.assets)
        device_ref = PROFILE_DEVICE if args.profile else fleet.device
        topic = f"{TOPIC_ROOT}/{device_ref}/telemetry"
        base_ms = int(time.time() * 1000) - n // args.assets - 60_000
        payloads = build_payloads(fleet.assets, n, args.per_message, base_ms, profiled=args.profile)
        now = datetime.now(UTC)
        messages = [
            RawMessage(topic, p, now, AckToken(i % 65535 + 1, 1, 1)) for i, p in enumerate(payloads)
        ]
        us: dict[str, float] = {}
        us["network_thread"] = network_thread_us(url, topic, payloads)

        with connect(url, autocommit=True) as conn:
            system_session(conn, "system:ingest")
            device = repo.find_devices(conn, [device_ref])[device_ref]
            q = Quarantine(limits, BatchResult())
            profiles = PROFILES.get(conn)
            started = time.process_time()
            if args.profile:
                decoded = [decode_with_profile(m, device, limits, q, profiles) for m in messages]
            else:
                decoded = [decode_v1(m, device, limits, q) for m in messages]
            us["decode"] = (time.process_time() - started) * 1e6
            assert all(d is not None for d in decoded) and not q.rows

            readings = [
                r for d in decoded if d is not None for r in d.readings if type(r) is Reading
            ]
            times = [int(r.ts) * 1000 for r in readings]
            asset_of = dict(zip(fleet.assets, fleet.asset_ids, strict=True))
            assets = [asset_of[r.asset] for r in readings]
            metrics = [fleet.metric_id] * len(readings)
            values = [v for r in readings for v in r.metrics.values()]
            batch_rows = max(1, min(BATCH_MESSAGES, args.batch_bytes // len(payloads[0])))
            rows_per_batch = batch_rows * args.per_message
            started = time.process_time()
            for s in range(0, len(times), rows_per_batch):
                e = s + rows_per_batch
                repo.encode_telemetry_copy(
                    times[s:e], assets[s:e], metrics[s:e], values[s:e], in_key_order=True
                )
            us["copy_encode"] = (time.process_time() - started) * 1e6

            backend = psutil.Process(conn.info.backend_pid)
            backend_before = sum(backend.cpu_times()[:2])
            wall = time.perf_counter()
            started = time.process_time()
            stored = 0
            for s in range(0, len(messages), batch_rows):
                with conn.transaction():
                    result = store_messages(
                        conn,
                        messages[s : s + batch_rows],
                        limits=limits,
                        clock=clock,
                        optimistic=True,  # as the ingestor's writer: no savepoint
                    )
                stored += result.stored
            us["store_messages_client"] = (time.process_time() - started) * 1e6
            us["store_messages_wall"] = (time.perf_counter() - wall) * 1e6
            us["postgres_backend"] = (sum(backend.cpu_times()[:2]) - backend_before) * 1e6
            assert stored == n, f"stored {stored} of {n}"

        client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
        client._thread = object()  # type: ignore[assignment]  # queue the PUBACKs only
        started = time.process_time()
        for s in range(0, len(messages), batch_rows):
            send_acks(client, messages[s : s + batch_rows], 1)
        us["ack"] = (time.process_time() - started) * 1e6

    per = {k: v / n for k, v in us.items()}
    # store_messages' own Python, less what is timed apart: validation, keys, psycopg calls
    per["validate_key_and_sql_calls"] = (
        per["store_messages_client"] - per["decode"] - per["copy_encode"]
    )
    ingestor = (
        per["network_thread"] + per["store_messages_client"] + per["ack"]
    )  # one GIL: these add up
    print(
        f"ingest stages, {n:,} readings at {args.per_message} per message"
        f"{' (JSON profile)' if args.profile else ''}, "
        f"load average {load_start}; CPU µs per reading:"
    )
    for name in (
        "network_thread",
        "decode",
        "validate_key_and_sql_calls",
        "copy_encode",
        "ack",
        "postgres_backend",
        "store_messages_wall",
    ):
        print(f"  {name:28s} {per[name]:6.2f}")
    print(f"  {'ingestor (GIL) in total':28s} {ingestor:6.2f}")
    out: dict[str, Any] = {f"us_per_reading_{k}": round(v, 3) for k, v in per.items()}
    out |= {
        "us_per_reading_ingestor": round(ingestor, 3),
        "readings": n,
        "per_message": args.per_message,
        "profile": args.profile,
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
