"""All SQL of parts and logistics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from fleetcare.repository import fetch_one, fetch_page, insert_row, update_row
from maintenance.common import Conn
from maintenance.logistics.schemas import (
    SHIPMENT_LIFECYCLE,
    Depot,
    InventoryItem,
    Part,
    Replenishment,
    Reservation,
    Shipment,
    ShipmentStatus,
    SupplyOption,
)


def parts_for(conn: Conn, kind: str, component: str) -> list[Part]:
    """Live parts that fit a component of a kind, by id."""
    with conn.cursor(row_factory=class_row(Part)) as cur:
        return cur.execute(
            "SELECT * FROM parts WHERE kind = %s AND component = %s AND retired_at IS NULL"
            " ORDER BY id",
            (kind, component),
        ).fetchall()


def find_part_by_sku(conn: Conn, sku: str) -> Part | None:
    """The part with this SKU."""
    with conn.cursor(row_factory=class_row(Part)) as cur:
        return cur.execute("SELECT * FROM parts WHERE sku = %s", (sku,)).fetchone()


def inventory_of(conn: Conn, depot_id: int) -> list[InventoryItem]:
    """A depot's stock, by part."""
    with conn.cursor(row_factory=class_row(InventoryItem)) as cur:
        return cur.execute(
            "SELECT * FROM inventory WHERE depot_id = %s ORDER BY part_id", (depot_id,)
        ).fetchall()


def upsert_stock(conn: Conn, depot_id: int, part_id: int, values: dict[str, Any]) -> InventoryItem:
    """Create or change the inventory row of a part at a depot; ``receive`` adds to on_hand."""
    receive = values.pop("receive", None) or 0
    with conn.cursor(row_factory=class_row(InventoryItem)) as cur:
        row = cur.execute(
            """
            INSERT INTO inventory (depot_id, part_id, on_hand, reorder_point, reorder_quantity,
                                   shipping_days)
            VALUES (%(d)s, %(p)s, coalesce(%(on_hand)s, 0) + %(receive)s,
                    coalesce(%(reorder_point)s, 0), coalesce(%(reorder_quantity)s, 1),
                    coalesce(%(shipping_days)s, 2))
            ON CONFLICT (depot_id, part_id) DO UPDATE SET
                on_hand = coalesce(%(on_hand)s, inventory.on_hand) + %(receive)s,
                reorder_point = coalesce(%(reorder_point)s, inventory.reorder_point),
                reorder_quantity = coalesce(%(reorder_quantity)s, inventory.reorder_quantity),
                shipping_days = coalesce(%(shipping_days)s, inventory.shipping_days),
                updated_at = now()
            RETURNING *
            """,
            {
                "d": depot_id,
                "p": part_id,
                "receive": receive,
                "on_hand": values.get("on_hand"),
                "reorder_point": values.get("reorder_point"),
                "reorder_quantity": values.get("reorder_quantity"),
                "shipping_days": values.get("shipping_days"),
            },
        ).fetchone()
    assert row is not None
    return row


def supply_options(
    conn: Conn, part_id: int, latitude: float | None, longitude: float | None
) -> list[SupplyOption]:
    """Depots that stock a part, nearest first (by shipping time when the site has no position)."""
    with conn.cursor(row_factory=class_row(SupplyOption)) as cur:
        return cur.execute(
            """
            SELECT d.id AS depot_id, d.code AS depot_code, i.part_id, i.shipping_days,
                   i.on_hand - i.reserved AS available,
                   CASE WHEN %(lat)s::float8 IS NULL OR %(lon)s::float8 IS NULL THEN NULL ELSE
                       2 * 6371 * asin(sqrt(
                           power(sin(radians(d.latitude - %(lat)s::float8) / 2), 2)
                           + cos(radians(%(lat)s::float8)) * cos(radians(d.latitude))
                             * power(sin(radians(d.longitude - %(lon)s::float8) / 2), 2)))
                   END AS distance_km
              FROM inventory i JOIN depots d ON d.id = i.depot_id
             WHERE i.part_id = %(part)s AND d.retired_at IS NULL
             ORDER BY distance_km NULLS LAST, i.shipping_days, d.id
            """,
            {"part": part_id, "lat": latitude, "lon": longitude},
        ).fetchall()


