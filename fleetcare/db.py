"""The one way to reach PostgreSQL: a psycopg 3 connection pool, sync, opened at the edge."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import Connection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from fleetcare.settings import Settings
from fleetcare.tenancy import system_session, use_app_role

log = logging.getLogger(__name__)

# how long a worker waits between attempts to reach a database that is down (doubling)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


def server_address(database_url: str) -> str:
    """``host:port`` of a database URL, for a log line (never the password)."""
    try:
        parts = conninfo_to_dict(database_url)
    except psycopg.Error:
        return "the configured server"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}"


def unreachable(database_url: str) -> str | None:
    """None when the server at ``database_url`` accepts a connection; else why not (one
    line, psycopg's words, which never hold the password)."""
    try:
        with psycopg.connect(database_url, connect_timeout=10):
            return None
    except psycopg.OperationalError as exc:
        return " ".join(str(exc).split()).removeprefix("connection failed: ")


def wait_for_database(database_url: str, stop: threading.Event | None = None) -> bool:
    """Return once the server at ``database_url`` accepts a connection (True), or ``stop`` is
    set (False); until then log one line per attempt (why, and when the next is) and try
    again, backing off to ``RETRY_MAX_S``. A worker started before its database (a supervisor
    starting both, a server restarting) comes up when the server does."""
    stop = stop or threading.Event()
    delay = RETRY_FIRST_S
    while (why := unreachable(database_url)) is not None:
        log.warning(
            "database not reachable at %s: %s; retrying in %gs",
            server_address(database_url),
            why,
            delay,
        )
        if stop.wait(delay):
            return False
        delay = min(delay * 2, RETRY_MAX_S)
    return True


def open_pool(
    database_url: str,
    settings: Settings | None = None,
    *,
    name: str = "fleetcare",
    max_size: int | None = None,
    per_request: bool = False,
) -> ConnectionPool[Connection[TupleRow]]:
    """Open a connection pool that checks connections before handing them out.

    Its connections act as the application role (row-level security applies). A worker's pool
    acts for every customer as ``system:<name>``; ``per_request`` leaves each transaction to set
    its caller's context (the API). ``max_size`` overrides the settings' (a worker sizes its
    pool to its loops).
    """

    def configure(conn: Connection[TupleRow]) -> None:
        if per_request:
            use_app_role(conn)
            conn.commit()
        else:
            system_session(conn, f"system:{name}")

    min_size = settings.pool_min_size if settings else 1
    if max_size is None:
        max_size = settings.pool_max_size if settings else 10
    min_size = min(min_size, max_size)
    while True:
        wait_for_database(database_url)
        pool: ConnectionPool[Connection[TupleRow]] = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max(max_size, min_size),
            name=name,
            open=False,
            check=ConnectionPool.check_connection,
            configure=configure,
            kwargs={"autocommit": False},
        )
        try:
            pool.open(wait=True, timeout=30)
        except PoolTimeout:
            pool.close()
            if unreachable(database_url) is None:
                raise  # the server answers, the pool's connections fail for another reason
            continue  # the server went away again between the two: wait for it again
        return pool


def connect(
    database_url: str, *, autocommit: bool = False, actor: str | None = None
) -> Connection[TupleRow]:
    """Open one connection (CLI commands, workers that LISTEN). With ``actor`` it acts as the
    application role for every customer (a worker: ``system:<name>``); without, as the user of
    the URL (a CLI command, which is the operator's tool)."""
    conn = Connection.connect(database_url, autocommit=autocommit)
    if actor is not None:
        system_session(conn, actor)
    return conn
