"""All SQL of billing: telemetry reads for metering, usage records, invoices and lines."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, dict_row, scalar_row

from fleetcare.repository import fetch_one, fetch_page, update_row
from maintenance.billing.schemas import (
    INVOICE_LIFECYCLE,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineDraft,
    OrderPartUse,
    StatementLine,
    UsageRecord,
)
from maintenance.common import Conn
from maintenance.subscriptions.schemas import CoveredAsset

# --- who and what to bill ------------------------------------------------------------------


def customers_to_bill(
    conn: Conn, start: datetime, end: datetime, customer_id: int | None
) -> list[int]:
    """Customers with a subscription or a completed order in ``[start, end)``, or an invoice."""
    with conn.cursor(row_factory=scalar_row) as cur:
        found: list[int] = cur.execute(
            """
            SELECT customer_id FROM subscriptions
             WHERE starts_at < %(e)s AND (ends_at IS NULL OR ends_at > %(s)s)
            UNION
            SELECT customer_id FROM maintenance_orders
             WHERE status = 'completed' AND completed_at >= %(s)s AND completed_at < %(e)s
            UNION
            SELECT customer_id FROM invoices WHERE period_start = %(s)s
            UNION
            -- fees of this period billed in advance by an earlier invoice: credited now
            SELECT i.customer_id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE l.contract_charge = 'advance'
               AND l.starts_at >= %(s)s AND l.ends_at <= %(e)s
               AND i.period_start < %(s)s AND i.status IN ('issued', 'paid')
            ORDER BY 1
            """,
            {"s": start, "e": end},
        ).fetchall()
    return [c for c in found if customer_id is None or c == customer_id]


def customer_currency(conn: Conn, customer_id: int) -> str | None:
    """The currency a customer is invoiced in."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            "SELECT currency FROM customers WHERE id = %s", (customer_id,)
        ).fetchone()
    return None if value is None else str(value).strip()


def asset(conn: Conn, asset_id: int, scope: int | None) -> CoveredAsset | None:
    """One asset within ``scope`` (None: any customer's)."""
    with conn.cursor(row_factory=class_row(CoveredAsset)) as cur:
        return cur.execute(
            """
            SELECT id, customer_id, ref, kind, installed_at, retired_at FROM assets
             WHERE id = %(a)s AND (%(c)s::bigint IS NULL OR customer_id = %(c)s)
            """,
            {"a": asset_id, "c": scope},
        ).fetchone()


