"""All SQL of invoice documents: numbering, parties, tax rates, credit notes, service credits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from psycopg.rows import class_row, dict_row, scalar_row
from psycopg.types.json import Jsonb

from fleetcare.repository import fetch_page, insert_row
from maintenance.billing.schemas import InvoiceLine
from maintenance.common import Conn
from maintenance.documents.schemas import (
    BillingProfile,
    CreditNote,
    CreditNoteLine,
    FailureOnCover,
    SellerProfile,
    ServiceCredit,
    TaxRate,
)
from maintenance.documents.tax import Rate


def as_json(value: dict[str, Any]) -> Jsonb:
    """A dict to store in a jsonb column."""
    return Jsonb(value)


# --- numbering -----------------------------------------------------------------------------


def next_number(conn: Conn, series: str, year: int) -> int:
    """The next number of a series in a year. The row stays locked until the caller's
    transaction ends, so concurrent issuers take turns and a rollback leaves no gap."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            """
            INSERT INTO document_sequences (series, year, last_value) VALUES (%s, %s, 1)
            ON CONFLICT (series, year)
            DO UPDATE SET last_value = document_sequences.last_value + 1
            RETURNING last_value
            """,
            (series, year),
        ).fetchone()
    assert value is not None
    return int(value)


# --- parties and rates ---------------------------------------------------------------------


def seller(conn: Conn) -> SellerProfile:
    """The seller's legal details."""
    with conn.cursor(row_factory=class_row(SellerProfile)) as cur:
        row = cur.execute(
            "SELECT legal_name, address, trim(country) AS country, vat_id, email, updated_at"
            " FROM seller_profile"
        ).fetchone()
    assert row is not None, "migration 0050 seeds the seller profile"
    return row


def set_seller(conn: Conn, values: dict[str, Any], now: datetime) -> SellerProfile:
    """Replace the seller's legal details."""
    conn.execute(
        """
        UPDATE seller_profile SET legal_name = %(legal_name)s, address = %(address)s,
               country = %(country)s, vat_id = %(vat_id)s, email = %(email)s, updated_at = %(n)s
        """,
        {**values, "n": now},
    )
    return seller(conn)


_PROFILE = (
    "SELECT customer_id, legal_name, address, trim(country) AS country, customer_type, vat_id,"
    " updated_at FROM customer_billing_profiles WHERE customer_id = %s"
)


def billing_profile(conn: Conn, customer_id: int) -> BillingProfile | None:
    """A customer's legal details for invoices, if recorded."""
    with conn.cursor(row_factory=class_row(BillingProfile)) as cur:
        return cur.execute(_PROFILE, (customer_id,)).fetchone()


def set_billing_profile(
    conn: Conn, customer_id: int, values: dict[str, Any], now: datetime
) -> BillingProfile:
    """Create or replace a customer's legal details."""
    conn.execute(
        """
        INSERT INTO customer_billing_profiles (customer_id, legal_name, address, country,
                                               customer_type, vat_id, updated_at)
        VALUES (%(c)s, %(legal_name)s, %(address)s, %(country)s, %(customer_type)s, %(vat_id)s,
                %(n)s)
        ON CONFLICT (customer_id) DO UPDATE SET
            legal_name = EXCLUDED.legal_name, address = EXCLUDED.address,
            country = EXCLUDED.country, customer_type = EXCLUDED.customer_type,
            vat_id = EXCLUDED.vat_id, updated_at = EXCLUDED.updated_at
        """,
        {**values, "c": customer_id, "n": now},
    )
    found = billing_profile(conn, customer_id)
    assert found is not None
    return found


