"""All SQL of webhook delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row, scalar_row

from fleetcare import repository as shared
from maintenance.webhooks.schemas import (
    DELIVERY_LIFECYCLE,
    Attempt,
    Delivery,
    DeliveryStatus,
    DueDelivery,
    EndpointRecord,
)

Conn = Connection[Any]

ENDPOINTS = "webhook_endpoints"

_DELIVERY_COLUMNS = """
    d.id, d.endpoint_id, d.event_id, ev.public_id AS event_public_id, ev.type AS event_type,
    d.customer_id, d.status, d.attempt_count, d.schedule_step, d.next_attempt_at,
    d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at
"""


# --- endpoints -----------------------------------------------------------------------------


def insert_endpoint(conn: Conn, values: dict[str, Any]) -> EndpointRecord:
    """Insert an endpoint."""
    return shared.insert_row(conn, ENDPOINTS, EndpointRecord, values)


def get_endpoint(
    conn: Conn, endpoint_id: int, *, scope: int | None, for_update: bool = False
) -> EndpointRecord | None:
    """An endpoint within ``scope`` (None: any), retired ones included."""
    return shared.fetch_one(
        conn, ENDPOINTS, EndpointRecord, endpoint_id, scope=scope, for_update=for_update
    )


def list_endpoints(
    conn: Conn,
    *,
    scope: int | None,
    customer_id: int | None,
    enabled: bool | None,
    include_retired: bool,
    after: int | None,
    limit: int,
) -> tuple[list[EndpointRecord], int | None]:
    """One page of endpoints."""
    return shared.fetch_page(
        conn,
        ENDPOINTS,
        EndpointRecord,
        scope=scope,
        filters={"customer_id": customer_id, "enabled": enabled},
        include_retired=include_retired,
        after=after,
        limit=limit,
    )


def update_endpoint(
    conn: Conn, endpoint_id: int, values: dict[str, Any], *, extra_sets: Sequence[str] = ()
) -> EndpointRecord:
    """Set columns of one endpoint (and its updated_at)."""
    row = shared.update_row(
        conn,
        ENDPOINTS,
        EndpointRecord,
        endpoint_id,
        values,
        extra_sets=[*extra_sets, "updated_at = now()"],
    )
    assert row is not None
    return row


def disable_endpoint(conn: Conn, endpoint_id: int, *, reason: str, at: datetime) -> None:
    """Disable an endpoint; its pending deliveries fail (``replay failed since`` recovers them)."""
    conn.execute(
        """
        UPDATE webhook_endpoints
           SET enabled = false, disabled_reason = %(r)s, disabled_at = %(at)s, updated_at = now()
         WHERE id = %(id)s
        """,
        {"id": endpoint_id, "r": reason, "at": at},
    )
    conn.execute(
        """
        UPDATE webhook_deliveries
           SET status = %(to)s, next_attempt_at = NULL,
               last_error = 'endpoint disabled: ' || %(r)s
         WHERE endpoint_id = %(id)s AND status = ANY(%(from)s)
        """,
        {
            "id": endpoint_id,
            "r": reason,
            "to": DeliveryStatus.FAILED,
            "from": DELIVERY_LIFECYCLE.sources(DeliveryStatus.FAILED),
        },
    )


# --- the sender's lease --------------------------------------------------------------------


def relax_durability(conn: Conn) -> None:
    """Let this transaction commit without waiting for the WAL flush.

    Only for the sender's own bookkeeping: losing its last commits in a database crash means
    a delivery is sent again, which at-least-once delivery allows (receivers dedupe on
    webhook-id). Business transactions never use it.
    """
    conn.execute("SET LOCAL synchronous_commit = off")


_DUE_SELECT = """
    SELECT d.id AS delivery_id, d.generation, d.attempt_count, d.schedule_step,
           ev.id AS event_id, ev.public_id AS event_public_id, ev.type AS event_type,
           ev.version AS event_version, ev.subject, ev.payload, ev.occurred_at
      FROM webhook_deliveries d
      JOIN events ev ON ev.id = d.event_id
"""
_DUE_WHERE = """
       AND d.status = 'pending'
       AND coalesce(d.next_attempt_at, '-infinity'::timestamptz) <= %(now)s
     ORDER BY d.event_id
