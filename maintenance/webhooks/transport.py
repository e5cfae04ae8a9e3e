"""Signing and sending one webhook over HTTP, per the Standard Webhooks specification."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
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
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class WebhookTransport:
    """Posts signed webhooks over keep-alive httpx clients; no redirects are followed.

    Requests go to the address that was checked (the URL's host replaced by it), with the
    original name in ``Host`` and in TLS (SNI and certificate check). Connections are pooled
    by address, so each host name gets a client of its own: a connection verified for one name
    is never reused for another name that happens to share the address.
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
        self._clients: OrderedDict[tuple[str, str, int], httpx.Client] = OrderedDict()

    def _client_for(self, url: EndpointUrl) -> httpx.Client:
        key = (url.scheme, url.host, url.port)
        client = self._clients.pop(key, None)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,
                trust_env=False,
                transport=httpx.HTTPTransport(
                    verify=self.verify,
                    limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
                    # A request leaves in several small writes; Nagle would hold them back.
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                ),
            )
            while len(self._clients) >= self.max_hosts:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
        self._clients[key] = client  # most recently used last
        return client

    def close(self) -> None:
        """Close every client's connections."""
        while self._clients:
            _, client = self._clients.popitem()
            client.close()

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
            result = self._post_to(url, address, headers, body, now=now)
            if result.error is None or not result.error.startswith("ConnectError"):
                break  # only a refused connection is worth trying the next address for
        return result

    def _post_to(
        self, url: EndpointUrl, address: str, headers: dict[str, str], body: str, *, now: datetime
    ) -> SendResult:
        client = self._client_for(url)
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = client.build_request(
            "POST",
            url.pinned(address),
            content=body.encode(),
            headers={
                **headers,
                "Host": url.host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                # The excerpt is read raw and bounded: no compressed bodies to inflate.
                "Accept-Encoding": "identity",
            },
            extensions=extensions,
        )
        started = time.perf_counter()
        deadline = started + self.timeout_s
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return SendResult("failed", latency_ms=elapsed, error=_describe(exc))
        except httpx.HTTPError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return SendResult("failed", latency_ms=elapsed, error=_describe(exc))
        try:
            received = bytearray()
            error: str | None = None
            try:
                for chunk in response.iter_raw():
                    received += chunk
                    if len(received) >= self.max_response_bytes or time.perf_counter() > deadline:
                        break
            except httpx.HTTPError as exc:
                error = f"reading the response: {_describe(exc)}"
            latency = (time.perf_counter() - started) * 1000
        finally:
            response.close()
        code = response.status_code
        outcome = classify(code)
        if outcome != "delivered" and error is None:
            error = f"HTTP {code}"
        excerpt = bytes(received[: self.max_response_bytes]).decode("utf-8", "replace")
        return SendResult(
            outcome,
            status_code=code,
            latency_ms=latency,
            error=error if outcome != "delivered" else None,
            response_excerpt=excerpt[:EXCERPT_CHARS] or None,
            retry_after_s=parse_retry_after(response.headers.get("retry-after"), now)
            if outcome == "throttled"
            else None,
        )
