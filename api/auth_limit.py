"""A limit on repeated failed authentications per source address (429 past it).

Each API process counts the failures of each client address in a sliding window; past
``limit`` failures the source is answered 429 (with ``Retry-After``) for every request that
authenticates, valid key or not, until its oldest failure leaves the window — so that guessing
keys costs ``window`` seconds per ``limit`` guesses. The count is per process: N API workers
allow N times the limit, which still bounds guessing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import Request

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.errors import TooManyRequests, Unauthorized
from fleetcare.tenancy import operator_lookup


class AuthFailureLimiter:
    """Sliding-window count of failed authentications per source."""

    def __init__(
        self, limit: int, window_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._monotonic = monotonic
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> deque[float]:
        times = self._failures.get(source)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[source]
        return times

    def check(self, source: str) -> None:
        """Raise TooManyRequests when ``source`` failed ``limit`` times within the window."""
        with self._lock:
            now = self._monotonic()
            times = self._recent(source, now)
            if len(times) >= self.limit:
                retry = max(1, math.ceil(times[0] + self.window_s - now))
                raise RetryLater(
                    f"too many failed authentications from this address; retry in {retry} s",
                    retry_after_s=retry,
                )

    def failed(self, source: str) -> None:
        """Count one failed authentication from ``source``."""
        with self._lock:
            now = self._monotonic()
            self._recent(source, now)
            self._failures.setdefault(source, deque()).append(now)
            if len(self._failures) > 100_000:  # bound the memory a scan of sources can take
                self._failures.pop(next(iter(self._failures)))


class RetryLater(TooManyRequests):
    """429 with the seconds after which the source may try again."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def source_of(request: Request) -> str:
    """The client address (the proxy's view when uvicorn trusts forwarded headers)."""
    return request.client.host if request.client else "unknown"


def authenticate_limited(request: Request, conn: Any, key: str | None) -> Principal:
    """``fleet.authenticate`` behind the app's failure limiter (none when the app has none)."""
    limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_limiter", None)
    if limiter is None:
        with operator_lookup(conn):
            return fleet.authenticate(conn, key)
    source = source_of(request)
    limiter.check(source)
    try:
        with operator_lookup(conn):  # the key's own row, before its customer is known
            return fleet.authenticate(conn, key)
    except Unauthorized:
        if key:  # a missing key is a mistake, not a guess
            limiter.failed(source)
        raise
