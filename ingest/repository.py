"""All SQL of ingest: devices (readings and quarantine land here too)."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import class_row

from ingest.schemas import Device

Conn = Connection[Any]


def insert_device(conn: Conn, *, customer_id: int, ref: str, name: str, secret_hash: str) -> Device:
    """Store a new device with the hash of its secret."""
    with conn.cursor(row_factory=class_row(Device)) as cur:
        row = cur.execute(
            """
            INSERT INTO devices (customer_id, ref, name, secret_hash) VALUES (%s, %s, %s, %s)
            RETURNING id, customer_id, ref, name, created_at, last_seen_at, retired_at
            """,
            (customer_id, ref, name, secret_hash),
        ).fetchone()
    assert row is not None
    return row


def live_device_credentials(conn: Conn) -> list[tuple[str, str]]:
    """(ref, secret hash) of every device that is not retired, for the broker's password file."""
    rows = conn.execute(
        "SELECT ref, secret_hash FROM devices WHERE retired_at IS NULL ORDER BY ref"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]
