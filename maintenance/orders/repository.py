"""All SQL of maintenance orders, lives, failure reports and missed predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from fleetcare.repository import fetch_page, insert_row, update_row
from maintenance.common import Conn
from maintenance.orders.schemas import (
    OPEN_ORDER_STATUSES,
    FailureReport,
    LastPrediction,
    MissedPrediction,
    Order,
    OrderPart,
)


def insert_order_unless_open(conn: Conn, values: dict[str, Any]) -> Order | None:
    """Insert an order unless one is open for its asset and component (the DB decides)."""
    values = {k: Jsonb(v) if k == "explanation" and v is not None else v for k, v in values.items()}
    columns = list(values)
    query = sql.SQL(
        "INSERT INTO maintenance_orders ({}) VALUES ({})"
        " ON CONFLICT (asset_id, component)"
        " WHERE status IN ('raised', 'scheduled', 'in_progress') DO NOTHING RETURNING *"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with conn.cursor(row_factory=class_row(Order)) as cur:
        return cur.execute(query, [values[c] for c in columns]).fetchone()


def find_order(
    conn: Conn,
    order_id: int,
    *,
    customer_id: int | None,
    partner_id: int | None,
    for_update: bool = False,
) -> Order | None:
    """An order within the customer, or assigned to the partner, when those are set."""
    with conn.cursor(row_factory=class_row(Order)) as cur:
        return cur.execute(
            """
            SELECT * FROM maintenance_orders
             WHERE id = %(id)s
               AND (%(c)s::bigint IS NULL OR customer_id = %(c)s)
               AND (%(p)s::bigint IS NULL OR partner_id = %(p)s)
            """
            + (" FOR UPDATE" if for_update else ""),
            {"id": order_id, "c": customer_id, "p": partner_id},
        ).fetchone()


def open_order_for(conn: Conn, asset_id: int, component: str) -> Order | None:
    """The open order of an asset's component, locked."""
    with conn.cursor(row_factory=class_row(Order)) as cur:
        return cur.execute(
            "SELECT * FROM maintenance_orders WHERE asset_id = %s AND component = %s"
            " AND status = ANY(%s) FOR UPDATE",
            (asset_id, component, list(OPEN_ORDER_STATUSES)),
        ).fetchone()


def list_orders(
    conn: Conn, *, filters: dict[str, Any], open_only: bool, after: int | None, limit: int
) -> list[Order]:
    """Orders matching ``filters`` (column = value; None skipped), by id, ``limit + 1`` rows."""
    parts: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    for column, value in filters.items():
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if open_only:
        parts.append(sql.SQL("status = ANY(%s)"))
        params.append(list(OPEN_ORDER_STATUSES))
    if after is not None:
        parts.append(sql.SQL("id > %s"))
        params.append(after)
    query = sql.SQL("SELECT * FROM maintenance_orders WHERE {} ORDER BY id LIMIT %s").format(
        sql.SQL(" AND ").join(parts)
    )
    with conn.cursor(row_factory=class_row(Order)) as cur:
        return cur.execute(query, [*params, limit + 1]).fetchall()


def set_order(conn: Conn, order_id: int, values: dict[str, Any]) -> Order:
    """Update an order's columns (and updated_at)."""
    row = update_row(
        conn, "maintenance_orders", Order, order_id, values, extra_sets=["updated_at = now()"]
    )
    assert row is not None
    return row


def insert_order_part(conn: Conn, values: dict[str, Any]) -> OrderPart:
    """Record a part used by an order (quantities of the same part add up)."""
    with conn.cursor(row_factory=class_row(OrderPart)) as cur:
        row = cur.execute(
            """
            INSERT INTO order_parts (order_id, part_id, quantity, price_minor, currency, billable)
            VALUES (%(order_id)s, %(part_id)s, %(quantity)s, %(price_minor)s, %(currency)s,
                    %(billable)s)
            ON CONFLICT (order_id, part_id) DO UPDATE
               SET quantity = order_parts.quantity + EXCLUDED.quantity
            RETURNING *
            """,
            values,
        ).fetchone()
    assert row is not None
    return row


