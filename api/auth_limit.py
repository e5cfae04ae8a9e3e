"""A limit on repeated failed authentications (429 past it), per credential and per address.

Each API process counts failed authentications in a sliding window at two levels:

- per (client address, presented credential): the credential is an API key's identifying
  prefix (its first 10 characters, the ``prefix`` the key list shows), a sign-in's e-mail
  address, or a fingerprint of any other token. Past ``limit`` failures (20 a minute by
  default) that credential is answered 429 from that address, valid or not (so the 20th guess
  at a key is not told apart from a hit by a 200), until its oldest failure leaves the window.
  Another credential from the same address is still served: one client behind a NAT, a proxy
  or ``fleetcare up`` (every client 127.0.0.1) that keeps presenting a revoked key no longer
  locks out every other client of that address.
- per client address: past ``address_limit`` failures over all credentials (200 a minute by
  default) the address is answered 429 for every credential it has not already proven in the
  last hour from there. This bounds guessing with ever new keys or e-mail addresses, which the
  first level never sees twice: 200 guesses a minute per process at a 43-character random key
  (and 5 wrong passwords per account before the account locks, ``people.service``) is still no
  search at all, while 10 clients behind one address may each fail 20 times a minute before
  any of them is held back. Credentials proven from the address before stay served, so an
  attack from a shared address does not lock its honest users out, and the ceiling is no
  oracle: a credential is proven only by succeeding before the address was held back.

The counts are per process: N API workers allow N times the limits, which still bounds
guessing. A request that is answered 429 is not counted again.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from fastapi import Request

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.errors import TooManyRequests, Unauthorized
from fleetcare.tenancy import operator_lookup

# How long a credential that succeeded from an address stays served there past the address's
# ceiling: longer than the window, so that clients that authenticate every few minutes keep it.
PROVEN_FOR_S = 3600.0
# The memory a scan of addresses and credentials can take: the oldest entries go first.
MAX_ENTRIES = 100_000
# An API key's identifying prefix: the characters the key list shows (``fleet.issue_api_key``).
KEY_PREFIX_CHARS = 10


def key_credential(key: str) -> str:
    """What identifies a presented API key in the counts: its prefix, else a fingerprint."""
    if key.startswith(fleet.KEY_PREFIX) and len(key) <= 200:
        return "key:" + key[:KEY_PREFIX_CHARS]
    return "token:" + _fingerprint(key)


def _fingerprint(secret: str) -> str:
    return hashlib.blake2b(secret.encode(errors="replace"), digest_size=12).hexdigest()


class AuthFailureLimiter:
    """Sliding-window counts of failed authentications per (address, credential) and address."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        address_limit: int | None = None,
    ) -> None:
        self.limit = limit
        self.address_limit = address_limit if address_limit is not None else 10 * limit
        self.window_s = window_s
        self._monotonic = monotonic
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._by_address: dict[str, deque[float]] = {}
        # (address, fingerprint of the whole credential) -> when it last succeeded from there
        self._proven: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, counts: dict[Any, deque[float]], key: Any, now: float) -> deque[float]:
        times = counts.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del counts[key]
        return times

    def _count(self, counts: dict[Any, deque[float]], key: Any, now: float) -> None:
        self._recent(counts, key, now)
        counts.setdefault(key, deque()).append(now)
        if len(counts) > MAX_ENTRIES:
            counts.pop(next(iter(counts)))

    def _retry_s(self, times: deque[float], now: float) -> int:
        return max(1, math.ceil(times[0] + self.window_s - now))

    def check(self, source: str, credential: str, secret: str | None = None) -> None:
        """Raise TooManyRequests when ``credential`` failed ``limit`` times from ``source``
        within the window, or ``source`` failed ``address_limit`` times and ``secret`` (the
        whole credential) has not succeeded from there within ``PROVEN_FOR_S``."""
        with self._lock:
            now = self._monotonic()
            times = self._recent(self._failures, (source, credential), now)
            if len(times) >= self.limit:
                retry = self._retry_s(times, now)
                raise RetryLater(
                    "too many failed authentications with this credential from this address; "
                    f"retry in {retry} s",
                    retry_after_s=retry,
                )
            everything = self._recent(self._by_address, source, now)
            if len(everything) >= self.address_limit and not self._is_proven(source, secret, now):
                retry = self._retry_s(everything, now)
                raise RetryLater(
                    f"too many failed authentications from this address; retry in {retry} s",
                    retry_after_s=retry,
                )

    def _is_proven(self, source: str, secret: str | None, now: float) -> bool:
        if secret is None:
            return False
        when = self._proven.get((source, _fingerprint(secret)))
        return when is not None and when > now - PROVEN_FOR_S

    def failed(self, source: str, credential: str) -> None:
        """Count one failed authentication of ``credential`` from ``source``."""
        with self._lock:
            now = self._monotonic()
            self._count(self._failures, (source, credential), now)
            self._count(self._by_address, source, now)

    def succeeded(self, source: str, secret: str) -> None:
        """Remember that ``secret`` (the whole credential) succeeded from ``source``."""
        with self._lock:
            key = (source, _fingerprint(secret))
            self._proven[key] = self._monotonic()
            self._proven.move_to_end(key)
            if len(self._proven) > MAX_ENTRIES:
                self._proven.popitem(last=False)


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
    if limiter is None or not key:  # a missing key is a mistake, not a guess
        with operator_lookup(conn):
            return fleet.authenticate(conn, key)
    source = source_of(request)
    credential = key_credential(key)
    limiter.check(source, credential, key)
    try:
        with operator_lookup(conn):  # the key's own row, before its customer is known
            principal = fleet.authenticate(conn, key)
    except Unauthorized:
        limiter.failed(source, credential)
        raise
    limiter.succeeded(source, key)
    return principal
