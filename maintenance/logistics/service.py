"""Parts, depots, stock, reservations, shipments and replenishment. No SQL text, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet.schemas import Principal
from fleet.service import translate_integrity_errors
from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.logistics import repository as repo
from maintenance.logistics.schemas import (
    SHIPMENT_LIFECYCLE,
    Depot,
    DepotCreate,
    InventoryItem,
    Part,
    Replenishment,
    Reservation,
    Shipment,
    ShipmentStatus,
    ShipRequest,
    StockSet,
    SupplyOption,
)

# --- parts and depots ----------------------------------------------------------------------


def list_parts(
    conn: Conn, *, kind: str | None, component: str | None, after: int | None, limit: int
) -> tuple[list[Part], int | None]:
    """The parts catalogue, one page."""
    return repo.list_parts(conn, kind=kind, component=component, after=after, limit=limit)


def get_part(conn: Conn, part_id: int) -> Part:
    """One part, or NotFound."""
    part = repo.get_part(conn, part_id)
    if part is None:
        raise NotFound(f"part {part_id} not found", code="part_not_found")
    return part


def part_by_sku(conn: Conn, sku: str) -> Part:
    """The part with this SKU, or NotFound."""
    part = repo.find_part_by_sku(conn, sku)
    if part is None:
        raise NotFound(f"part {sku!r} not found", code="part_not_found")
    return part


def part_for(conn: Conn, kind: str, component: str) -> Part | None:
    """The part the policy ships for a component (the first live one in the catalogue)."""
    found = repo.parts_for(conn, kind, component)
    return found[0] if found else None


def create_depot(conn: Conn, principal: Principal, body: DepotCreate) -> Depot:
    """Open a depot (operator)."""
    principal.require("logistics:write")
    with translate_integrity_errors(f"depot {body.code!r}"):
        depot = repo.insert_depot(conn, body.model_dump())
    emit(
        conn,
        "depot.created",
        {"depot": depot.model_dump(mode="json")},
        customer_id=None,
        subject=subject("depot", depot.id),
    )
    return depot


def list_depots(conn: Conn, *, after: int | None, limit: int) -> tuple[list[Depot], int | None]:
    """Depots, one page."""
    return repo.list_depots(conn, after=after, limit=limit)


def get_depot(conn: Conn, depot_id: int) -> Depot:
    """One depot, or NotFound."""
    depot = repo.get_depot(conn, depot_id)
    if depot is None:
        raise NotFound(f"depot {depot_id} not found", code="depot_not_found")
    return depot


def inventory_of(conn: Conn, principal: Principal, depot_id: int) -> list[InventoryItem]:
    """A depot's stock (operator)."""
    principal.require("inventory:read")
    return repo.inventory_of(conn, get_depot(conn, depot_id).id)


def set_stock(
    conn: Conn, principal: Principal, depot_id: int, part_id: int, body: StockSet
) -> InventoryItem:
    """Set or receive a depot's stock of a part (operator); never below what is reserved."""
    principal.require("inventory:write")
    get_depot(conn, depot_id)
    get_part(conn, part_id)
    with translate_integrity_errors("stock"):
        item = repo.upsert_stock(conn, depot_id, part_id, body.model_dump(exclude_none=True))
    emit(
        conn,
        "inventory.updated",
        {"inventory": item.model_dump(mode="json"), "change": body.model_dump(exclude_none=True)},
        customer_id=None,
        subject=subject("depot", depot_id),
    )
    request_replenishment_if_low(conn, item)
    return item


def request_replenishment_if_low(conn: Conn, item: InventoryItem) -> Replenishment | None:
    """Open a replenishment when available stock is at or below the reorder point."""
    if item.available > item.reorder_point:
        return None
    quantity = item.reorder_quantity + (item.reorder_point - item.available)
    reason = f"available {item.available} <= reorder point {item.reorder_point}"
    request = repo.request_replenishment(conn, item.depot_id, item.part_id, quantity, reason)
    if request is not None:
        emit(
            conn,
            "replenishment.requested",
            {"replenishment": request.model_dump(mode="json")},
            customer_id=None,
            subject=subject("replenishment", request.id),
        )
    return request


def list_replenishments(
    conn: Conn, principal: Principal, *, status: str | None, after: int | None, limit: int
) -> tuple[list[Replenishment], int | None]:
    """Replenishment requests (operator)."""
    principal.require("inventory:read")
    return repo.list_replenishments(conn, status=status, after=after, limit=limit)


