"""The independent fault probe of issue 24, reproducible: a peer MQTT client that is not
fleetcare's (MQTT.js from npm, ``bench/fault_probe_peer.mjs``) against a private Mosquitto 2
configured from ``fleetcare/mosquitto.conf`` plus ``fleetcare devices broker-config``, a private
PostgreSQL cluster (initdb, so that it can be taken down), and fleetcare run as an operator runs
it: ``fleetcare migrate``, ``fleetcare api``, ``fleetcare ingest`` as child processes, set up
through the CLI and the HTTP API. Counts are read from the database with SQL.

    .venv/bin/python -m bench.fault_probe [--scenarios restart,kill9-offline,...]
        [--protocols 5,4] [--node-modules DIR]

Scenarios: ``restart`` (default settings, a clean broker restart mid-burst, plain device),
``kill9-offline`` and ``kill9-dbdown`` (broker ``kill -9`` with readings queued for an offline
ingestor, or with the ingestor held back by a database outage; the peer follows the device
contract of docs/telemetry.md), ``kill9-plain`` (the same crash, no contract: the window),
``mode-switch`` (one client id shared -> plain -> shared), ``decoder`` (100,000 nested arrays,
a duplicate key), ``http`` (create, then read on another connection, in a loop).
The ``mqtt`` package is installed with npm into a temporary folder unless ``--node-modules``
names one that has it. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "fault_probe_peer.mjs"
FLEETCARE = str(Path(sys.executable).with_name("fleetcare"))
ROOT = "fleetcare/v1"
TIMEOUT = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Postgres:
    """A private cluster: initdb, start, stop -m immediate (a crash), start again."""

    def __init__(self, work: Path) -> None:
        found = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (16, 15)]
        self.bin = next(b for b in found if (b / "initdb").exists())
        self.root = work / "pg"
        self.root.mkdir()
        self.root.chmod(0o755)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=300, cwd=self.root)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        )
        data, log = str(self.root / "data"), str(self.root / "log")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "300", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")


class Broker:
    """Mosquitto with fleetcare's shipped configuration and broker-config's files."""

    def __init__(self, work: Path, passwd: Path, acl: Path) -> None:
        self.data = work / "broker"
        self.data.mkdir()
        self.port = free_port()
        auth = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
        text = (REPO / "fleetcare" / "mosquitto.conf").read_text()
        text = text.format(data_dir=self.data, port=self.port, auth=auth)
        if os.geteuid() == 0:
            text += "user root\n"  # else it drops to a user that cannot write our folder
        self.conf = self.data / "mosquitto.conf"
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)])
        wait_until(lambda: port_answers(self.port), 60, "the broker's port")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(120)
        self.proc = None

    @staticmethod
    def version() -> str:
        out = subprocess.run(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"],
            capture_output=True,
            text=True,
        )
        return (out.stdout or out.stderr).splitlines()[0].strip()


class Ingestor:
    """``fleetcare ingest`` as a child process with its own metrics port."""

    def __init__(self, env: dict[str, str], client_id: str, mode: str | None, log: Path) -> None:
        self.metrics_port = free_port()
        argv = [FLEETCARE, "ingest", "--client-id", client_id]
        argv += ["--metrics-port", str(self.metrics_port)]
        if mode is not None:
            argv.append(mode)
        self.log = log.open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: self.metric("fleetcare_ingest_connected") == 1, 120, "ingest connect")

    def metric(self, name: str) -> float | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the ingestor exited ({self.proc.returncode}); see {self.log.name}")
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def counts(self) -> dict[str, float]:
        names = ("messages", "readings_stored", "readings_duplicate", "sessions_lost")
        return {n: self.metric(f"fleetcare_ingest_{n}_total") or 0.0 for n in names}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(120)
        self.log.close()


class Peer:
    """The MQTT.js peer: its JSON lines are read on a thread and waited on."""

    count = 0

    def __init__(self, node_modules: Path, config: dict[str, Any]) -> None:
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        script = node_modules.parent / PEER.name  # beside node_modules, so `import` finds mqtt
        shutil.copy(PEER, script)
        Peer.count += 1
        config_file = node_modules.parent / f"peer-{os.getpid()}-{Peer.count}.json"
        config_file.write_text(json.dumps(config))
        self.proc = subprocess.Popen(
            ["node", str(script), str(config_file)], stdout=subprocess.PIPE, env=env
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"ev": "exit"})

    def wait(self, ev: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"peer: no {ev} within {timeout:.0f} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(e)
            if e["ev"] == ev and all(e.get(k, 0) >= v for k, v in match.items()):
                return e
            if e["ev"] == "exit":
                raise RuntimeError(f"peer exited before {ev}: {self.seen[-5:]}")

    def finish(self) -> dict[str, Any]:
        self.proc.wait(60)
        report = next((e for e in reversed(self.seen) if e["ev"] == "report"), None)
        while not self.events.empty():
            e = self.events.get()
            if e["ev"] == "report":
                report = e
        return report or {}


class Probe:
    def __init__(self, work: Path, node_modules: Path, subscribe: str) -> None:
        self.work, self.node_modules, self.subscribe = work, node_modules, subscribe
        self.pg = Postgres(work)
        self.env = {
            **os.environ,
            "FLEETCARE_DATABASE_URL": self.pg.url,
            "FLEETCARE_TOPIC_ROOT": ROOT,
            "FLEETCARE_LOG_LEVEL": "INFO",
        }
        self.env.pop("FLEETCARE_BROKER_KEEPS_SHARED_SUBSCRIPTIONS", None)  # the default
        self.cli("migrate")
        self.api_port = free_port()
        api_log = (work / "api.log").open("ab")
        self.api = subprocess.Popen(
            [FLEETCARE, "api", "--port", str(self.api_port)],
            env=self.env,
            stdout=api_log,
            stderr=api_log,
        )
        wait_until(lambda: port_answers(self.api_port), 120, "the API")
        self.key = self.cli("keys", "create", "--operator").split()[0]
        self.customer = self.http("POST", "/v1/customers", {"slug": "probe", "name": "Probe"})
        self.devices: dict[str, str] = {}
        self.assets: dict[str, list[str]] = {}
        for scenario in "abcdefghijkl":
            self.add_device(f"dev-{scenario}", [f"{scenario.upper()}-{i}" for i in range(10)])
        config = work / "broker-config"
        self.ingest_secret = "probe-ingest-secret"
        self.cli(
            "devices", "broker-config", "--out", str(config),
            "--ingestor-secret", self.ingest_secret,
        )  # fmt: skip
        self.broker = Broker(work, config / "passwd", config / "acl")
        self.mqtt_url = f"mqtt://127.0.0.1:{self.broker.port}"
        self.env["FLEETCARE_MQTT_URL"] = (
            f"mqtt://fleetcare-ingest:{self.ingest_secret}@127.0.0.1:{self.broker.port}"
        )

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [FLEETCARE, *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"fleetcare {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def http(self, method: str, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def add_device(self, ref: str, assets: list[str]) -> None:
        cid = self.customer["id"]
        for a in assets:
            self.http("POST", "/v1/assets", {"customer_id": cid, "kind": "tire", "ref": a})
        device = self.http("POST", "/v1/devices", {"customer_id": cid, "ref": ref})
        self.devices[ref], self.assets[ref] = device["secret"], assets

    def ingestor(self, client_id: str, mode: str | None = None) -> Ingestor:
        return Ingestor(self.env, client_id, mode, self.work / f"ingest-{client_id}.log")

    def forget(self, client_id: str) -> None:
        """Discard an ingestor's persistent session (a stopped shared member keeps its share)."""
        peer = self.peer(
            "fleetcare-ingest", mode="forget", clientId=client_id, password=self.ingest_secret
        )
        peer.wait("forgotten", 60)
        peer.finish()

    def peer(self, device: str, **config: Any) -> Peer:
        base = {
            "url": self.mqtt_url,
            "user": device,
            "password": self.devices.get(device, ""),
            "clientId": f"peer-{device}",
            "root": ROOT,
            "assets": self.assets.get(device, []),
            "metric": "pressure_kpa",
            "startMs": int((time.time() - 3600) * 1000),
            "reportEvery": 1000,
            "protocol": 5,
            "subscribe": self.subscribe,
        }
        return Peer(self.node_modules, {**base, **config})

    def stored(self, device: str) -> tuple[int, int]:
        """(rows, distinct (asset, metric, time)) of this device's assets."""
        with psycopg.connect(self.pg.url, connect_timeout=10) as c:
            row = c.execute(
                "SELECT count(*), count(DISTINCT (t.asset_id, t.metric_id, t.time))"
                " FROM telemetry t JOIN assets a ON a.id = t.asset_id WHERE a.ref = ANY(%s)",
                (self.assets[device],),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def settle(self, device: str, expected: int, timeout: float = TIMEOUT) -> tuple[int, int]:
        """Wait until ``expected`` rows are stored, or no new row came for 20 s."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows, distinct = self.stored(device)
            if rows >= expected:
                return rows, distinct
            if rows != last:
                last, since = rows, time.monotonic()
            elif time.monotonic() - since > 20:
                return rows, distinct
            time.sleep(0.2)
        return self.stored(device)

    def close(self) -> None:
        self.api.send_signal(signal.SIGTERM)
        self.api.wait(60)
        if self.broker.proc is not None:
            self.broker.stop(signal.SIGTERM)
        self.pg.stop()


def result(name: str, published: int, stored: tuple[int, int], **extra: Any) -> dict[str, Any]:
    rows, distinct = stored
    out = {
        "scenario": name,
        "published": published,
        "stored": distinct,
        "lost": published - distinct,
        "duplicated_rows": rows - distinct,
        **extra,
    }
    print(json.dumps(out), flush=True)
    return out


# --- scenarios -----------------------------------------------------------------------------


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


def node_modules(given: str | None, work: Path) -> Path:
    if given:
        return Path(given).resolve()
    folder = work / "node"
    folder.mkdir()
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), "mqtt@5"],
        check=True,
        timeout=600,
    )
    return folder / "node_modules"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default="restart,kill9-offline,kill9-dbdown,kill9-plain,kill9-live,ingestor-kill9,"
        "db-down,restart-shared,mode-switch,decoder,http",
    )
    parser.add_argument("--protocols", default="5,4", help="MQTT versions of the restart test")
    parser.add_argument("--dbdown-readings", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=150_000, help="kill9-live, ingestor-kill9")
    parser.add_argument("--http-loops", type=int, default=300)
    parser.add_argument("--node-modules", help="a node_modules folder that has mqtt")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--rapid", action="store_true", help="kill9-live: the second kill within about 1 s"
    )
    parser.add_argument(
        "--subscribe",
        choices=("every-connect", "when-session-lost"),
        default="every-connect",
        help="when the contract device subscribes to its confirmations (docs/telemetry.md: "
        "every connection; the other reproduces the stall the probe found)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fc-probe-"))
    work.chmod(0o755)
    modules = node_modules(args.node_modules, work)
    probe = Probe(work, modules, args.subscribe)
    results: list[dict[str, Any]] = []
    wanted = args.scenarios.split(",")
    started = time.time()
    try:
        if "restart" in wanted:
            results += [restart(probe, int(v)) for v in args.protocols.split(",")]
        if "kill9-offline" in wanted:
            results.append(kill9(probe, dbdown=False, contract=True, n=20_000, dev="dev-c"))
        if "kill9-dbdown" in wanted:
            results.append(
                kill9(probe, dbdown=True, contract=True, n=args.dbdown_readings, dev="dev-d")
            )
        if "kill9-plain" in wanted:
            results.append(kill9(probe, dbdown=False, contract=False, n=20_000, dev="dev-h"))
        for v in args.protocols.split(",") if "kill9-live" in wanted else ():
            results.append(kill9_live(probe, args.burst, int(v), args.rapid))
        if "ingestor-kill9" in wanted:
            results.append(ingestor_kill9(probe, args.burst))
        if "db-down" in wanted:
            results.append(db_down(probe, 50_000, 30.0))
        if "restart-shared" in wanted:
            results.append(restart_shared(probe))
        if "mode-switch" in wanted:
            results.append(mode_switch(probe))
        if "decoder" in wanted:
            results.append(decoder(probe))
        if "http" in wanted:
            results.append(http_loop(probe, args.http_loops))
    finally:
        probe.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}", file=sys.stderr)
    summary = {
        "broker": Broker.version(),
        "node": subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "seconds": round(time.time() - started, 1),
        "load": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