"""
# An endpoint's due deliveries, first ``l``.
_DUE = _DUE_SELECT + " WHERE d.endpoint_id = %(e)s" + _DUE_WHERE + " LIMIT %(l)s"
# The due deliveries of the endpoint this sender has just leased (one at a time if failing).
_DUE_OF_LEASE = f"""
    WITH leased AS (
        SELECT id, failing_since FROM webhook_endpoints
         WHERE locked_by = %(owner)s AND locked_until = %(until)s
         ORDER BY id LIMIT 1
    )
    {_DUE_SELECT}
     WHERE d.endpoint_id = (SELECT id FROM leased) {_DUE_WHERE}
     LIMIT (SELECT CASE WHEN failing_since IS NULL THEN %(l)s ELSE 1 END FROM leased)
"""


def claim_endpoint(
    conn: Conn, *, now: datetime, lease_until: datetime, owner: str, limit: int
) -> tuple[EndpointRecord | None, list[DueDelivery]]:
    """Lease one live endpoint that has due deliveries and no live lease (skipping locked
    rows), and read its first ``limit`` due deliveries in event order (one while it is
    failing); both statements leave
    together in a pipeline (the second finds the endpoint by the lease the first wrote)."""
    with (
        conn.cursor(row_factory=class_row(EndpointRecord)) as claimed,
        conn.cursor(row_factory=class_row(DueDelivery)) as due,
    ):
        claimed.execute(
            """
            WITH candidate AS (
                SELECT e.id
                  FROM webhook_endpoints e
                 WHERE e.enabled AND e.retired_at IS NULL
                   AND (e.locked_until IS NULL OR e.locked_until <= %(now)s)
                   AND (e.paused_until IS NULL OR e.paused_until <= %(now)s)
                   AND EXISTS (
                       SELECT 1 FROM webhook_deliveries d
                        WHERE d.endpoint_id = e.id AND d.status = 'pending'
                          AND coalesce(d.next_attempt_at, '-infinity'::timestamptz) <= %(now)s)
                 ORDER BY e.last_claimed_at NULLS FIRST, e.id
                 LIMIT 1
                   FOR NO KEY UPDATE OF e SKIP LOCKED
            )
            UPDATE webhook_endpoints e
               SET locked_until = %(until)s, locked_by = %(owner)s, last_claimed_at = %(now)s
              FROM candidate
             WHERE e.id = candidate.id
            RETURNING e.*
            """,
            {"now": now, "until": lease_until, "owner": owner},
        )
        due.execute(_DUE_OF_LEASE, {"owner": owner, "until": lease_until, "now": now, "l": limit})
        return claimed.fetchone(), due.fetchall()


def renew_lease(conn: Conn, endpoint_id: int, *, owner: str, lease_until: datetime) -> bool:
    """Extend a lease that is still ours; False when it is not (expired and taken over)."""
    cur = conn.execute(
        "UPDATE webhook_endpoints SET locked_until = %s WHERE id = %s AND locked_by = %s",
        (lease_until, endpoint_id, owner),
    )
    return cur.rowcount == 1


def keep_endpoint(
    conn: Conn, endpoint_id: int, *, owner: str, now: datetime, lease_until: datetime, limit: int
) -> tuple[EndpointRecord | None, list[DueDelivery]]:
    """Extend a lease that is still ours on an endpoint that may still be sent to (enabled, not
    retired, not paused): its current row (secrets, URL) or None, and its next due deliveries
    (meaningful only with the row). Both statements leave together in a pipeline."""
    with (
        conn.cursor(row_factory=class_row(EndpointRecord)) as kept,
        conn.cursor(row_factory=class_row(DueDelivery)) as due,
    ):
        kept.execute(
            """
            UPDATE webhook_endpoints SET locked_until = %(until)s
             WHERE id = %(id)s AND locked_by = %(owner)s AND enabled AND retired_at IS NULL
               AND (paused_until IS NULL OR paused_until <= %(now)s)
            RETURNING *
            """,
            {"id": endpoint_id, "owner": owner, "now": now, "until": lease_until},
        )
        due.execute(_DUE, {"e": endpoint_id, "now": now, "l": limit})
        return kept.fetchone(), due.fetchall()


def release_endpoint(conn: Conn, endpoint_id: int, *, owner: str) -> None:
    """End a lease, if it is still ours."""
    conn.execute(
        """
        UPDATE webhook_endpoints SET locked_until = NULL, locked_by = NULL
         WHERE id = %s AND locked_by = %s
        """,
        (endpoint_id, owner),
    )


def due_deliveries(conn: Conn, endpoint_id: int, *, now: datetime, limit: int) -> list[DueDelivery]:
    """The endpoint's due deliveries in event order (first attempts are always due)."""
    with conn.cursor(row_factory=class_row(DueDelivery)) as cur:
        return cur.execute(_DUE, {"e": endpoint_id, "now": now, "l": limit}).fetchall()


