"""The dashboard's carrier map: carriers with their next stop, shipments in transit to
stations, and the timeline of visits; the crew records a part's receipt at the station."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.dashboard import service
from api.dashboard.rendering import PageViewer, not_found_page, render, request_clock
from api.deps import Conn, ReadConn
from api.routes.dashboard_ops import Form, check_write
from api.tenancy import rollback_keeping_caller
from fleetcare.errors import FleetcareError, NotFound
from fleetcare.inputs import Id
from maintenance.logistics import service as logistics

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


@router.get("/carriers", response_class=HTMLResponse)
def carriers_page(
    request: Request, conn: ReadConn, viewer: PageViewer, message: str | None = None
) -> HTMLResponse:
    """The map of carriers and shipments, and the visits of open orders."""
    data = service.carrier_map(conn, viewer, request_clock(request).now())
    return render(request, "carriers.html", viewer, map=data, message=message)


@router.get("/carriers.json")
def carriers_json(request: Request, conn: ReadConn, viewer: PageViewer) -> JSONResponse:
    """The map's data for ``static/map.js``."""
    return JSONResponse(service.carrier_map(conn, viewer, request_clock(request).now()))


@router.post("/shipments/{shipment_id}/receive", response_model=None)
def receive_part(
    request: Request, shipment_id: Id, conn: Conn, viewer: PageViewer, form: Form
) -> Response:
    """The crew records that the part arrived at the station (the shipment is delivered)."""
    check_write(request, form)
    try:
        row = logistics.deliver(conn, viewer, shipment_id, request_clock(request))
    except NotFound as exc:
        rollback_keeping_caller(request, conn)
        return not_found_page(request, viewer, exc)
    except FleetcareError as exc:
        rollback_keeping_caller(request, conn)
        return carriers_page(request, conn, viewer, message=f"shipment {shipment_id}: {exc.detail}")
    return RedirectResponse(
        f"/dashboard/carriers?message=shipment+{row.id}+received", status_code=303
    )
