"""Webhook delivery benchmark: order events committed through the outbox → `fleetcare webhooks`
(a real sender process) → a fast local receiver (another process).

Phase "live": the sender runs while N events are committed one per transaction, at a stated
rate (``--rate``, default 1,000 events/s, spread over ``--emitters`` connections; 0: as fast as
they can); latency is measured from each commit to its receipt. Phase "backlog": N events are
committed while the sender is stopped, then one sender drains them; that rate is the sender's
throughput. The sender process's CPU per delivery is reported for both phases.

    .venv/bin/python -m bench.webhooks --events 2000

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import psycopg
from psycopg import sql

from cli.commands import apply_and_sync
from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.db import connect
from fleetcare.services import free_port, wait_for_port
from maintenance.events import service as events
from maintenance.webhooks import service as webhooks
from maintenance.webhooks.schemas import EndpointCreate

SERVER_URL = os.environ.get(
    "FLEETCARE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
OPERATOR = Principal(key_id=0, role="operator")


# --- the receiver: asyncio, HTTP/1.1 keep-alive, records (webhook-id, receipt time) ----------


def run_receiver(port: int) -> None:
    """Serve until killed: POST records the webhook-id; GET /stats returns what was received."""
    received: dict[str, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    received.setdefault(headers.get("webhook-id", ""), time.time())
                    body = b""
                else:
                    body = json.dumps(received).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def receiver_stats(port: int) -> dict[str, float]:
    """What the receiver got so far: webhook-id → receipt time."""
    got: dict[str, float] = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()
    return got


def wait_received(port: int, ids: list[str], timeout_s: float) -> dict[str, float]:
    """Poll the receiver until every id arrived (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = receiver_stats(port)
        if all(i in got for i in ids) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


# --- the pieces ------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sender(database_url: str, concurrency: int) -> subprocess.Popen[bytes]:
    """The real worker: `python -m cli webhooks`."""
    env = {
        **os.environ,
        "FLEETCARE_DATABASE_URL": database_url,
        "FLEETCARE_WEBHOOKS_ALLOW_PRIVATE": "true",
        "FLEETCARE_LOG_LEVEL": os.environ.get("BENCH_SENDER_LOG_LEVEL", "WARNING"),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "webhooks",
            "--concurrency",
            str(concurrency),
            "--poll",
            "0.5",
        ],
        env=env,
    )


