"""All SQL of assets that move: carriers, mounts, legs, stations, lanes and order visits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from fleetcare.repository import ScopedTable, insert_row
from maintenance.common import Conn
from maintenance.mobility.schemas import (
    Carrier,
    Lane,
    LaneOption,
    Leg,
    LegView,
    Mount,
    OrderVisit,
    Station,
)

CARRIERS = ScopedTable("carriers", Carrier)
LANES = ScopedTable("lanes", Lane)


# --- carriers and mounts -------------------------------------------------------------------


def find_carrier_by_ref(conn: Conn, customer_id: int, ref: str) -> Carrier | None:
    """A customer's carrier by its reference."""
    with conn.cursor(row_factory=class_row(Carrier)) as cur:
        return cur.execute(
            "SELECT * FROM carriers WHERE customer_id = %s AND ref = %s", (customer_id, ref)
        ).fetchone()


def lock_carriers(conn: Conn, carrier_ids: list[int]) -> None:
    """Lock carriers (in id order, so two uploads cannot deadlock) for an itinerary change."""
    conn.execute(
        "SELECT id FROM carriers WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(carrier_ids),)
    )


def upsert_mount(conn: Conn, values: dict[str, Any]) -> Mount:
    """Mount an asset on a carrier (moving it from another one)."""
    with conn.cursor(row_factory=class_row(Mount)) as cur:
        row = cur.execute(
            """
            INSERT INTO carrier_mounts (asset_id, customer_id, carrier_id, position)
            VALUES (%(asset_id)s, %(customer_id)s, %(carrier_id)s, %(position)s)
            ON CONFLICT (asset_id) DO UPDATE SET carrier_id = EXCLUDED.carrier_id,
                position = EXCLUDED.position,
                mounted_at = CASE WHEN carrier_mounts.carrier_id = EXCLUDED.carrier_id
                                  THEN carrier_mounts.mounted_at ELSE now() END
            RETURNING *
            """,
            values,
        ).fetchone()
    assert row is not None
    return row


def delete_mount(conn: Conn, carrier_id: int, asset_id: int) -> bool:
    """Take an asset off a carrier; whether it was on it."""
    cur = conn.execute(
        "DELETE FROM carrier_mounts WHERE carrier_id = %s AND asset_id = %s",
        (carrier_id, asset_id),
    )
    return cur.rowcount > 0


def mounts_of(conn: Conn, carrier_id: int) -> list[Mount]:
    """The assets a carrier holds."""
    with conn.cursor(row_factory=class_row(Mount)) as cur:
        return cur.execute(
            "SELECT * FROM carrier_mounts WHERE carrier_id = %s ORDER BY asset_id", (carrier_id,)
        ).fetchall()


def mount_of(conn: Conn, asset_id: int) -> Mount | None:
    """The carrier an asset is on, if any."""
    with conn.cursor(row_factory=class_row(Mount)) as cur:
        return cur.execute(
            "SELECT * FROM carrier_mounts WHERE asset_id = %s", (asset_id,)
        ).fetchone()


# --- legs ----------------------------------------------------------------------------------


def legs_by_ref(conn: Conn, customer_id: int, refs: list[str]) -> dict[str, Leg]:
    """The customer's legs with these ids, locked."""
    with conn.cursor(row_factory=class_row(Leg)) as cur:
        rows = cur.execute(
            "SELECT * FROM carrier_legs WHERE customer_id = %s AND leg_ref = ANY(%s)"
            " ORDER BY id FOR UPDATE",
            (customer_id, refs),
        ).fetchall()
    return {r.leg_ref: r for r in rows}


def insert_leg(conn: Conn, values: dict[str, Any]) -> Leg:
    """A new leg."""
    return insert_row(conn, "carrier_legs", Leg, values)


