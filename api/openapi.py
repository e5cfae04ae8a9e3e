"""The OpenAPI document: every operation lists the problem documents it can answer.

FastAPI documents successes; the errors come from one input layer and one error handler, so
they are documented here, once, from what each operation has: a security requirement (401,
403, 429), a path parameter or an input that may name an object (404), a write method (409),
a body (413), any input (422). Every error uses the ``Problem`` schema the handler really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import PROBLEM_MEDIA_TYPE, Problem

_WRITES = {"post", "put", "patch", "delete"}
_DESCRIPTIONS = {
    "401": "no API key, or an unknown or revoked one",
    "403": "the key's role may not do this",
    "404": "no such object, or one the caller may not see",
    "409": "the request collides with the object's state or an existing object",
    "413": "the request body is larger than the limit",
    "422": "a field, parameter or rule is refused; `problems` lists each field",
    "429": "too many failed authentications from this source; retry later",
    "500": "an unexpected error (logged)",
    "503": "the database is unavailable",
}


def _problem_response(status: str) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _statuses(method: str, operation: dict[str, Any]) -> list[str]:
    params = operation.get("parameters", [])
    has_input = bool(params) or "requestBody" in operation
    statuses = ["500", "503"]
    if operation.get("security"):
        statuses += ["401", "403", "429"]
        if method in _WRITES:
            statuses.append("409")
    if any(p.get("in") == "path" for p in params) or (
        operation.get("security") and has_input
    ):  # a path, a filter or a body may name an object the caller cannot see
        statuses.append("404")
    if "requestBody" in operation:
        statuses.append("413")
    if has_input:
        statuses.append("422")
    return statuses


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the problem responses to every operation of ``schema`` (in place) and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(method, operation):
                responses[status] = _problem_response(status)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve ``document_errors`` applied to FastAPI's own document at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
