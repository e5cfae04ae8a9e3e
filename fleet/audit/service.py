"""Reading the audit trail: a customer's admin reads their organisation's, the operator all."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet.audit import repository as repo
from fleet.audit.schemas import AuditFilters, AuditPage, AuditRecord
from fleet.schemas import Principal
from fleetcare.errors import Invalid

EXPORT_LIMIT = 50_000
CSV_COLUMNS = (
    "id",
    "at",
    "customer_id",
    "actor",
    "actor_role",
    "source",
    "channel",
    "request",
    "resource",
    "resource_id",
    "action",
    "before",
    "after",
)


def _scope(principal: Principal, filters: AuditFilters) -> tuple[int | None, AuditFilters]:
    # a customer reads its own trail whatever customer_id it asks for; the operator may filter
    scope = principal.scope
    if scope is not None:
        filters = filters.model_copy(update={"customer_id": None})
    return scope, filters


def trail_page(
    conn: Connection[Any],
    principal: Principal,
    filters: AuditFilters,
    *,
    before: int | None = None,
    limit: int = 50,
) -> AuditPage:
    """One page of the caller's trail, newest first."""
    scope, filters = _scope(principal, filters)
    items, next_before = repo.page(conn, scope=scope, filters=filters, before=before, limit=limit)
    return AuditPage(items=items, next_before=next_before)


def _cell(record: AuditRecord, column: str) -> str:
    value = getattr(record, column)
    if value is None:
        return ""
    if column in ("before", "after"):
        return json.dumps(value, sort_keys=True, default=str)
    if column == "at":
        return str(value.isoformat())
    text = str(value)
    # a spreadsheet would run a cell that starts like a formula (CSV injection)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def trail_csv(conn: Connection[Any], principal: Principal, filters: AuditFilters) -> str:
    """The caller's trail as CSV (header first), newest first, at most EXPORT_LIMIT rows."""
    return "".join(_csv_lines(conn, principal, filters))


def _csv_lines(conn: Connection[Any], principal: Principal, filters: AuditFilters) -> Iterator[str]:
    scope, filters = _scope(principal, filters)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(list(CSV_COLUMNS))
    for record in repo.stream(conn, scope=scope, filters=filters, limit=EXPORT_LIMIT):
        yield line([_cell(record, c) for c in CSV_COLUMNS])


MIN_RETENTION = timedelta(days=1)  # the database refuses a younger cutoff too


def purge_expired(conn: Connection[Any], now: datetime, retention: timedelta, max_rows: int) -> int:
    """One batch of the retention job: up to ``max_rows`` records older than ``retention``
    deleted, and the purge recorded in the trail (by the connection's actor); how many went.
    Only the trail's owner may (the application role cannot delete a record, nor call this)."""
    if retention < MIN_RETENTION:
        raise Invalid(
            f"the audit trail keeps at least {MIN_RETENTION.days} day; retention {retention}"
            " is too short",
            code="retention_too_short",
        )
    return repo.purge_before(conn, now - retention, max_rows)
