"""The webhook sender: lease an endpoint, send its due deliveries in event order, record.

Several senders (threads or processes) may run at once. Each job leases one endpoint row
(``FOR UPDATE SKIP LOCKED`` plus a ``locked_until`` lease committed before any HTTP is sent),
so two senders never work the same endpoint, never send the same attempt at once, and the
first attempts of an endpoint leave in event order. The lease is short (10 s) and a live
sender renews it every few seconds while it works, however long its sends take; a sender
that dies stops renewing, and the next sender takes the endpoint over within the lease and
sends again (at-least-once; the receiver deduplicates by webhook-id).

A sender keeps its endpoint while deliveries keep coming: each batch's record, the renewed
lease and the next batch are one transaction, for up to ``budget_s``; when the endpoint has
nothing more due, the same transaction ends its lease and claims the next endpoint. The
process's loops wake on ``NOTIFY fleetcare_webhooks`` (payload: the endpoint with a delivery
due), except for an endpoint one of them already holds: its holder takes the delivery with
its next batch, and rechecks after letting it go if a notification named it meanwhile.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool
from standardwebhooks import Webhook

from fleetcare.clock import Clock, SystemClock
from fleetcare.settings import Settings
from fleetcare.worker import Job, Pool, Ran, WorkerRunner, WorkerStats
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

CHANNEL = "fleetcare_webhooks"
# A sender's hold on an endpoint; renewed every third of it while the sender lives.
LEASE = timedelta(seconds=10)
# How long one job may go on from batch to batch (endpoint to endpoint) before it returns to
# its loop (which checks for a stop and lets the claim order rotate the endpoints).
BUDGET_S = 1.0


class Holdings:
    """The endpoints a sender process's loops hold, and whether a notification named one of
    them since its holder last looked (the listener's filter: a held endpoint wakes no loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._named: set[int] = set()
        self.wake_one: Callable[[], None] = lambda: None

    def wake(self, payload: str) -> bool:
        """Whether a notification naming endpoint ``payload`` should wake a loop."""
        try:
            endpoint = int(payload)
        except ValueError:
            return True
        with self._lock:
            if endpoint in self._held:
                self._named.add(endpoint)
                return False
        return True

    def hold(self, endpoint_id: int) -> None:
        """A loop holds the endpoint's lease: notifications naming it wake nobody."""
        with self._lock:
            self._held.add(endpoint_id)

    def look(self, endpoint_id: int) -> None:
        """The holder is about to read the endpoint's due deliveries again."""
        with self._lock:
            self._named.discard(endpoint_id)

    def let_go(self, endpoint_id: int) -> bool:
        """The endpoint's lease ended; True when a notification named it since the last look
        (a delivery the holder's last read may have missed)."""
        with self._lock:
            self._held.discard(endpoint_id)
            named = endpoint_id in self._named
            self._named.discard(endpoint_id)
        return named


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
        budget_s: float = BUDGET_S,
        holdings: Holdings | None = None,
        lease: timedelta = LEASE,
        renew_every_s: float | None = None,
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
        self.budget_s = budget_s
        self._conn: Connection[Any] | None = None
        self.holdings = holdings or Holdings()
        # Short, and renewed while this sender lives (a batch's last attempt may take three
        # timeouts: connect, write, read): a dead sender frees its endpoint within the lease.
        self.lease = lease
        self.keeper = LeaseKeeper(
            pool,
            self.name,
            self.clock,
            lease,
            renew_every_s or lease.total_seconds() / 3,
        )
        self.rng = rng or random.Random()
        self.resolver = resolver
        self.transport = transport or WebhookTransport(timeout_s=timeout_s)
        self.attempts_made = 0
        self.delivered = 0
        self.claims = 0  # claims that found an endpoint, or nothing (``idle_claims``)
        self.idle_claims = 0
        self.batches = 0

    def close(self) -> None:
        """Stop renewing, close the HTTP client, give the connection back."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.pool.putconn(conn)
        log.info(
            "webhook sender %s: %d attempts in %d batches; %d claims, %d of them found nothing",
            self.name,
            self.attempts_made,
            self.batches,
            self.claims,
            self.idle_claims,
        )
        self.keeper.close()
        self.transport.close()

    def run_once(self) -> int:
        """Work due deliveries until none is due or the budget is spent; the attempts made."""
        return self.work().done

    def work(self) -> Ran:
        """Claim an endpoint and send its due deliveries batch after batch, then the next
        endpoint's, one transaction per batch; ``more`` when the budget ran out first (or a
        delivery may have come due unseen)."""
        started = time.monotonic()
        made, more = 0, False
        held: int | None = None
        with self._connection() as conn:
            job = service.claim_job(
                conn,
                now=self.clock.now(),
                owner=self.name,
                lease=self.lease,
                batch_size=self.batch_size,
            )
            conn.commit()
            self.claims += 1
            self.idle_claims += job is None
            try:
                while job is not None:
                    held = endpoint_id = job.endpoint.id
                    self.holdings.hold(held)
                    self.keeper.hold(held)
                    t0 = time.perf_counter()
                    attempts = self.send(job)
                    t1 = time.perf_counter()
                    made += len(attempts)
                    self.batches += 1
                    self.attempts_made += len(attempts)
                    self.delivered += sum(1 for a in attempts if a.result.outcome == "delivered")
                    go_on = time.monotonic() - started < self.budget_s
                    keep = go_on and all(a.result.outcome == "delivered" for a in attempts)
                    if keep:
                        self.holdings.look(held)  # what is named from now on, we may miss
                    job = service.next_job(
                        conn,
                        job,
                        attempts,
                        owner=self.name,
                        rng=self.rng,
                        now=self.clock.now(),
                        lease=self.lease,
                        batch_size=self.batch_size,
                        keep=keep,
                        claim=go_on,
                    )
                    conn.commit()
                    if go_on and (job is None or job.endpoint.id != held):
                        self.claims += 1  # the same transaction claimed the next endpoint
                        self.idle_claims += job is None
                    if job is None or job.endpoint.id != held:
                        if self.holdings.let_go(held):
                            # a notification named it after our last read: look again
                            if job is None:
                                more = True
                            else:
                                self.holdings.wake_one()  # we work the next: another loop looks
                        held = None
                    if not go_on:
                        more = True
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "endpoint %s: %d attempt(s); send %.1f ms, record and next %.1f ms",
                            endpoint_id,
                            len(attempts),
                            (t1 - t0) * 1000,
                            (time.perf_counter() - t1) * 1000,
                        )
            finally:
                self.keeper.let_go()
                if held is not None:  # an error: the lease lapses; notifications wake again
                    self.holdings.let_go(held)
        return Ran(made, more)

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        """The sender's connection, taken from the pool once and kept between jobs (a wake-up
        then costs no checkout round trip); an error gives it back (a broken one is dropped)."""
        if self._conn is None:
            self._conn = self.pool.getconn()
        try:
            yield self._conn
        except BaseException:
            conn, self._conn = self._conn, None
            self.pool.putconn(conn)  # rolls back what is open
            raise

    def drain(self, max_attempts: int = 1_000_000) -> int:
        """Run jobs until nothing is due at the clock's current time; return attempts made."""
        total = 0
        while total < max_attempts:
            ran = self.work()
            total += ran.done
            if not ran.more:
                break
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


