"""Signing and sending one webhook over HTTP, per the Standard Webhooks specification."""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from standardwebhooks import Webhook

from maintenance.webhooks.addresses import EndpointUrl
from maintenance.webhooks.schemas import DueDelivery

Outcome = Literal["delivered", "failed", "gone", "throttled", "refused"]

USER_AGENT = "fleetcare-webhooks/1"
MAX_RESPONSE_BYTES = 4096
EXCERPT_CHARS = 1000
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class SendResult:
    """What happened to one HTTP attempt."""

    outcome: Outcome
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after_s: float | None = None


def webhook_body(delivery: DueDelivery) -> str:
    """The JSON body: the Standard Webhooks envelope (type, timestamp, data) plus version."""
    envelope = {
        "type": delivery.event_type,
        "version": delivery.event_version,
        "timestamp": delivery.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": delivery.subject,
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def sign(signers: list[Webhook], msg_id: str, timestamp: datetime, body: str) -> str:
    """The webhook-signature header: one ``v1,<base64>`` per active secret, space separated."""
    return " ".join(s.sign(msg_id=msg_id, timestamp=timestamp, data=body) for s in signers)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), bounded to a day."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def classify(status_code: int) -> Outcome:
    """Only 2xx is success; 410 means gone; 429 and 503 ask us to slow down."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "gone"
    if status_code in (429, 503):
        return "throttled"
    return "failed"


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__  # a bad status line quotes the peer's bytes: no NUL
    return f"{type(exc).__name__}: {text}"[:500].replace("\x00", "\ufffd")


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, with the endpoint's name in SNI and in the certificate check."""

    def __init__(
        self, address: str, port: int, *, name: str, timeout: float, context: ssl.SSLContext
    ):
        super().__init__(address, port, timeout=timeout, context=context)
        self.name = name
        self.tls_context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP (with TCP_NODELAY) to the address
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.name)


def _tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Connect(Exception):
    """The TCP connection or the TLS handshake failed (another address may be worth trying)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class WebhookTransport:
    """Posts signed webhooks over keep-alive HTTP/1.1 connections; no redirects are followed.

    Requests go to the address that was checked (the URL's host replaced by it), with the
    original name in ``Host`` and in TLS (SNI and certificate check). Connections are kept by
    (scheme, name, port, address), so a connection verified for one name is never reused for
    another name that happens to share the address. A transport belongs to one sender, which
    sends one request at a time: one connection per key is all it needs.

    It is the standard library's ``http.client``: measured against the bench's receiver it
    costs ~70 CPU-µs per request where httpx cost ~400 (``docs/scaling.md``); each request
    leaves in one write.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        verify: ssl.SSLContext | bool = True,
        max_hosts: int = 256,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.verify = verify
        self.max_hosts = max_hosts
        self._tls: ssl.SSLContext | None = None
        self._connections: OrderedDict[tuple[str, str, int, str], http.client.HTTPConnection] = (
            OrderedDict()
        )

    def _connection_for(self, url: EndpointUrl, address: str) -> http.client.HTTPConnection:
        key = (url.scheme, url.host, url.port, address)
        conn = self._connections.pop(key, None)
        if conn is not None and conn.sock is not None and _readable(conn.sock):
            conn.close()  # the peer closed it (or sent what nobody asked for) while idle
        if conn is None:
            if url.scheme == "https":
                if self._tls is None:
                    self._tls = _tls_context(self.verify)
                conn = _PinnedHTTPSConnection(
                    address, url.port, name=url.host, timeout=self.timeout_s, context=self._tls
                )
            else:
                conn = http.client.HTTPConnection(address, url.port, timeout=self.timeout_s)
            while len(self._connections) >= self.max_hosts:
                _, oldest = self._connections.popitem(last=False)
                oldest.close()
        self._connections[key] = conn  # most recently used last
        return conn

    def close(self) -> None:
        """Close every connection."""
        while self._connections:
            _, conn = self._connections.popitem()
            conn.close()

    def post(
        self,
        url: EndpointUrl,
        addresses: list[str],
        headers: dict[str, str],
        body: str,
        *,
        now: datetime,
    ) -> SendResult:
        """POST ``body`` to the endpoint at one of its checked addresses."""
        result = SendResult("failed", error="no address to connect to")
        for address in addresses:
            started = time.perf_counter()
            try:
                return self._post_to(url, address, headers, body, now=now)
            except _Connect as exc:  # only a failed connection is worth the next address
                elapsed = (time.perf_counter() - started) * 1000
                result = SendResult(
                    "failed", latency_ms=elapsed, error=f"connecting: {_describe(exc.cause)}"
                )
        return result

    def _post_to(
        self, url: EndpointUrl, address: str, headers: dict[str, str], body: str, *, now: datetime
    ) -> SendResult:
        conn = self._connection_for(url, address)
        started = time.perf_counter()
        deadline = started + self.timeout_s
        if conn.sock is None:
            try:
                conn.connect()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _Connect(exc) from exc
        try:
            # one write: request line, headers and (small) body together
            conn.request(
                "POST",
                url.target,
                body=body.encode(),
                headers={
                    **headers,
                    "Host": url.host_header,
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    # The excerpt is read raw and bounded: no compressed bodies to inflate.
                    "Accept-Encoding": "identity",
                },
            )
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            elapsed = (time.perf_counter() - started) * 1000
            return SendResult("failed", latency_ms=elapsed, error=_describe(exc))
        received = bytearray()
        error: str | None = None
        try:
            while len(received) < self.max_response_bytes and time.perf_counter() <= deadline:
                chunk = response.read(self.max_response_bytes - len(received))
                if not chunk:
                    break
                received += chunk
        except (OSError, http.client.HTTPException) as exc:
            error = f"reading the response: {_describe(exc)}"
        latency = (time.perf_counter() - started) * 1000
        if error is not None or not response.isclosed():
            conn.close()  # an unread rest (or a broken one) would poison the next request
        code = response.status
        outcome = classify(code)
        if outcome != "delivered" and error is None:
            error = f"HTTP {code}"
        # as text PostgreSQL can hold: bytes that are not UTF-8, and NUL, as U+FFFD
        excerpt = bytes(received[: self.max_response_bytes]).decode("utf-8", "replace")
        excerpt = excerpt.replace("\x00", "\ufffd")
        return SendResult(
            outcome,
            status_code=code,
            latency_ms=latency,
            error=error if outcome != "delivered" else None,
            response_excerpt=excerpt[:EXCERPT_CHARS] or None,
            retry_after_s=parse_retry_after(response.getheader("retry-after"), now)
            if outcome == "throttled"
            else None,
        )


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: only an EOF or junk can be there."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
