"""Whose rows a transaction may touch, and who is acting: the settings the database's row-level
security policies and audit trigger read (migrations 0030 and 0031).

Every fleetcare process connects with its usual URL and acts as ``fleetcare_app`` (``SET
ROLE``), a role without SUPERUSER or BYPASSRLS, so that PostgreSQL's policies apply even to a
query that forgets its ``WHERE customer_id``. Then either

- a request sets a :class:`TenantContext` for its transaction (:func:`apply_context`, local to
  the transaction): the customer (or partner) it is confined to, the actor, where it came from;
- or a worker that acts for every customer says so for its whole session
  (:func:`system_session`): the operator flag and ``system:<worker>`` as the actor.

Nothing set: no tenant row is visible (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.pq import TransactionStatus

APP_ROLE = "fleetcare_app"
SYSTEM_SOURCE = "worker"


@dataclass(frozen=True)
class TenantContext:
    """One transaction's caller, as the policies and the audit trail see it."""

    actor: str
    channel: str
    source: str
    operator: bool = False
    customer_id: int | None = None
    partner_id: int | None = None
    actor_role: str | None = None
    request: str | None = None

    def settings(self) -> dict[str, str]:
        """The ``fleetcare.*`` settings of this context (empty string: unset)."""
        return {
            "fleetcare.operator": "on" if self.operator else "off",
            "fleetcare.customer_id": "" if self.customer_id is None else str(self.customer_id),
            "fleetcare.partner_id": "" if self.partner_id is None else str(self.partner_id),
            "fleetcare.actor": self.actor,
            "fleetcare.actor_role": self.actor_role or "",
            "fleetcare.source": self.source,
            "fleetcare.channel": self.channel,
            "fleetcare.request": self.request or "",
        }


def system_context(
    actor: str, channel: str = "worker", source: str = SYSTEM_SOURCE
) -> TenantContext:
    """The context of fleetcare itself acting for every customer (a worker, the CLI)."""
    return TenantContext(
        actor=actor, channel=channel, source=source, operator=True, actor_role="operator"
    )


def _set(conn: Connection[Any], values: dict[str, str], *, local: bool) -> None:
    names = list(values)
    calls = ", ".join(f"set_config(%s, %s, {'true' if local else 'false'})" for _ in names)
    params: list[str] = []
    for name in names:
        params += [name, values[name]]
    conn.execute(f"SELECT {calls}", params)


def apply_context(conn: Connection[Any], context: TenantContext) -> None:
    """Set ``context`` for the rest of the current transaction (it ends with it)."""
    _set(conn, context.settings(), local=True)


def use_app_role(conn: Connection[Any]) -> None:
    """Act as the application role for the rest of the session (its policies apply)."""
    conn.execute(f"SET ROLE {APP_ROLE}")


def session_context(conn: Connection[Any], context: TenantContext) -> None:
    """Make ``conn`` act as the application role in ``context`` for its whole session (a
    connection of its own that commits many times); commits when it is in a transaction."""
    use_app_role(conn)
    _set(conn, context.settings(), local=False)
    if not conn.autocommit:
        conn.commit()


def system_session(conn: Connection[Any], actor: str) -> None:
    """Make ``conn`` act as the application role for every customer, as ``actor``, for its
    whole session (a worker's connection)."""
    session_context(conn, system_context(actor))


@contextmanager
def operator_lookup(conn: Connection[Any]) -> Iterator[None]:
    """See every customer's rows for a lookup that decides who the caller is (authenticating
    a key or a session), then what was seen before (nothing, on a request's connection) until
    the caller's context is set. Nests."""
    row = conn.execute(
        "SELECT current_setting('fleetcare.operator', true), set_config('fleetcare.operator',"
        " 'on', true)"
    ).fetchone()
    before = (row[0] if row else None) or "off"
    try:
        yield
    finally:
        if conn.info.transaction_status != TransactionStatus.INERROR:
            _set(conn, {"fleetcare.operator": before}, local=True)
