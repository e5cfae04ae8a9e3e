"""The one way to reach PostgreSQL: a psycopg 3 connection pool, sync, opened at the edge."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from fleetcare.settings import Settings


def open_pool(
    database_url: str,
    settings: Settings | None = None,
    *,
    name: str = "fleetcare",
    max_size: int | None = None,
) -> ConnectionPool[Connection[TupleRow]]:
    """Open a connection pool that checks connections before handing them out.

    ``max_size`` overrides the settings' (a worker sizes its pool to its loops).
    """
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
        kwargs={"autocommit": False},
    )
    pool.open(wait=True, timeout=30)
    return pool


def connect(database_url: str, *, autocommit: bool = False) -> Connection[TupleRow]:
    """Open one connection (CLI commands, the migration runner, workers that LISTEN)."""
    return Connection.connect(database_url, autocommit=autocommit)