def metric_id(conn: Conn, kind: str, name: str) -> int | None:
    """The catalogue id of a kind's metric."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            "SELECT id FROM metrics WHERE kind = %s AND name = %s", (kind, name)
        ).fetchone()
    return None if value is None else int(value)


def counter_readings(
    conn: Conn, asset_id: int, metric: int, start: datetime, end: datetime
) -> tuple[tuple[datetime, float] | None, list[tuple[datetime, float]]]:
    """The last reading before ``start`` (time, value; or None) and the readings in the window."""
    before = conn.execute(
        "SELECT time, value FROM telemetry WHERE asset_id = %s AND metric_id = %s AND time < %s"
        " ORDER BY time DESC LIMIT 1",
        (asset_id, metric, start),
    ).fetchone()
    rows = conn.execute(
        "SELECT time, value FROM telemetry WHERE asset_id = %s AND metric_id = %s"
        " AND time >= %s AND time < %s ORDER BY time",
        (asset_id, metric, start, end),
    ).fetchall()
    baseline = None if before is None else (before[0], float(before[1]))
    return baseline, [(r[0], float(r[1])) for r in rows]


def renewals(conn: Conn, asset_id: int, after: datetime | None, until: datetime) -> list[datetime]:
    """Times the asset was renewed (a recorded life ended) in ``(after, until]``."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            SELECT ended_at FROM asset_lives
             WHERE asset_id = %(a)s AND ended_at <= %(u)s
               AND (%(s)s::timestamptz IS NULL OR ended_at > %(s)s)
            UNION
            SELECT renewed_at FROM assets
             WHERE id = %(a)s AND renewed_at > installed_at AND renewed_at <= %(u)s
               AND (%(s)s::timestamptz IS NULL OR renewed_at > %(s)s)
            ORDER BY 1
            """,
            {"a": asset_id, "s": after, "u": until},
        ).fetchall()


# --- usage records -------------------------------------------------------------------------


def upsert_usage_record(conn: Conn, values: dict[str, Any]) -> UsageRecord:
    """Write a usage record by its deterministic id (recomputing overwrites the measurement)."""
    with conn.cursor(row_factory=class_row(UsageRecord)) as cur:
        row = cur.execute(
            """
            INSERT INTO usage_records (id, customer_id, subscription_id, asset_id, period,
                                       metric, unit, window_start, window_end, quantity,
                                       readings, resets, computed_at)
            VALUES (%(id)s, %(customer_id)s, %(subscription_id)s, %(asset_id)s, %(period)s,
                    %(metric)s, %(unit)s, %(window_start)s, %(window_end)s, %(quantity)s,
                    %(readings)s, %(resets)s, %(computed_at)s)
            ON CONFLICT (id) DO UPDATE SET
                window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
                quantity = EXCLUDED.quantity, readings = EXCLUDED.readings,
                resets = EXCLUDED.resets, computed_at = EXCLUDED.computed_at
            RETURNING *
            """,
            values,
        ).fetchone()
    assert row is not None
    return row


def billed_usage_records(conn: Conn, customer_id: int, periods: list[str]) -> list[UsageRecord]:
    """A customer's usage records of ``periods`` already charged by an issued invoice."""
    with conn.cursor(row_factory=class_row(UsageRecord)) as cur:
        return cur.execute(
            """
            SELECT * FROM usage_records
             WHERE customer_id = %s AND period = ANY(%s) AND billed_quantity IS NOT NULL
             ORDER BY period, subscription_id, asset_id
            """,
            (customer_id, periods),
        ).fetchall()


def delete_stale_usage(conn: Conn, customer_id: int, period: str, keep: list[UUID]) -> int:
    """Forget unbilled records of a period that the latest close no longer produced."""
    return conn.execute(
        """
        DELETE FROM usage_records u
         WHERE customer_id = %s AND period = %s AND billed_quantity IS NULL
           AND NOT (id = ANY(%s))
           AND NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.usage_record_id = u.id)
        """,
        (customer_id, period, keep),
    ).rowcount


def mark_usage_billed(conn: Conn, invoice_id: int, customer_id: int, period: str) -> None:
    """On issue: the period's usage is charged as computed; adjustment lines add to theirs."""
    conn.execute(
        """
        UPDATE usage_records u
           SET invoice_id = %(i)s, billed_quantity = u.quantity,
               billed_amount_minor = coalesce((
                   SELECT sum(l.amount_minor) FROM invoice_lines l
                    WHERE l.invoice_id = %(i)s AND l.usage_record_id = u.id
                      AND l.kind = 'usage'), 0)
         WHERE u.customer_id = %(c)s AND u.period = %(p)s AND u.billed_quantity IS NULL
        """,
        {"i": invoice_id, "c": customer_id, "p": period},
    )
    conn.execute(
        """
        UPDATE usage_records u
           SET billed_quantity = u.billed_quantity + l.quantity,
               billed_amount_minor = u.billed_amount_minor + l.amount_minor
          FROM invoice_lines l
         WHERE l.invoice_id = %s AND l.kind = 'usage_adjustment' AND l.usage_record_id = u.id
        """,
        (invoice_id,),
    )