def update_leg(conn: Conn, leg_id: int, values: dict[str, Any]) -> Leg:
    """Change a leg (the new plan for it)."""
    with conn.cursor(row_factory=class_row(Leg)) as cur:
        row = cur.execute(
            """
            UPDATE carrier_legs SET carrier_id = %(carrier_id)s, from_site_id = %(from_site_id)s,
                   to_site_id = %(to_site_id)s, scheduled_departure = %(scheduled_departure)s,
                   scheduled_arrival = %(scheduled_arrival)s,
                   estimated_departure = %(estimated_departure)s,
                   estimated_arrival = %(estimated_arrival)s,
                   arrival_stand = %(arrival_stand)s, status = 'planned', updated_at = now()
             WHERE id = %(id)s RETURNING *
            """,
            {**values, "id": leg_id},
        ).fetchone()
    assert row is not None
    return row


def cancel_legs_from(
    conn: Conn, carrier_id: int, since: datetime, keep: list[int], now: datetime
) -> int:
    """Cancel the carrier's planned legs departing at or after ``since`` not in ``keep``."""
    cur = conn.execute(
        """
        UPDATE carrier_legs SET status = 'cancelled', updated_at = %(now)s
         WHERE carrier_id = %(c)s AND status = 'planned' AND NOT (id = ANY(%(keep)s))
           AND coalesce(estimated_departure, scheduled_departure) >= %(since)s
        """,
        {"c": carrier_id, "since": since, "keep": keep, "now": now},
    )
    return cur.rowcount


def planned_legs(conn: Conn, carrier_id: int, *, arriving_after: datetime | None) -> list[Leg]:
    """A carrier's planned legs in order of departure (arriving after a time, when given)."""
    with conn.cursor(row_factory=class_row(Leg)) as cur:
        return cur.execute(
            """
            SELECT * FROM carrier_legs
             WHERE carrier_id = %(c)s AND status = 'planned'
               AND (%(t)s::timestamptz IS NULL
                    OR coalesce(estimated_arrival, scheduled_arrival) > %(t)s)
             ORDER BY coalesce(estimated_departure, scheduled_departure), id
            """,
            {"c": carrier_id, "t": arriving_after},
        ).fetchall()


def leg_views(conn: Conn, *, carrier_id: int, since: datetime | None, limit: int) -> list[LegView]:
    """A carrier's planned legs with station refs, from ``since`` on."""
    with conn.cursor(row_factory=class_row(LegView)) as cur:
        return cur.execute(
            """
            SELECT l.*, c.ref AS carrier_ref, f.ref AS from_station, t.ref AS to_station
              FROM carrier_legs l JOIN carriers c ON c.id = l.carrier_id
                   JOIN sites f ON f.id = l.from_site_id JOIN sites t ON t.id = l.to_site_id
             WHERE l.carrier_id = %(c)s AND l.status = 'planned'
               AND (%(t)s::timestamptz IS NULL
                    OR coalesce(l.estimated_arrival, l.scheduled_arrival) > %(t)s)
             ORDER BY coalesce(l.estimated_departure, l.scheduled_departure), l.id
             LIMIT %(n)s
            """,
            {"c": carrier_id, "t": since, "n": limit},
        ).fetchall()


def get_leg(conn: Conn, leg_id: int) -> Leg | None:
    """One leg by id."""
    with conn.cursor(row_factory=class_row(Leg)) as cur:
        return cur.execute("SELECT * FROM carrier_legs WHERE id = %s", (leg_id,)).fetchone()


# --- stations and lanes --------------------------------------------------------------------