class LeaseKeeper:
    """Renews the lease of the endpoint its sender works on, every ``every_s``, from a thread
    of its own (started with the first job), so that sends of any length keep it."""

    def __init__(
        self,
        pool: ConnectionPool[Connection[Any]],
        owner: str,
        clock: Clock,
        lease: timedelta,
        every_s: float,
    ) -> None:
        self.pool = pool
        self.owner = owner
        self.clock = clock
        self.lease = lease
        self.every_s = every_s
        self.renewals = 0
        self._endpoint: int | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, endpoint_id: int) -> None:
        """Keep ``endpoint_id``'s lease from now on."""
        self._endpoint = endpoint_id
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"lease-{self.owner}", daemon=True
            )
            self._thread.start()

    def let_go(self) -> None:
        """The job is done (recording it ends the lease)."""
        self._endpoint = None

    def close(self) -> None:
        """Stop the renewing thread."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._closed.wait(self.every_s):
            endpoint = self._endpoint
            if endpoint is None:
                continue
            try:
                with self.pool.connection() as conn:
                    kept = service.renew_lease(
                        conn, endpoint, owner=self.owner, now=self.clock.now(), lease=self.lease
                    )
            except Exception as exc:  # the database is away: the lease may lapse, no harm
                log.warning("webhook sender %s: could not renew its lease: %s", self.owner, exc)
                continue
            if kept:
                self.renewals += 1
            elif self._endpoint == endpoint:
                log.warning(
                    "webhook sender %s: lost its lease on endpoint %s (another sender may "
                    "send the same deliveries again)",
                    self.owner,
                    endpoint,
                )


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
) -> WorkerStats:
    """Run ``concurrency`` senders until ``stop`` is set, woken by LISTEN and a short poll.

    Each sender is one loop of the shell's worker runner; all share the runner's pool.
    """
    holdings = Holdings()
    runner = WorkerRunner(
        "webhooks",
        database_url,
        interval=poll_s,
        channel=CHANNEL,
        # each loop keeps a connection (opened at start); the lease keepers share the rest
        settings=settings.model_copy(update={"pool_min_size": concurrency + 1}),
        pool_max_size=concurrency + 1,
        wake=holdings.wake,
    )
    holdings.wake_one = runner.wakeup.bump
    senders = [
        WebhookSender(
            runner.pool,
            allow_private=settings.webhooks_allow_private,
            clock=clock,
            timeout_s=timeout_s,
            holdings=holdings,
        )
        for _ in range(concurrency)
    ]

    def job_of(sender: WebhookSender) -> Job:
        def send_due(_pool: Pool) -> Ran:
            """Due deliveries (the sender's own connections come from the pool)."""
            return sender.work()

        return send_due

    try:
        return runner.run([job_of(s) for s in senders], stop, on_ready=on_ready)
    finally:
        for s in senders:
            s.close()
