"""All SQL of the simulators: ground truth, simulated lives, and their end-of-life records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection

from fleet.causes import life_outcome
from simulators.schemas import LifeEnd, TruthRow

Conn = Connection[Any]


def asset_ids(conn: Conn, customer_id: int, refs: Sequence[str]) -> dict[str, int]:
    """Ids of the customer's assets with these refs."""
    rows = conn.execute(
        "SELECT ref, id FROM assets WHERE customer_id = %s AND ref = ANY(%s)",
        (customer_id, list(refs)),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def insert_truth(conn: Conn, rows: Iterable[TruthRow], ids: dict[str, int]) -> int:
    """Store ground-truth snapshots (idempotent on asset, component, time); return how many."""
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sim_truth_load"
            " (LIKE sim_ground_truth INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY sim_truth_load (asset_id, component, time, life_started_at, usage, wear,"
            " rul_expected) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(
                    (ids[r.asset_ref], r.component, r.time, r.life_started_at, r.usage, r.wear,
                     r.rul_expected)
                )  # fmt: skip
        cur.execute(
            "INSERT INTO sim_ground_truth (asset_id, component, time, life_started_at, usage,"
            " wear, rul_expected) SELECT asset_id, component, time, life_started_at, usage,"
            " wear, rul_expected FROM sim_truth_load ON CONFLICT DO NOTHING"
        )
        stored = cur.rowcount
        cur.execute("DELETE FROM sim_truth_load")
    return stored


def insert_sim_life(conn: Conn, life: LifeEnd, asset_id: int, source: str) -> bool:
    """Store a simulated life end with its hidden cause; False when already stored."""
    cur = conn.execute(
        """
        INSERT INTO sim_lives (asset_id, component, started_at, ended_at, end_reason,
                               failure_mode, usage_at_start, usage_at_end, source)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (asset_id, component, ended_at) DO NOTHING
        """,
        (
            asset_id, life.component, life.started_at, life.ended_at, life.end_reason,
            life.failure_mode, life.usage_at_start, life.usage_at_end, source,
        ),
    )  # fmt: skip
    return cur.rowcount == 1


def insert_asset_life(conn: Conn, life: LifeEnd, asset_id: int, source: str) -> bool:
    """Record the end of a life in the product's ``asset_lives`` (the models' training
    labels), as an operator would after the repair; False when already recorded."""
    cur = conn.execute(
        """
        INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason,
                                 usage_at_end, source, outcome)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (asset_id, component, ended_at) DO NOTHING
        """,
        (
            asset_id, life.component, life.started_at, life.ended_at, life.end_reason,
            life.usage_at_end, source,
            life_outcome(life.cause),  # as POST /v1/failures labels it
        ),
    )  # fmt: skip
    return cur.rowcount == 1


def count_sim_lives(conn: Conn, asset_ids: Sequence[int]) -> int:
    """Simulated lives recorded for these assets."""
    row = conn.execute(
        "SELECT count(*) FROM sim_lives WHERE asset_id = ANY(%s)", (list(asset_ids),)
    ).fetchone()
    return int(row[0]) if row else 0


def fill_actual_rul(
    conn: Conn, asset_id: int, component: str, life_started_at: datetime, life_length: float
) -> int:
    """Once a life has ended in failure, set the exact remaining life of its snapshots."""
    cur = conn.execute(
        """
        UPDATE sim_ground_truth SET rul_actual = greatest(%s - usage, 0)
         WHERE asset_id = %s AND component = %s AND life_started_at = %s
        """,
        (life_length, asset_id, component, life_started_at),
    )
    return cur.rowcount


def truth_of(conn: Conn, asset_id: int) -> list[tuple[Any, ...]]:
    """An asset's ground truth, oldest first (evaluation and tests)."""
    return conn.execute(
        "SELECT component, time, life_started_at, usage, wear, rul_expected, rul_actual"
        " FROM sim_ground_truth WHERE asset_id = %s ORDER BY component, time",
        (asset_id,),
    ).fetchall()