# --- recording attempts --------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRow:
    """What one attempt wrote down, and what it did to its delivery."""

    delivery_id: int
    generation: int
    endpoint_id: int
    event_id: int
    customer_id: int | None
    attempt_number: int
    attempted_at: datetime
    webhook_timestamp: int
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None
    sender: str
    # the delivery afterwards
    new_status: str
    next_attempt_at: datetime | None
    schedule_step: int


def record_attempts(conn: Conn, rows: Sequence[AttemptRow]) -> None:
    """Log attempts and move their deliveries on (unless a replay started a newer run).

    Two statements for the whole batch (arrays unnested server-side), not two per attempt.
    A delivery appears at most once in a batch (a job sends each due delivery once).
    """
    if not rows:
        return
    cols = {name: [getattr(r, name) for r in rows] for name in AttemptRow.__dataclass_fields__}
    conn.execute(
        """
        INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, customer_id,
               attempt_number, attempted_at, webhook_timestamp, outcome, status_code,
               latency_ms, error, response_excerpt, sender)
        SELECT * FROM unnest(%(delivery_id)s::bigint[], %(endpoint_id)s::bigint[],
               %(event_id)s::bigint[], %(customer_id)s::bigint[], %(attempt_number)s::int[],
               %(attempted_at)s::timestamptz[], %(webhook_timestamp)s::bigint[],
               %(outcome)s::text[], %(status_code)s::int[], %(latency_ms)s::float8[],
               %(error)s::text[], %(response_excerpt)s::text[], %(sender)s::text[])
        """,
        cols,
    )
    conn.execute(
        """
        UPDATE webhook_deliveries d
           SET attempt_count = d.attempt_count + 1,
               last_attempt_at = a.attempted_at,
               last_status_code = a.status_code,
               last_error = a.error,
               status = CASE WHEN d.generation = a.generation THEN a.new_status
                             ELSE d.status END,
               next_attempt_at = CASE WHEN d.generation = a.generation THEN a.next_attempt_at
                                      ELSE d.next_attempt_at END,
               schedule_step = CASE WHEN d.generation = a.generation THEN a.schedule_step
                                    ELSE d.schedule_step END,
               delivered_at = CASE WHEN a.new_status = 'delivered'
                                   THEN a.attempted_at ELSE d.delivered_at END
          FROM unnest(%(delivery_id)s::bigint[], %(generation)s::int[],
                      %(attempted_at)s::timestamptz[], %(status_code)s::int[],
                      %(error)s::text[], %(new_status)s::text[],
                      %(next_attempt_at)s::timestamptz[], %(schedule_step)s::int[])
               AS a(delivery_id, generation, attempted_at, status_code, error, new_status,
                    next_attempt_at, schedule_step)
         WHERE d.id = a.delivery_id
        """,
        cols,
    )


def set_endpoint_health(
    conn: Conn,
    endpoint_id: int,
    *,
    failing_since: datetime | None,
    paused_until: datetime | None,
) -> None:
    """Record whether the endpoint is failing, and any Retry-After pause."""
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = %s, paused_until = %s WHERE id = %s",
        (failing_since, paused_until, endpoint_id),
    )


# --- log and replay ------------------------------------------------------------------------


