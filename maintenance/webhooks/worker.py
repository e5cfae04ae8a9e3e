"""The webhook sender: lease an endpoint, send its due deliveries in event order, record.

Several senders (threads or processes) may run at once. Each job leases one endpoint row
(``FOR UPDATE SKIP LOCKED`` plus a ``locked_until`` lease committed before any HTTP is sent),
so two senders never work the same endpoint, never send the same attempt at once, and the
first attempts of an endpoint leave in event order. A sender that dies mid-send leaves its
lease to expire; the next sender takes the endpoint over and sends again (at-least-once; the
receiver deduplicates by webhook-id).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool
from standardwebhooks import Webhook

from fleetcare.clock import Clock, SystemClock
from fleetcare.db import connect, open_pool
from fleetcare.settings import Settings
from maintenance.webhooks import service
from maintenance.webhooks.addresses import (
    Resolver,
    UnsafeAddress,
    parse_endpoint_url,
    resolve_checked,
    system_resolver,
)
from maintenance.webhooks.transport import SendResult, WebhookTransport, sign, webhook_body

log = logging.getLogger(__name__)

CHANNEL = "fleetcare_events"


class WebhookSender:
    """One sender: claims jobs from PostgreSQL and posts them over one keep-alive client."""

    def __init__(
        self,
        pool: ConnectionPool[Connection[Any]],
        *,
        allow_private: bool,
        clock: Clock | None = None,
        name: str | None = None,
        timeout_s: float = 15.0,
        batch_size: int = 100,
        lease: timedelta | None = None,
        rng: random.Random | None = None,
        resolver: Resolver = system_resolver,
        transport: WebhookTransport | None = None,
    ) -> None:
        self.pool = pool
        self.allow_private = allow_private
        self.clock: Clock = clock or SystemClock()
        self.name = name or f"sender-{uuid.uuid4().hex[:8]}"
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        # A batch starts no new attempt after timeout_s; its last attempt may then take up to
        # three timeouts (connect, write, read), and recording needs a moment.
        self.lease = lease or timedelta(seconds=4 * timeout_s + 30)
        self.rng = rng or random.Random()
        self.resolver = resolver
        self.transport = transport or WebhookTransport(timeout_s=timeout_s)
        self.attempts_made = 0
        self.delivered = 0

    def close(self) -> None:
        """Close the HTTP client."""
        self.transport.close()

    def run_once(self) -> int:
        """Work one endpoint's due deliveries; return the number of attempts made (0: idle)."""
        t0 = time.perf_counter()
        with self.pool.connection() as conn:
            job = service.claim_job(
                conn,
                now=self.clock.now(),
                owner=self.name,
                lease=self.lease,
                batch_size=self.batch_size,
            )
        if job is None:
            return 0
        t1 = time.perf_counter()
        attempts = self.send(job)
        t2 = time.perf_counter()
        with self.pool.connection() as conn:
            service.record_job(conn, job, attempts, owner=self.name, rng=self.rng)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "endpoint %s: %d attempt(s); claim %.1f ms, send %.1f ms, record %.1f ms",
                job.endpoint.id,
                len(attempts),
                (t1 - t0) * 1000,
                (t2 - t1) * 1000,
                (time.perf_counter() - t2) * 1000,
            )
        self.attempts_made += len(attempts)
        self.delivered += sum(1 for a in attempts if a.result.outcome == "delivered")
        return len(attempts)

    def drain(self, max_attempts: int = 1_000_000) -> int:
        """Run jobs until nothing is due at the clock's current time; return attempts made."""
        total = 0
        while total < max_attempts:
            made = self.run_once()
            if made == 0:
                break
            total += made
        return total

    def send(self, job: service.Job) -> list[service.SentAttempt]:
        """Post the job's deliveries in order; stop at the first failure or when out of time."""
        endpoint = job.endpoint
        now = self.clock.now()
        try:
            url = parse_endpoint_url(endpoint.url)
            addresses = resolve_checked(
                url, allow_private=self.allow_private, resolver=self.resolver
            )
        except UnsafeAddress as exc:
            first = job.deliveries[0]
            refused = SendResult("refused", error=f"refused: {exc}")
            return [service.SentAttempt(first, now, int(now.timestamp()), refused)]
        signers = [Webhook(s) for s in service.signing_secrets(endpoint, now)]
        started = time.monotonic()
        attempts: list[service.SentAttempt] = []
        for delivery in job.deliveries:
            at = self.clock.now()
            body = webhook_body(delivery)
            headers = {
                "webhook-id": delivery.event_public_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": sign(signers, delivery.event_public_id, at, body),
            }
            result = self.transport.post(url, addresses, headers, body, now=at)
            attempts.append(service.SentAttempt(delivery, at, int(at.timestamp()), result))
            if result.outcome != "delivered":
                log.info(
                    "webhook %s to endpoint %s failed: %s",
                    delivery.event_public_id,
                    endpoint.id,
                    result.error,
                )
                break
            if time.monotonic() - started > self.timeout_s:
                break  # leave the rest to the next job, well inside the lease
        return attempts