def reserve_stock(conn: Conn, depot_id: int, part_id: int, quantity: int) -> InventoryItem | None:
    """Reserve ``quantity`` if that much is available (atomic, row-locked); else None."""
    with conn.cursor(row_factory=class_row(InventoryItem)) as cur:
        return cur.execute(
            """
            UPDATE inventory SET reserved = reserved + %(q)s, updated_at = now()
             WHERE depot_id = %(d)s AND part_id = %(p)s AND on_hand - reserved >= %(q)s
            RETURNING *
            """,
            {"d": depot_id, "p": part_id, "q": quantity},
        ).fetchone()


def unreserve_stock(conn: Conn, depot_id: int, part_id: int, quantity: int) -> InventoryItem:
    """Give reserved stock back."""
    with conn.cursor(row_factory=class_row(InventoryItem)) as cur:
        row = cur.execute(
            """
            UPDATE inventory SET reserved = reserved - %(q)s, updated_at = now()
             WHERE depot_id = %(d)s AND part_id = %(p)s RETURNING *
            """,
            {"d": depot_id, "p": part_id, "q": quantity},
        ).fetchone()
    assert row is not None
    return row


def dispatch_stock(conn: Conn, depot_id: int, part_id: int, quantity: int) -> InventoryItem:
    """Reserved stock leaves the depot: on_hand and reserved both go down."""
    with conn.cursor(row_factory=class_row(InventoryItem)) as cur:
        row = cur.execute(
            """
            UPDATE inventory SET on_hand = on_hand - %(q)s, reserved = reserved - %(q)s,
                   updated_at = now()
             WHERE depot_id = %(d)s AND part_id = %(p)s RETURNING *
            """,
            {"d": depot_id, "p": part_id, "q": quantity},
        ).fetchone()
    assert row is not None
    return row


def held_reservations(conn: Conn, order_id: int) -> list[Reservation]:
    """Reservations of an order still counted in inventory.reserved, locked."""
    with conn.cursor(row_factory=class_row(Reservation)) as cur:
        return cur.execute(
            "SELECT * FROM reservations WHERE order_id = %s AND status = 'held' ORDER BY id"
            " FOR UPDATE",
            (order_id,),
        ).fetchall()


def close_reservation(conn: Conn, reservation_id: int, status: str, at: datetime) -> Reservation:
    """Mark a reservation shipped or released."""
    row = update_row(
        conn, "reservations", Reservation, reservation_id, {"status": status, "closed_at": at}
    )
    assert row is not None
    return row


def shipments_of_order(conn: Conn, order_id: int) -> list[Shipment]:
    """The shipments of an order, by id."""
    with conn.cursor(row_factory=class_row(Shipment)) as cur:
        return cur.execute(
            "SELECT * FROM shipments WHERE order_id = %s ORDER BY id", (order_id,)
        ).fetchall()


def shipment_for_reservation(conn: Conn, reservation_id: int) -> Shipment | None:
    """The shipment carrying a reservation, locked."""
    with conn.cursor(row_factory=class_row(Shipment)) as cur:
        return cur.execute(
            "SELECT * FROM shipments WHERE reservation_id = %s FOR UPDATE", (reservation_id,)
        ).fetchone()


def find_shipment(
    conn: Conn,
    shipment_id: int,
    *,
    customer_id: int | None,
    partner_id: int | None,
    for_update: bool = False,
) -> Shipment | None:
    """A shipment within the caller's customer, or of an order assigned to the partner."""
    with conn.cursor(row_factory=class_row(Shipment)) as cur:
        return cur.execute(
            """
            SELECT s.* FROM shipments s JOIN maintenance_orders o ON o.id = s.order_id
             WHERE s.id = %(id)s
               AND (%(c)s::bigint IS NULL OR s.customer_id = %(c)s)
               AND (%(p)s::bigint IS NULL OR o.partner_id = %(p)s)
            """
            + (" FOR UPDATE OF s" if for_update else ""),
            {"id": shipment_id, "c": customer_id, "p": partner_id},
        ).fetchone()


def list_shipments(
    conn: Conn,
    *,
    customer_id: int | None,
    partner_id: int | None,
    status: str | None,
    order_id: int | None,
    after: int | None,
    limit: int,
) -> list[Shipment]:
    """Shipments visible to the caller, by id (``limit + 1`` rows for paging)."""
    with conn.cursor(row_factory=class_row(Shipment)) as cur:
        return cur.execute(
            """
            SELECT s.* FROM shipments s JOIN maintenance_orders o ON o.id = s.order_id
             WHERE (%(c)s::bigint IS NULL OR s.customer_id = %(c)s)
               AND (%(p)s::bigint IS NULL OR o.partner_id = %(p)s)
               AND (%(st)s::text IS NULL OR s.status = %(st)s)
               AND (%(o)s::bigint IS NULL OR s.order_id = %(o)s)
               AND s.id > coalesce(%(a)s::bigint, 0)
             ORDER BY s.id LIMIT %(l)s
            """,
            {
                "c": customer_id,
                "p": partner_id,
                "st": status,
                "o": order_id,
                "a": after,
                "l": limit + 1,
            },
        ).fetchall()


