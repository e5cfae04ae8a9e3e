"""The fault probe's scenarios (bench/fault_probe.py): each makes one failure and returns (and
prints) what was published, stored, lost and duplicated."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.fault_probe_harness import ROOT, Probe, result
from bench.fault_probe_processes import Peer, wait_until


def restart(p: Probe, protocol: int) -> dict[str, Any]:
    """(a) default settings, one reading per message, a clean broker restart mid-burst."""
    dev, n = "dev-a" if protocol == 5 else "dev-b", 20_000
    ingest = p.ingestor(f"ingest-restart-{protocol}")
    peer = p.peer(dev, mode="device", readings=n, perMessage=1, protocol=protocol, window=500)
    peer.wait("acked", readings=n // 4)
    p.broker.stop(signal.SIGTERM)
    p.broker.start()
    done = peer.wait("all_acked")
    report = peer.finish()
    stored = p.settle(dev, n)
    counts = ingest.counts()
    ingest.stop()
    return result(
        f"restart-mqtt{protocol}",
        n,
        stored,
        puback_reasons=done["pubackReasons"],
        peer_reconnects=report.get("connects", 0) - 1,
        ingest=counts,
    )


def kill9(p: Probe, *, dbdown: bool, contract: bool, n: int, dev: str) -> dict[str, Any]:
    """(b) broker kill -9 with readings queued for an offline ingestor, or held back by a
    database outage; the peer follows the device contract (or not: the crash window)."""
    name = f"kill9-{'dbdown' if dbdown else 'offline'}{'' if contract else '-plain'}"
    client = f"ingest-{name}"
    ingest = p.ingestor(client)
    # the ingestor's subscription is in place once a first message is stored
    warm = p.peer(dev, mode="device", readings=1, perMessage=1, clientId=f"warm-{dev}")
    warm.wait("all_acked")
    warm.finish()
    p.settle(dev, 1, 120)
    if dbdown:
        p.pg.stop()
    else:
        ingest.stop()
    start = int((time.time() - 1800) * 1000)
    peer = p.peer(
        dev, mode="device", readings=n, perMessage=50, contract=contract, stayConnected=True,
        startMs=start, reportEvery=10_000,
    )  # fmt: skip
    peer.wait("all_acked")
    p.broker.stop(signal.SIGKILL)
    p.broker.start()
    if dbdown:
        p.pg.start()
    else:
        ingest = p.ingestor(client)
    if contract:
        peer.wait("all_confirmed")
    stored = p.settle(dev, n + 1)
    counts = ingest.counts()
    peer.proc.send_signal(signal.SIGTERM)
    report = peer.finish()
    ingest.stop()
    return result(
        name,
        n,
        (stored[0] - 1, stored[1] - 1),
        resent_messages=report.get("resent"),
        silence_resends=report.get("silenceResends"),
        peer_sessions_lost=report.get("sessionsLost"),
        unconfirmed=report.get("buffered"),
        ingest=counts,
    )


def diagnose(p: Probe, peer: Peer, dev: str) -> None:
    """What the device holds, what the broker has retained for it, what is stored."""
    peer.proc.send_signal(signal.SIGUSR1)
    print(json.dumps({"peer": peer.wait("report", 30)}), file=sys.stderr)
    watcher = p.peer(dev, mode="watch", clientId=f"watch-{dev}")
    print(json.dumps({"retained": watcher.wait("watch_done", 60)}), file=sys.stderr)
    watcher.finish()
    print(json.dumps({"stored": p.stored(dev)}), file=sys.stderr)
    for sig, what in (
        (signal.SIGUSR2, "after subscribing again"),
        (signal.SIGWINCH, "after a reconnect"),
    ):
        peer.proc.send_signal(sig)
        print(json.dumps({what: peer.wait("report", 60)}), file=sys.stderr)


def saved_after(store: Path, when: float) -> Callable[[], bool]:
    return lambda: store.exists() and store.stat().st_mtime > when


def kill9_live(p: Probe, n: int, protocol: int, rapid: bool) -> dict[str, Any]:
    """The broker killed with -9 twice mid-burst while the ingestor consumes, device contract.
    The second kill waits until the restarted broker has saved its store twice (the sessions
    made again after the first are on disk), unless ``rapid``: then both come within about a
    second, and the second can lose the ingestor's session made after the first (the finding
    left open in docs/telemetry.md)."""
    dev = "dev-g" if protocol == 5 else "dev-i"
    ingest = p.ingestor(f"ingest-kill9-live-{protocol}")
    peer = p.peer(
        dev, mode="device", readings=n, perMessage=50, contract=True, stayConnected=True,
        protocol=protocol, reportEvery=5_000,
    )  # fmt: skip
    for part in (3, 3 / 2):
        peer.wait("acked", readings=int(n / part))
        p.broker.stop(signal.SIGKILL)
        p.broker.start()
        restarted = time.time()
        if not rapid:
            store = p.broker.data / "mosquitto.db"
            wait_until(lambda: ingest.metric("fleetcare_ingest_connected") == 1, 60, "reconnect")
            wait_until(saved_after(store, restarted + 2), 60, "two saves")
    try:
        peer.wait("all_confirmed", 240)
    except TimeoutError:
        diagnose(p, peer, dev)
        raise
    stored = p.settle(dev, n)
    counts = ingest.counts()
    peer.proc.send_signal(signal.SIGTERM)
    report = peer.finish()
    ingest.stop()
    return result(
        f"kill9-live{'-rapid' if rapid else ''}-mqtt{protocol}",
        n,
        stored,
        puback_reasons=report.get("pubackReasons"),
        resent_messages=report.get("resent"),
        silence_resends=report.get("silenceResends"),
        peer_sessions_lost=report.get("sessionsLost"),
        unconfirmed=report.get("buffered"),
        ingest=counts,
    )


def ingestor_kill9(p: Probe, n: int) -> dict[str, Any]:
    """The ingestor killed with -9 three times in a burst (plain device): the broker
    redelivers what it did not acknowledge."""
    dev, client = "dev-j", "ingest-kill9"
    ingest = p.ingestor(client)
    peer = p.peer(dev, mode="device", readings=n, perMessage=50, reportEvery=5_000)
    for part in (4, 2, 4 / 3):
        peer.wait("acked", readings=int(n / part))
        ingest.stop(signal.SIGKILL)
        ingest = p.ingestor(client)
    peer.wait("all_acked")
    peer.finish()
    stored = p.settle(dev, n)
    counts = ingest.counts()
    ingest.stop()
    return result("ingestor-kill9-x3", n, stored, ingest_last_run=counts)


def db_down(p: Probe, n: int, seconds: float) -> dict[str, Any]:
    """PostgreSQL down (stopped -m immediate) for ``seconds`` mid-burst (plain device)."""
    dev = "dev-k"
    ingest = p.ingestor("ingest-dbdown")
    peer = p.peer(dev, mode="device", readings=n, perMessage=50, reportEvery=5_000)
    peer.wait("acked", readings=n // 4)
    p.pg.stop()
    down = time.monotonic()
    peer.wait("all_acked")
    time.sleep(max(0.0, seconds - (time.monotonic() - down)))  # the outage's length, on purpose
    p.pg.start()
    back = time.monotonic()
    peer.finish()
    stored = p.settle(dev, n)
    counts = ingest.counts()
    ingest.stop()
    return result(
        "db-down",
        n,
        stored,
        outage_s=round(back - down, 1),
        ingest=counts,
    )


def restart_shared(p: Probe) -> dict[str, Any]:
    """Control: the same clean restart with a shared subscription on Mosquitto 2.0, which the
    default avoids: loss expected, and the ingestor's alert (unsubscribed seconds)."""
    dev, n = "dev-l", 20_000
    ingest = p.ingestor("ingest-restart-shared", "--shared")
    warm = p.peer(dev, mode="device", readings=1, perMessage=1, clientId=f"warm-{dev}")
    warm.wait("all_acked")
    warm.finish()
    p.settle(dev, 1, 120)
    peer = p.peer(
        dev, mode="device", readings=n, perMessage=1, window=500,
        startMs=int((time.time() - 1800) * 1000),
    )  # fmt: skip
    peer.wait("acked", readings=n // 4)
    p.broker.stop(signal.SIGTERM)
    p.broker.start()
    done = peer.wait("all_acked")
    peer.finish()
    stored = p.settle(dev, n + 1)
    wait_until(lambda: ingest.metric("fleetcare_ingest_connected") == 1, 60, "reconnect")
    unsubscribed = ingest.metric("fleetcare_ingest_unsubscribed_seconds")
    restarts = ingest.metric("fleetcare_ingest_broker_restarts_total")
    ingest.stop()
    p.forget("ingest-restart-shared")
    return result(
        "restart-shared-control",
        n,
        (stored[0] - 1, stored[1] - 1),
        puback_reasons=done["pubackReasons"],
        unsubscribed_s=unsubscribed,
        broker_restarts=restarts,
    )


def mode_switch(p: Probe) -> dict[str, Any]:
    """(c) one client id: shared, then plain, then shared. In each mode after the first, 1,000
    readings are queued while the ingestor is away and 5,000 come while it runs; every message
    must be processed once (the ingestor's own message count)."""
    dev, client = "dev-e", "ingest-switch"
    phases, published = [], 0
    base = int((time.time() - 3600) * 1000)

    def publish(n: int, tag: str) -> None:
        nonlocal published
        peer = p.peer(
            dev, mode="device", readings=n, perMessage=1, clientId=f"peer-{dev}-{tag}",
            startMs=base + published,
        )  # fmt: skip
        peer.wait("all_acked")
        peer.finish()
        published += n

    for i, mode in enumerate(("--shared", "--no-shared", "--shared")):
        queued = 0
        if i > 0:
            publish(1_000, f"{i}q")
            queued = 1_000
        ingest = p.ingestor(client, mode)
        if i == 0:  # a new session: its subscription is in place once a first one is stored
            publish(1, "warm")
            p.settle(dev, published)
            queued = 1
        publish(5_000, f"{i}")
        p.settle(dev, published)
        expected = queued + 5_000
        # a message delivered twice comes right behind the first: wait for the count to rest
        seen, since = -1.0, time.monotonic()
        while time.monotonic() - since < 3:
            got = ingest.counts()["messages"]
            if got != seen:
                seen, since = got, time.monotonic()
            time.sleep(0.2)
        phases.append({"mode": mode, "published": expected, **ingest.counts()})
        ingest.stop()
    p.forget(client)
    return result("mode-switch", published, p.stored(dev), phases=phases)


def decoder(p: Probe) -> dict[str, Any]:
    """(d) 100,000 nested arrays under a metric, a duplicate key, among good messages."""
    dev = "dev-f"
    ingest = p.ingestor("ingest-decoder")
    asset, ts = p.assets[dev][0], int((time.time() - 600) * 1000)
    nest = 100_000
    deep = f'{{"asset": "{asset}", "ts": {ts}, "metrics": {{"pressure_kpa": '
    deep += "[" * nest + "1" + "]" * nest + "}}"
    dup = f'{{"asset": "{asset}", "ts": {ts + 1}, "metrics": '
    dup += '{"pressure_kpa": 5000, "pressure_kpa": 7.5}}'
    good = [
        {"asset": a, "ts": ts + 10 + i, "metrics": {"pressure_kpa": 800.0}}
        for i, a in enumerate(p.assets[dev] * 4)
    ]
    payloads: list[Any] = [*good[:17], deep, dup, *good[17:]]
    peer = p.peer(dev, mode="raw", topic=f"{ROOT}/{dev}/telemetry", payloads=payloads)
    peer.wait("raw_done")
    peer.finish()
    stored = p.settle(dev, len(good))
    with psycopg.connect(p.pg.url) as c:
        wait_until(
            lambda: (
                (
                    c.execute(
                        "SELECT count(*) FROM quarantine WHERE device_ref = %s", (dev,)
                    ).fetchone()
                    or (0,)
                )[0]
                >= 2
            ),
            60,
            "two quarantine rows",
        )
        rows = c.execute(
            "SELECT reason, left(detail, 160), length(payload) FROM quarantine"
            " WHERE device_ref = %s ORDER BY id",
            (dev,),
        ).fetchall()
    ingest.stop()
    return result(
        "decoder",
        len(good),
        stored,
        quarantine=[{"reason": r, "detail": d, "bytes": b} for r, d, b in rows],
    )


def http_loop(p: Probe, n: int) -> dict[str, Any]:
    """(e) POST /v1/customers, then at once POST /v1/sites and GET on another connection."""
    peer = Peer(
        p.node_modules,
        {"mode": "http", "host": "127.0.0.1", "port": p.api_port, "key": p.key, "n": n,
         "prefix": f"raw{int(time.time())}"},
    )  # fmt: skip
    done = peer.wait("http_done")
    peer.finish()
    out = {"scenario": "http-read-after-write", **{k: done[k] for k in ("n", "ok", "failed")}}
    out["failures"] = done["failures"]
    print(json.dumps(out), flush=True)
    return out
