"""SQL of the history import's assets and lives (``ingest.history``); its readings go
through ``ingest.repository`` as live ones do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection

from fleetcare.inputs import storable_text

Conn = Connection[Any]


def kind_components(conn: Conn, kind: str) -> list[str]:
    """The components of a kind (those its parts fit), by name."""
    rows = conn.execute(
        "SELECT DISTINCT component FROM parts WHERE kind = %s ORDER BY component", (kind,)
    ).fetchall()
    return [r[0] for r in rows]


def create_imported_assets(
    conn: Conn, customer_id: int, kind: str, refs: Sequence[str], started: Sequence[datetime]
) -> list[int]:
    """Create the assets an import met for the first time (installed and renewed at their
    first reading); ids of those created (a concurrent import may have made some). A ref that
    is not an asset id (the pattern below; NUL and lone surrogates never reach it) is not."""
    pairs = [(r, s) for r, s in zip(refs, started, strict=True) if storable_text(r)]
    refs, started = [r for r, _ in pairs], [s for _, s in pairs]
    rows = conn.execute(
        """
        INSERT INTO assets (customer_id, kind, ref, installed_at, renewed_at)
        SELECT %s, %s, r.ref, r.started, r.started
          FROM unnest(%s::text[], %s::timestamptz[]) AS r(ref, started)
         WHERE r.ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
        ON CONFLICT (customer_id, ref) DO NOTHING
        RETURNING id
        """,
        (customer_id, kind, list(refs), list(started)),
    ).fetchall()
    return [r[0] for r in rows]


def overlapping_lives(
    conn: Conn,
    asset_ids: Sequence[int],
    component: str,
    started: Sequence[datetime],
    ended: Sequence[datetime],
) -> dict[int, tuple[datetime, datetime]]:
    """Per asset, a recorded life of ``component`` that shares readings with the one given
    (its start and end; the same end is the same life, recorded again: none)."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (v.asset_id) v.asset_id, l.started_at, l.ended_at
          FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[])
               AS v(asset_id, started, ended)
          JOIN asset_lives l ON l.asset_id = v.asset_id AND l.component = %s
         WHERE l.started_at <= v.ended AND v.started <= l.ended_at AND l.ended_at <> v.ended
         ORDER BY v.asset_id, l.ended_at
        """,
        (list(asset_ids), list(started), list(ended), component),
    ).fetchall()
    return {int(a): (s, e) for a, s, e in rows}


def insert_imported_lives(
    conn: Conn,
    asset_ids: Sequence[int],
    component: str,
    started: Sequence[datetime],
    ended: Sequence[datetime],
    end_reason: str,
    usage_at_end: Sequence[float | None],
    outcome: str | None = None,
) -> int:
    """Record imported lifetimes once (unique on asset, component, end); how many were new.
    ``outcome`` labels them (``fleet.causes.life_outcome``; None: the database's default)."""
    cur = conn.execute(
        """
        INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason,
                                 usage_at_end, source, outcome)
        SELECT v.asset_id, %s, v.started, v.ended, %s, v.usage, 'import', %s
          FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::float8[])
               AS v(asset_id, started, ended, usage)
        ON CONFLICT (asset_id, component, ended_at) DO NOTHING
        """,
        (
            component, end_reason, outcome, list(asset_ids), list(started), list(ended),
            list(usage_at_end),
        ),
    )  # fmt: skip
    return cur.rowcount


def mark_assets_renewed(
    conn: Conn, asset_ids: Sequence[int], ended: Sequence[datetime], *, created: Sequence[int]
) -> None:
    """An imported life ended: the asset was renewed then (never moved back); assets the import
    created were installed at their first reading, already set."""
    conn.execute(
        """
        UPDATE assets a SET renewed_at = greatest(a.renewed_at, v.ended)
          FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(asset_id, ended)
         WHERE a.id = v.asset_id AND (a.id = ANY(%s::bigint[]) OR a.renewed_at < v.ended)
        """,
        (list(asset_ids), list(ended), list(created)),
    )


def backdate_imported_assets(
    conn: Conn, asset_ids: Sequence[int], first: Sequence[datetime]
) -> None:
    """Assets an import created are installed (and renewed) at their first imported reading."""
    conn.execute(
        """
        UPDATE assets a SET installed_at = least(a.installed_at, v.first),
                            renewed_at = least(a.renewed_at, v.first)
          FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(asset_id, first)
         WHERE a.id = v.asset_id
        """,
        (list(asset_ids), list(first)),
    )
