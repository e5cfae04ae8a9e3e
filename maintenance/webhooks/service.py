"""Logic of webhooks: endpoints and their secrets, the retry schedule, recording attempts,
replay and test pings. No SQL text, no HTTP."""

from __future__ import annotations

import base64
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.errors import Conflict, Forbidden, Invalid, NotFound
from maintenance.events import service as events
from maintenance.webhooks import repository as repo
from maintenance.webhooks.addresses import (
    Resolver,
    UnsafeAddress,
    parse_endpoint_url,
    resolve_checked,
    system_resolver,
)
from maintenance.webhooks.repository import AttemptRow
from maintenance.webhooks.schemas import (
    DELIVERY_LIFECYCLE,
    Delivery,
    DeliveryLog,
    DeliveryStatus,
    DueDelivery,
    Endpoint,
    EndpointCreate,
    EndpointRecord,
    EndpointUpdate,
    NewEndpoint,
    PingResult,
    ReplayEvent,
    ReplayFailed,
    ReplayResult,
    RotatedSecret,
    SecretRotation,
)
from maintenance.webhooks.transport import SendResult

Conn = Connection[Any]
log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Retries after the first attempt: about three days in all.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
JITTER = 0.1  # each delay is stretched or shrunk by up to 10 %
DISABLE_AFTER = timedelta(days=5)


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks format: ``whsec_`` + base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def retry_delay(step: int, rng: random.Random) -> timedelta | None:
    """The wait before retry number ``step + 1``, with jitter; None when retries are exhausted."""
    if step >= len(RETRY_SCHEDULE):
        return None
    return RETRY_SCHEDULE[step] * rng.uniform(1 - JITTER, 1 + JITTER)


# --- endpoints -----------------------------------------------------------------------------


def _check_url(url: str, *, allow_private: bool, resolver: Resolver) -> None:
    try:
        resolve_checked(parse_endpoint_url(url), allow_private=allow_private, resolver=resolver)
    except UnsafeAddress as exc:
        raise Invalid(f"url refused: {exc}") from exc


def _endpoint(
    conn: Conn, principal: Principal, endpoint_id: int, *, for_update: bool = False
) -> EndpointRecord:
    row = repo.get_endpoint(conn, endpoint_id, scope=principal.scope, for_update=for_update)
    if row is None:
        raise NotFound(
            f"webhook endpoint {endpoint_id} not found", code="webhook_endpoint_not_found"
        )
    return row


def create_endpoint(
    conn: Conn,
    principal: Principal,
    body: EndpointCreate,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
) -> NewEndpoint:
    """Register an endpoint; the answer is the only time its secret is shown."""
    principal.require("webhooks:write")
    owner: int | None
    if body.operator_events:
        if principal.scope is not None or principal.organisation != "operator":
            raise Forbidden(
                "only the operator has an endpoint for the events with no customer",
                code="operator_endpoint",
            )
        if body.customer_id is not None:
            raise Invalid("customer_id: an operator endpoint belongs to no customer")
        owner = None
    else:
        owner = fleet.owner_for(principal, body.customer_id)
        customer = fleet.get_customer(conn, principal, owner)
        if customer.retired_at is not None:
            raise Invalid(f"customer {owner} is retired")
    _check_url(body.url, allow_private=allow_private, resolver=resolver)
    secret = new_secret()
    record = repo.insert_endpoint(
        conn,
        {
            "customer_id": owner,
            "url": body.url,
            "description": body.description,
            "event_types": body.event_types,
            "enabled": body.enabled,
            "disabled_reason": None if body.enabled else "created disabled",
            "secret": secret,
        },
    )
    return NewEndpoint(**record.public().model_dump(), secret=secret)


def get_endpoint(conn: Conn, principal: Principal, endpoint_id: int) -> Endpoint:
    """An endpoint the caller may see."""
    return _endpoint(conn, principal, endpoint_id).public()


def list_endpoints(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    enabled: bool | None,
    include_retired: bool,
    after: int | None,
    limit: int,
) -> tuple[list[Endpoint], int | None]:
    """Endpoints the caller may see; the operator can filter disabled ones to follow up."""
    rows, nxt = repo.list_endpoints(
        conn,
        scope=principal.scope,
        customer_id=customer_id,
        enabled=enabled,
        include_retired=include_retired,
        after=after,
        limit=limit,
    )
    return [r.public() for r in rows], nxt


