"""One place that renders errors, as RFC 9457 problem documents with a domain code.

Every error answer is ``application/problem+json``::

    {"type": "urn:fleetcare:problem:asset_not_found", "title": "Not found", "status": 404,
     "detail": "asset 7 not found", "code": "asset_not_found", "error": "asset_not_found"}

``error`` repeats ``code`` for clients written against the first API version. A 422 from the
input layer adds ``problems``: one ``{"field", "problem"}`` per refused field.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcare.errors import FleetcareError, problem_type

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    """One refused field of a request: where (``name``, ``query.after``) and what."""

    field: str
    problem: str


class Problem(BaseModel):
    """An RFC 9457 problem document with fleetcare's domain code."""

    type: str = Field(description="URI naming the kind of problem: urn:fleetcare:problem:<code>")
    title: str = Field(description="short summary of the kind of problem")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request, for a person")
    code: str = Field(description="machine-readable domain code, e.g. asset_not_found")
    error: str = Field(description="the same as code (kept for first-version clients)")
    problems: list[FieldProblem] | None = Field(
        default=None, description="422 from the input layer: each refused field"
    )


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    problems: Sequence[FieldProblem] | None = None,
) -> dict[str, Any]:
    """The problem document as a dict."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "error": code,
    }
    if problems is not None:
        body["problems"] = [p.model_dump() for p in problems]
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    problems: Sequence[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem document response."""
    return JSONResponse(
        problem_body(status, code, detail, title=title, problems=problems),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def error_response(exc: FleetcareError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem document for a domain error (with ``problems`` when it names fields)."""
    found = getattr(exc, "problems", None)
    problems = [FieldProblem(field=f, problem=p) for f, p in found] if found else None
    return problem_response(
        exc.status_code, exc.code, exc.detail, title=exc.title, headers=headers, problems=problems
    )


def _location(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "missing":
        return "required"
    return msg


def field_problems(exc: RequestValidationError) -> list[FieldProblem]:
    """One problem per refused field: ``x`` in the body, ``query.y``, ``path.z``."""
    return [FieldProblem(field=_location(e), problem=_message(e)) for e in exc.errors()]


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route of ``app`` serves for the scope's path."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(FleetcareError)
    async def domain_error(_: Request, exc: FleetcareError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        return error_response(exc, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = field_problems(exc)
        summary = "; ".join(f"{p.field}: {p.problem}" for p in problems)
        return problem_response(422, "invalid_request", summary, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not parse the body: a refused input
            return problem_response(
                422, "invalid_request", f"body: {exc.detail} (not valid JSON in UTF-8?)"
            )
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by
            # several routes (GET and PATCH /v1/sites/{id}) allows all of their methods
            allow = ", ".join(allowed_methods(request.app, request.scope))
            kept = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
            headers = {**kept, "allow": allow}
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, _: ClientDisconnect) -> JSONResponse:
        # a route that reads its body itself (a history upload) met the end of the
        # connection before the end of the body: the client's doing, and nothing is stored
        log.info("%s %s: the client left before its body ended", request.method, request.url.path)
        return problem_response(
            400, "client_disconnected", "the connection closed before the request body ended"
        )

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem_response(503, "service_unavailable", "the database is unavailable")

    @app.exception_handler(psycopg.DataError)
    async def value_refused(_: Request, exc: psycopg.DataError) -> JSONResponse:
        # The input layer should have refused this already; the database is the last wall.
        log.warning("a value reached the database and was refused: %s", exc)
        return problem_response(
            422, "invalid_value", "a value is out of range or holds a character not allowed"
        )

    @app.exception_handler(psycopg.errors.UniqueViolation)
    async def duplicate(_: Request, exc: psycopg.errors.UniqueViolation) -> JSONResponse:
        log.warning("unique violation reached the handler: %s", exc)
        what = exc.diag.table_name or "object"
        return problem_response(409, "already_exists", f"such a {what} row already exists")

    @app.exception_handler(psycopg.errors.IntegrityError)
    async def rule_broken(_: Request, exc: psycopg.errors.IntegrityError) -> JSONResponse:
        log.warning("integrity error reached the handler: %s", exc)
        what = exc.diag.table_name or "object"
        return problem_response(422, "invalid_value", f"a value breaks a rule of {what}")


def install_fallback_handlers(app: FastAPI) -> None:
    """Pool exhaustion answers 503; anything unexpected answers a problem 500 (and is logged)."""
    from psycopg_pool import PoolTimeout

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(_: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection available: %s", exc)
        return problem_response(503, "service_unavailable", "no database connection available")

    app.add_middleware(InternalErrorMiddleware)


class InternalErrorMiddleware:
    """Turn an unhandled exception into a problem 500 and *not* re-raise it.

    Starlette's own catch-all answers 500 and then re-raises, and the server closes the
    connection; a keep-alive client then sees its next request reset. Here the exception is
    logged and answered, and the connection stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if started:  # nothing sensible can be sent any more
                raise
            response = problem_response(500, "internal", "internal error")
            await response(scope, receive, send)
