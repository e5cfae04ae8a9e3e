"""The first wall of the input layer, for every route at once: body size and NUL characters.

PostgreSQL refuses the NUL character in text, so a NUL anywhere in a request (path, query,
JSON or form body) is refused here with a 422 naming where it was, before any route runs. The
body is read up to ``max_body_bytes``: a declared ``Content-Length`` above the limit is refused
before a byte is read, and a chunked body is refused as soon as it passes the limit (413).
Field by field limits (string lengths, integer ranges, strict types) are the second wall, in
the request records (``api.inputs``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import FieldProblem, problem_response

# A JSON string escape for NUL: \u0000 preceded by an even number of backslashes (an odd
# number would make the first backslash of \u0000 itself escaped: "\\u0000" is not NUL).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_FORM_NUL = re.compile(rb"%00")


def _has_nul_in_urlencoded(raw: bytes) -> bool:
    return b"\x00" in raw or b"\x00" in unquote_to_bytes(raw)


def body_has_nul(body: bytes, content_type: str) -> bool:
    """Whether ``body`` carries a NUL character once decoded as its content type says."""
    if b"\x00" in body:
        return True
    if "json" in content_type:
        return _JSON_NUL.search(body) is not None
    if "x-www-form-urlencoded" in content_type:
        return _FORM_NUL.search(body) is not None
    return False


class InputGuardMiddleware:
    """Refuse oversized bodies (413) and NUL characters anywhere in a request (422)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, streaming_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # routes that stream their (large, possibly binary) body themselves and bound it
        self.streaming_paths = streaming_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = self._nul_in_url(scope)
        if where:
            await self._refuse_nul(where, scope, receive, send)
            return
        if scope.get("path") in self.streaming_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        if scope.get("method") in {"GET", "HEAD", "OPTIONS"} and declared in (None, b"0"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if body_has_nul(body, content_type):
            await self._refuse_nul("body", scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _nul_in_url(scope: Scope) -> str | None:
        raw_path = scope.get("raw_path") or scope.get("path", "").encode()
        if b"\x00" in scope.get("path", "").encode() or _has_nul_in_urlencoded(raw_path):
            return "path"
        if _has_nul_in_urlencoded(scope.get("query_string", b"")):
            return "query"
        return None

    async def _refuse_nul(self, where: str, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"{where}: text may not contain the NUL character (\\u0000)"
        response = problem_response(
            422,
            "invalid_request",
            detail,
            problems=[FieldProblem(field=where, problem="contains the NUL character")],
        )
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_body_bytes} bytes",
            headers={"connection": "close"},
        )
        await response(scope, receive, send)
