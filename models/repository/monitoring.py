"""SQL of the models' monitoring: live assets, drift checks and retraining decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from fleetcare.repository import insert_row
from models.repository.readings import Conn
from models.schemas import ChangedAsset, DriftCheck, RetrainDecision

Row = TypeVar("Row", DriftCheck, RetrainDecision)
_DRIFT_COLUMNS = """id, kind, model_version_id, checked_at, assets, rows, psi, max_psi, threshold,
    drifted, drifted_signals"""


def live_assets(conn: Conn, kind: str, since: datetime) -> list[ChangedAsset]:
    """Assets of ``kind`` in service that reported since ``since``."""
    with conn.cursor(row_factory=class_row(ChangedAsset)) as cur:
        return cur.execute(
            """
            SELECT a.id AS asset_id, a.kind, a.renewed_at, s.last_seen_at,
                   NULL::timestamptz AS data_until
              FROM assets a JOIN asset_seen s ON s.asset_id = a.id
             WHERE a.kind = %s AND a.retired_at IS NULL AND s.last_seen_at >= %s
             ORDER BY a.id
            """,
            (kind, since),
        ).fetchall()


def insert_drift_check(
    conn: Conn,
    *,
    kind: str,
    model_version_id: int,
    checked_at: datetime,
    assets: int,
    rows: int,
    psi: dict[str, float],
    max_psi: float | None,
    threshold: float,
    drifted_signals: list[str],
) -> DriftCheck:
    """Record a drift check."""
    with conn.cursor(row_factory=class_row(DriftCheck)) as cur:
        row = cur.execute(
            f"""
            INSERT INTO model_drift_checks (kind, model_version_id, checked_at, assets, rows,
                psi, max_psi, threshold, drifted, drifted_signals)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING {_DRIFT_COLUMNS}
            """,
            (
                kind,
                model_version_id,
                checked_at,
                assets,
                rows,
                Jsonb(psi),
                max_psi,
                threshold,
                bool(drifted_signals),
                drifted_signals,
            ),
        ).fetchone()
    assert row is not None
    return row


def _newest(
    conn: Conn, record: type[Row], table: str, time_column: str, kind: str | None, limit: int
) -> list[Row]:
    """Rows of ``table`` (of one kind when given), newest first."""
    query = sql.SQL(
        "SELECT * FROM {} WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)"
        " ORDER BY {} DESC, id DESC LIMIT %(limit)s"
    ).format(sql.Identifier(table), sql.Identifier(time_column))
    with conn.cursor(row_factory=class_row(record)) as cur:
        return cur.execute(query, {"kind": kind, "limit": limit}).fetchall()


def list_drift_checks(conn: Conn, *, kind: str | None = None, limit: int = 50) -> list[DriftCheck]:
    """Drift checks, newest first."""
    return _newest(conn, DriftCheck, "model_drift_checks", "checked_at", kind, limit)


def insert_retrain_decision(conn: Conn, values: dict[str, Any]) -> RetrainDecision:
    """Record what a retraining decided."""
    return insert_row(conn, "model_retrain_decisions", RetrainDecision, values)


def list_retrain_decisions(
    conn: Conn, *, kind: str | None = None, limit: int = 50
) -> list[RetrainDecision]:
    """Retraining decisions, newest first."""
    return _newest(conn, RetrainDecision, "model_retrain_decisions", "decided_at", kind, limit)


def last_retrain_at(conn: Conn, kind: str) -> datetime | None:
    """When ``kind`` was last retrained (any trigger, any decision)."""
    row = conn.execute(
        "SELECT max(decided_at) FROM model_retrain_decisions WHERE kind = %s", (kind,)
    ).fetchone()
    return None if row is None else row[0]