class Wakeup:
    """A generation counter that LISTEN bumps; idle workers wait for it to change.

    A notification wakes one idle worker; a worker that found work wakes the next, so that a
    burst spreads over the workers without every event waking all of them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def current(self) -> int:
        with self._cond:
            return self._generation

    def bump(self, *, everyone: bool = False) -> None:
        with self._cond:
            self._generation += 1
            if everyone:
                self._cond.notify_all()
            else:
                self._cond.notify()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout=timeout)


def listen_for_events(
    database_url: str, wakeup: Wakeup, stop: threading.Event, poll_s: float
) -> None:
    """Bump ``wakeup`` on every NOTIFY fleetcare_events; reconnect when the database drops."""
    while not stop.is_set():
        try:
            with connect(database_url, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                wakeup.bump()  # anything committed while we were not listening
                while not stop.is_set():
                    for _ in conn.notifies(timeout=poll_s, stop_after=1):
                        wakeup.bump()
        except Exception as exc:  # keep listening; the poll covers the gap
            log.warning("webhook listener lost the database (%s); reconnecting", exc)
            stop.wait(1.0)


def run_webhook_senders(
    database_url: str,
    settings: Settings,
    *,
    stop: threading.Event,
    concurrency: int = 4,
    clock: Clock | None = None,
    poll_s: float = 1.0,
    timeout_s: float = 15.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run ``concurrency`` senders until ``stop`` is set, woken by LISTEN and a short poll."""
    pool = open_pool(
        database_url,
        settings.model_copy(update={"pool_min_size": 1, "pool_max_size": max(2, concurrency + 1)}),
        name="webhooks",
    )
    wakeup = Wakeup()
    listener = threading.Thread(
        target=listen_for_events,
        args=(database_url, wakeup, stop, min(poll_s, 1.0)),
        name="webhooks-listen",
        daemon=True,
    )
    listener.start()
    senders = [
        WebhookSender(
            pool,
            allow_private=settings.webhooks_allow_private,
            clock=clock,
            timeout_s=timeout_s,
        )
        for _ in range(concurrency)
    ]

    def work(sender: WebhookSender) -> None:
        while not stop.is_set():
            seen = wakeup.current()
            try:
                made = sender.run_once()
            except Exception:
                log.exception("webhook sender %s: job failed; retrying", sender.name)
                stop.wait(1.0)
                continue
            if made == 0:
                wakeup.wait(seen, poll_s)
            else:
                wakeup.bump()  # there may be more: let an idle worker look too

    threads = [
        threading.Thread(target=work, args=(s,), name=f"webhooks-{i}", daemon=True)
        for i, s in enumerate(senders)
    ]
    for t in threads:
        t.start()
    log.info("webhook senders running: %d", concurrency)
    if on_ready:
        on_ready()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        wakeup.bump(everyone=True)  # idle workers stop waiting
        for t in threads:
            t.join(timeout=timeout_s + 5)
        listener.join(timeout=5)
        for s in senders:
            s.close()
        pool.close()
