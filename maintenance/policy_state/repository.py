"""All SQL of the policy's due state (``policy_states``)."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row

from maintenance.common import Conn
from maintenance.policy_state.schemas import PolicyState


def lock_state(conn: Conn, asset_id: int, component: str) -> PolicyState:
    """The state of an asset's component, created when missing, row-locked."""
    conn.execute(
        "INSERT INTO policy_states (asset_id, component) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (asset_id, component),
    )
    with conn.cursor(row_factory=class_row(PolicyState)) as cur:
        row = cur.execute(
            "SELECT * FROM policy_states WHERE asset_id = %s AND component = %s FOR UPDATE",
            (asset_id, component),
        ).fetchone()
    assert row is not None
    return row


def save_state(conn: Conn, asset_id: int, component: str, values: dict[str, Any]) -> None:
    """Write the state's fields."""
    conn.execute(
        """
        UPDATE policy_states SET state = %(state)s, entered_at = %(entered_at)s,
               alerted_at = %(alerted_at)s, order_id = %(order_id)s,
               last_prediction_time = %(last_prediction_time)s, updated_at = now()
         WHERE asset_id = %(asset_id)s AND component = %(component)s
        """,
        {**values, "asset_id": asset_id, "component": component},
    )


def reset_state(conn: Conn, asset_id: int, component: str) -> None:
    """Back to clear (a new life started)."""
    conn.execute(
        """
        UPDATE policy_states SET state = 'clear', entered_at = NULL, alerted_at = NULL,
               order_id = NULL, updated_at = now()
         WHERE asset_id = %s AND component = %s
        """,
        (asset_id, component),
    )