def upsert_station(conn: Conn, values: dict[str, Any]) -> Station:
    """Make a site a station, or change what it offers."""
    columns = [c for c in values if c not in ("site_id", "customer_id")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    with conn.cursor(row_factory=class_row(Station)) as cur:
        row = cur.execute(
            f"""
            INSERT INTO stations (site_id, customer_id, {", ".join(columns)})
            VALUES (%(site_id)s, %(customer_id)s, {", ".join(f"%({c})s" for c in columns)})
            ON CONFLICT (site_id) DO UPDATE SET {sets}, updated_at = now()
            RETURNING *
            """,
            values,
        ).fetchone()
    assert row is not None
    return row


def stations_of(conn: Conn, site_ids: list[int]) -> dict[int, Station]:
    """Stations by site id (sites that are no station are absent)."""
    with conn.cursor(row_factory=class_row(Station)) as cur:
        rows = cur.execute("SELECT * FROM stations WHERE site_id = ANY(%s)", (site_ids,)).fetchall()
    return {r.site_id: r for r in rows}


def list_stations(conn: Conn, *, scope: int | None) -> list[Station]:
    """The stations a caller may see."""
    with conn.cursor(row_factory=class_row(Station)) as cur:
        return cur.execute(
            "SELECT * FROM stations WHERE %(c)s::bigint IS NULL OR customer_id = %(c)s"
            " ORDER BY site_id",
            {"c": scope},
        ).fetchall()


def insert_lane(conn: Conn, values: dict[str, Any]) -> Lane:
    """A new lane."""
    return LANES.insert(conn, values)


def lane_options(conn: Conn, part_id: int, site_ids: list[int]) -> list[LaneOption]:
    """Live lanes into these stations from depots that stock the part, with the stock."""
    with conn.cursor(row_factory=class_row(LaneOption)) as cur:
        return cur.execute(
            """
            SELECT l.id AS lane_id, l.depot_id, d.code AS depot_code, l.site_id, l.lead_hours,
                   l.cost_minor, i.on_hand - i.reserved AS available
              FROM lanes l JOIN depots d ON d.id = l.depot_id
                   JOIN inventory i ON i.depot_id = l.depot_id AND i.part_id = %(p)s
             WHERE l.site_id = ANY(%(s)s) AND l.retired_at IS NULL AND d.retired_at IS NULL
             ORDER BY l.site_id, l.lead_hours, l.cost_minor, l.id
            """,
            {"p": part_id, "s": site_ids},
        ).fetchall()


# --- order visits --------------------------------------------------------------------------


def visit_of(conn: Conn, order_id: int, *, for_update: bool = False) -> OrderVisit | None:
    """The visit an order is planned for."""
    lock = " FOR UPDATE" if for_update else ""
    with conn.cursor(row_factory=class_row(OrderVisit)) as cur:
        return cur.execute(
            f"SELECT * FROM order_visits WHERE order_id = %s{lock}",
            (order_id,),
        ).fetchone()


def save_visit(conn: Conn, values: dict[str, Any]) -> OrderVisit:
    """Insert or replace an order's visit."""
    columns = list(values)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "order_id")
    with conn.cursor(row_factory=class_row(OrderVisit)) as cur:
        row = cur.execute(
            f"""
            INSERT INTO order_visits ({", ".join(columns)})
            VALUES ({", ".join(f"%({c})s" for c in columns)})
            ON CONFLICT (order_id) DO UPDATE SET {sets}
            RETURNING *
            """,
            values,
        ).fetchone()
    assert row is not None
    return row


def open_orders_on_carriers(conn: Conn, carrier_ids: list[int]) -> list[int]:
    """Open orders of assets mounted on these carriers (or planned on them), by id."""
    rows = conn.execute(
        """
        SELECT o.id FROM maintenance_orders o
         WHERE o.status IN ('raised', 'scheduled')
           AND (o.asset_id IN (SELECT asset_id FROM carrier_mounts WHERE carrier_id = ANY(%(c)s))
                OR o.id IN (SELECT order_id FROM order_visits WHERE carrier_id = ANY(%(c)s)))
         ORDER BY o.id
        """,
        {"c": carrier_ids},
    ).fetchall()
    return [int(r[0]) for r in rows]


# --- the carrier map -----------------------------------------------------------------------


