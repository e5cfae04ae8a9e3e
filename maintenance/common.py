"""Shared helpers of the maintenance domains: caller checks and scoping rules.

Services never open or commit transactions of their own: they write, emit their events into
the caller's transaction (outbox), and raise typed errors; the owner (request, worker job)
commits or rolls back everything together.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from fleet.schemas import Principal

Conn = Connection[Any]


def customer_scope(principal: Principal) -> int | None:
    """The customer the caller is confined to (None: the operator sees all)."""
    return principal.scope


def subject(kind: str, object_id: int) -> str:
    """The event subject naming an object, e.g. ``order:42``."""
    return f"{kind}:{object_id}"