def customer_name(conn: Conn, customer_id: int) -> str | None:
    """A customer's display name."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute("SELECT name FROM customers WHERE id = %s", (customer_id,)).fetchone()
    return None if value is None else str(value)


def tax_rates(conn: Conn, on: date) -> dict[tuple[str, str], Rate]:
    """The rates valid on ``on``: (country, customer type) -> rate."""
    rows = conn.execute(
        "SELECT trim(country), customer_type, rate_bps, eu, regime FROM tax_rates"
        " WHERE valid_from <= %(d)s AND (valid_to IS NULL OR valid_to > %(d)s)",
        {"d": on},
    ).fetchall()
    return {(r[0], r[1]): Rate(int(r[2]), bool(r[3]), str(r[4])) for r in rows}


def all_tax_rates(conn: Conn) -> list[TaxRate]:
    """Every rate row, by country, type and date."""
    with conn.cursor(row_factory=class_row(TaxRate)) as cur:
        return cur.execute(
            "SELECT trim(country) AS country, customer_type, rate_bps, eu, regime, valid_from,"
            " valid_to FROM tax_rates ORDER BY country, customer_type, valid_from"
        ).fetchall()


# --- credit notes --------------------------------------------------------------------------


def insert_credit_note(conn: Conn, values: dict[str, Any], lines: list[dict[str, Any]]) -> int:
    """Write a credit note and its lines; its id."""
    note = insert_row(
        conn,
        "credit_notes",
        CreditNote,
        {**values, "seller": Jsonb(values["seller"]), "buyer": Jsonb(values["buyer"])},
    )
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO credit_note_lines (credit_note_id, line_no, invoice_line_id, description,
                amount_minor, tax_category, tax_rate_bps, tax_minor)
            VALUES (%(credit_note_id)s, %(line_no)s, %(invoice_line_id)s, %(description)s,
                %(amount_minor)s, %(tax_category)s, %(tax_rate_bps)s, %(tax_minor)s)
            """,
            [{**line, "credit_note_id": note.id} for line in lines],
        )
    return note.id


def credit_note(conn: Conn, note_id: int, scope: int | None) -> CreditNote | None:
    """One credit note within ``scope``."""
    with conn.cursor(row_factory=class_row(CreditNote)) as cur:
        return cur.execute(
            "SELECT * FROM credit_notes WHERE id = %(i)s"
            " AND (%(c)s::bigint IS NULL OR customer_id = %(c)s)",
            {"i": note_id, "c": scope},
        ).fetchone()


def credit_note_lines(conn: Conn, note_id: int) -> list[CreditNoteLine]:
    """The lines of a credit note, in order."""
    with conn.cursor(row_factory=class_row(CreditNoteLine)) as cur:
        return cur.execute(
            "SELECT * FROM credit_note_lines WHERE credit_note_id = %s ORDER BY line_no",
            (note_id,),
        ).fetchall()


def list_credit_notes(
    conn: Conn, *, scope: int | None, invoice_id: int | None, after: int | None, limit: int
) -> tuple[list[CreditNote], int | None]:
    """One page of credit notes."""
    return fetch_page(
        conn,
        "credit_notes",
        CreditNote,
        scope=scope,
        filters={"invoice_id": invoice_id},
        include_retired=True,
        after=after,
        limit=limit,
    )


def credited_per_line(conn: Conn, invoice_id: int) -> dict[int, int]:
    """How much of each line of an invoice credit notes have credited so far."""
    rows = conn.execute(
        """
        SELECT cl.invoice_line_id, sum(cl.amount_minor) FROM credit_note_lines cl
          JOIN invoice_lines l ON l.id = cl.invoice_line_id
         WHERE l.invoice_id = %s GROUP BY 1
        """,
        (invoice_id,),
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


# --- service credits -----------------------------------------------------------------------


def failures_to_assess(
    conn: Conn, customer_id: int, since: datetime, until: datetime
) -> list[FailureOnCover]:
    """Failures (lives that ended in failure) of a customer's assets in ``[since, until)``."""
    with conn.cursor(row_factory=class_row(FailureOnCover)) as cur:
        return cur.execute(
            """
            SELECT l.id AS life_id, l.asset_id, a.ref AS asset_ref, a.customer_id, l.component,
                   l.ended_at AS failed_at, fr.id AS failure_report_id,
                   coalesce(l.order_id, fr.order_id) AS order_id, o.reason AS order_reason,
                   o.due_at AS order_due_at
              FROM asset_lives l
              JOIN assets a ON a.id = l.asset_id
              LEFT JOIN failure_reports fr
                ON fr.asset_id = l.asset_id AND fr.component = l.component
               AND fr.failed_at = l.ended_at
              LEFT JOIN maintenance_orders o ON o.id = coalesce(l.order_id, fr.order_id)
             WHERE a.customer_id = %s AND l.end_reason = 'failure'
               AND l.ended_at >= %s AND l.ended_at < %s
             ORDER BY l.ended_at, l.id
            """,
            (customer_id, since, until),
        ).fetchall()


def customers_with_failures(conn: Conn, since: datetime, until: datetime) -> list[int]:
    """Customers with a life that ended in failure in ``[since, until)``."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            SELECT DISTINCT a.customer_id FROM asset_lives l JOIN assets a ON a.id = l.asset_id
             WHERE l.end_reason = 'failure' AND l.ended_at >= %s AND l.ended_at < %s
             ORDER BY 1
            """,
            (since, until),
        ).fetchall()


