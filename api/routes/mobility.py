"""Assets that move: carriers, positions, itineraries, stations, lanes and the crew's view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.inputs import Id, Moment
from maintenance.mobility import service as mobility
from maintenance.mobility import visits
from maintenance.mobility.schemas import (
    Carrier,
    CarrierCreate,
    CarrierPosition,
    CrewView,
    ItineraryPut,
    ItineraryResult,
    Lane,
    LaneCreate,
    LegView,
    Mount,
    MountSet,
    PositionSet,
    Station,
    StationSet,
)

router = APIRouter(prefix="/v1")


@router.post("/carriers", status_code=status.HTTP_201_CREATED, tags=["carriers"])
def create_carrier(body: CarrierCreate, conn: Conn, caller: Caller) -> Carrier:
    """Register a carrier: an aircraft tail, a truck, a train set."""
    return mobility.create_carrier(conn, caller, body)


@router.get("/carriers", tags=["carriers"])
def list_carriers(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[Carrier]:
    """The caller's carriers with their last position."""
    items, nxt = mobility.list_carriers(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/carriers/{carrier_id}", tags=["carriers"])
def get_carrier(carrier_id: Id, conn: ReadConn, caller: Caller) -> Carrier:
    """One carrier."""
    return mobility.get_carrier(conn, caller, carrier_id)


@router.put("/carriers/{carrier_id}/position", tags=["carriers"])
def set_position(
    carrier_id: Id, body: PositionSet, conn: Conn, caller: Caller, clock: AppClock
) -> Carrier:
    """Where the carrier is: coordinates and/or the station (site ref) it is at."""
    return mobility.set_position(conn, caller, carrier_id, body, clock.now())


@router.get("/carriers/{carrier_id}/positions", tags=["carriers"])
def position_history(
    carrier_id: Id,
    conn: ReadConn,
    caller: Caller,
    before: Annotated[Moment | None, Query(description="positions older than this")] = None,
    limit: Limit = 100,
) -> list[CarrierPosition]:
    """The carrier's recorded positions, newest first: from its devices' telemetry and from
    the API (kept 180 days)."""
    return mobility.position_history(conn, caller, carrier_id, before=before, limit=limit)


@router.get("/carriers/{carrier_id}/assets", tags=["carriers"])
def list_mounts(carrier_id: Id, conn: ReadConn, caller: Caller) -> list[Mount]:
    """The assets the carrier holds."""
    return mobility.mounts_of(conn, caller, carrier_id)


@router.put("/carriers/{carrier_id}/assets/{asset_id}", tags=["carriers"])
def mount_asset(carrier_id: Id, asset_id: Id, body: MountSet, conn: Conn, caller: Caller) -> Mount:
    """Mount an asset of a mobile kind on the carrier (off any other one)."""
    return mobility.mount(conn, caller, carrier_id, asset_id, body)


@router.delete(
    "/carriers/{carrier_id}/assets/{asset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["carriers"],
)
def unmount_asset(carrier_id: Id, asset_id: Id, conn: Conn, caller: Caller) -> Response:
    """Take an asset off the carrier."""
    mobility.unmount(conn, caller, carrier_id, asset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _result(
    conn: Conn, change: mobility.ItineraryChange, clock: AppClock, cause: str
) -> ItineraryResult:
    replanned = visits.replan_carriers(conn, change.changed_carriers, clock.now(), cause=cause)
    return ItineraryResult(
        carriers=change.carriers,
        created=change.created,
        updated=change.updated,
        unchanged=change.unchanged,
        cancelled=change.cancelled,
        tail_swaps=change.tail_swaps,
        orders_replanned=replanned,
    )


@router.put("/carriers/{carrier_id}/itinerary", tags=["carriers"])
def put_itinerary(
    carrier_id: Id, body: ItineraryPut, conn: Conn, caller: Caller, clock: AppClock
) -> ItineraryResult:
    """The carrier's planned legs from the first one sent on: legs are kept by ``leg_id``
    (idempotent), planned legs after that point that are not sent are dropped, and the open
    orders of its assets are planned again (delay, diversion, tail swap)."""
    rows = [leg.model_dump(by_alias=True, mode="json") for leg in body.legs]
    change = mobility.apply_itinerary(conn, caller, rows, clock.now(), carrier_id=carrier_id)
    return _result(conn, change, clock, "itinerary update")


@router.get("/carriers/{carrier_id}/itinerary", tags=["carriers"])
def get_itinerary(
    carrier_id: Id,
    conn: ReadConn,
    caller: Caller,
    since: Annotated[Moment | None, Query(description="legs arriving after this")] = None,
    limit: Limit = 200,
) -> list[LegView]:
    """The carrier's planned legs."""
    return mobility.itinerary(conn, caller, carrier_id, since=since, limit=limit)


@router.post("/itineraries", tags=["carriers"])
async def upload_itineraries(
    request: Request,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    customer_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="required for operator keys")
    ] = None,
) -> ItineraryResult:
    """Bulk upload of legs for several carriers: ``text/csv`` with a header (leg_id, carrier,
    from, to, scheduled_departure, scheduled_arrival, estimated_departure, estimated_arrival,
    stand) or JSON ``{"legs": [...]}``. All or nothing: each refused row is named in
    ``problems`` (``rows[N].field``, N counted from 1, the first row after the header)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    rows = mobility.parse_upload(body, content_type)
    change = mobility.apply_itinerary(conn, caller, rows, clock.now(), customer_id=customer_id)
    return _result(conn, change, clock, "itinerary upload")


@router.put("/sites/{site_id}/station", tags=["stations"])
def set_station(site_id: Id, body: StationSet, conn: Conn, caller: Caller) -> Station:
    """Make a site a station: opening hours, what it services, crew, turnaround."""
    return mobility.set_station(conn, caller, site_id, body)


@router.get("/sites/{site_id}/station", tags=["stations"])
def get_station(site_id: Id, conn: ReadConn, caller: Caller) -> Station:
    """The station at a site."""
    return mobility.get_station(conn, caller, site_id)


@router.get("/stations", tags=["stations"])
def list_stations(conn: ReadConn, caller: Caller) -> list[Station]:
    """The caller's stations."""
    return mobility.list_stations(conn, caller)


@router.post("/lanes", status_code=status.HTTP_201_CREATED, tags=["stations"])
def create_lane(body: LaneCreate, conn: Conn, caller: Caller) -> Lane:
    """A lane from a depot to a station, with lead time and cost (operator)."""
    return mobility.create_lane(conn, caller, body)


@router.get("/lanes", tags=["stations"])
def list_lanes(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[Lane]:
    """Lanes into the caller's stations."""
    items, nxt = mobility.list_lanes(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/orders/{order_id}/visit", tags=["orders"])
def order_visit(order_id: Id, conn: ReadConn, caller: Caller) -> CrewView:
    """The visit of a carried asset's order, for the crew at the station: carrier, arrival,
    stand, asset and component, where the part is, ground time."""
    return visits.crew_view(conn, caller, order_id)
