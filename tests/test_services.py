"""Embedded and local services: they start, answer, and stop leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest

from fleetcare.services import (
    DATABASE_NAME,
    LOCAL_PG,
    EmbeddedPostgres,
    Services,
    check_port_free,
    free_port,
    local_postgres_refusal,
    running_services,
    start_amqtt,
    start_mosquitto,
)
from fleetcare.settings import Settings
from tests.fixtures.services import SERVER_URL, drop_database, unique_name


def _mqtt_round_trip(url: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311) -> None:
    """Publish a message to the broker at ``url`` and receive it back."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    got: list[bytes] = []
    import threading

    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        arrived.set()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        client.subscribe("probe/#", qos=1)
        assert subscribed.wait(10)
        client.publish("probe/x", b"hello", qos=1).wait_for_publish(10)
        assert arrived.wait(10)
        assert got == [b"hello"]
    finally:
        client.loop_stop()
        client.disconnect()


def test_embedded_postgres_starts_answers_and_stops(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pid = pg.pid
    assert pid is not None and psutil.pid_exists(pid)
    with psycopg.connect(pg.url("postgres")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg.stop()
    deadline = time.monotonic() + 15
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_own_mosquitto_uses_no_drop_config_and_stops(tmp_path: Path) -> None:
    broker, url = start_mosquitto(tmp_path / "mq")
    conf = (tmp_path / "mq" / "mosquitto.conf").read_text()
    assert "max_queued_messages 0" in conf
    pid = broker.proc.pid
    _mqtt_round_trip(url, mqtt.MQTTv5)
    broker.stop()
    assert (broker.proc.poll() is not None and not psutil.pid_exists(pid)) or (
        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )


def test_amqtt_fallback_starts_answers_and_stops(tmp_path: Path) -> None:
    broker, url = start_amqtt(tmp_path / "amqtt")
    _mqtt_round_trip(url)
    broker.stop()
    assert broker.proc.poll() is not None


def _local_has_fleetcare_database() -> bool | None:
    """Whether the machine's PostgreSQL (the one ``up`` takes) has a ``fleetcare`` database;
    None when it does not let us in."""
    try:
        with psycopg.connect(LOCAL_PG, connect_timeout=5) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return found is not None


def test_running_services_says_what_it_chose(tmp_path: Path) -> None:
    """It takes (or makes) the machine's ``fleetcare`` database, which is a developer's own
    ``make up`` database: made here, it is dropped again, so the suite leaves nothing behind."""
    had_database = _local_has_fleetcare_database()
    settings = Settings(data_dir=tmp_path, database_url=None, mqtt_url="amqtt")
    try:
        with running_services(settings) as services:
            assert "amqtt" in services.mqtt_source
            assert services.database_source.startswith(("local", "embedded"))
            with psycopg.connect(services.database_url) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("fleetcare",)
            _mqtt_round_trip(services.mqtt_url)
    finally:
        if had_database is False:
            drop_database(LOCAL_PG, DATABASE_NAME)
    assert _local_has_fleetcare_database() in (had_database, None)


def test_a_local_postgresql_that_refuses_us_is_told_apart_from_none(tmp_path: Path) -> None:
    """The reason ``up`` starts an embedded PostgreSQL: no server, or a server that refused the
    user (Debian's default wants a password on 127.0.0.1) — it said "no PostgreSQL answers"."""
    server = psycopg.conninfo.conninfo_to_dict(SERVER_URL)
    host, port = server.get("host", "127.0.0.1"), server.get("port", 5432)
    assert local_postgres_refusal(SERVER_URL) is None
    nobody = f"postgresql://zz_no_such_role@{host}:{port}/postgres"
    said = local_postgres_refusal(nobody)
    assert said is not None and said.startswith(f"PostgreSQL on {host}:{port} refused user")
    assert "'zz_no_such_role'" in said and "does not exist" in said
    port = free_port()
    closed = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    assert local_postgres_refusal(closed) == f"no PostgreSQL answers on 127.0.0.1:{port}"
    # a command that needs no broker says so, not "broker: none ()"
    assert (
        Services("postgresql://x@h/db", "", "configured", "none")
        .describe()
        .endswith("broker: none")
    )


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    """Stop ``up`` (its API closed connections: they wait in TIME_WAIT) and start it again at
    once: the port check agrees with uvicorn, which binds with SO_REUSEADDR; it said "another
    fleetcare up?" for a minute. A port something listens on is still refused."""
    import socket

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end waits in TIME_WAIT
    client.recv(1)
    client.close()
    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
        check_port_free("127.0.0.1", port, "the API", "choose another port")
    server.close()
    check_port_free("127.0.0.1", port, "the API", "choose another port")


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"fleetcare up exited early ({proc.returncode}):\n{out}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    name = unique_name("fc_up")
    db_url = psycopg.conninfo.make_conninfo(SERVER_URL, dbname=name)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    env = {
        **os.environ,
        "FLEETCARE_DATABASE_URL": db_url,
        "FLEETCARE_DATA_DIR": str(tmp_path),
        "FLEETCARE_MQTT_URL": "mosquitto",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--api-only", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
        assert (tmp_path / "demo-keys.json").exists()
        # `up` allows webhook endpoints on private addresses in its API too (as in its workers)
        operator = json.loads((tmp_path / "demo-keys.json").read_text())["operator"]
        auth = {"Authorization": f"Bearer {operator}"}
        base = f"http://127.0.0.1:{port}"
        customer = httpx.get(f"{base}/v1/customers", headers=auth).json()["items"][0]["id"]
        endpoint = httpx.post(
            f"{base}/v1/webhooks/endpoints",
            json={"customer_id": customer, "url": "http://127.0.0.1:9/hooks"},
            headers=auth,
        )
        assert endpoint.status_code == 201, endpoint.text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "up should run its own broker"
        proc.send_signal(stop_signal)
        proc.wait(30)
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "fleetcare: stopped" in output, output
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        drop_database(SERVER_URL, name)


def test_up_with_embedded_postgres_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FLEETCARE_DATABASE_URL": "embedded",
        "FLEETCARE_MQTT_URL": "amqtt",
        "FLEETCARE_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--api-only", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
        pgdata = str((tmp_path / "data" / "pg").resolve())
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and pgdata in " ".join(p.info["cmdline"])
        ]
        assert postgres, "embedded PostgreSQL should be running"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        _gone, alive = psutil.wait_procs([*postgres, *children], timeout=20)
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
