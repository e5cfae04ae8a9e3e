"""Emitting events: always inside the business transaction (the outbox pattern)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection

from maintenance.events import repository as repo
from maintenance.events.schemas import Event

Conn = Connection[Any]


def emit(
    conn: Conn,
    type: str,
    payload: dict[str, Any],
    *,
    customer_id: int | None,
    subject: str = "",
    version: int = 1,
    occurred_at: datetime | None = None,
) -> Event:
    """Record an event in the current transaction; it is delivered only if that commits.

    ``type`` is ``noun.verb`` (``order.created``); ``subject`` names the object
    (``order:42``); ``payload`` is the versioned JSON body documented in docs/events.md.
    """
    if conn.autocommit:
        raise RuntimeError("emit() must run inside the business transaction")
    return repo.insert_event(
        conn,
        customer_id=customer_id,
        type=type,
        payload=payload,
        subject=subject,
        version=version,
        occurred_at=occurred_at,
    )