def list_deliveries(
    conn: Conn,
    *,
    scope: int | None,
    endpoint_id: int | None = None,
    event_id: int | None = None,
    status: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Deliveries by endpoint and/or event, newest last (keyset by id)."""
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(
            f"""
            SELECT {_DELIVERY_COLUMNS}
              FROM webhook_deliveries d
              JOIN events ev ON ev.id = d.event_id
             WHERE (%(scope)s::bigint IS NULL OR d.customer_id = %(scope)s)
               AND (%(endpoint)s::bigint IS NULL OR d.endpoint_id = %(endpoint)s)
               AND (%(event)s::bigint IS NULL OR d.event_id = %(event)s)
               AND (%(status)s::text IS NULL OR d.status = %(status)s)
               AND d.id > coalesce(%(after)s::bigint, 0)
             ORDER BY d.id
             LIMIT %(limit)s
            """,
            {
                "scope": scope,
                "endpoint": endpoint_id,
                "event": event_id,
                "status": status,
                "after": after,
                "limit": limit,
            },
        ).fetchall()


def get_delivery(conn: Conn, delivery_id: int, *, scope: int | None) -> Delivery | None:
    """One delivery within ``scope``."""
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(
            f"""
            SELECT {_DELIVERY_COLUMNS}
              FROM webhook_deliveries d
              JOIN events ev ON ev.id = d.event_id
             WHERE d.id = %(id)s AND (%(scope)s::bigint IS NULL OR d.customer_id = %(scope)s)
            """,
            {"id": delivery_id, "scope": scope},
        ).fetchone()


def attempts_of(conn: Conn, delivery_ids: Sequence[int]) -> list[Attempt]:
    """Every attempt of these deliveries, in order."""
    with conn.cursor(row_factory=class_row(Attempt)) as cur:
        return cur.execute(
            """
            SELECT id, delivery_id, endpoint_id, event_id, attempt_number, attempted_at,
                   webhook_timestamp, outcome, status_code, latency_ms, error, response_excerpt
              FROM webhook_attempts
             WHERE delivery_id = ANY(%s)
             ORDER BY delivery_id, id
            """,
            (list(delivery_ids),),
        ).fetchall()


def find_event_id(conn: Conn, public_id: str, *, scope: int | None) -> int | None:
    """The internal id of an event, by its public id (webhook-id), within ``scope``."""
    with conn.cursor(row_factory=scalar_row) as cur:
        found: int | None = cur.execute(
            """
            SELECT id FROM events
             WHERE public_id = %(p)s
               AND (%(scope)s::bigint IS NULL OR customer_id = %(scope)s)
            """,
            {"p": public_id, "scope": scope},
        ).fetchone()
        return found


def matching_endpoint_ids(conn: Conn, event_id: int) -> list[int]:
    """Live endpoints of the event's customer that already had it, or whose filter matches
    its type (test pings only ever go to the endpoint they were sent to)."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            SELECT e.id
              FROM events ev
              JOIN webhook_endpoints e ON e.customer_id IS NOT DISTINCT FROM ev.customer_id
             WHERE ev.id = %(event)s AND e.enabled AND e.retired_at IS NULL
               AND (EXISTS (SELECT 1 FROM webhook_deliveries d
                             WHERE d.event_id = ev.id AND d.endpoint_id = e.id)
                    OR (ev.type <> 'webhook.ping'
                        AND (cardinality(e.event_types) = 0
                             OR ev.type = ANY (e.event_types)
                             OR split_part(ev.type, '.', 1) || '.*' = ANY (e.event_types))))
             ORDER BY e.id
            """,
            {"event": event_id},
        ).fetchall()


def requeue_event(conn: Conn, event_id: int, endpoint_ids: Sequence[int]) -> list[int]:
    """Create or reset the event's deliveries to these endpoints; they are due at once."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            INSERT INTO webhook_deliveries (endpoint_id, event_id, customer_id)
            SELECT e.id, ev.id, ev.customer_id
              FROM webhook_endpoints e JOIN events ev ON ev.id = %(event)s
             WHERE e.id = ANY(%(ids)s) AND e.customer_id IS NOT DISTINCT FROM ev.customer_id
             ORDER BY e.id
            ON CONFLICT (endpoint_id, event_id) DO UPDATE
               SET status = 'pending', next_attempt_at = NULL, schedule_step = 0,
                   generation = webhook_deliveries.generation + 1
            RETURNING id
            """,
            {"event": event_id, "ids": list(endpoint_ids)},
        ).fetchall()


def requeue_failed(conn: Conn, endpoint_id: int, *, since: datetime) -> list[int]:
    """Reset the endpoint's failed deliveries created since ``since``; they are due at once."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            UPDATE webhook_deliveries
               SET status = 'pending', next_attempt_at = NULL, schedule_step = 0,
                   generation = generation + 1
             WHERE endpoint_id = %s AND status = 'failed' AND created_at >= %s
            RETURNING id
            """,
            (endpoint_id, since),
        ).fetchall()


def insert_delivery(conn: Conn, *, endpoint_id: int, event_id: int, customer_id: int | None) -> int:
    """Address one event to one endpoint (test pings)."""
    with conn.cursor(row_factory=scalar_row) as cur:
        new_id: int | None = cur.execute(
            """
            INSERT INTO webhook_deliveries (endpoint_id, event_id, customer_id)
            VALUES (%s, %s, %s) RETURNING id
            """,
            (endpoint_id, event_id, customer_id),
        ).fetchone()
    assert new_id is not None
    return new_id