def stop_sender(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def emit_orders(
    database_url: str,
    customer_ids: list[int],
    n: int,
    start: int,
    emitters: int = 1,
    rate: float = 0.0,
) -> dict[str, float]:
    """Commit n order.created events, one per transaction, from ``emitters`` connections in
    parallel, at ``rate`` events/s in all (0: as fast as they can; an emitter that falls
    behind its schedule commits at once until it catches up); webhook-id → commit time."""
    if emitters > 1:
        from concurrent.futures import ThreadPoolExecutor

        share = -(-n // emitters)
        t0 = time.monotonic()
        with ThreadPoolExecutor(emitters) as pool:
            parts = pool.map(
                lambda k: _emit(
                    database_url,
                    customer_ids,
                    range(start + k * share, start + min(n, (k + 1) * share)),
                    rate / emitters,
                    t0 + (k / rate if rate else 0.0),
                ),
                range(emitters),
            )
            return {k: v for part in parts for k, v in part.items()}
    return _emit(database_url, customer_ids, range(start, start + n), rate, time.monotonic())


def _emit(
    database_url: str, customer_ids: list[int], orders: range, rate: float, t0: float
) -> dict[str, float]:
    committed: dict[str, float] = {}
    with connect(database_url) as conn:
        for k, i in enumerate(orders):
            if rate > 0:
                wait = t0 + k / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            ev = events.emit(
                conn,
                "order.created",
                order_created_payload(i),
                customer_id=customer_ids[i % len(customer_ids)],
                subject=f"order:{i}",
            )
            conn.commit()
            committed[ev.public_id] = time.time()
    return committed


def order_created_payload(order_id: int) -> dict[str, Any]:
    """An order.created payload shaped like the orders service's (docs/events.md)."""
    order = {
        "id": order_id,
        "customer_id": 1,
        "asset_id": 17,
        "component": "tread",
        "subscription_id": 3,
        "plan_id": 2,
        "status": "raised",
        "priority": "normal",
        "reason": "predicted: due within window",
        "due_at": "2026-12-10T00:00:00Z",
        "sla_deadline": "2026-12-09T00:00:00Z",
        "prediction_time": "2026-11-26T10:00:00Z",
        "at_risk": False,
        "at_risk_reason": None,
        "parts_included": True,
        "labour_included": False,
        "partner_id": None,
        "scheduled_for": None,
        "notes": "",
        "cancel_reason": None,
        "raised_at": "2026-11-26T10:00:01Z",
        "scheduled_at": None,
        "started_at": None,
        "completed_at": None,
        "cancelled_at": None,
        "updated_at": "2026-11-26T10:00:01Z",
    }
    return {"order": order, "asset_ref": "TRK-17-FL", "sku": "TIRE-315-80R22.5"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=1, help="customers, one endpoint each")
    parser.add_argument("--concurrency", type=int, default=4, help="sender threads")
    parser.add_argument("--emitters", type=int, default=4, help="connections committing events")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="live phase: events committed per second in all (0: as fast as the emitters can)",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.endpoints < 1 or args.emitters < 1 or args.concurrency < 1:
        parser.error("--events, --endpoints, --emitters and --concurrency must be at least 1")
    if args.rate < 0:
        parser.error("--rate must be 0 (as fast as possible) or more")

    name = f"fc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = psycopg.conninfo.make_conninfo(SERVER_URL, dbname=name)
    port = free_port()
    receiver = mp.get_context("spawn").Process(target=run_receiver, args=(port,), daemon=True)
    sender: subprocess.Popen[bytes] | None = None
    try:
        apply_and_sync(database_url, "auto")
        receiver.start()
        wait_for_port("127.0.0.1", port, timeout=20)
        customer_ids = []
        with connect(database_url) as conn:
            for k in range(args.endpoints):
                c = fleet.ensure_customer(conn, f"bench-{k}", f"Bench {k}")
                webhooks.create_endpoint(
                    conn,
                    OPERATOR,
                    EndpointCreate(customer_id=c.id, url=f"http://127.0.0.1:{port}/hook/{k}"),
                    allow_private=True,
                )
                customer_ids.append(c.id)
            conn.commit()

        sender = start_sender(database_url, args.concurrency)
        warm = emit_orders(database_url, customer_ids, len(customer_ids), start=0)
        if len(wait_received(port, list(warm), 120)) < len(warm):  # imports are slow under load
            raise RuntimeError("the sender did not start")

        # Phase 1: live.
        cpu_live_start = process_cpu_s(sender.pid)
        t0 = time.time()
        committed = emit_orders(
            database_url,
            customer_ids,
            args.events,
            start=1_000_000,
            emitters=args.emitters,
            rate=args.rate,
        )
        emitted_s = time.time() - t0
        got = wait_received(port, list(committed), 60)
        cpu_live_end = process_cpu_s(sender.pid)
        lost = [i for i in committed if i not in got]
        latencies_ms = [(got[i] - committed[i]) * 1000 for i in committed if i in got]
        live_span = max(got[i] for i in committed if i in got) - min(committed.values())
        p50, p99 = percentile(latencies_ms, 50), percentile(latencies_ms, 99)
        live_cpu_us: float | None = None
        if cpu_live_start is not None and cpu_live_end is not None and latencies_ms:
            # includes the sender's idle polling until the last receipt (small)
            live_cpu_us = (cpu_live_end - cpu_live_start) / len(latencies_ms) * 1e6
        pace = f"{args.rate:g} events/s stated" if args.rate else "as fast as possible"
        print(
            f"live ({pace}): "
            f"{args.events} events committed in {emitted_s:.2f} s "
            f"({args.events / emitted_s:.0f}/s); commit→receipt p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {max(latencies_ms):.1f} ms; "
            f"{len(latencies_ms) / live_span:.0f} deliveries/s; lost {len(lost)}; "
            f"sender CPU {live_cpu_us or 0:.0f} µs per delivery"
        )

        # Phase 2: backlog drained by a restarted sender.
        stop_sender(sender)
        sender = None
        backlog = emit_orders(
            database_url, customer_ids, args.events, start=2_000_000, emitters=args.emitters
        )
        sender = start_sender(database_url, args.concurrency)
        # the sender's CPU from its first backlog delivery to its last (start-up excluded)
        deadline = time.monotonic() + 120
        while not any(i in receiver_stats(port) for i in backlog):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        cpu_first = process_cpu_s(sender.pid)
        got2 = wait_received(port, list(backlog), 120)
        cpu_last = process_cpu_s(sender.pid)
        times = [got2[i] for i in backlog if i in got2]
        drain_span = max(times) - min(times)
        backlog_rate = (len(times) - 1) / drain_span if drain_span > 0 else float("inf")
        print(
            f"backlog: {len(times)}/{args.events} delivered in {drain_span:.2f} s "
            f"(first to last receipt): {backlog_rate:.0f} deliveries/s by one sender process"
        )
        cpu_us: float | None = None
        if cpu_first is not None and cpu_last is not None and len(times) > 1:
            # clock ticks (10 ms): a figure over ~1,000 deliveries, not one
            cpu_us = (cpu_last - cpu_first) / (len(times) - 1) * 1e6
            print(f"sender CPU: {cpu_us:.0f} µs per delivery over the backlog")
        stop_sender(sender)  # a clean stop records what is in flight
        sender = None
        with connect(database_url) as conn:
            attempts = conn.execute("SELECT count(*) FROM webhook_attempts").fetchone()
            delivered = conn.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
            ).fetchone()
        result: dict[str, Any] = {
            "events": args.events,
            "endpoints": args.endpoints,
            "concurrency": args.concurrency,
            "live_rate_per_s": args.rate or None,
            "live_p50_ms": round(p50, 1),
            "live_p99_ms": round(p99, 1),
            "live_max_ms": round(max(latencies_ms), 1),
            "live_mean_ms": round(statistics.fmean(latencies_ms), 1),
            "live_deliveries_per_s": round(len(latencies_ms) / live_span, 1),
            "emit_per_s": round(args.events / emitted_s, 1),
            "live_sender_cpu_us_per_delivery": round(live_cpu_us, 1) if live_cpu_us else None,
            "backlog_deliveries_per_s": round(backlog_rate, 1),
            "backlog_sender_cpu_us_per_delivery": round(cpu_us, 1) if cpu_us is not None else None,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "lost": len(lost) + (args.events - len(times)),
            "attempts_logged": attempts[0] if attempts else None,
            "deliveries_delivered": delivered[0] if delivered else None,
        }
        print(json.dumps(result))
        return 0
    finally:
        if sender is not None:
            stop_sender(sender)
        if receiver.is_alive():
            receiver.terminate()
            receiver.join(5)
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    sys.exit(main())
