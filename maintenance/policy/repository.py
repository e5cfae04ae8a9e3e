"""All SQL of the policy: its queue (the predictions it reads come from ``models.service``)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from maintenance.common import Conn
from maintenance.policy.schemas import QueuedPrediction


def take_queued(conn: Conn, now: datetime, limit: int) -> list[QueuedPrediction]:
    """Ready queue rows, locked; rows other dispatchers hold are skipped."""
    with conn.cursor(row_factory=class_row(QueuedPrediction)) as cur:
        return cur.execute(
            """
            SELECT id, asset_id, component, prediction_time, attempts FROM policy_queue
             WHERE not_before IS NULL OR not_before <= %s
             ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (now, limit),
        ).fetchall()


def delete_queued(conn: Conn, queue_id: int) -> None:
    """Done with a queue row."""
    conn.execute("DELETE FROM policy_queue WHERE id = %s", (queue_id,))


def postpone_queued(conn: Conn, queue_id: int, error: str, not_before: datetime) -> None:
    """A failed attempt: remember why and retry later."""
    conn.execute(
        "UPDATE policy_queue SET attempts = attempts + 1, last_error = %s, not_before = %s"
        " WHERE id = %s",
        (error[:2000], not_before, queue_id),
    )


def queue_length(conn: Conn) -> int:
    """How many predictions wait for the policy."""
    row = conn.execute("SELECT count(*) FROM policy_queue").fetchone()
    return int(row[0]) if row else 0
