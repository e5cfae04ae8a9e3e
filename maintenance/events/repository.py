"""All SQL of the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from maintenance.events.schemas import Event

Conn = Connection[Any]


def insert_event(
    conn: Conn,
    *,
    customer_id: int | None,
    type: str,
    payload: dict[str, Any],
    subject: str,
    version: int,
    occurred_at: datetime | None,
) -> Event:
    """Write one event in the caller's transaction."""
    with conn.cursor(row_factory=class_row(Event)) as cur:
        row = cur.execute(
            """
            INSERT INTO events (customer_id, type, version, subject, payload, occurred_at)
            VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()))
            RETURNING *
            """,
            (customer_id, type, version, subject, Jsonb(payload), occurred_at),
        ).fetchone()
    assert row is not None
    return row


def list_events(
    conn: Conn,
    *,
    customer_id: int | None,
    type: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[Event]:
    """Events in id order, confined to a customer when one is given."""
    with conn.cursor(row_factory=class_row(Event)) as cur:
        return cur.execute(
            """
            SELECT * FROM events
             WHERE (%(c)s::bigint IS NULL OR customer_id = %(c)s)
               AND (%(t)s::text IS NULL OR type = %(t)s)
               AND id > coalesce(%(a)s::bigint, 0)
             ORDER BY id LIMIT %(l)s
            """,
            {"c": customer_id, "t": type, "a": after, "l": limit},
        ).fetchall()
