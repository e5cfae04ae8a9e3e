"""All SQL of service partners."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row, scalar_row

from fleetcare.repository import fetch_one, fetch_page, insert_row
from maintenance.common import Conn
from maintenance.partners.schemas import Commission, Partner


def insert_partner(conn: Conn, values: dict[str, Any]) -> Partner:
    """Add a service partner."""
    return insert_row(conn, "partners", Partner, values)


def get_partner(conn: Conn, partner_id: int) -> Partner | None:
    """One partner by id."""
    return fetch_one(conn, "partners", Partner, partner_id, scope=None)


def list_partners(conn: Conn, *, after: int | None, limit: int) -> tuple[list[Partner], int | None]:
    """One page of partners."""
    return fetch_page(conn, "partners", Partner, scope=None, after=after, limit=limit)


def add_sites(conn: Conn, partner_id: int, site_ids: list[int]) -> int:
    """Cover sites (already covered ones are skipped); how many were added."""
    added = 0
    for site_id in site_ids:
        added += conn.execute(
            "INSERT INTO partner_sites (partner_id, site_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (partner_id, site_id),
        ).rowcount
    return added


def site_ids(conn: Conn, partner_id: int) -> list[int]:
    """Sites a partner covers explicitly."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT site_id FROM partner_sites WHERE partner_id = %s ORDER BY site_id",
            (partner_id,),
        ).fetchall()


def existing_sites(conn: Conn, site_ids: list[int]) -> list[int]:
    """Which of ``site_ids`` exist and are live."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT id FROM sites WHERE id = ANY(%s) AND retired_at IS NULL", (site_ids,)
        ).fetchall()


def partner_for_site(conn: Conn, site_id: int) -> Partner | None:
    """The live partner covering a site: one naming the site first, then one serving its region."""
    with conn.cursor(row_factory=class_row(Partner)) as cur:
        return cur.execute(
            """
            SELECT p.* FROM partners p JOIN sites s ON s.id = %(site)s
             WHERE p.retired_at IS NULL
               AND (EXISTS (SELECT 1 FROM partner_sites ps
                             WHERE ps.partner_id = p.id AND ps.site_id = s.id)
                    OR (s.region <> '' AND s.region = ANY(p.regions)))
             ORDER BY EXISTS (SELECT 1 FROM partner_sites ps
                               WHERE ps.partner_id = p.id AND ps.site_id = s.id) DESC, p.id
             LIMIT 1
            """,
            {"site": site_id},
        ).fetchone()


def insert_commission(
    conn: Conn,
    *,
    partner_id: int,
    order_id: int,
    customer_id: int,
    basis_minor: int,
    rate_bps: int,
    currency: str,
) -> Commission | None:
    """Record the commission of a completed order once (None when already recorded)."""
    with conn.cursor(row_factory=class_row(Commission)) as cur:
        return cur.execute(
            """
            INSERT INTO partner_commissions (partner_id, order_id, customer_id, basis_minor,
                                             rate_bps, amount_minor, currency)
            VALUES (%(p)s, %(o)s, %(c)s, %(b)s, %(r)s, (%(b)s * %(r)s + 5000) / 10000, %(cur)s)
            ON CONFLICT (order_id) DO NOTHING
            RETURNING *
            """,
            {
                "p": partner_id,
                "o": order_id,
                "c": customer_id,
                "b": basis_minor,
                "r": rate_bps,
                "cur": currency,
            },
        ).fetchone()


def list_commissions(
    conn: Conn, partner_id: int, after: int | None, limit: int
) -> tuple[list[Commission], int | None]:
    """A partner's commissions, one page."""
    return fetch_page(
        conn,
        "partner_commissions",
        Commission,
        scope_column="partner_id",
        scope=partner_id,
        include_retired=True,
        after=after,
        limit=limit,
    )
