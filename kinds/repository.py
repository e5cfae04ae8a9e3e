"""All SQL of asset kinds: the kind rows with their definitions and versions, and the metric
and parts catalogues kept in step with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from kinds.schemas import KindDefinition, KindSummary

Conn = Connection[Any]


@dataclass(frozen=True)
class KindRow:
    """A row of ``asset_kinds``; ``definition`` is None for a row from before definitions."""

    name: str
    display_name: str | None
    version: int
    definition: dict[str, Any] | None
    life_unit: str
    usage_metric: str
    updated_at: datetime


@dataclass(frozen=True)
class StoredMetric:
    """What the metric catalogue holds for one metric of a kind."""

    name: str
    unit: str
    role: str
    cumulative: bool


def lock_kind(conn: Conn, name: str) -> None:
    """Serialise changes to one kind (its first creation included) until the commit."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('fleetcare.kind:' || %s))", (name,))


def find_kind(conn: Conn, name: str) -> KindRow | None:
    """The kind called ``name``."""
    with conn.cursor(row_factory=class_row(KindRow)) as cur:
        return cur.execute(
            "SELECT name, display_name, version, definition, life_unit, usage_metric, updated_at"
            " FROM asset_kinds WHERE name = %s",
            (name,),
        ).fetchone()


def kind_names(conn: Conn) -> list[str]:
    """Every kind's name, in name order."""
    return [r[0] for r in conn.execute("SELECT name FROM asset_kinds ORDER BY name").fetchall()]


def list_kinds(conn: Conn) -> list[KindSummary]:
    """One summary per kind, with how many metrics, components and assets it has."""
    with conn.cursor(row_factory=class_row(KindSummary)) as cur:
        return cur.execute(
            """
            SELECT k.name, coalesce(k.display_name, k.name) AS display_name, k.version,
                   k.life_unit, k.usage_metric,
                   (SELECT count(*) FROM metrics m WHERE m.kind = k.name) AS metrics,
                   (SELECT count(DISTINCT p.component) FROM parts p
                     WHERE p.kind = k.name AND p.retired_at IS NULL) AS components,
                   (SELECT count(*) FROM assets a WHERE a.kind = k.name) AS assets,
                   k.updated_at
              FROM asset_kinds k ORDER BY k.name
            """
        ).fetchall()


def stored_metrics(conn: Conn, kind: str) -> dict[str, StoredMetric]:
    """The metric catalogue of ``kind``, by name."""
    with conn.cursor(row_factory=class_row(StoredMetric)) as cur:
        rows = cur.execute(
            "SELECT name, unit, role, cumulative FROM metrics WHERE kind = %s", (kind,)
        ).fetchall()
    return {r.name: r for r in rows}


def metrics_with_readings(conn: Conn, kind: str) -> set[str]:
    """Metrics of ``kind`` that have at least one stored reading (probes the telemetry key
    by asset, so it stays an index lookup per asset)."""
    rows = conn.execute(
        """
        SELECT m.name FROM metrics m
         WHERE m.kind = %(kind)s
           AND EXISTS (SELECT 1 FROM assets a
                        WHERE a.kind = %(kind)s
                          AND EXISTS (SELECT 1 FROM telemetry t
                                       WHERE t.asset_id = a.id AND t.metric_id = m.id))
        """,
        {"kind": kind},
    ).fetchall()
    return {r[0] for r in rows}


