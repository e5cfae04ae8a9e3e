"""The fault probe's processes (bench/fault_probe.py): a private PostgreSQL cluster, Mosquitto
with fleetcare's shipped configuration, ``fleetcare ingest`` as a child, and the MQTT.js peer."""

from __future__ import annotations

import json
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "fault_probe_peer.mjs"
FLEETCARE = str(Path(sys.executable).with_name("fleetcare"))
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
