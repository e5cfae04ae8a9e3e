"""A small client of fleetcare's public HTTP API, for the simulated people.

The technician, the courier and the failure reporter act as people do: with an API key, on
the documented routes only. They never import the maintenance domain. An answer of 4xx is
raised as the domain error of that status (a 409 is a ``Conflict``, as in the product); an
unreachable API or a 5xx is a ``ServiceUnavailable``: try again later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx

from fleetcare.errors import (
    Conflict,
    FleetcareError,
    Forbidden,
    Invalid,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)

log = logging.getLogger(__name__)

PAGE_LIMIT = 500  # the API's largest page
_BY_STATUS: dict[int, type[FleetcareError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


def local_api_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for an API bound to ``host``:``port``."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ProductAPI:
    """fleetcare's API as one key sees it. ``client`` lets tests pass the app's TestClient."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = client or httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` (``None`` parameters are left out); the decoded JSON body."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._send("GET", path, params=query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST ``body`` as JSON to ``path``; the decoded JSON body."""
        return self._send("POST", path, json=body)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        """PUT ``body`` as JSON to ``path``; the decoded JSON body."""
        return self._send("PUT", path, json=body)

    def items(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following ``next_after``."""
        after: int | None = None
        while True:
            page = self.get(path, **params, after=after, limit=PAGE_LIMIT)
            yield from page["items"]
            after = page.get("next_after")
            if after is None:
                return

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, headers=self.headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(method, path, response)
        return response.json()


def _error(method: str, path: str, response: httpx.Response) -> FleetcareError:
    try:
        detail = str(response.json().get("detail") or response.reason_phrase)
    except ValueError:
        detail = response.text[:200] or response.reason_phrase
    detail = f"{method} {path}: {response.status_code} {detail}"
    if response.status_code >= 500:
        return ServiceUnavailable(detail)
    return _BY_STATUS.get(response.status_code, FleetcareError)(detail)
