"""All SQL of the fleet registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from fleet.schemas import ApiKey, ApiKeyAuth, Asset, AssetContext, Customer, MetricRecord, Site
from fleetcare.repository import ScopedTable, SideTable

Conn = Connection[Any]

CUSTOMERS = ScopedTable("customers", Customer, scope_column="id")
SITES = ScopedTable("sites", Site)
# an asset's last-seen time and usage counter live in asset_seen (moved by ingest every batch)
ASSET_SEEN = SideTable("asset_seen", "asset_id", ("last_seen_at", "usage_counter", "usage_at"))
ASSETS = ScopedTable("assets", Asset, side=ASSET_SEEN)
API_KEYS = ScopedTable("api_keys", ApiKey, retired_column="revoked_at")


def list_metrics(conn: Conn, kind: str | None = None) -> list[MetricRecord]:
    """The metric catalogue, optionally of one kind."""
    with conn.cursor(row_factory=class_row(MetricRecord)) as cur:
        return cur.execute(
            "SELECT id, kind, name, unit, low, high, cumulative FROM metrics"
            " WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY id",
            {"kind": kind},
        ).fetchall()


def asset_context(conn: Conn, asset_id: int, *, customer_id: int | None) -> AssetContext | None:
    """An asset with its site's position, within ``customer_id`` when set."""
    with conn.cursor(row_factory=class_row(AssetContext)) as cur:
        return cur.execute(
            """
            SELECT a.*, seen.last_seen_at, seen.usage_counter, seen.usage_at,
                   s.latitude, s.longitude
              FROM assets a LEFT JOIN asset_seen seen ON seen.asset_id = a.id
                   LEFT JOIN sites s ON s.id = a.site_id
             WHERE a.id = %(a)s AND (%(c)s::bigint IS NULL OR a.customer_id = %(c)s)
            """,
            {"a": asset_id, "c": customer_id},
        ).fetchone()


def usage_metrics(conn: Conn) -> dict[str, str]:
    """Each kind's usage counter: the metric's name by kind."""
    rows = conn.execute("SELECT name, usage_metric FROM asset_kinds").fetchall()
    return {kind: metric for kind, metric in rows}


KEY_COLUMNS = (
    "k.id, k.prefix, k.role, k.customer_id, k.partner_id, k.name, k.scopes, k.expires_at,"
    " k.last_used_at, k.created_at, k.revoked_at"
)


_LIVE_KEY = f"""
    SELECT {KEY_COLUMNS},
           coalesce(k.last_used_at < now() - interval '1 minute', true) AS use_is_stale,
           coalesce(c.name, p.name, '') AS organisation_name
      FROM api_keys k LEFT JOIN customers c ON c.id = k.customer_id
           LEFT JOIN partners p ON p.id = k.partner_id
     WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
       AND c.retired_at IS NULL AND p.retired_at IS NULL
"""


def find_api_key(conn: Conn, key_hash: bytes) -> ApiKeyAuth | None:
    """The live key with this hash: not revoked, not expired, of a live customer or partner."""
    with conn.cursor(row_factory=class_row(ApiKeyAuth)) as cur:
        return cur.execute(_LIVE_KEY + " AND k.key_hash = %s", (key_hash,)).fetchone()


def find_live_api_key(conn: Conn, key_id: int) -> ApiKeyAuth | None:
    """The live key with this id (a dashboard session signed in with it)."""
    with conn.cursor(row_factory=class_row(ApiKeyAuth)) as cur:
        return cur.execute(_LIVE_KEY + " AND k.id = %s", (key_id,)).fetchone()


def touch_api_key(conn: Conn, key_id: int) -> None:
    """Record that a key was used now; skipped when another request holds its row (that one
    records it), so that concurrent requests of one key never wait on each other."""
    conn.execute(
        """
        UPDATE api_keys SET last_used_at = now()
         WHERE id = (SELECT id FROM api_keys WHERE id = %s FOR UPDATE SKIP LOCKED)
        """,
        (key_id,),
    )


def insert_api_key(
    conn: Conn,
    *,
    key_hash: bytes,
    prefix: str,
    role: str,
    customer_id: int | None,
    name: str,
    partner_id: int | None = None,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by_user_id: int | None = None,
) -> ApiKey:
    """Store a new key (its hash only)."""
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        row = cur.execute(
            """
            INSERT INTO api_keys (key_hash, prefix, role, customer_id, name, partner_id, scopes,
                                  expires_at, created_by_user_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id, prefix, role, customer_id, partner_id, name, scopes, expires_at,
                      last_used_at, created_at, revoked_at
            """,
            (
                key_hash,
                prefix,
                role,
                customer_id,
                name,
                partner_id,
                scopes,
                expires_at,
                created_by_user_id,
            ),
        ).fetchone()
    assert row is not None
    return row


def count_operator_keys(conn: Conn) -> int:
    """How many live operator keys exist."""
    row = conn.execute(
        "SELECT count(*) FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL"
    ).fetchone()
    return int(row[0]) if row else 0


def mark_internal(conn: Conn, slug: str) -> bool:
    """Mark the customer with ``slug`` as fleetcare's own; False when there is none."""
    row = conn.execute(
        "UPDATE customers SET internal = true WHERE slug = %s RETURNING id", (slug,)
    ).fetchone()
    return row is not None


def find_customer_by_slug(conn: Conn, slug: str) -> Customer | None:
    """The customer with this slug (retired ones included)."""
    with conn.cursor(row_factory=class_row(Customer)) as cur:
        return cur.execute("SELECT * FROM customers WHERE slug = %s", (slug,)).fetchone()


def find_site_by_ref(conn: Conn, customer_id: int, ref: str) -> Site | None:
    """The customer's site with this reference."""
    with conn.cursor(row_factory=class_row(Site)) as cur:
        return cur.execute(
            "SELECT * FROM sites WHERE customer_id = %s AND ref = %s", (customer_id, ref)
        ).fetchone()


def find_asset_by_ref(conn: Conn, customer_id: int, ref: str) -> Asset | None:
    """The customer's asset with this reference."""
    with conn.cursor(row_factory=class_row(Asset)) as cur:
        return cur.execute(
            "SELECT a.*, seen.last_seen_at, seen.usage_counter, seen.usage_at"
            " FROM assets a LEFT JOIN asset_seen seen ON seen.asset_id = a.id"
            " WHERE a.customer_id = %s AND a.ref = %s",
            (customer_id, ref),
        ).fetchone()


def jsonb(value: dict[str, Any]) -> Jsonb:
    """Wrap a dict for a jsonb column."""
    return Jsonb(value)


def customers_with_assets_of_kind(conn: Conn, kind: str) -> list[int]:
    """Customers with at least one asset of ``kind`` in service."""
    rows = conn.execute(
        "SELECT DISTINCT customer_id FROM assets WHERE kind = %s AND retired_at IS NULL"
        " ORDER BY customer_id",
        (kind,),
    ).fetchall()
    return [int(r[0]) for r in rows]


def asset_labels(
    conn: Conn, asset_ids: Sequence[int], scope: int | None
) -> dict[int, tuple[str, str]]:
    """The ref and the customer's name of each of ``asset_ids`` within ``scope`` (None:
    every customer), retired ones included."""
    rows = conn.execute(
        "SELECT a.id, a.ref, c.name FROM assets a JOIN customers c ON c.id = a.customer_id"
        " WHERE a.id = ANY(%s) AND (%s::bigint IS NULL OR a.customer_id = %s)",
        (list(asset_ids), scope, scope),
    ).fetchall()
    return {int(i): (str(ref), str(name)) for i, ref, name in rows}
