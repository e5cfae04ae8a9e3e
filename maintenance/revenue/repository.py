"""All SQL of revenue recognition: the lines of invoices and credit notes, and their totals."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from maintenance.common import Conn
from maintenance.revenue.schemas import CreditedLine, RecognisableLine

# the plan of a line: its own, or the plan its subscription was on at the end of the period
_PLAN = """
    coalesce(l.plan_id, (
        SELECT pp.plan_id FROM subscription_plan_periods pp
         WHERE pp.subscription_id = l.subscription_id AND pp.effective_from < i.period_end
         ORDER BY pp.effective_from DESC LIMIT 1))
"""


def invoice_lines(
    conn: Conn, scope: int | None, invoice_id: int | None = None
) -> list[RecognisableLine]:
    """Lines of every invoice that is or was billed, and of drafts (not yet billed); voided
    drafts never were."""
    with conn.cursor(row_factory=class_row(RecognisableLine)) as cur:
        return cur.execute(
            f"""
            SELECT l.id AS line_id, l.invoice_id, i.customer_id, i.period,
                   trim(i.currency) AS currency, i.issued_at, l.line_no, l.kind, l.starts_at,
                   l.ends_at, l.amount_minor, l.tax_minor, {_PLAN} AS plan_id
              FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE (i.issued_at IS NOT NULL OR i.status = 'draft')
               AND (%(c)s::bigint IS NULL OR i.customer_id = %(c)s)
               AND (%(i)s::bigint IS NULL OR i.id = %(i)s)
             ORDER BY i.customer_id, i.id, l.line_no
            """,
            {"c": scope, "i": invoice_id},
        ).fetchall()


def credited_lines(
    conn: Conn, scope: int | None, invoice_id: int | None = None
) -> list[CreditedLine]:
    """Every credit-note line, with the invoice line it credits."""
    with conn.cursor(row_factory=class_row(CreditedLine)) as cur:
        return cur.execute(
            """
            SELECT cl.id AS credit_line_id, cl.credit_note_id, n.number, n.issued_at,
                   cl.invoice_line_id, cl.amount_minor, cl.tax_minor
              FROM credit_note_lines cl JOIN credit_notes n ON n.id = cl.credit_note_id
             WHERE (%(c)s::bigint IS NULL OR n.customer_id = %(c)s)
               AND (%(i)s::bigint IS NULL OR n.invoice_id = %(i)s)
             ORDER BY n.id, cl.line_no
            """,
            {"c": scope, "i": invoice_id},
        ).fetchall()


def billed_totals(conn: Conn, scope: int | None, start: datetime, end: datetime) -> dict[str, int]:
    """Net billed in ``[start, end)`` per currency, read from the documents' own totals:
    invoices issued minus credit notes issued (the reconciliation's other side)."""
    rows = conn.execute(
        """
        SELECT currency, sum(amount) FROM (
            SELECT trim(currency) AS currency, total_minor AS amount FROM invoices
             WHERE issued_at >= %(s)s AND issued_at < %(e)s
               AND (%(c)s::bigint IS NULL OR customer_id = %(c)s)
            UNION ALL
            SELECT trim(currency), -total_minor FROM credit_notes
             WHERE issued_at >= %(s)s AND issued_at < %(e)s
               AND (%(c)s::bigint IS NULL OR customer_id = %(c)s)
        ) billed GROUP BY currency
        """,
        {"s": start, "e": end, "c": scope},
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