def insert_service_credit(conn: Conn, values: dict[str, Any]) -> int | None:
    """Record a credit once per failure and kind; its id, or None when it already existed."""
    with conn.cursor(row_factory=scalar_row) as cur:
        value = cur.execute(
            """
            INSERT INTO service_credits (customer_id, subscription_id, plan_id, asset_id,
                component, life_id, failure_report_id, failed_at, period, kind, rate_bps,
                order_id, reason, currency, earned_at)
            VALUES (%(customer_id)s, %(subscription_id)s, %(plan_id)s, %(asset_id)s,
                %(component)s, %(life_id)s, %(failure_report_id)s, %(failed_at)s, %(period)s,
                %(kind)s, %(rate_bps)s, %(order_id)s, %(reason)s, %(currency)s, %(earned_at)s)
            ON CONFLICT (life_id, kind) DO NOTHING
            RETURNING id
            """,
            values,
        ).fetchone()
    return None if value is None else int(value)


_CREDITS = """
    SELECT sc.*, a.ref AS asset_ref FROM service_credits sc JOIN assets a ON a.id = sc.asset_id
"""


def service_credit(conn: Conn, credit_id: int, scope: int | None) -> ServiceCredit | None:
    """One service credit within ``scope``."""
    with conn.cursor(row_factory=class_row(ServiceCredit)) as cur:
        return cur.execute(
            _CREDITS + " WHERE sc.id = %(i)s AND (%(c)s::bigint IS NULL OR sc.customer_id = %(c)s)",
            {"i": credit_id, "c": scope},
        ).fetchone()


def pending_credits(conn: Conn, customer_id: int, until: datetime) -> list[ServiceCredit]:
    """Credits of failures before ``until`` that no issued invoice has applied yet."""
    with conn.cursor(row_factory=class_row(ServiceCredit)) as cur:
        return cur.execute(
            _CREDITS + " WHERE sc.customer_id = %s AND sc.invoice_id IS NULL"
            " AND sc.failed_at < %s ORDER BY sc.failed_at, sc.id",
            (customer_id, until),
        ).fetchall()


def list_service_credits(
    conn: Conn,
    *,
    scope: int | None,
    period: str | None,
    asset_id: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[ServiceCredit], int | None]:
    """One page of service credits, oldest first."""
    with conn.cursor(row_factory=class_row(ServiceCredit)) as cur:
        rows = cur.execute(
            _CREDITS
            + """
             WHERE (%(c)s::bigint IS NULL OR sc.customer_id = %(c)s)
               AND (%(p)s::text IS NULL OR sc.period = %(p)s)
               AND (%(a)s::bigint IS NULL OR sc.asset_id = %(a)s)
               AND (%(after)s::bigint IS NULL OR sc.id > %(after)s)
             ORDER BY sc.id LIMIT %(l)s
            """,
            {"c": scope, "p": period, "a": asset_id, "after": after, "l": limit + 1},
        ).fetchall()
    more = len(rows) > limit
    return rows[:limit], (rows[limit - 1].id if more else None)


def apply_credits(conn: Conn, invoice_id: int) -> list[int]:
    """On issue: the credits on the invoice's lines are applied by it, at the lines' amounts."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            UPDATE service_credits sc SET invoice_id = l.invoice_id, amount_minor = -l.amount_minor
              FROM invoice_lines l
             WHERE l.invoice_id = %s AND l.service_credit_id = sc.id AND sc.invoice_id IS NULL
            RETURNING sc.id
            """,
            (invoice_id,),
        ).fetchall()


# --- voids, corrections and re-billing -----------------------------------------------------


def void_blockers(conn: Conn, invoice_id: int) -> list[str]:
    """Why an issued invoice cannot be voided: later live invoices that depend on it."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            """
            SELECT DISTINCT format('invoice %%s (%%s) %%s', w.id, w.number, why) FROM (
                SELECT l.invoice_id AS w_id, 'charges late usage of its period' AS why
                  FROM invoice_lines l JOIN usage_records u ON u.id = l.usage_record_id
                 WHERE u.invoice_id = %(v)s AND l.kind = 'usage_adjustment'
                UNION ALL
                SELECT c.invoice_id, 'credits the fees it billed in advance'
                  FROM invoice_lines a JOIN invoice_lines c
                    ON c.subscription_id = a.subscription_id
                   AND c.contract_charge = 'advance_credit'
                   AND c.starts_at <= a.starts_at AND c.ends_at >= a.ends_at
                 WHERE a.invoice_id = %(v)s AND a.contract_charge = 'advance'
                UNION ALL
                SELECT s.id, 'bills again lines of a correction of it'
                  FROM invoices s JOIN credit_notes n ON n.id = s.rebills_credit_note_id
                 WHERE n.invoice_id = %(v)s
            ) d JOIN invoices w ON w.id = d.w_id
             WHERE w.id <> %(v)s AND w.status IN ('issued', 'paid')
             ORDER BY 1
            """,
            {"v": invoice_id},
        ).fetchall()


def supplementary_drafts(conn: Conn, invoice_id: int) -> list[int]:
    """Drafts that would bill again lines of corrections of an invoice."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT s.id FROM invoices s JOIN credit_notes n ON n.id = s.rebills_credit_note_id"
            " WHERE n.invoice_id = %s AND s.status = 'draft' ORDER BY s.id",
            (invoice_id,),
        ).fetchall()


