"""Where each microsecond per reading goes in ingest: the stages timed one by one, in process.

    python -m bench.ingest_stages [--readings 200000] [--per-message 50] [--profile | --sparkplug]

Builds the bench's messages (``bench.ingest``), then times each stage of the ingestor on its
own, in this process, with no broker and no other process competing for the GIL: reading the
PUBLISH packets from a buffer and queueing them (the network thread), decoding the JSON,
validating and keying the readings, encoding the binary COPY, the database (the client's CPU,
the PostgreSQL backend's CPU, and wall time, of ``store_messages`` batches committed as the
writer does), and acknowledging. CPU time is process time (the backend's is read from
``/proc`` through psutil), so a loaded machine stretches wall time but hardly these figures.
``--profile``: the same readings from a gateway speaking the bench's JSON payload profile
(``bench.ingest.BENCH_PROFILE``), to compare with native v1 stage by stage; ``--sparkplug``: the
same readings as Sparkplug B DDATA by alias (``bench.sparkplug``; the network thread then also
parses each payload and checks its session). The last line printed is JSON (µs per reading per
stage).
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

from bench import sparkplug
from bench.ingest import (
    PROFILE_DEVICE,
    TOPIC_ROOT,
    bench_database,
    build_payloads,
    reading_time_ms,
    seed,
)
from fleetcare.clock import SystemClock
from fleetcare.db import connect
from fleetcare.services import LOCAL_PG
from fleetcare.tenancy import system_session
from ingest import repository as repo
from ingest.decode import Quarantine, Reading, decode_sparkplug, decode_v1, decode_with_profile
from ingest.inbox import AckToken, send_acks
from ingest.mqtt_client import BufferedClient, BufferedSocket
from ingest.pipeline import store_messages
from ingest.profile_service import PROFILES
from ingest.schemas import BatchResult, IngestLimits, RawMessage
from ingest.sparkplug_bulk import read_columns
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


def _publish_stream(topic: str, payloads: list[bytes], first_mid: int = 0) -> bytes:
    head = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    out = []
    for i, payload in enumerate(payloads, first_mid):
        body = head + (i % 65535 + 1).to_bytes(2, "big") + b"\x00" + payload
        length, varint = len(body), bytearray()
        while True:
            byte, length = length & 0x7F, length >> 7
            varint.append(byte | (0x80 if length else 0))
            if not length:
                break
        out.append(b"\x32" + bytes(varint) + body)
    return b"".join(out)


def network_thread_us(
    url: str, topic: str, payloads: list[bytes], births: list[tuple[str, bytes]] | None = None
) -> tuple[float, list[RawMessage]]:
    """CPU µs to read every PUBLISH from the socket buffer and queue it, in total, and the
    messages queued (``births``: Sparkplug BIRTHs read first, untimed and not returned)."""
    worker = IngestWorker(
        IngestConfig(
            mqtt_url="mqtt://127.0.0.1:1",
            database_url=url,
            client_id="stages",
            queue_max_messages=len(payloads) + len(births or []) + 1,
            queue_max_bytes=1 << 40,
        )
    )
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id="stages", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = worker._on_message
    client.on_publishes = worker._on_publishes
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    for i, (birth_topic, birth) in enumerate(births or []):
        client._sock = BufferedSocket(_Chunks(_publish_stream(birth_topic, [birth], 60000 + i)))
        while worker.queue.qsize() < i + 1:
            client.loop_read()
    skip = len(births or [])
    client._sock = BufferedSocket(_Chunks(_publish_stream(topic, payloads)))
    started = time.process_time()
    while worker.queue.qsize() < len(payloads) + skip:
        client.loop_read()
    spent = (time.process_time() - started) * 1e6
    queued = worker.queue.take(len(payloads) + skip, 1 << 40, 0.1, 0.1, 0.01)
    return spent, queued[skip:]


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
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument(
        "--profile", action="store_true", help="messages in the bench's JSON payload profile"
    )
    fmt.add_argument("--sparkplug", action="store_true", help="Sparkplug B DDATA by alias")
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
        births: list[tuple[str, bytes]] | None = None
        if args.sparkplug:
            device_ref, topic, k = sparkplug.SPARKPLUG_DEVICE, sparkplug.topic("DDATA"), args.assets
            payloads = sparkplug.ddata_payloads(
                k,
                n,
                args.per_message,
                lambda i: 700.0 + (i % 200) * 0.5,
                lambda i: reading_time_ms(base_ms, i, k),
            )
            births = sparkplug.births(k, base_ms)
        else:
            payloads = build_payloads(
                fleet.assets, n, args.per_message, base_ms, profiled=args.profile
            )
        us: dict[str, float] = {}
        us["network_thread"], messages = network_thread_us(url, topic, payloads, births)
        now = datetime.now(UTC)
        if not args.sparkplug:  # the same messages, received now (the stage's own order)
            messages = [
                RawMessage(topic, p, now, AckToken(i % 65535 + 1, 1, 1))
                for i, p in enumerate(payloads)
            ]

        with connect(url, autocommit=True) as conn:
            system_session(conn, "system:ingest")
            device = repo.find_devices(conn, [device_ref])[device_ref]
            q = Quarantine(limits, BatchResult())
            profiles = PROFILES.get(conn)
            started = time.process_time()
            if args.sparkplug:
                targets = profiles.sparkplug_targets[
                    (sparkplug.GROUP, sparkplug.EDGE_NODE, sparkplug.DEVICE)
                ]
                # the way the writer reads them: in bulk, as columns (ingest.sparkplug_bulk)
                window = (0, int(time.time() * 1e6) + 60_000_000)
                columns = [read_columns(m.sparkplug, targets, *window) for m in messages]
                us["decode"] = (time.process_time() - started) * 1e6
                assert all(c is not None for c in columns), "a message went the careful way"
                decoded = [decode_sparkplug(m, device, q, targets) for m in messages]
            elif args.profile:
                decoded = [decode_with_profile(m, device, limits, q, profiles) for m in messages]
            else:
                decoded = [decode_v1(m, device, limits, q) for m in messages]
            if not args.sparkplug:
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
        f"{' (JSON profile)' if args.profile else ''}"
        f"{' (Sparkplug B DDATA)' if args.sparkplug else ''}, "
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
        "sparkplug": args.sparkplug,
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