def update_endpoint(
    conn: Conn,
    principal: Principal,
    endpoint_id: int,
    body: EndpointUpdate,
    *,
    allow_private: bool,
    now: datetime,
    resolver: Resolver = system_resolver,
) -> Endpoint:
    """Change an endpoint; enabling clears its failure state, disabling fails what is pending."""
    principal.require("webhooks:write")
    current = _endpoint(conn, principal, endpoint_id, for_update=True)
    if current.retired_at is not None:
        raise Conflict(f"webhook endpoint {endpoint_id} is deleted")
    changes = body.model_dump(exclude_unset=True, exclude={"enabled"})
    changes = {k: v for k, v in changes.items() if v is not None}
    if "url" in changes:
        _check_url(changes["url"], allow_private=allow_private, resolver=resolver)
    extra: list[str] = []
    if body.enabled is True and not current.enabled:
        changes.update(enabled=True, disabled_reason=None, disabled_at=None)
        extra += ["failing_since = NULL", "paused_until = NULL"]
    if changes or extra:
        repo.update_endpoint(conn, endpoint_id, changes, extra_sets=extra)
    if body.enabled is False and current.enabled:
        repo.disable_endpoint(conn, endpoint_id, reason="disabled through the API", at=now)
    return _endpoint(conn, principal, endpoint_id).public()


def delete_endpoint(
    conn: Conn, principal: Principal, endpoint_id: int, *, now: datetime
) -> Endpoint:
    """Delete (retire) an endpoint: it receives nothing more; its log is kept."""
    principal.require("webhooks:write")
    current = _endpoint(conn, principal, endpoint_id, for_update=True)
    if current.retired_at is None:
        if current.enabled:
            repo.disable_endpoint(conn, endpoint_id, reason="deleted", at=now)
        repo.update_endpoint(conn, endpoint_id, {}, extra_sets=["retired_at = now()"])
    return _endpoint(conn, principal, endpoint_id).public()


def rotate_secret(
    conn: Conn, principal: Principal, endpoint_id: int, body: SecretRotation, *, now: datetime
) -> RotatedSecret:
    """Give the endpoint a new secret; the old one keeps signing too for ``overlap_hours``."""
    principal.require("webhooks:write")
    current = _endpoint(conn, principal, endpoint_id, for_update=True)
    if current.retired_at is not None:
        raise Conflict(f"webhook endpoint {endpoint_id} is deleted")
    secret = new_secret()
    overlap = timedelta(hours=body.overlap_hours)
    expires = now + overlap if overlap > timedelta(0) else None
    record = repo.update_endpoint(
        conn,
        endpoint_id,
        {
            "secret": secret,
            "previous_secret": current.secret.get_secret_value() if expires else None,
            "previous_secret_expires_at": expires,
        },
    )
    return RotatedSecret(
        endpoint=record.public(), secret=secret, previous_secret_expires_at=expires
    )


