"""Request dependencies: the transaction owner and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from psycopg import Connection
from psycopg_pool import ConnectionPool

from fleetcare.clock import Clock, SystemClock
from fleetcare.fleet import service as fleet
from fleetcare.fleet.schemas import Principal


def get_pool(request: Request) -> ConnectionPool[Connection[Any]]:
    """The app's connection pool (opened in the lifespan)."""
    pool: ConnectionPool[Connection[Any]] = request.app.state.pool
    return pool


def get_conn(request: Request) -> Iterator[Connection[Any]]:
    """One connection and one transaction per request: committed on success, else rolled back."""
    pool = get_pool(request)
    with pool.connection() as conn:
        yield conn


Conn = Annotated[Connection[Any], Depends(get_conn)]


def _bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def get_principal(
    conn: Conn,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
    x_api_key: Annotated[str | None, Header(description="the API key, instead of Bearer")] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    return fleet.authenticate(conn, _bearer(authorization, x_api_key))


Caller = Annotated[Principal, Depends(get_principal)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
After = Annotated[int | None, Query(ge=0, description="the next_after of the previous page")]
IncludeRetired = Annotated[bool, Query(description="include retired objects")]


def get_clock(request: Request) -> Clock:
    """The app's clock (``app.state.clock``; the system clock unless a test set another)."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    return clock or SystemClock()


AppClock = Annotated[Clock, Depends(get_clock)]