def receive_replenishment(
    conn: Conn, principal: Principal, replenishment_id: int, clock: Clock
) -> Replenishment:
    """Stock arrived at the depot: add it to on_hand and close the request (operator)."""
    principal.require("inventory:write")
    request = repo.lock_replenishment(conn, replenishment_id)
    if request is None:
        raise NotFound(
            f"replenishment {replenishment_id} not found", code="replenishment_not_found"
        )
    if request.status != "requested":
        raise Conflict(f"replenishment {request.id} is {request.status}")
    repo.upsert_stock(conn, request.depot_id, request.part_id, {"receive": request.quantity})
    row = repo.set_replenishment(
        conn, request.id, {"status": "received", "received_at": clock.now()}
    )
    emit(
        conn,
        "replenishment.received",
        {"replenishment": row.model_dump(mode="json")},
        customer_id=None,
        subject=subject("replenishment", row.id),
    )
    return row


# --- supply for orders ---------------------------------------------------------------------


def supply_options(
    conn: Conn, part_id: int, latitude: float | None, longitude: float | None
) -> list[SupplyOption]:
    """Depots stocking a part, nearest first."""
    return repo.supply_options(conn, part_id, latitude, longitude)


def nearest_in_stock(options: list[SupplyOption], quantity: int = 1) -> SupplyOption | None:
    """The nearest depot (first option) with ``quantity`` available."""
    return next((o for o in options if o.available >= quantity), None)


@dataclass(frozen=True)
class Supplied:
    """The outcome of reserving and shipping a part for an order."""

    reservation: Reservation
    shipment: Shipment
    depot_code: str


def reserve_and_ship(
    conn: Conn,
    *,
    order_id: int,
    customer_id: int,
    site_id: int | None,
    part: Part,
    options: list[SupplyOption],
    now: datetime,
    quantity: int = 1,
    eta: datetime | None = None,
) -> Supplied | None:
    """Reserve the part at the nearest depot that has it and create a pending shipment.

    Each reservation is one atomic UPDATE that refuses to take more than is available, so
    concurrent orders can never drive stock negative; when another order took the last
    unit first, the next depot is tried. None when no depot can supply it.
    """
    for option in options:
        item = repo.reserve_stock(conn, option.depot_id, part.id, quantity)
        if item is None:
            continue
        reservation = repo.insert_reservation(
            conn,
            {
                "order_id": order_id,
                "depot_id": option.depot_id,
                "part_id": part.id,
                "quantity": quantity,
            },
        )
        emit(
            conn,
            "part.reserved",
            {
                "reservation": reservation.model_dump(mode="json"),
                "sku": part.sku,
                "depot": option.depot_code,
            },
            customer_id=customer_id,
            subject=subject("order", order_id),
        )
        shipment = repo.insert_shipment(
            conn,
            {
                "customer_id": customer_id,
                "order_id": order_id,
                "reservation_id": reservation.id,
                "depot_id": option.depot_id,
                "part_id": part.id,
                "quantity": quantity,
                "site_id": site_id,
                "eta": eta if eta is not None else now + timedelta(days=option.shipping_days),
                "created_at": now,
            },
        )
        emit(
            conn,
            "shipment.created",
            {
                "shipment": shipment.model_dump(mode="json"),
                "sku": part.sku,
                "depot": option.depot_code,
            },
            customer_id=customer_id,
            subject=subject("shipment", shipment.id),
        )
        request_replenishment_if_low(conn, item)
        return Supplied(reservation, shipment, option.depot_code)
    return None


def release_for_order(conn: Conn, order_id: int, customer_id: int, now: datetime) -> int:
    """Give back an order's held reservations and cancel their pending shipments."""
    released = 0
    for reservation in repo.held_reservations(conn, order_id):
        repo.unreserve_stock(conn, reservation.depot_id, reservation.part_id, reservation.quantity)
        closed = repo.close_reservation(conn, reservation.id, "released", now)
        emit(
            conn,
            "part.released",
            {"reservation": closed.model_dump(mode="json")},
            customer_id=customer_id,
            subject=subject("order", order_id),
        )
        shipment = repo.shipment_for_reservation(conn, reservation.id)
        if shipment is not None and SHIPMENT_LIFECYCLE.allows(
            shipment.status, ShipmentStatus.CANCELLED
        ):
            cancelled = repo.move_shipment(
                conn, shipment, ShipmentStatus.CANCELLED, {"cancelled_at": now}
            )
            emit(
                conn,
                "shipment.cancelled",
                {"shipment": cancelled.model_dump(mode="json")},
                customer_id=customer_id,
                subject=subject("shipment", shipment.id),
            )
        released += 1
    return released