def signing_secrets(endpoint: EndpointRecord, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    active = [endpoint.secret.get_secret_value()]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret is not None and expires is not None and now < expires:
        active.append(endpoint.previous_secret.get_secret_value())
    return active


# --- the sender's jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """An endpoint leased by one sender, and its due deliveries in event order."""

    endpoint: EndpointRecord
    deliveries: list[DueDelivery]


def claim_job(
    conn: Conn, *, now: datetime, owner: str, lease: timedelta, batch_size: int
) -> Job | None:
    """Lease the next endpoint with due deliveries (one at a time while it is failing)."""
    with conn.pipeline():
        repo.relax_durability(conn)
        return _claim(conn, now=now, owner=owner, lease=lease, batch_size=batch_size)


def _claim(
    conn: Conn, *, now: datetime, owner: str, lease: timedelta, batch_size: int
) -> Job | None:
    endpoint, due = repo.claim_endpoint(
        conn, now=now, lease_until=now + lease, owner=owner, limit=batch_size
    )
    if endpoint is None:
        return None
    if not due:
        repo.release_endpoint(conn, endpoint.id, owner=owner)
        return None
    return Job(endpoint, due)


def renew_lease(
    conn: Conn, endpoint_id: int, *, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Keep a live sender's lease on its endpoint; False when it was lost meanwhile."""
    repo.relax_durability(conn)
    return repo.renew_lease(conn, endpoint_id, owner=owner, lease_until=now + lease)


@dataclass(frozen=True)
class SentAttempt:
    """One attempt the sender made: the delivery, when, the timestamp it signed, the result."""

    delivery: DueDelivery
    attempted_at: datetime
    webhook_timestamp: int
    result: SendResult


def next_job(
    conn: Conn,
    job: Job,
    attempts: list[SentAttempt],
    *,
    owner: str,
    rng: random.Random,
    now: datetime,
    lease: timedelta,
    batch_size: int,
    keep: bool,
    claim: bool,
) -> Job | None:
    """Record a sent batch and, in the same transaction, find the sender's next one.

    With ``keep`` (the caller's: every attempt was delivered and it has time left), the same
    endpoint's next due deliveries under a renewed lease: a live stream to one endpoint costs
    one transaction per batch and no claim. Otherwise, or when it has none due, the endpoint's
    lease ends and, with ``claim``, the next endpoint with due deliveries is claimed. None: the
    lease ended and nothing was claimed.
    """
    # One pipeline: the record's statements, the renewed lease and the next batch travel
    # together (one round trip while the endpoint keeps having deliveries due).
    with conn.pipeline():
        record_job(conn, job, attempts, owner=owner, rng=rng, release=False)
        if keep:
            endpoint, due = repo.keep_endpoint(
                conn,
                job.endpoint.id,
                owner=owner,
                now=now,
                lease_until=now + lease,
                limit=batch_size,
            )
            if endpoint is not None and due:
                return Job(endpoint, due)
        repo.release_endpoint(conn, job.endpoint.id, owner=owner)
        if not claim:
            return None
        return _claim(conn, now=now, owner=owner, lease=lease, batch_size=batch_size)


def record_job(
    conn: Conn,
    job: Job,
    attempts: list[SentAttempt],
    *,
    owner: str,
    rng: random.Random,
    release: bool = True,
) -> str | None:
    """Log the attempts, schedule retries, update the endpoint's health and (with
    ``release``) end the lease.

    Returns the reason the endpoint was disabled, if it was.
    """
    endpoint = job.endpoint
    failing_since = endpoint.failing_since
    paused_until: datetime | None = None
    disabled: str | None = None
    rows: list[AttemptRow] = []
    for sent in attempts:
        d, at, res = sent.delivery, sent.attempted_at, sent.result
        status, next_at, step = DeliveryStatus.PENDING, None, d.schedule_step
        if res.outcome == "delivered":
            status, failing_since = DeliveryStatus.DELIVERED, None
        else:
            failing_since = failing_since or at
            if res.outcome == "gone":
                status = DeliveryStatus.FAILED
                disabled = "the receiver answered 410 Gone"
            else:
                delay = retry_delay(d.schedule_step, rng)
                if delay is None:
                    status = DeliveryStatus.FAILED
                else:
                    if res.retry_after_s is not None:
                        wait = timedelta(seconds=res.retry_after_s)
                        delay = max(delay, wait)
                        paused_until = at + wait
                    next_at, step = at + delay, d.schedule_step + 1
            if disabled is None and at - failing_since >= DISABLE_AFTER:
                disabled = f"failing since {failing_since.isoformat()} (five days)"
        # a due delivery is pending (the claim takes no other)
        DELIVERY_LIFECYCLE.check(d.delivery_id, DeliveryStatus.PENDING, status)
        rows.append(
            AttemptRow(
                delivery_id=d.delivery_id,
                generation=d.generation,
                endpoint_id=endpoint.id,
                event_id=d.event_id,
                customer_id=endpoint.customer_id,
                attempt_number=d.attempt_count + 1,
                attempted_at=at,
                webhook_timestamp=sent.webhook_timestamp,
                outcome=res.outcome,
                status_code=res.status_code,
                latency_ms=res.latency_ms,
                error=res.error,
                response_excerpt=res.response_excerpt,
                sender=owner,
                new_status=status,
                next_attempt_at=next_at,
                schedule_step=step,
            )
        )
    repo.relax_durability(conn)
    repo.record_attempts(conn, rows)
    if (failing_since, paused_until) != (endpoint.failing_since, endpoint.paused_until):
        repo.set_endpoint_health(
            conn, endpoint.id, failing_since=failing_since, paused_until=paused_until
        )
    if disabled is not None:
        at = attempts[-1].attempted_at
        repo.disable_endpoint(conn, endpoint.id, reason=disabled, at=at)
        events.emit(
            conn,
            "webhook.endpoint_disabled",
            {"endpoint_id": endpoint.id, "reason": disabled, "failing_since": _iso(failing_since)},
            customer_id=endpoint.customer_id,
            subject=f"webhook_endpoint:{endpoint.id}",
            occurred_at=at,
        )
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, disabled)
    if release:
        repo.release_endpoint(conn, endpoint.id, owner=owner)
    return disabled


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


# --- log, replay, ping ---------------------------------------------------------------------


def _event_id(conn: Conn, principal: Principal, public_id: str) -> int:
    found = repo.find_event_id(conn, public_id, scope=principal.scope)
    if found is None:
        raise NotFound(f"event {public_id} not found", code="event_not_found")
    return found


def _with_attempts(conn: Conn, deliveries: list[Delivery]) -> list[DeliveryLog]:
    attempts = repo.attempts_of(conn, [d.id for d in deliveries])
    by_delivery: dict[int, list[Any]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [DeliveryLog(**d.model_dump(), attempts=by_delivery.get(d.id, [])) for d in deliveries]


def endpoint_deliveries(
    conn: Conn,
    principal: Principal,
    endpoint_id: int,
    *,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Delivery], int | None]:
    """One page of an endpoint's deliveries."""
    _endpoint(conn, principal, endpoint_id)
    rows = repo.list_deliveries(
        conn,
        scope=principal.scope,
        endpoint_id=endpoint_id,
        status=status,
        after=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def event_deliveries(conn: Conn, principal: Principal, public_id: str) -> list[DeliveryLog]:
    """Every delivery of one event, with all their attempts."""
    event_id = _event_id(conn, principal, public_id)
    rows = repo.list_deliveries(conn, scope=principal.scope, event_id=event_id, limit=500)
    return _with_attempts(conn, rows)


def delivery_log(conn: Conn, principal: Principal, delivery_id: int) -> DeliveryLog:
    """One delivery with all its attempts."""
    row = repo.get_delivery(conn, delivery_id, scope=principal.scope)
    if row is None:
        raise NotFound(f"delivery {delivery_id} not found", code="delivery_not_found")
    return _with_attempts(conn, [row])[0]


def _live(endpoint: EndpointRecord) -> None:
    if endpoint.retired_at is not None or not endpoint.enabled:
        raise Conflict(f"webhook endpoint {endpoint.id} is disabled or deleted; enable it first")


def replay_event(
    conn: Conn, principal: Principal, public_id: str, body: ReplayEvent
) -> ReplayResult:
    """Send an event again (same webhook-id) to one endpoint, or to every matching one."""
    principal.require("webhooks:write")
    event_id = _event_id(conn, principal, public_id)
    if body.endpoint_id is not None:
        endpoint = _endpoint(conn, principal, body.endpoint_id)
        _live(endpoint)
        targets = [endpoint.id]
    else:
        targets = repo.matching_endpoint_ids(conn, event_id)
    ids = repo.requeue_event(conn, event_id, targets) if targets else []
    if body.endpoint_id is not None and not ids:
        raise NotFound(
            f"event {public_id} not found", code="event_not_found"
        )  # the endpoint is another customer's
    return ReplayResult(requeued=len(ids), delivery_ids=ids)


def replay_failed(
    conn: Conn, principal: Principal, endpoint_id: int, body: ReplayFailed
) -> ReplayResult:
    """Send again every failed delivery of an endpoint created since ``body.since``."""
    principal.require("webhooks:write")
    endpoint = _endpoint(conn, principal, endpoint_id, for_update=True)
    _live(endpoint)
    ids = repo.requeue_failed(conn, endpoint_id, since=body.since)
    return ReplayResult(requeued=len(ids), delivery_ids=ids)


def send_test_ping(conn: Conn, principal: Principal, endpoint_id: int) -> PingResult:
    """Queue a ``webhook.ping`` event for this endpoint only."""
    principal.require("webhooks:write")
    endpoint = _endpoint(conn, principal, endpoint_id)
    _live(endpoint)
    event = events.emit(
        conn,
        "webhook.ping",
        {"endpoint_id": endpoint.id, "message": "test ping from fleetcare"},
        customer_id=endpoint.customer_id,
        subject=f"webhook_endpoint:{endpoint.id}",
    )
    delivery_id = repo.insert_delivery(
        conn, endpoint_id=endpoint.id, event_id=event.id, customer_id=endpoint.customer_id
    )
    return PingResult(event_public_id=event.public_id, delivery_id=delivery_id)