def list_usage(
    conn: Conn,
    *,
    scope: int | None,
    asset_id: int | None,
    period: str | None,
    after: tuple[str, int, int] | None,
    limit: int,
) -> list[UsageRecord]:
    """Usage records within ``scope``, newest period first, a keyset page: those after
    ``after`` = (period, subscription id, asset id) in that order."""
    p_after, s_after, a_after = after or (None, None, None)
    with conn.cursor(row_factory=class_row(UsageRecord)) as cur:
        return cur.execute(
            """
            SELECT * FROM usage_records
             WHERE (%(c)s::bigint IS NULL OR customer_id = %(c)s)
               AND (%(a)s::bigint IS NULL OR asset_id = %(a)s)
               AND (%(p)s::text IS NULL OR period = %(p)s)
               AND (%(pa)s::text IS NULL OR period < %(pa)s
                    OR (period = %(pa)s AND (subscription_id, asset_id) > (%(sa)s, %(aa)s)))
             ORDER BY period DESC, subscription_id, asset_id
             LIMIT %(l)s
            """,
            {
                "c": scope,
                "a": asset_id,
                "p": period,
                "pa": p_after,
                "sa": s_after,
                "aa": a_after,
                "l": limit,
            },
        ).fetchall()


# --- orders --------------------------------------------------------------------------------


def completed_order_parts(
    conn: Conn, customer_id: int, start: datetime, end: datetime
) -> list[OrderPartUse]:
    """Parts used by the customer's orders completed in ``[start, end)``."""
    with conn.cursor(row_factory=class_row(OrderPartUse)) as cur:
        return cur.execute(
            """
            SELECT o.id AS order_id, o.subscription_id, o.asset_id, a.ref AS asset_ref, o.component,
                   o.completed_at, o.parts_included, o.labour_included,
                   op.part_id, p.sku, p.name AS part_name, op.quantity, op.price_minor,
                   trim(op.currency) AS currency, op.billable, p.labour_hours
              FROM maintenance_orders o
              JOIN assets a ON a.id = o.asset_id
              JOIN order_parts op ON op.order_id = o.id
              JOIN parts p ON p.id = op.part_id
             WHERE o.customer_id = %s AND o.status = 'completed'
               AND o.completed_at >= %s AND o.completed_at < %s
             ORDER BY o.completed_at, o.id, op.part_id
            """,
            (customer_id, start, end),
        ).fetchall()


# --- invoices ------------------------------------------------------------------------------


def ensure_invoice(
    conn: Conn,
    *,
    customer_id: int,
    period: str,
    start: datetime,
    end: datetime,
    currency: str,
    now: datetime,
    replaces: int | None = None,
    rebills: int | None = None,
) -> None:
    """Create the period's live draft unless it exists (a concurrent closer waits here); a
    supplementary one when ``rebills`` (a re-billing correction) is given."""
    conn.execute(
        """
        INSERT INTO invoices (customer_id, period, period_start, period_end, currency,
                              closed_at, created_at, updated_at, replaces_invoice_id,
                              rebills_credit_note_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (customer_id, period, (coalesce(rebills_credit_note_id, 0)))
            WHERE status <> 'void' DO NOTHING
        """,
        (customer_id, period, start, end, currency, now, now, now, replaces, rebills),
    )


def lock_invoice(
    conn: Conn, customer_id: int, period: str, rebills: int | None = None
) -> Invoice | None:
    """The customer's live (not void) invoice of a period, row-locked: the regular one, or
    the supplementary one of the re-billing correction ``rebills``."""
    with conn.cursor(row_factory=class_row(Invoice)) as cur:
        return cur.execute(
            "SELECT * FROM invoices WHERE customer_id = %s AND period = %s AND status <> 'void'"
            " AND rebills_credit_note_id IS NOT DISTINCT FROM %s FOR UPDATE",
            (customer_id, period, rebills),
        ).fetchone()


