"""All SQL of the policy: its queue (the predictions it reads come from ``models.service``)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from maintenance.common import Conn
from maintenance.policy.schemas import QueuedPrediction


def take_queued(conn: Conn, now: datetime, limit: int) -> list[QueuedPrediction]:
    """The (asset, component) pairs of the oldest ``limit`` ready queue rows, with every ready
    row of those pairs (the newer predictions queued behind them too), locked; rows other
    dispatchers hold are skipped."""
    with conn.cursor(row_factory=class_row(QueuedPrediction)) as cur:
        return cur.execute(
            """
            WITH oldest AS (
                SELECT DISTINCT asset_id, component FROM (
                    SELECT asset_id, component FROM policy_queue
                     WHERE not_before IS NULL OR not_before <= %(now)s
                     ORDER BY id LIMIT %(limit)s
                ) AS first_rows
            )
            SELECT q.id, q.asset_id, q.component, q.prediction_time, q.attempts
              FROM policy_queue q JOIN oldest USING (asset_id, component)
             WHERE q.not_before IS NULL OR q.not_before <= %(now)s
             ORDER BY q.id FOR UPDATE OF q SKIP LOCKED
            """,
            {"now": now, "limit": limit},
        ).fetchall()


def delete_queued(conn: Conn, queue_id: int) -> None:
    """Done with a queue row."""
    conn.execute("DELETE FROM policy_queue WHERE id = %s", (queue_id,))


def delete_queued_rows(conn: Conn, queue_ids: list[int]) -> None:
    """Done with these queue rows (predictions a newer one of theirs supersedes)."""
    if queue_ids:
        conn.execute("DELETE FROM policy_queue WHERE id = ANY(%s)", (queue_ids,))


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
