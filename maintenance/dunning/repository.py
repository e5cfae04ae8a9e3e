"""All SQL of dunning: payments, invoice payment state, overdue invoices, dunning steps."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row, scalar_row

from fleetcare.repository import fetch_one
from maintenance.billing.schemas import Invoice
from maintenance.common import Conn
from maintenance.dunning.schemas import DunningStep, OverdueInvoice, Payment


def insert_payment(
    conn: Conn,
    *,
    customer_id: int,
    invoice_id: int,
    amount_minor: int,
    received_at: datetime,
    reference: str,
    now: datetime,
) -> Payment | None:
    """Record a payment; None when this reference was already recorded for the invoice."""
    with conn.cursor(row_factory=class_row(Payment)) as cur:
        return cur.execute(
            "INSERT INTO invoice_payments (customer_id, invoice_id, amount_minor, received_at,"
            " reference, recorded_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (invoice_id, reference) DO NOTHING RETURNING *",
            (customer_id, invoice_id, amount_minor, received_at, reference, now),
        ).fetchone()


def add_paid(conn: Conn, invoice_id: int, amount_minor: int, now: datetime) -> None:
    """Add a payment to an invoice's paid amount."""
    conn.execute(
        "UPDATE invoices SET paid_minor = paid_minor + %s, updated_at = %s WHERE id = %s",
        (amount_minor, now, invoice_id),
    )


def payments(conn: Conn, invoice_id: int) -> list[Payment]:
    """The payments of an invoice, oldest first."""
    with conn.cursor(row_factory=class_row(Payment)) as cur:
        return cur.execute(
            "SELECT * FROM invoice_payments WHERE invoice_id = %s ORDER BY received_at, id",
            (invoice_id,),
        ).fetchall()


_OVERDUE = """
    SELECT i.id, i.customer_id, i.period, i.currency, i.total_minor + i.tax_minor AS gross_minor,
           i.paid_minor, i.due_at,
           (SELECT coalesce(sum(c.total_minor + c.tax_minor), 0) FROM credit_notes c
             WHERE c.invoice_id = i.id AND c.kind = 'correction') AS credited_minor,
           coalesce(array_agg(DISTINCT l.plan_id) FILTER (WHERE l.plan_id IS NOT NULL),
                    ARRAY[]::bigint[]) AS plan_ids,
           coalesce(array_agg(DISTINCT l.subscription_id)
                        FILTER (WHERE l.subscription_id IS NOT NULL), ARRAY[]::bigint[])
               AS subscription_ids
      FROM invoices i
      LEFT JOIN invoice_lines l ON l.invoice_id = i.id
     WHERE i.status = 'issued' AND i.due_at < %(now)s {where}
     GROUP BY i.id
     ORDER BY i.due_at, i.id
"""


def overdue_invoices(conn: Conn, now: datetime) -> list[OverdueInvoice]:
    """Issued invoices past their due date, oldest due first."""
    with conn.cursor(row_factory=class_row(OverdueInvoice)) as cur:
        return cur.execute(_OVERDUE.format(where=""), {"now": now}).fetchall()


def overdue_of_customer(conn: Conn, customer_id: int, now: datetime) -> list[OverdueInvoice]:
    """A customer's issued invoices past their due date."""
    with conn.cursor(row_factory=class_row(OverdueInvoice)) as cur:
        return cur.execute(
            _OVERDUE.format(where="AND i.customer_id = %(c)s"), {"now": now, "c": customer_id}
        ).fetchall()


def take_step(
    conn: Conn,
    invoice: OverdueInvoice,
    step: str,
    days_overdue: int,
    now: datetime,
    subscription_id: int | None = None,
) -> DunningStep | None:
    """Record a dunning step of an invoice; None when it was taken before (by anyone)."""
    with conn.cursor(row_factory=class_row(DunningStep)) as cur:
        return cur.execute(
            "INSERT INTO dunning_steps (invoice_id, customer_id, step, subscription_id,"
            " days_overdue, taken_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING *",
            (invoice.id, invoice.customer_id, step, subscription_id, days_overdue, now),
        ).fetchone()


def steps(conn: Conn, invoice_id: int) -> list[DunningStep]:
    """The dunning steps taken on an invoice, in order."""
    with conn.cursor(row_factory=class_row(DunningStep)) as cur:
        return cur.execute(
            "SELECT * FROM dunning_steps WHERE invoice_id = %s ORDER BY taken_at, step",
            (invoice_id,),
        ).fetchall()


def set_orders_paused(
    conn: Conn, subscription_id: int, paused_at: datetime | None, now: datetime
) -> bool:
    """Pause (a time) or resume (None) a subscription's automatic orders; False if unchanged."""
    cur = conn.execute(
        "UPDATE subscriptions SET orders_paused_at = %s, updated_at = %s"
        " WHERE id = %s AND (orders_paused_at IS NULL) <> (%s::timestamptz IS NULL)",
        (paused_at, now, subscription_id, paused_at),
    )
    return cur.rowcount > 0


def subscriptions_in_dunning(conn: Conn, customer_id: int) -> list[int]:
    """A customer's subscriptions that are past due or have their orders paused."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT id FROM subscriptions WHERE customer_id = %s"
            " AND (status = 'past_due' OR orders_paused_at IS NOT NULL) ORDER BY id",
            (customer_id,),
        ).fetchall()


def lock_invoice(conn: Conn, invoice_id: int) -> Invoice | None:
    """An invoice by id, row-locked."""
    return fetch_one(conn, "invoices", Invoice, invoice_id, scope=None, for_update=True)


def get_invoice(conn: Conn, invoice_id: int, scope: int | None) -> Invoice | None:
    """An invoice within ``scope``."""
    return fetch_one(conn, "invoices", Invoice, invoice_id, scope=scope)


def mark_paid(conn: Conn, invoice_id: int, paid_at: datetime, now: datetime) -> Invoice:
    """issued -> paid."""
    with conn.cursor(row_factory=class_row(Invoice)) as cur:
        row = cur.execute(
            "UPDATE invoices SET status = 'paid', paid_at = %s, updated_at = %s"
            " WHERE id = %s AND status = 'issued' RETURNING *",
            (paid_at, now, invoice_id),
        ).fetchone()
    assert row is not None
    return row


def credited_minor(conn: Conn, invoice_id: int) -> int:
    """What correction credit notes took off an invoice (with tax)."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            "SELECT coalesce(sum(total_minor + tax_minor), 0) FROM credit_notes"
            " WHERE invoice_id = %s AND kind = 'correction'",
            (invoice_id,),
        ).fetchone()
    return int(value or 0)
