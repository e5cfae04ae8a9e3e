"""All SQL of order outcomes and of the model page (outcomes beside the predictions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row, dict_row

from fleetcare.repository import insert_row
from maintenance.common import Conn
from maintenance.outcomes.schemas import OrderOutcome


def insert_outcome(conn: Conn, values: dict[str, Any]) -> OrderOutcome:
    """Record one outcome of an order."""
    return insert_row(conn, "order_outcomes", OrderOutcome, values)


def outcomes_of_order(conn: Conn, order_id: int) -> list[OrderOutcome]:
    """An order's outcomes, by component."""
    with conn.cursor(row_factory=class_row(OrderOutcome)) as cur:
        return cur.execute(
            "SELECT * FROM order_outcomes WHERE order_id = %s ORDER BY component", (order_id,)
        ).fetchall()


def label_life(conn: Conn, life_id: int, outcome: str, remaining: float | None) -> None:
    """Label a recorded life with its outcome (and the life it still had when measured)."""
    conn.execute(
        "UPDATE asset_lives SET outcome = %s, remaining_at_end = %s WHERE id = %s",
        (outcome, remaining, life_id),
    )


def first_reading(conn: Conn, asset_id: int, metric: str, since: datetime) -> float | None:
    """The first reading of an asset's metric at or after ``since`` (None without one)."""
    row = conn.execute(
        """
        SELECT t.value FROM telemetry t
          JOIN assets a ON a.id = t.asset_id
          JOIN metrics m ON m.kind = a.kind AND m.id = t.metric_id
         WHERE t.asset_id = %s AND m.name = %s AND t.time >= %s
         ORDER BY t.time LIMIT 1
        """,
        (asset_id, metric, since),
    ).fetchone()
    return None if row is None else float(row[0])


_PREDICTION = """
    p.model_version_id, p.time AS prediction_time, p.rul, p.rul_low, p.rul_high,
    p.usage_rate_per_day
"""


def outcome_rows(
    conn: Conn, *, scope: int | None, kind: str | None, limit: int
) -> list[dict[str, Any]]:
    """Outcomes of the orders' own components and reported failures within ``scope`` (None:
    every customer), newest first, each with the prediction it judges: the one that raised
    the order, or the last one before the failure."""
    params = {"scope": scope, "kind": kind, "limit": limit}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            (SELECT 'order' AS source, o.id AS source_id, o.customer_id, o.asset_id,
                    a.ref AS asset_ref, a.kind, o.component, o.code AS outcome,
                    NULL::text AS cause,
                    coalesce(mo.completed_at, mo.cancelled_at, o.recorded_at) AS ended_at,
                    mo.reason AS order_reason, o.remaining_life, o.order_status, {_PREDICTION}
               FROM order_outcomes o
               JOIN maintenance_orders mo ON mo.id = o.order_id AND mo.component = o.component
               JOIN assets a ON a.id = o.asset_id
               LEFT JOIN predictions p ON p.asset_id = mo.asset_id
                    AND p.component = mo.component AND p.time = mo.prediction_time
              WHERE (%(scope)s::bigint IS NULL OR o.customer_id = %(scope)s)
                AND (%(kind)s::text IS NULL OR a.kind = %(kind)s))
            UNION ALL
            (SELECT 'failure', f.id, f.customer_id, f.asset_id, a.ref, a.kind, f.component,
                    CASE WHEN f.missed THEN 'missed_failure' ELSE 'failure' END, f.cause,
                    f.failed_at, mo.reason, NULL::double precision, NULL::text, {_PREDICTION}
               FROM failure_reports f
               JOIN assets a ON a.id = f.asset_id
               LEFT JOIN maintenance_orders mo ON mo.id = f.order_id
               LEFT JOIN LATERAL (
                    SELECT * FROM predictions q
                     WHERE q.asset_id = f.asset_id AND q.component = f.component
                       AND q.time <= f.failed_at
                     ORDER BY q.time DESC LIMIT 1) p ON true
              WHERE (%(scope)s::bigint IS NULL OR f.customer_id = %(scope)s)
                AND (%(kind)s::text IS NULL OR a.kind = %(kind)s))
            ORDER BY ended_at DESC, source, source_id DESC
            LIMIT %(limit)s
            """,
            params,
        ).fetchall()
