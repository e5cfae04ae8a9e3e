"""The SQL of the audit trail. Rows are written only by the database's trigger (migration 0031);
the application role may read them, within its tenant policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import class_row

from fleet.audit.schemas import AuditFilters, AuditRecord

_COLUMNS = {
    "customer_id": "customer_id = %s",
    "resource": "resource = %s",
    "resource_id": "resource_id = %s",
    "actor": "actor = %s",
    "action": "action = %s",
    "since": "at >= %s",
    "until": "at < %s",
}


def _where(
    scope: int | None, filters: AuditFilters, before: int | None
) -> tuple[sql.SQL, list[Any]]:
    parts = ["true"]
    params: list[Any] = []
    if scope is not None:
        parts.append("customer_id = %s")
        params.append(scope)
    for name, condition in _COLUMNS.items():
        value = getattr(filters, name)
        if value is not None:
            parts.append(condition)
            params.append(value)
    if before is not None:
        parts.append("id < %s")
        params.append(before)
    return sql.SQL(" AND ".join(parts)), params  # only the fixed conditions above


def page(
    conn: Connection[Any],
    *,
    scope: int | None,
    filters: AuditFilters,
    before: int | None,
    limit: int,
) -> tuple[list[AuditRecord], int | None]:
    """One page of the trail, newest first, confined to ``scope`` (None: every customer)."""
    where, params = _where(scope, filters, before)
    query = sql.SQL("SELECT * FROM audit_log WHERE {} ORDER BY id DESC LIMIT %s").format(where)
    with conn.cursor(row_factory=class_row(AuditRecord)) as cur:
        rows = cur.execute(query, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def stream(
    conn: Connection[Any], *, scope: int | None, filters: AuditFilters, limit: int
) -> Iterator[AuditRecord]:
    """Up to ``limit`` records of the trail, newest first, read with a server-side cursor."""
    where, params = _where(scope, filters, None)
    query = sql.SQL("SELECT * FROM audit_log WHERE {} ORDER BY id DESC LIMIT %s").format(where)
    with conn.cursor(name="audit_export", row_factory=class_row(AuditRecord)) as cur:
        cur.execute(query, [*params, limit])
        yield from cur


def purge_before(conn: Connection[Any], cutoff: datetime, max_rows: int) -> int:
    """Delete up to ``max_rows`` records older than ``cutoff``, oldest first, through the
    owner-only ``fleetcare_audit_purge`` (migration 0111), which records the purge itself;
    how many went."""
    row = conn.execute("SELECT fleetcare_audit_purge(%s, %s)", (cutoff, max_rows)).fetchone()
    return int(row[0]) if row else 0
