"""The audit trail: every change, who made it, from where, and the fields before and after.

A customer's admin reads its organisation's trail; the operator reads every one (and may
filter by customer). Newest first, paged with ``before``; the same filters export CSV.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import Caller, Limit, ReadConn
from fleet.audit import service as audit
from fleet.audit.schemas import AuditAction, AuditFilters, AuditPage
from fleetcare.inputs import INT8_MAX, Moment

router = APIRouter(prefix="/v1", tags=["audit"])


def audit_filters(
    customer_id: Annotated[
        int | None, Query(ge=1, le=INT8_MAX, description="operator only: one customer's")
    ] = None,
    resource: Annotated[
        str | None, Query(min_length=1, max_length=200, description="a table: assets, plans, ...")
    ] = None,
    resource_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    actor: Annotated[
        str | None, Query(min_length=1, max_length=200, description="key:12, user:7, cli:alice")
    ] = None,
    action: AuditAction | None = None,
    since: Annotated[Moment | None, Query(description="changes at or after")] = None,
    until: Annotated[Moment | None, Query(description="changes before")] = None,
) -> AuditFilters:
    """The trail's filters, from the query string."""
    return AuditFilters(
        customer_id=customer_id,
        resource=resource,
        resource_id=resource_id,
        actor=actor,
        action=action,
        since=since,
        until=until,
    )


Filters = Annotated[AuditFilters, Depends(audit_filters)]


@router.get("/audit")
def list_audit(
    conn: ReadConn,
    caller: Caller,
    filters: Filters,
    before: Annotated[
        int | None, Query(ge=1, le=INT8_MAX, description="the next_before of the previous page")
    ] = None,
    limit: Limit = 50,
) -> AuditPage:
    """The caller's audit trail, newest first (customer admins and the operator)."""
    return audit.trail_page(conn, caller, filters, before=before, limit=limit)


@router.get(
    "/audit/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the trail as CSV"}},
)
def export_audit(conn: ReadConn, caller: Caller, filters: Filters) -> Response:
    """The caller's audit trail as CSV, newest first (at most 50,000 rows: narrow by time)."""
    return export_response(audit.trail_csv(conn, caller, filters))


def export_response(text: str) -> Response:
    """A CSV export as a download."""
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
