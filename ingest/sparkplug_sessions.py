"""Sparkplug B sessions kept in the database, so that they outlive one ingestor's memory.

The writer stores, in the batch's transaction, the session each BIRTH left (its aliases and
data types; :func:`persist`) and forgets the session an NDEATH ended. A host meeting a node it
has not seen in this process reads the stored session once (:class:`StoredSessions`, the
``resume`` of :class:`ingest.sparkplug.SparkplugHost`): a restarted ingestor, or a second one,
names the node's DATA without a rebirth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg

from ingest import sparkplug_repository as repo
from ingest.schemas import RawMessage
from ingest.sparkplug import SessionSnapshot, SparkplugMessage

log = logging.getLogger(__name__)


def persist(conn: psycopg.Connection[Any], messages: Iterable[RawMessage]) -> None:
    """Store the sessions of the batch's BIRTHs and forget those its NDEATHs ended (per node
    the last of them counts: the host made them in arrival order)."""
    last: dict[tuple[str, str], SparkplugMessage] = {}
    for msg in messages:
        sp = msg.sparkplug
        if sp is not None and (sp.born is not None or sp.ended is not None):
            last[(sp.topic.group, sp.topic.edge_node)] = sp
    if not last:
        return
    births: list[repo.SessionRow] = []
    deaths: list[tuple[str, str, int | None]] = []
    for (group, edge_node), sp in last.items():
        if sp.born is None:
            assert sp.ended is not None
            deaths.append((group, edge_node, sp.ended[0]))
            continue
        born = sp.born
        types: dict[str, dict[str, int]] = {}
        for key, datatype in born.types.items():
            device, _, name = key.partition("\x00")  # a topic level holds no NUL, a name may
            types.setdefault(device, {})[_storable(name)] = datatype
        aliases = {str(alias): [_storable(name), dt] for alias, (name, dt) in born.aliases.items()}
        births.append(
            (group, edge_node, born.bd_seq, born.born_ms, aliases, types, sorted(born.devices))
        )
    if births:
        repo.save_sessions(conn, births)
    if deaths:
        repo.delete_sessions(conn, deaths)


def _storable(name: str) -> str:
    """A metric name as jsonb can hold it: NUL (valid UTF-8, so valid protobuf, but refused
    by PostgreSQL) as U+FFFD; no profile maps a name with NUL (its document cannot hold one)."""
    return name.replace("\x00", "\ufffd") if "\x00" in name else name


def snapshot(row: repo.SessionRow) -> SessionSnapshot:
    """A stored row as the host's session."""
    _, _, bd_seq, born_ms, aliases, types, devices = row
    return SessionSnapshot(
        bd_seq,
        born_ms,
        {int(alias): (str(name), int(dt)) for alias, (name, dt) in aliases.items()},
        {
            f"{device}\x00{name}": int(dt)
            for device, names in types.items()
            for name, dt in names.items()
        },
        frozenset(devices),
    )


class StoredSessions:
    """Reads a node's stored session for the host, on the MQTT network thread, at most once
    per node and process (later messages find the session in memory). One connection, opened
    on first use and handed to ``connections`` for the owner to close."""

    def __init__(self, database_url: str, connections: list[psycopg.Connection[Any]]) -> None:
        self.database_url = database_url
        self.connections = connections
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self, group: str, edge_node: str) -> SessionSnapshot | None:
        try:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(
                    self.database_url,
                    autocommit=True,
                    connect_timeout=2,
                    options="-c statement_timeout=2000",
                )
                self._conn = conn
                self.connections.append(conn)
            row = repo.find_session(conn, group, edge_node)
        except psycopg.Error as exc:
            log.warning(
                "sparkplug %s/%s: stored session unreadable (%s); asking for a rebirth",
                group,
                edge_node,
                type(exc).__name__,
            )
            return None
        return None if row is None else snapshot(row)