def order_parts(conn: Conn, order_id: int) -> list[OrderPart]:
    """Parts used by an order."""
    with conn.cursor(row_factory=class_row(OrderPart)) as cur:
        return cur.execute(
            "SELECT * FROM order_parts WHERE order_id = %s ORDER BY part_id", (order_id,)
        ).fetchall()


def life_start(conn: Conn, asset_id: int, component: str) -> datetime:
    """When the component's current life began: installation or the end of the last life."""
    row = conn.execute(
        """
        SELECT greatest(a.installed_at, (SELECT max(ended_at) FROM asset_lives l
                                          WHERE l.asset_id = a.id AND l.component = %s))
          FROM assets a WHERE a.id = %s
        """,
        (component, asset_id),
    ).fetchone()
    assert row is not None
    started: datetime = row[0]
    return started


def insert_life(conn: Conn, values: dict[str, Any]) -> int | None:
    """Record the end of a life; None when that life was already recorded."""
    row = conn.execute(
        """
        INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason,
                                 usage_at_end, source, order_id, outcome)
        VALUES (%(asset_id)s, %(component)s, %(started_at)s, %(ended_at)s, %(end_reason)s,
                %(usage_at_end)s, %(source)s, %(order_id)s, %(outcome)s)
        ON CONFLICT (asset_id, component, ended_at) DO NOTHING
        RETURNING id
        """,
        {"outcome": None, **values},  # the life's label (fleet.causes.life_outcome)
    ).fetchone()
    return int(row[0]) if row else None


def life_recorded_for_order(conn: Conn, order_id: int) -> bool:
    """Whether a life already ended with this order (e.g. a failure during it)."""
    row = conn.execute("SELECT 1 FROM asset_lives WHERE order_id = %s", (order_id,)).fetchone()
    return row is not None


def renew_asset(conn: Conn, asset_id: int, at: datetime) -> None:
    """A new life starts: renewal time set, the usage counter back to zero."""
    conn.execute("UPDATE assets SET renewed_at = %(t)s WHERE id = %(a)s", {"t": at, "a": asset_id})
    conn.execute(
        """
        INSERT INTO asset_seen (asset_id, usage_counter, usage_at) VALUES (%(a)s, 0, %(t)s)
        ON CONFLICT (asset_id) DO UPDATE SET usage_counter = 0, usage_at = %(t)s
        """,
        {"t": at, "a": asset_id},
    )


def last_prediction(
    conn: Conn, asset_id: int, component: str, before: datetime
) -> LastPrediction | None:
    """The newest prediction of an asset's component made before ``before``."""
    with conn.cursor(row_factory=class_row(LastPrediction)) as cur:
        return cur.execute(
            """
            SELECT time, due_at_conservative, failure_probability FROM predictions
             WHERE asset_id = %s AND component = %s AND time <= %s
             ORDER BY time DESC LIMIT 1
            """,
            (asset_id, component, before),
        ).fetchone()


def insert_failure_report(conn: Conn, values: dict[str, Any]) -> FailureReport:
    """Record a reported failure."""
    return insert_row(conn, "failure_reports", FailureReport, values)


def insert_missed_prediction(conn: Conn, values: dict[str, Any]) -> MissedPrediction:
    """Record a failure that no open order foresaw."""
    return insert_row(conn, "missed_predictions", MissedPrediction, values)


def list_missed(
    conn: Conn, *, scope: int | None, after: int | None, limit: int
) -> tuple[list[MissedPrediction], int | None]:
    """One page of missed predictions within ``scope`` (None: every customer's)."""
    return fetch_page(
        conn,
        "missed_predictions",
        MissedPrediction,
        scope=scope,
        include_retired=True,
        after=after,
        limit=limit,
    )
