"""SQL of the predictions export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from pydantic import BaseModel

Conn = Connection[Any]


class ExportRow(BaseModel):
    """One asset component's latest prediction, with the human references."""

    external_id: str
    customer: str
    kind: str
    component: str
    life_unit: str
    rul: float
    rul_low: float
    rul_high: float
    coverage: float
    failure_probability: float
    horizon: float
    due_at: datetime | None
    due_at_conservative: datetime | None
    predicted_at: datetime
    data_until: datetime | None
    model_version_id: int | None


def latest_predictions(conn: Conn, kind: str, customer_id: int | None) -> list[ExportRow]:
    """The latest prediction of every live asset of ``kind`` (one customer's, or all)."""
    with conn.cursor(row_factory=class_row(ExportRow)) as cur:
        return cur.execute(
            """
            SELECT a.ref AS external_id, c.slug AS customer, a.kind, lp.component,
                   k.life_unit, lp.rul, lp.rul_low, lp.rul_high, p.coverage,
                   lp.failure_probability, p.horizon, lp.due_at, lp.due_at_conservative,
                   lp.time AS predicted_at, p.data_until, lp.model_version_id
              FROM latest_predictions lp
              JOIN assets a ON a.id = lp.asset_id
              JOIN customers c ON c.id = a.customer_id
              JOIN asset_kinds k ON k.name = a.kind
              JOIN predictions p ON p.asset_id = lp.asset_id AND p.component = lp.component
                                AND p.time = lp.time
             WHERE a.kind = %s AND a.retired_at IS NULL
               AND (%s::bigint IS NULL OR a.customer_id = %s)
             ORDER BY c.slug, length(a.ref), a.ref, lp.component
            """,
            (kind, customer_id, customer_id),
        ).fetchall()


def kind_exists(conn: Conn, kind: str) -> bool:
    """Whether ``kind`` is a known asset kind."""
    return conn.execute("SELECT 1 FROM asset_kinds WHERE name = %s", (kind,)).fetchone() is not None
