"""SQL of the models' monitoring: live assets, drift checks and retraining decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models.repository.readings import Conn
from models.schemas import ChangedAsset, DriftCheck, RetrainDecision

_DRIFT_COLUMNS = """id, kind, model_version_id, checked_at, assets, rows, psi, max_psi, threshold,
    drifted, drifted_signals"""
_DECISION_COLUMNS = """id, kind, trigger, drift_check_id, champion_version_id,
    challenger_version_id, decision, champion_rmse, challenger_rmse, holdout_assets, lives,
    reason, decided_at"""


def live_assets(conn: Conn, kind: str, since: datetime) -> list[ChangedAsset]:
    """Assets of ``kind`` in service that reported since ``since``."""
    with conn.cursor(row_factory=class_row(ChangedAsset)) as cur:
        return cur.execute(
            """
            SELECT id AS asset_id, kind, renewed_at, last_seen_at, NULL::timestamptz AS data_until
              FROM assets
             WHERE kind = %s AND retired_at IS NULL AND last_seen_at >= %s
             ORDER BY id
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


def list_drift_checks(conn: Conn, *, kind: str | None = None, limit: int = 50) -> list[DriftCheck]:
    """Drift checks, newest first."""
    with conn.cursor(row_factory=class_row(DriftCheck)) as cur:
        return cur.execute(
            f"""
            SELECT {_DRIFT_COLUMNS} FROM model_drift_checks
             WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
             ORDER BY checked_at DESC, id DESC LIMIT %(limit)s
            """,
            {"kind": kind, "limit": limit},
        ).fetchall()


def insert_retrain_decision(conn: Conn, values: dict[str, Any]) -> RetrainDecision:
    """Record what a retraining decided."""
    columns = list(values)
    with conn.cursor(row_factory=class_row(RetrainDecision)) as cur:
        row = cur.execute(
            f"INSERT INTO model_retrain_decisions ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING {_DECISION_COLUMNS}",
            [values[c] for c in columns],
        ).fetchone()
    assert row is not None
    return row


def list_retrain_decisions(
    conn: Conn, *, kind: str | None = None, limit: int = 50
) -> list[RetrainDecision]:
    """Retraining decisions, newest first."""
    with conn.cursor(row_factory=class_row(RetrainDecision)) as cur:
        return cur.execute(
            f"""
            SELECT {_DECISION_COLUMNS} FROM model_retrain_decisions
             WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
             ORDER BY decided_at DESC, id DESC LIMIT %(limit)s
            """,
            {"kind": kind, "limit": limit},
        ).fetchall()


def last_retrain_at(conn: Conn, kind: str) -> datetime | None:
    """When ``kind`` was last retrained (any trigger, any decision)."""
    row = conn.execute(
        "SELECT max(decided_at) FROM model_retrain_decisions WHERE kind = %s", (kind,)
    ).fetchone()
    return None if row is None else row[0]
