"""The fault probe's set-up (bench/fault_probe.py): fleetcare started as an operator starts it,
its customer, assets and devices made through the API, and the counts read with SQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench.fault_probe_processes import (
    FLEETCARE,
    TIMEOUT,
    Broker,
    Ingestor,
    Peer,
    Postgres,
    free_port,
    port_answers,
    wait_until,
)

ROOT = "fleetcare/v1"


class Probe:
    def __init__(
        self, work: Path, node_modules: Path, subscribe: str, device_protocol: int = 5
    ) -> None:
        self.work, self.node_modules, self.subscribe = work, node_modules, subscribe
        self.device_protocol = device_protocol  # the peers' MQTT version unless a scenario says
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
            "protocol": self.device_protocol,
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
