"""The password and ACL files of the Mosquitto that `fleetcare up` starts, kept current with
the device registry while it runs: written before the broker starts (the ingestor alone may
connect), rewritten when a device is added, changed or retired, and the broker told to read
them again (SIGHUP). The same files as `fleetcare devices broker-config` writes."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from pathlib import Path

import psycopg

from fleetcare.db import connect
from fleetcare.services import BrokerLogin
from ingest.service import (
    INGESTOR_USER,
    broker_acl_file,
    broker_password_file,
    hash_device_secret,
)

log = logging.getLogger(__name__)


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` at once (the broker never reads half a file), readable by us only."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


class BrokerAccess:
    """Our own broker's access files in ``folder``, with a new ingestor password per run."""

    def __init__(self, folder: Path, topic_root: str, ingestor_user: str = INGESTOR_USER) -> None:
        self.folder = folder.resolve()
        self.topic_root = topic_root
        self.user = ingestor_user
        self._secret = secrets.token_urlsafe(24)
        self._secret_hash = hash_device_secret(self._secret)
        self.passwd, self.acl = self.folder / "passwd", self.folder / "acl"
        self._written: tuple[str, str] | None = None
        self.reloads = 0

    def login(self) -> BrokerLogin:
        """Write the files the broker starts with (the ingestor's password, nothing granted:
        the database may not be migrated yet) and return the login to start it with."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_private(self.passwd, f"{self.user}:{self._secret_hash}\n")
        _write_private(self.acl, "# nothing granted until `fleetcare up` reads the devices\n")
        self._written = None
        return BrokerLogin(self.passwd, self.acl, self.user, self._secret)

    def sync(self, database_url: str, broker_pid: int) -> bool:
        """Write the files from the registry's live devices; when they changed, SIGHUP the
        broker (Mosquitto then reads them again). True when they changed."""
        with connect(database_url) as conn:
            texts = (
                broker_password_file(conn, self.user, self._secret_hash),
                broker_acl_file(conn, self.topic_root, self.user),
            )
        if texts == self._written:
            return False
        _write_private(self.passwd, texts[0])
        _write_private(self.acl, texts[1])
        self._written = texts
        os.kill(broker_pid, signal.SIGHUP)
        self.reloads += 1
        log.info("broker access: %d user(s); broker reloading", texts[0].count("\n"))
        return True

    def keep_current(
        self, database_url: str, broker_pid: int, stop: threading.Event, every_s: float = 1.0
    ) -> threading.Thread:
        """Sync now, then every ``every_s`` in a thread until ``stop`` is set. A device
        refused before its reload connects again (simulators.devices.MqttLink retries)."""
        self.sync(database_url, broker_pid)

        def run() -> None:
            while not stop.wait(every_s):
                try:
                    self.sync(database_url, broker_pid)
                except (psycopg.Error, OSError) as exc:  # the database restarting: next round
                    log.warning("broker access not refreshed: %s", exc)

        thread = threading.Thread(target=run, name="broker-access", daemon=True)
        thread.start()
        return thread