def unbill_usage(conn: Conn, invoice_id: int) -> None:
    """On a void: the usage it charged is unbilled again (its period's records, and what its
    late-usage lines added to earlier ones), so that a replacement bills it once."""
    conn.execute(
        """
        UPDATE usage_records u
           SET billed_quantity = u.billed_quantity - l.quantity,
               billed_amount_minor = u.billed_amount_minor - l.amount_minor
          FROM invoice_lines l
         WHERE l.invoice_id = %s AND l.kind = 'usage_adjustment' AND l.usage_record_id = u.id
        """,
        (invoice_id,),
    )
    conn.execute(
        "UPDATE usage_records SET invoice_id = NULL, billed_quantity = NULL,"
        " billed_amount_minor = NULL WHERE invoice_id = %s",
        (invoice_id,),
    )


def shift_billed_usage(conn: Conn, amounts: list[tuple[int, int]], sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) usage lines from what their records say is billed:
    ``amounts`` = (invoice line id, amount of it); the quantity goes in the same proportion."""
    conn.execute(
        """
        UPDATE usage_records u
           SET billed_quantity = u.billed_quantity + %(sign)s * d.quantity,
               billed_amount_minor = u.billed_amount_minor + %(sign)s * d.amount
          FROM (SELECT l.usage_record_id, sum(round(l.quantity * a.amount
                       / nullif(l.amount_minor, 0), 3)) AS quantity, sum(a.amount) AS amount
                  FROM invoice_lines l
                  JOIN unnest(%(ids)s::bigint[], %(amounts)s::bigint[]) AS a (id, amount)
                    ON a.id = l.id
                 WHERE l.kind = 'usage' AND l.usage_record_id IS NOT NULL
                 GROUP BY 1) d
         WHERE u.id = d.usage_record_id AND u.billed_quantity IS NOT NULL
        """,
        {"sign": sign, "ids": [i for i, _ in amounts], "amounts": [a for _, a in amounts]},
    )


def open_rebills(conn: Conn, customer_id: int, period: str) -> list[tuple[int, int]]:
    """Re-billing corrections of a customer's live invoices of a period that no issued
    supplementary invoice answers yet: (credit note id, corrected invoice id)."""
    rows = conn.execute(
        """
        SELECT n.id, n.invoice_id FROM credit_notes n JOIN invoices i ON i.id = n.invoice_id
         WHERE n.customer_id = %s AND i.period = %s AND n.rebill
           AND i.status IN ('issued', 'paid')
           AND NOT EXISTS (SELECT 1 FROM invoices s WHERE s.rebills_credit_note_id = n.id
                            AND s.status IN ('issued', 'paid'))
         ORDER BY n.id
        """,
        (customer_id, period),
    ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def credited_lines_of(conn: Conn, note_id: int) -> list[tuple[InvoiceLine, int]]:
    """The invoice lines a credit note credits, each with the amount credited."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT l.*, cl.amount_minor AS credited FROM credit_note_lines cl"
            " JOIN invoice_lines l ON l.id = cl.invoice_line_id"
            " WHERE cl.credit_note_id = %s ORDER BY cl.line_no",
            (note_id,),
        ).fetchall()
    return [(InvoiceLine(**{k: v for k, v in r.items() if k != "credited"}), r["credited"])
            for r in rows]  # fmt: skip


def release_credits(conn: Conn, invoice_id: int) -> list[int]:
    """On a void: the service credits the invoice applied are pending again (the next invoice
    of their customer applies them, once)."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "UPDATE service_credits SET invoice_id = NULL, amount_minor = NULL"
            " WHERE invoice_id = %s RETURNING id",
            (invoice_id,),
        ).fetchall()
