"""Security headers on every answer, and the session cookie ``Secure`` over HTTPS.

The dashboard's pages load scripts and styles only from this site (inline ``style``
attributes are allowed: the templates size their bars with them), may not be framed, and
send no referrer to other sites. Every answer carries ``nosniff``. When the request came over
HTTPS (directly, or through a proxy that uvicorn trusts for ``X-Forwarded-Proto``), the session
cookie is marked ``Secure`` even when ``FLEETCARE_SESSION_HTTPS_ONLY`` is off.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Add the security headers; mark ``session_cookie`` Secure on HTTPS requests."""

    def __init__(self, app: ASGIApp, session_cookie: str) -> None:
        self.app = app
        self.cookie_prefix = f"{session_cookie}=".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                content_type = headers.get("content-type", "")
                if content_type.startswith("text/html") or scope["path"].startswith("/dashboard"):
                    for name, value in PAGE_HEADERS.items():
                        headers.setdefault(name, value)
                if https:
                    self._secure_session_cookie(message)
            await send(message)

        await self.app(scope, receive, with_headers)

    def _secure_session_cookie(self, message: Message) -> None:
        raw = message.get("headers", [])
        out = []
        for name, value in raw:
            if (
                name.lower() == b"set-cookie"
                and value.startswith(self.cookie_prefix)
                and b"; secure" not in value.lower()
            ):
                value = value + b"; secure"
            out.append((name, value))
        message["headers"] = out
