"""The one way to reach PostgreSQL: a psycopg 3 connection pool, sync, opened at the edge."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from fleetcare.settings import Settings
from fleetcare.tenancy import system_session, use_app_role


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
    pool.open(wait=True, timeout=30)
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