def _dicts(conn: Conn, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def carrier_map(conn: Conn, scope: int | None, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Carriers with their position and next stop, stations, shipments in transit to a station
    and the visits of open orders: what the dashboard's carrier map shows."""
    p = {"c": scope, "now": now}
    carriers = _dicts(
        conn,
        """
        SELECT c.id, c.ref, c.carrier_type, c.latitude, c.longitude, s.ref AS at_station,
               c.position_at, c.position_source, n.to_ref AS next_stop, n.arrives AS next_arrival,
               n.to_lat AS next_latitude, n.to_lon AS next_longitude,
               (SELECT count(*) FROM carrier_mounts m WHERE m.carrier_id = c.id) AS assets
          FROM carriers c LEFT JOIN sites s ON s.id = c.at_site_id
          LEFT JOIN LATERAL (
                SELECT t.ref AS to_ref, t.latitude AS to_lat, t.longitude AS to_lon,
                       coalesce(l.estimated_arrival, l.scheduled_arrival) AS arrives
                  FROM carrier_legs l JOIN sites t ON t.id = l.to_site_id
                 WHERE l.carrier_id = c.id AND l.status = 'planned'
                   AND coalesce(l.estimated_arrival, l.scheduled_arrival) > %(now)s
                 ORDER BY coalesce(l.estimated_arrival, l.scheduled_arrival) LIMIT 1) n ON true
         WHERE c.retired_at IS NULL AND (%(c)s::bigint IS NULL OR c.customer_id = %(c)s)
         ORDER BY c.ref LIMIT 500
        """,
        p,
    )
    stations = _dicts(
        conn,
        """
        SELECT s.id, s.ref, s.name, s.latitude, s.longitude, st.kinds
          FROM stations st JOIN sites s ON s.id = st.site_id
         WHERE %(c)s::bigint IS NULL OR st.customer_id = %(c)s
         ORDER BY s.ref LIMIT 500
        """,
        p,
    )
    shipments = _dicts(
        conn,
        """
        SELECT sh.id, sh.order_id, sh.status, sh.eta, sh.redirects, d.code AS depot,
               d.latitude AS from_latitude, d.longitude AS from_longitude,
               s.ref AS station, s.latitude AS to_latitude, s.longitude AS to_longitude
          FROM shipments sh JOIN depots d ON d.id = sh.depot_id
               JOIN sites s ON s.id = sh.site_id
               JOIN order_visits v ON v.order_id = sh.order_id
         WHERE sh.status IN ('pending', 'shipped')
           AND (%(c)s::bigint IS NULL OR sh.customer_id = %(c)s)
         ORDER BY sh.eta LIMIT 500
        """,
        p,
    )
    visits = _dicts(
        conn,
        """
        SELECT v.order_id, o.status, o.component, o.due_at, a.ref AS asset_ref, c.ref AS carrier,
               s.ref AS station, v.arrives_at, v.departs_at, v.aog_risk, v.reason,
               sh.id AS shipment_id, sh.status AS part_status, sh.eta AS part_eta,
               sh.site_id = v.site_id AS part_to_station
          FROM order_visits v JOIN maintenance_orders o ON o.id = v.order_id
               JOIN assets a ON a.id = o.asset_id JOIN carriers c ON c.id = v.carrier_id
               LEFT JOIN sites s ON s.id = v.site_id
               LEFT JOIN LATERAL (
                    SELECT * FROM shipments x WHERE x.order_id = v.order_id
                       AND x.status <> 'cancelled' ORDER BY x.id DESC LIMIT 1) sh ON true
         WHERE o.status IN ('raised', 'scheduled', 'in_progress')
           AND (%(c)s::bigint IS NULL OR v.customer_id = %(c)s)
         ORDER BY v.arrives_at NULLS FIRST LIMIT 500
        """,
        p,
    )
    return {"carriers": carriers, "stations": stations, "shipments": shipments, "visits": visits}