def live_shipment(conn: Conn, order_id: int) -> Shipment | None:
    """An order's latest shipment that is not cancelled, locked."""
    live = [s for s in repo.shipments_of_order(conn, order_id) if s.status != "cancelled"]
    if not live:
        return None
    return repo.find_shipment(conn, live[-1].id, customer_id=None, partner_id=None, for_update=True)


def redirect_shipment(
    conn: Conn, shipment: Shipment, *, site_id: int, eta: datetime, reason: str
) -> Shipment:
    """Send a shipment not yet delivered to another site (``shipment.redirected``, why)."""
    if shipment.status not in (ShipmentStatus.PENDING, ShipmentStatus.SHIPPED):
        raise Conflict(f"shipment {shipment.id} is {shipment.status}: it cannot be redirected")
    row = repo.redirect_shipment(conn, shipment.id, site_id, eta)
    emit(
        conn,
        "shipment.redirected",
        {
            "shipment": row.model_dump(mode="json"),
            "previous_site_id": shipment.site_id,
            "previous_eta": shipment.eta.isoformat(),
            "reason": reason,
        },
        customer_id=row.customer_id,
        subject=subject("shipment", row.id),
    )
    return row


def shipments_of_order(conn: Conn, order_id: int) -> list[Shipment]:
    """The shipments of an order."""
    return repo.shipments_of_order(conn, order_id)


def part_arrival(conn: Conn, order_id: int) -> datetime | None:
    """When an order's part arrives (its latest live shipment's ETA or delivery), if any."""
    return repo.part_arrival(conn, order_id)


# --- shipments through the API -------------------------------------------------------------


def _partner_of(principal: Principal) -> int | None:
    return principal.partner_scope


def _customer_of(principal: Principal) -> int | None:
    return principal.customer_id if principal.organisation == "customer" else None


def get_shipment(
    conn: Conn, principal: Principal, shipment_id: int, *, for_update: bool = False
) -> Shipment:
    """A shipment the caller may see: its customer's, or of an order assigned to the partner."""
    found = repo.find_shipment(
        conn,
        shipment_id,
        customer_id=_customer_of(principal),
        partner_id=_partner_of(principal),
        for_update=for_update,
    )
    if found is None:
        raise NotFound(f"shipment {shipment_id} not found", code="shipment_not_found")
    return found


def list_shipments(
    conn: Conn,
    principal: Principal,
    *,
    status: str | None,
    order_id: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[Shipment], int | None]:
    """Shipments the caller may see, one page."""
    rows = repo.list_shipments(
        conn,
        customer_id=_customer_of(principal),
        partner_id=_partner_of(principal),
        status=status,
        order_id=order_id,
        after=after,
        limit=limit,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def ship(
    conn: Conn, principal: Principal, shipment_id: int, body: ShipRequest, clock: Clock
) -> Shipment:
    """The depot hands the part to the carrier (operator): the stock leaves the depot."""
    principal.require("shipments:write")
    shipment = get_shipment(conn, principal, shipment_id, for_update=True)
    SHIPMENT_LIFECYCLE.check(shipment.id, shipment.status, ShipmentStatus.SHIPPED)
    if body.eta is not None and body.eta.tzinfo is None:
        raise Invalid("eta needs a time zone")
    now = clock.now()
    item = repo.dispatch_stock(conn, shipment.depot_id, shipment.part_id, shipment.quantity)
    repo.close_reservation(conn, shipment.reservation_id, "shipped", now)
    values: dict[str, object] = {
        "shipped_at": now,
        "carrier": body.carrier,
        "tracking_ref": body.tracking_ref,
    }
    if body.eta is not None:
        values["eta"] = body.eta
    row = repo.move_shipment(conn, shipment, ShipmentStatus.SHIPPED, values)
    emit(
        conn,
        "shipment.shipped",
        {"shipment": row.model_dump(mode="json")},
        customer_id=row.customer_id,
        subject=subject("shipment", row.id),
    )
    request_replenishment_if_low(conn, item)
    return row


def deliver(conn: Conn, principal: Principal, shipment_id: int, clock: Clock) -> Shipment:
    """The part arrived at the site (operator, the customer's technician, or the partner)."""
    principal.require("shipments:work")
    shipment = get_shipment(conn, principal, shipment_id, for_update=True)
    row = repo.move_shipment(
        conn, shipment, ShipmentStatus.DELIVERED, {"delivered_at": clock.now()}
    )
    emit(
        conn,
        "shipment.delivered",
        {"shipment": row.model_dump(mode="json")},
        customer_id=row.customer_id,
        subject=subject("shipment", row.id),
    )
    return row