def has_history(conn: Conn, kind: str) -> bool:
    """Whether anything was recorded in ``kind``'s life unit: readings, lives or models."""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM assets a
                        WHERE a.kind = %(kind)s
                          AND (EXISTS (SELECT 1 FROM asset_seen s
                                        WHERE s.asset_id = a.id AND s.usage_counter IS NOT NULL)
                               OR EXISTS (SELECT 1 FROM telemetry t WHERE t.asset_id = a.id)
                               OR EXISTS (SELECT 1 FROM asset_lives l WHERE l.asset_id = a.id)))
            OR EXISTS (SELECT 1 FROM model_versions v WHERE v.kind = %(kind)s)
        """,
        {"kind": kind},
    ).fetchone()
    return bool(row and row[0])


def live_components(conn: Conn, kind: str) -> set[str]:
    """Components the parts catalogue lists for ``kind`` (live parts only)."""
    rows = conn.execute(
        "SELECT DISTINCT component FROM parts WHERE kind = %s AND retired_at IS NULL", (kind,)
    ).fetchall()
    return {r[0] for r in rows}


def components_with_records(conn: Conn, kind: str) -> set[str]:
    """Components of ``kind`` named by an order, a recorded life or a prediction."""
    rows = conn.execute(
        """
        SELECT o.component FROM maintenance_orders o JOIN assets a ON a.id = o.asset_id
         WHERE a.kind = %(kind)s
        UNION
        SELECT l.component FROM asset_lives l JOIN assets a ON a.id = l.asset_id
         WHERE a.kind = %(kind)s
        UNION
        SELECT p.component FROM latest_predictions p JOIN assets a ON a.id = p.asset_id
         WHERE a.kind = %(kind)s
        """,
        {"kind": kind},
    ).fetchall()
    return {r[0] for r in rows}


def sku_owners(conn: Conn, skus: list[str]) -> dict[str, str]:
    """The kind each of ``skus`` is catalogued under, for those already in the catalogue."""
    rows = conn.execute("SELECT sku, kind FROM parts WHERE sku = ANY(%s)", (skus,)).fetchall()
    return {r[0]: r[1] for r in rows}


def write_kind(
    conn: Conn, definition: KindDefinition, version: int, changes: list[str], source: str
) -> None:
    """Store ``definition`` as ``version`` of its kind and bring the metric and parts
    catalogues in step with it (removed metrics are deleted, removed parts retired)."""
    d = definition
    document = Jsonb(d.model_dump(mode="json"))
    failure = d.end_of_life.description or "; ".join(str(t) for t in d.end_of_life.thresholds)
    conn.execute(
        """
        INSERT INTO asset_kinds (name, display_name, life_unit, usage_metric, failure,
                                 typical_life, version, definition, updated_at)
        VALUES (%(name)s, %(display)s, %(unit)s, %(usage)s, %(failure)s, %(typical)s,
                %(version)s, %(doc)s, now())
        ON CONFLICT (name) DO UPDATE SET display_name = EXCLUDED.display_name,
            life_unit = EXCLUDED.life_unit, usage_metric = EXCLUDED.usage_metric,
            failure = EXCLUDED.failure, typical_life = EXCLUDED.typical_life,
            version = EXCLUDED.version, definition = EXCLUDED.definition, updated_at = now()
        """,
        {
            "name": d.name,
            "display": d.display_name,
            "unit": d.life_unit,
            "usage": d.usage_metric,
            "failure": failure,
            "typical": d.typical_life,
            "version": version,
            "doc": document,
        },
    )
    conn.execute(
        "INSERT INTO kind_versions (kind, version, definition, changes, source)"
        " VALUES (%s, %s, %s, %s, %s)",
        (d.name, version, document, changes, source),
    )
    conn.execute(
        "DELETE FROM metrics WHERE kind = %s AND NOT (name = ANY(%s))",
        (d.name, list(d.metric_names)),
    )
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO metrics (kind, name, unit, low, high, cumulative, description, role)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (kind, name) DO UPDATE SET unit = EXCLUDED.unit, low = EXCLUDED.low,
                high = EXCLUDED.high, cumulative = EXCLUDED.cumulative,
                description = EXCLUDED.description, role = EXCLUDED.role
            """,
            [
                (d.name, m.name, m.unit, m.low, m.high, m.cumulative, m.description, m.role)
                for m in d.metrics
            ],
        )
        parts = [(c.name, p) for c in d.components for p in c.parts]
        cur.executemany(
            """
            INSERT INTO parts (sku, name, kind, component, price_minor, currency, labour_hours)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                component = EXCLUDED.component, price_minor = EXCLUDED.price_minor,
                currency = EXCLUDED.currency, labour_hours = EXCLUDED.labour_hours,
                retired_at = NULL
             WHERE (parts.name, parts.kind, parts.component, parts.price_minor,
                    parts.currency, parts.labour_hours, parts.retired_at)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.component,
                    EXCLUDED.price_minor, EXCLUDED.currency, EXCLUDED.labour_hours, NULL)
            """,
            [
                (p.sku, p.name, d.name, c, p.price_minor, p.currency, p.labour_hours)
                for c, p in parts
            ],
        )
    conn.execute(
        "UPDATE parts SET retired_at = now()"
        " WHERE kind = %s AND retired_at IS NULL AND NOT (sku = ANY(%s))",
        (d.name, [p.sku for _, p in parts]),
    )


def kind_versions(conn: Conn, kind: str) -> list[tuple[int, datetime, list[str], str]]:
    """(version, applied at, changes, source) of every applied version of ``kind``."""
    rows = conn.execute(
        "SELECT version, applied_at, changes, source FROM kind_versions WHERE kind = %s"
        " ORDER BY version",
        (kind,),
    ).fetchall()
    return [(r[0], r[1], list(r[2]), r[3]) for r in rows]