def request_replenishment(
    conn: Conn, depot_id: int, part_id: int, quantity: int, reason: str
) -> Replenishment | None:
    """Open a replenishment request unless one is already open for this depot and part."""
    with conn.cursor(row_factory=class_row(Replenishment)) as cur:
        return cur.execute(
            """
            INSERT INTO replenishments (depot_id, part_id, quantity, reason)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (depot_id, part_id) WHERE status = 'requested' DO NOTHING
            RETURNING *
            """,
            (depot_id, part_id, quantity, reason),
        ).fetchone()


def lock_replenishment(conn: Conn, replenishment_id: int) -> Replenishment | None:
    """A replenishment, row-locked."""
    return fetch_one(
        conn, "replenishments", Replenishment, replenishment_id, scope=None, for_update=True
    )


def list_replenishments(
    conn: Conn, *, status: str | None, after: int | None, limit: int
) -> tuple[list[Replenishment], int | None]:
    """One page of replenishment requests."""
    return fetch_page(
        conn,
        "replenishments",
        Replenishment,
        scope=None,
        filters={"status": status},
        include_retired=True,
        after=after,
        limit=limit,
    )


# --- one row by id, pages, inserts and updates ---------------------------------------------


def list_parts(
    conn: Conn, *, kind: str | None, component: str | None, after: int | None, limit: int
) -> tuple[list[Part], int | None]:
    """One page of the parts catalogue."""
    return fetch_page(
        conn,
        "parts",
        Part,
        scope=None,
        filters={"kind": kind, "component": component},
        after=after,
        limit=limit,
    )


def get_part(conn: Conn, part_id: int) -> Part | None:
    """One part by id."""
    return fetch_one(conn, "parts", Part, part_id, scope=None)


def insert_depot(conn: Conn, values: dict[str, Any]) -> Depot:
    """Open a depot."""
    return insert_row(conn, "depots", Depot, values)


def list_depots(conn: Conn, *, after: int | None, limit: int) -> tuple[list[Depot], int | None]:
    """One page of depots."""
    return fetch_page(conn, "depots", Depot, scope=None, after=after, limit=limit)


def get_depot(conn: Conn, depot_id: int) -> Depot | None:
    """One depot by id."""
    return fetch_one(conn, "depots", Depot, depot_id, scope=None)


def set_replenishment(conn: Conn, replenishment_id: int, values: dict[str, Any]) -> Replenishment:
    """Update columns of a replenishment request."""
    row = update_row(conn, "replenishments", Replenishment, replenishment_id, values)
    assert row is not None
    return row


def insert_reservation(conn: Conn, values: dict[str, Any]) -> Reservation:
    """Hold stock for an order (the inventory's reserved count is raised separately)."""
    return insert_row(conn, "reservations", Reservation, values)


def insert_shipment(conn: Conn, values: dict[str, Any]) -> Shipment:
    """Create a shipment (pending until it leaves the depot)."""
    return insert_row(conn, "shipments", Shipment, values)


def move_shipment(
    conn: Conn, shipment: Shipment, to: ShipmentStatus, values: dict[str, Any]
) -> Shipment:
    """Move a shipment to ``to`` (checked against its lifecycle) and set ``values`` with it."""
    SHIPMENT_LIFECYCLE.check(shipment.id, shipment.status, to)
    row = update_row(conn, "shipments", Shipment, shipment.id, {"status": to, **values})
    assert row is not None
    return row


def redirect_shipment(conn: Conn, shipment_id: int, site_id: int, eta: datetime) -> Shipment:
    """Send a shipment to another site with a new ETA (one more redirect)."""
    row = update_row(
        conn,
        "shipments",
        Shipment,
        shipment_id,
        {"site_id": site_id, "eta": eta},
        extra_sets=["redirects = redirects + 1"],
    )
    assert row is not None
    return row


def part_arrival(conn: Conn, order_id: int) -> datetime | None:
    """When an order's part arrives (its latest live shipment's ETA or delivery), if any."""
    row = conn.execute(
        "SELECT coalesce(delivered_at, eta) FROM shipments WHERE order_id = %s"
        " AND status <> 'cancelled' ORDER BY id DESC LIMIT 1",
        (order_id,),
    ).fetchone()
    return row[0] if row else None
