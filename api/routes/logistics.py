"""Parts, depots, inventory, shipments, replenishments and service partners."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status

from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.schemas import NewApiKey, Page
from fleetcare.inputs import Id, ShortText
from kinds.schemas import KindName
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import (
    Depot,
    DepotCreate,
    InventoryItem,
    Part,
    Replenishment,
    Shipment,
    ShipmentStatus,
    ShipRequest,
    StockSet,
)
from maintenance.partners import service as partners
from maintenance.partners.schemas import (
    Commission,
    Partner,
    PartnerCreate,
    PartnerKeyCreate,
    SiteList,
)

router = APIRouter(prefix="/v1")


# --- parts and depots ----------------------------------------------------------------------


@router.get("/parts", tags=["parts"])
def list_parts(
    conn: ReadConn,
    caller: Caller,
    kind: KindName | None = None,
    component: ShortText | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Part]:
    """The parts catalogue."""
    items, nxt = logistics.list_parts(
        conn, kind=kind, component=component, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.get("/parts/{part_id}", tags=["parts"])
def get_part(part_id: Id, conn: ReadConn, caller: Caller) -> Part:
    """One part."""
    return logistics.get_part(conn, part_id)


@router.get("/depots", tags=["depots"])
def list_depots(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[Depot]:
    """Depots."""
    items, nxt = logistics.list_depots(conn, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.post("/depots", status_code=status.HTTP_201_CREATED, tags=["depots"])
def create_depot(body: DepotCreate, conn: Conn, caller: Caller) -> Depot:
    """Open a depot (operator)."""
    return logistics.create_depot(conn, caller, body)


@router.get("/depots/{depot_id}", tags=["depots"])
def get_depot(depot_id: Id, conn: ReadConn, caller: Caller) -> Depot:
    """One depot."""
    return logistics.get_depot(conn, depot_id)


@router.get("/depots/{depot_id}/inventory", tags=["depots"])
def get_inventory(depot_id: Id, conn: ReadConn, caller: Caller) -> list[InventoryItem]:
    """A depot's stock (operator)."""
    return logistics.inventory_of(conn, caller, depot_id)


@router.put("/depots/{depot_id}/inventory/{part_id}", tags=["depots"])
def set_stock(
    depot_id: Id, part_id: Id, body: StockSet, conn: Conn, caller: Caller
) -> InventoryItem:
    """Set or receive stock, reorder point and shipping days (operator)."""
    return logistics.set_stock(conn, caller, depot_id, part_id, body)


@router.get("/replenishments", tags=["depots"])
def list_replenishments(
    conn: ReadConn,
    caller: Caller,
    status: Literal["requested", "received", "cancelled"] | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Replenishment]:
    """Replenishment requests raised when depots run low (operator)."""
    items, nxt = logistics.list_replenishments(
        conn, caller, status=status, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.post("/replenishments/{replenishment_id}/receive", tags=["depots"])
def receive_replenishment(
    replenishment_id: Id, conn: Conn, caller: Caller, clock: AppClock
) -> Replenishment:
    """The stock arrived (operator)."""
    return logistics.receive_replenishment(conn, caller, replenishment_id, clock)


# --- shipments -----------------------------------------------------------------------------


@router.get("/shipments", tags=["shipments"])
def list_shipments(
    conn: ReadConn,
    caller: Caller,
    status: ShipmentStatus | None = None,
    order_id: Id | None = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Shipment]:
    """Shipments the caller may see."""
    items, nxt = logistics.list_shipments(
        conn, caller, status=status, order_id=order_id, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.get("/shipments/{shipment_id}", tags=["shipments"])
def get_shipment(shipment_id: Id, conn: ReadConn, caller: Caller) -> Shipment:
    """One shipment."""
    return logistics.get_shipment(conn, caller, shipment_id)


@router.post("/shipments/{shipment_id}/ship", tags=["shipments"])
def ship(
    shipment_id: Id,
    conn: Conn,
    caller: Caller,
    clock: AppClock,
    body: ShipRequest | None = None,
) -> Shipment:
    """Handed to the carrier (operator): the stock leaves the depot."""
    return logistics.ship(conn, caller, shipment_id, body or ShipRequest(), clock)


@router.post("/shipments/{shipment_id}/deliver", tags=["shipments"])
def deliver(shipment_id: Id, conn: Conn, caller: Caller, clock: AppClock) -> Shipment:
    """Arrived on site (operator, the customer's technician, or the assigned partner)."""
    return logistics.deliver(conn, caller, shipment_id, clock)


# --- partners ------------------------------------------------------------------------------


@router.post("/partners", status_code=status.HTTP_201_CREATED, tags=["partners"])
def create_partner(body: PartnerCreate, conn: Conn, caller: Caller) -> Partner:
    """Sign up a service partner (operator)."""
    return partners.create_partner(conn, caller, body)


@router.get("/partners", tags=["partners"])
def list_partners(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[Partner]:
    """Partners (operator), or the calling partner."""
    items, nxt = partners.list_partners(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/partners/{partner_id}", tags=["partners"])
def get_partner(partner_id: Id, conn: ReadConn, caller: Caller) -> Partner:
    """One partner (operator, or the partner itself)."""
    return partners.get_partner(conn, caller, partner_id)


@router.post("/partners/{partner_id}/sites", tags=["partners"])
def add_partner_sites(partner_id: Id, body: SiteList, conn: Conn, caller: Caller) -> list[int]:
    """Let the partner cover these sites (operator); returns all the sites it covers."""
    return partners.add_sites(conn, caller, partner_id, body)


@router.post(
    "/partners/{partner_id}/api-keys", status_code=status.HTTP_201_CREATED, tags=["partners"]
)
def create_partner_key(
    partner_id: Id, body: PartnerKeyCreate, conn: Conn, caller: Caller
) -> NewApiKey:
    """A key for the partner's staff (operator); shown once."""
    return partners.issue_key(conn, caller, partner_id, body)


@router.get("/partners/{partner_id}/commissions", tags=["partners"])
def list_commissions(
    partner_id: Id, conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[Commission]:
    """Commissions earned on completed orders."""
    items, nxt = partners.list_commissions(conn, caller, partner_id, after=after, limit=limit)
    return Page(items=items, next_after=nxt)
