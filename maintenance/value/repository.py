"""All SQL of the value report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, scalar_row

from maintenance.common import Conn


def _rows(conn: Conn, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def prevented(conn: Conn, customer_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Orders raised from predictions (the asset was wearing out) and completed in the window
    no later than their due date, with the age of the component they replaced."""
    return _rows(
        conn,
        """
        SELECT o.id AS order_id, o.asset_id, a.ref AS asset_ref, a.kind, o.component, o.reason,
               o.due_at, o.completed_at,
               (SELECT extract(epoch FROM l.ended_at - l.started_at) / 86400.0
                  FROM asset_lives l WHERE l.order_id = o.id ORDER BY l.id LIMIT 1) AS life_days
          FROM maintenance_orders o JOIN assets a ON a.id = o.asset_id
         WHERE o.customer_id = %(c)s AND o.status = 'completed'
           AND o.completed_at >= %(s)s AND o.completed_at < %(e)s
           AND o.reason IN ('predicted', 'anomaly') AND o.completed_at <= o.due_at
         ORDER BY o.completed_at, o.id
        """,
        {"c": customer_id, "s": start, "e": end},
    )


def failures(conn: Conn, customer_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Lives of the customer's assets that ended in failure in the window."""
    return _rows(
        conn,
        """
        SELECT l.id AS life_id, l.asset_id, a.ref AS asset_ref, a.kind, l.component,
               l.ended_at AS failed_at, fr.id AS failure_report_id
          FROM asset_lives l JOIN assets a ON a.id = l.asset_id
          LEFT JOIN failure_reports fr ON fr.asset_id = l.asset_id
               AND fr.component = l.component AND fr.failed_at = l.ended_at
         WHERE a.customer_id = %(c)s AND l.end_reason = 'failure'
           AND l.ended_at >= %(s)s AND l.ended_at < %(e)s
         ORDER BY l.ended_at, l.id
        """,
        {"c": customer_id, "s": start, "e": end},
    )


def life_days(conn: Conn, customer_id: int, until: datetime) -> dict[tuple[str, str], list[float]]:
    """Ages (days) of the customer's recorded lives ended before ``until``, per kind and
    component."""
    rows = conn.execute(
        """
        SELECT a.kind, l.component, extract(epoch FROM l.ended_at - l.started_at) / 86400.0
          FROM asset_lives l JOIN assets a ON a.id = l.asset_id
         WHERE a.customer_id = %s AND l.ended_at < %s AND l.ended_at > l.started_at
        """,
        (customer_id, until),
    ).fetchall()
    found: dict[tuple[str, str], list[float]] = {}
    for kind, component, days in rows:
        found.setdefault((kind, component), []).append(float(days))
    return found


def shipments(conn: Conn, customer_id: int, start: datetime, end: datetime) -> dict[str, int]:
    """Shipments delivered in the window: how many, how many by the order's due date, pieces."""
    row = _rows(
        conn,
        """
        SELECT count(*) AS delivered,
               count(*) FILTER (WHERE s.delivered_at <= o.due_at) AS on_time,
               coalesce(sum(s.quantity), 0) AS parts
          FROM shipments s JOIN maintenance_orders o ON o.id = s.order_id
         WHERE s.customer_id = %(c)s AND s.status = 'delivered'
           AND s.delivered_at >= %(s)s AND s.delivered_at < %(e)s
        """,
        {"c": customer_id, "s": start, "e": end},
    )[0]
    return {k: int(v) for k, v in row.items()}


def credits(conn: Conn, customer_id: int, period: str) -> dict[str, int]:
    """Service credits earned by failures of the month: count, applied amount, pending."""
    return {
        k: int(v)
        for k, v in _rows(
            conn,
            """
            SELECT count(*) AS count, coalesce(sum(amount_minor), 0) AS applied_minor,
                   count(*) FILTER (WHERE invoice_id IS NULL) AS pending
              FROM service_credits WHERE customer_id = %(c)s AND period = %(p)s
            """,
            {"c": customer_id, "p": period},
        )[0].items()
    }


def customer(conn: Conn, customer_id: int) -> tuple[str, str] | None:
    """A customer's name and currency."""
    row = conn.execute(
        "SELECT name, trim(currency) FROM customers WHERE id = %s", (customer_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def invoiced_customers(conn: Conn, period: str) -> list[int]:
    """Customers whose invoice of ``period`` has been issued."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT customer_id FROM invoices WHERE period = %s AND issued_at IS NOT NULL"
            " ORDER BY customer_id",
            (period,),
        ).fetchall()


def mark_sent(conn: Conn, customer_id: int, period: str, now: datetime) -> bool:
    """Record that the month's report was announced; False when it already was."""
    return (
        conn.execute(
            "INSERT INTO value_reports_sent (customer_id, period, sent_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (customer_id, period, now),
        ).rowcount
        == 1
    )
