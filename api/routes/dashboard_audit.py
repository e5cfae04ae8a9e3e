"""The dashboard's audit trail page: the organisation's changes (the operator: everyone's),
filtered like ``GET /v1/audit``, paged newest first, exported as CSV."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.rendering import DataViewer, PageViewer, render
from api.deps import ReadConn
from api.permissions import require_permission
from api.routes.audit import Filters, export_response
from fleet.audit import service as audit
from fleetcare.inputs import INT8_MAX

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    filters: Filters,
    before: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
) -> HTMLResponse:
    """Who changed what, when, from where, with the fields before and after."""
    require_permission(viewer, "GET", "/v1/audit")  # the same readers as the API's
    page = audit.trail_page(conn, viewer, filters, before=before, limit=PAGE)
    query = {k: v for k, v in request.query_params.items() if k != "before"}
    return render(request, "audit.html", viewer, page=page, filters=filters, query=query)


@router.get("/audit.csv")
def audit_export(conn: ReadConn, viewer: DataViewer, filters: Filters) -> Response:
    """The page's trail as CSV."""
    require_permission(viewer, "GET", "/v1/audit/export.csv")
    return export_response(audit.trail_csv(conn, viewer, filters))
