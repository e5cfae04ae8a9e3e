"""Request dependencies: the transaction owner and the caller."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import Connection
from psycopg_pool import ConnectionPool

from api import sessions
from api.auth_limit import authenticate_limited
from api.permissions import WRITES, require_permission
from api.tenancy import bind_principal, bind_read_conn
from fleet.schemas import Principal
from fleetcare.clock import Clock, SystemClock
from fleetcare.errors import Conflict, Forbidden, ReplicaLagging, ServiceUnavailable
from fleetcare.inputs import INT8_MAX
from fleetcare.repository import replica_lag_s
from fleetcare.settings import Settings
from fleetcare.tenancy import operator_lookup


def get_pool(request: Request) -> ConnectionPool[Connection[Any]]:
    """The app's connection pool (opened in the lifespan)."""
    pool: ConnectionPool[Connection[Any]] = request.app.state.pool
    return pool


def get_conn(request: Request) -> Iterator[Connection[Any]]:
    """One connection and one transaction per request: committed when the route returns and
    before its response is sent (see ``Conn``), else rolled back; a failed commit is an error
    response, never a success."""
    pool = get_pool(request)
    with pool.connection() as conn:
        yield conn  # an exception of the route is raised here: the transaction rolls back
        commit_or_raise(conn)


def commit_or_raise(conn: Connection[Any]) -> None:
    """Commit; a commit the database refuses becomes the domain error the client sees."""
    try:
        conn.commit()
    except (psycopg.errors.IntegrityError, psycopg.errors.TransactionRollback) as exc:
        # a constraint checked at commit (deferred), a serialization failure, a deadlock
        diag = exc.diag.message_primary or type(exc).__name__
        raise Conflict(f"the change was not saved: {diag}") from exc
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable("the database was lost before the change was saved") from exc


# scope="function": FastAPI (>= 0.121) runs the exit code of a ``yield`` dependency after the
# response is sent unless it is function-scoped; the commit must come before the answer, so
# that a client never acts on a write that is not yet visible, nor hears of a success whose
# commit then fails.
Conn = Annotated[Connection[Any], Depends(get_conn, scope="function")]


def get_read_conn(request: Request, primary: Conn) -> Iterator[Connection[Any]]:
    """A connection for a read-only route: the streaming replica when one is configured
    (``FLEETCARE_READ_DATABASE_URL``), else the request's primary connection. A replica
    further behind than ``read_max_lag_s`` answers 503 ``replica_lagging`` with Retry-After
    rather than stale data. Authentication stays on the primary (a revoked key stops at once).
    """
    read_pool: ConnectionPool[Connection[Any]] | None = getattr(
        request.app.state, "read_pool", None
    )
    if read_pool is None:
        yield primary
        return
    settings: Settings = request.app.state.settings
    with read_pool.connection() as conn:
        bind_read_conn(request, conn)
        lag = replica_lag_s(conn)
        if lag is not None and lag > settings.read_max_lag_s:
            behind = "is not streaming" if math.isinf(lag) else f"is {lag:.1f} s behind"
            raise ReplicaLagging(
                f"the read replica {behind} the primary (limit {settings.read_max_lag_s:g} s);"
                " retry later",
                retry_after_s=max(1, math.ceil(settings.read_max_lag_s)),
            )
        yield conn


ReadConn = Annotated[Connection[Any], Depends(get_read_conn, scope="function")]


def _bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


# The one advertised way to authenticate: ``Authorization: Bearer <API key>``. (``X-API-Key``
# is still read, for scripts written against the first version, but not advertised.)
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="an API key: `Authorization: Bearer fc_...`",
)


def get_principal(
    request: Request,
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` (or ``X-API-Key``), else from the
    browser's session cookie (a write then needs the ``X-CSRF-Token`` header); the route's
    permission (``api/permissions.py``) is checked before the route runs."""
    key = credentials.credentials.strip() if credentials else None
    if not key:
        key = _bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))
    with operator_lookup(conn):  # who is calling decides which rows the rest may see
        session = None if key else sessions.session_principal(request, conn)
        if session is None:
            principal = authenticate_limited(request, conn, key)
    if session is not None:
        principal, csrf = session
        if request.method.upper() in WRITES:
            if not sessions.same_origin(request):
                raise Forbidden("cross-origin requests are refused", code="csrf_failed")
            sessions.check_token(csrf, request.headers.get("x-csrf-token"))
    bind_principal(request, conn, principal)
    route = request.scope.get("route")
    require_permission(principal, request.method, getattr(route, "path", request.url.path))
    return principal


Caller = Annotated[Principal, Depends(get_principal)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
After = Annotated[
    int | None, Query(ge=0, le=INT8_MAX, description="the next_after of the previous page")
]
IncludeRetired = Annotated[bool, Query(description="include retired objects")]


def get_clock(request: Request) -> Clock:
    """The app's clock (``app.state.clock``; the system clock unless a test set another)."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    return clock or SystemClock()


AppClock = Annotated[Clock, Depends(get_clock)]