def last_void_invoice(conn: Conn, customer_id: int, period: str) -> int | None:
    """The id of the customer's latest void regular invoice of a period, if any."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            "SELECT max(id) FROM invoices WHERE customer_id = %s AND period = %s"
            " AND status = 'void' AND rebills_credit_note_id IS NULL",
            (customer_id, period),
        ).fetchone()
    return None if value is None else int(value)


def get_invoice(
    conn: Conn, invoice_id: int, scope: int | None, *, for_update: bool = False
) -> Invoice | None:
    """One invoice within ``scope``."""
    return fetch_one(conn, "invoices", Invoice, invoice_id, scope=scope, for_update=for_update)


def list_invoices(
    conn: Conn,
    *,
    scope: int | None,
    customer_id: int | None,
    period: str | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Invoice], int | None]:
    """One page of invoices."""
    return fetch_page(
        conn,
        "invoices",
        Invoice,
        scope=scope,
        filters={"customer_id": customer_id, "period": period, "status": status},
        include_retired=True,
        after=after,
        limit=limit,
    )


def invoice_lines(conn: Conn, invoice_id: int) -> list[InvoiceLine]:
    """The lines of an invoice, in order."""
    with conn.cursor(row_factory=class_row(InvoiceLine)) as cur:
        return cur.execute(
            "SELECT * FROM invoice_lines WHERE invoice_id = %s ORDER BY line_no", (invoice_id,)
        ).fetchall()


def invoices_with_lines(
    conn: Conn, scope: int | None, period: str
) -> list[tuple[Invoice, list[InvoiceLine]]]:
    """Every invoice of a period within ``scope``, with its lines (two queries)."""
    with conn.cursor(row_factory=class_row(Invoice)) as cur:
        invoices = cur.execute(
            "SELECT * FROM invoices WHERE period = %s"
            " AND (%s::bigint IS NULL OR customer_id = %s) ORDER BY customer_id, id",
            (period, scope, scope),
        ).fetchall()
    with conn.cursor(row_factory=class_row(InvoiceLine)) as cur:
        lines = cur.execute(
            "SELECT * FROM invoice_lines WHERE invoice_id = ANY(%s) ORDER BY invoice_id, line_no",
            ([i.id for i in invoices],),
        ).fetchall()
    by_invoice: dict[int, list[InvoiceLine]] = {i.id: [] for i in invoices}
    for line in lines:
        by_invoice[line.invoice_id].append(line)
    return [(i, by_invoice[i.id]) for i in invoices]


def replace_lines(conn: Conn, invoice_id: int, lines: list[LineDraft], now: datetime) -> Invoice:
    """Swap a draft's lines for ``lines`` and set its total to their sum."""
    conn.execute("DELETE FROM invoice_lines WHERE invoice_id = %s", (invoice_id,))
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO invoice_lines (invoice_id, line_no, kind, description, subscription_id,
                asset_id, plan_id, order_id, part_id, usage_record_id, adjusts_period,
                starts_at, ends_at, quantity, unit, unit_price_minor, unit_quantity,
                amount_minor, service_credit_id, tax_category, tax_rate_bps, tax_minor,
                contract_charge)
            VALUES (%(invoice_id)s, %(line_no)s, %(kind)s, %(description)s,
                %(subscription_id)s, %(asset_id)s, %(plan_id)s, %(order_id)s, %(part_id)s,
                %(usage_record_id)s, %(adjusts_period)s, %(starts_at)s, %(ends_at)s,
                %(quantity)s, %(unit)s, %(unit_price_minor)s, %(unit_quantity)s,
                %(amount_minor)s, %(service_credit_id)s, %(tax_category)s, %(tax_rate_bps)s,
                %(tax_minor)s, %(contract_charge)s)
            """,
            [
                {**asdict(line), "invoice_id": invoice_id, "line_no": n}
                for n, line in enumerate(lines, start=1)
            ],
        )
    return set_invoice(
        conn,
        invoice_id,
        {
            "total_minor": sum(line.amount_minor for line in lines),
            "tax_minor": sum(line.tax_minor for line in lines),
            "line_count": len(lines),
            "closed_at": now,
        },
        now,
    )


def set_invoice(conn: Conn, invoice_id: int, values: dict[str, Any], now: datetime) -> Invoice:
    """Update columns of an invoice and its updated_at."""
    row = update_row(conn, "invoices", Invoice, invoice_id, {**values, "updated_at": now})
    assert row is not None
    return row


def move_invoice(
    conn: Conn, invoice: Invoice, to: InvoiceStatus, values: dict[str, Any], now: datetime
) -> Invoice:
    """Move an invoice to ``to`` (checked against its lifecycle) and set ``values`` with it."""
    INVOICE_LIFECYCLE.check(invoice.id, invoice.status, to)
    return set_invoice(conn, invoice.id, {**values, "status": to}, now)


def delete_draft(conn: Conn, invoice_id: int) -> None:
    """Remove an empty draft (nothing to bill)."""
    conn.execute("DELETE FROM invoice_lines WHERE invoice_id = %s", (invoice_id,))
    conn.execute("DELETE FROM invoices WHERE id = %s AND status = 'draft'", (invoice_id,))


def draft_periods(conn: Conn, customer_id: int) -> list[str]:
    """The periods of a customer's invoices that are still drafts."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT period FROM invoices WHERE customer_id = %s AND status = 'draft'",
            (customer_id,),
        ).fetchall()


