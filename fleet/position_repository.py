"""All SQL of carriers' positions, shared by the two ways they come: telemetry
(``ingest.positions``) and the API (``maintenance.mobility.service.set_position``). Resolving
carrier and station references, storing positions once per (carrier, time), moving each
carrier's latest position forward (never back in time), keeping the history bounded, and
reading it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from fleetcare.inputs import storable_text

Conn = Connection[Any]

# how long a carrier's position history is kept (the TimescaleDB retention policy of
# migration 0255 says the same)
POSITION_HISTORY = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class CarrierKey:
    id: int
    retired: bool


@dataclass(frozen=True, slots=True)
class SiteKey:
    id: int
    latitude: float | None
    longitude: float | None
    retired: bool


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One position to store (coordinates and/or the site it is at)."""

    carrier_id: int
    ts: datetime
    customer_id: int
    latitude: float | None
    longitude: float | None
    site_id: int | None
    device_id: int | None
    received_at: datetime


def find_carriers(conn: Conn, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], CarrierKey]:
    """Carriers by (customer id, ref); retired when the carrier or its customer is. A ref that
    PostgreSQL text cannot hold (a NUL, a lone surrogate) is no carrier's and is not asked for."""
    keys = [k for k in keys if storable_text(k[1])]
    rows = conn.execute(
        """
        SELECT c.customer_id, c.ref, c.id, c.retired_at IS NOT NULL OR cu.retired_at IS NOT NULL
          FROM unnest(%s::bigint[], %s::text[]) k (customer_id, ref)
          JOIN carriers c ON c.customer_id = k.customer_id AND c.ref = k.ref
          JOIN customers cu ON cu.id = c.customer_id
        """,
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {(r[0], r[1]): CarrierKey(r[2], r[3]) for r in rows}


def find_sites(conn: Conn, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], SiteKey]:
    """Sites (stations) by (customer id, ref); a ref that PostgreSQL text cannot hold is no
    site's and is not asked for."""
    keys = [k for k in keys if storable_text(k[1])]
    rows = conn.execute(
        """
        SELECT s.customer_id, s.ref, s.id, s.latitude, s.longitude, s.retired_at IS NOT NULL
          FROM unnest(%s::bigint[], %s::text[]) k (customer_id, ref)
          JOIN sites s ON s.customer_id = k.customer_id AND s.ref = k.ref
        """,
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {(r[0], r[1]): SiteKey(r[2], r[3], r[4], r[5]) for r in rows}


def insert_positions(conn: Conn, rows: Sequence[PositionRow], *, replace: bool = False) -> int:
    """Store positions once per (carrier, time); how many were new (``replace``: a position
    at a time already stored replaces it, as the API's correction; telemetry's first stays)."""
    on_conflict = (
        "DO UPDATE SET latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,"
        " site_id = EXCLUDED.site_id, device_id = EXCLUDED.device_id,"
        " received_at = EXCLUDED.received_at"
        if replace
        else "DO NOTHING"
    )
    cur = conn.execute(
        f"""
        INSERT INTO carrier_positions (carrier_id, ts, customer_id, latitude, longitude, site_id,
                                       device_id, received_at)
        SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[],
                             %s::double precision[], %s::double precision[], %s::bigint[],
                             %s::bigint[], %s::timestamptz[])
        ON CONFLICT (carrier_id, ts) {on_conflict}
        """,
        (
            [r.carrier_id for r in rows],
            [r.ts for r in rows],
            [r.customer_id for r in rows],
            [r.latitude for r in rows],
            [r.longitude for r in rows],
            [r.site_id for r in rows],
            [r.device_id for r in rows],
            [r.received_at for r in rows],
        ),
    )
    return cur.rowcount


def move_latest(conn: Conn, rows: Sequence[PositionRow], source: str) -> int:
    """Make each row the carrier's latest position unless the carrier has a newer one (a
    position never moves back in time; the API's replaces one of the same time, telemetry's
    does not); how many carriers moved. One row per carrier."""
    newer = "<=" if source == "api" else "<"
    cur = conn.execute(
        f"""
        UPDATE carriers c SET latitude = n.latitude, longitude = n.longitude,
               at_site_id = n.site_id, position_at = n.ts, position_source = %s
          FROM unnest(%s::bigint[], %s::timestamptz[], %s::double precision[],
                      %s::double precision[], %s::bigint[])
               n (carrier_id, ts, latitude, longitude, site_id)
         WHERE c.id = n.carrier_id AND (c.position_at IS NULL OR c.position_at {newer} n.ts)
        """,
        (
            source,
            [r.carrier_id for r in rows],
            [r.ts for r in rows],
            [r.latitude for r in rows],
            [r.longitude for r in rows],
            [r.site_id for r in rows],
        ),
    )
    return cur.rowcount


def prune_positions(conn: Conn, carrier_ids: Sequence[int], now: datetime) -> int:
    """Delete these carriers' positions older than the history kept; how many."""
    cur = conn.execute(
        "DELETE FROM carrier_positions WHERE carrier_id = ANY(%s) AND ts < %s",
        (list(carrier_ids), now - POSITION_HISTORY),
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class PositionView:
    """One stored position, as the API shows a carrier's history."""

    ts: datetime
    latitude: float | None
    longitude: float | None
    station: str | None
    source: str
    device_ref: str | None
    received_at: datetime


def position_history(
    conn: Conn, carrier_id: int, *, before: datetime | None, limit: int
) -> list[PositionView]:
    """A carrier's positions, newest first (older than ``before`` when given)."""
    rows = conn.execute(
        """
        SELECT p.ts, p.latitude, p.longitude, s.ref,
               CASE WHEN p.device_id IS NULL THEN 'api' ELSE 'telemetry' END, d.ref, p.received_at
          FROM carrier_positions p LEFT JOIN sites s ON s.id = p.site_id
               LEFT JOIN devices d ON d.id = p.device_id
         WHERE p.carrier_id = %(c)s AND (%(b)s::timestamptz IS NULL OR p.ts < %(b)s)
         ORDER BY p.ts DESC LIMIT %(n)s
        """,
        {"c": carrier_id, "b": before, "n": limit},
    ).fetchall()
    return [PositionView(*r) for r in rows]