def issued_charges(
    conn: Conn, customer_id: int, period: str, asset_id: int, subscription_id: int
) -> int:
    """An asset's base fee and usage under a subscription on the issued invoice of a period."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            """
            SELECT coalesce(sum(l.amount_minor), 0) FROM invoice_lines l
              JOIN invoices i ON i.id = l.invoice_id
             WHERE i.customer_id = %s AND i.period = %s AND i.status IN ('issued', 'paid')
               AND l.asset_id = %s AND l.subscription_id = %s
               AND l.kind IN ('base_fee', 'usage')
            """,
            (customer_id, period, asset_id, subscription_id),
        ).fetchone()
    return int(value or 0)


def issued_order_charges(conn: Conn, order_id: int) -> int | None:
    """The parts and labour of an order on issued invoices; None: none billed it."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            """
            SELECT sum(l.amount_minor) FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE l.order_id = %s AND i.status IN ('issued', 'paid')
               AND l.kind IN ('parts', 'labour')
            """,
            (order_id,),
        ).fetchone()
    return None if value is None else int(value)


# --- partners ------------------------------------------------------------------------------


def commissions_in(
    conn: Conn, partner_id: int, start: datetime, end: datetime
) -> list[StatementLine]:
    """A partner's commissions on orders completed in ``[start, end)``."""
    with conn.cursor(row_factory=class_row(StatementLine)) as cur:
        return cur.execute(
            """
            SELECT pc.id AS commission_id, pc.order_id, pc.customer_id, o.asset_id, o.component,
                   o.completed_at, pc.basis_minor, pc.rate_bps, pc.amount_minor,
                   trim(pc.currency) AS currency
              FROM partner_commissions pc
              JOIN maintenance_orders o ON o.id = pc.order_id
             WHERE pc.partner_id = %s AND o.completed_at >= %s AND o.completed_at < %s
             ORDER BY o.completed_at, pc.id
            """,
            (partner_id, start, end),
        ).fetchall()


def billed_in_advance(
    conn: Conn, customer_id: int, start: datetime, end: datetime
) -> dict[int, tuple[int, int]]:
    """Fees of ``[start, end)`` that earlier issued or paid invoices billed in advance, per
    subscription: (amount, the invoice that billed them)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT l.subscription_id, sum(l.amount_minor) AS amount, max(i.id) AS invoice_id
              FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.customer_id = %(c)s AND l.contract_charge = 'advance'
               AND l.starts_at >= %(s)s AND l.ends_at <= %(e)s AND i.period_start < %(s)s
               AND i.status IN ('issued', 'paid') AND l.subscription_id IS NOT NULL
             GROUP BY l.subscription_id
            """,
            {"c": customer_id, "s": start, "e": end},
        ).fetchall()
    return {r["subscription_id"]: (int(r["amount"]), r["invoice_id"]) for r in rows}
