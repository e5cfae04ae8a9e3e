"""All SQL of Sparkplug B sessions kept in the database (``ingest.sparkplug_sessions``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

Conn = Connection[Any]

# (group, edge node, bdSeq, NBIRTH ms, aliases, types, devices) as the JSON columns hold them
SessionRow = tuple[str, str, int | None, int, dict[str, Any], dict[str, Any], list[str]]


def save_sessions(conn: Conn, rows: Sequence[SessionRow]) -> None:
    """Store sessions as their BIRTHs left them: a newer NBIRTH (later payload timestamp)
    replaces the row; a BIRTH of the same session merges its aliases, types and devices (two
    ingestors may commit a node's births in either order); an older session changes nothing."""
    conn.cursor().executemany(
        """
        INSERT INTO sparkplug_sessions AS s
               (group_id, edge_node, bd_seq, born_ms, aliases, types, devices)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (group_id, edge_node) DO UPDATE SET
            bd_seq = excluded.bd_seq,
            born_ms = excluded.born_ms,
            aliases = CASE WHEN s.born_ms = excluded.born_ms AND s.bd_seq IS NOT DISTINCT FROM
                           excluded.bd_seq THEN s.aliases || excluded.aliases
                           ELSE excluded.aliases END,
            types = CASE WHEN s.born_ms = excluded.born_ms AND s.bd_seq IS NOT DISTINCT FROM
                         excluded.bd_seq THEN s.types || excluded.types
                         ELSE excluded.types END,
            devices = CASE WHEN s.born_ms = excluded.born_ms AND s.bd_seq IS NOT DISTINCT FROM
                           excluded.bd_seq
                           THEN ARRAY(SELECT DISTINCT d FROM unnest(s.devices || excluded.devices)
                                      AS d ORDER BY d)
                           ELSE excluded.devices END,
            updated_at = now()
        WHERE excluded.born_ms >= s.born_ms
        """,
        [(g, e, bd, born, Jsonb(a), Jsonb(t), list(d)) for g, e, bd, born, a, t, d in rows],
    )


def delete_sessions(conn: Conn, deaths: Sequence[tuple[str, str, int | None]]) -> None:
    """Forget the sessions that died (NDEATH): only the session of that bdSeq, so that the
    will of an older session does not erase a newer one."""
    conn.cursor().executemany(
        "DELETE FROM sparkplug_sessions WHERE group_id = %s AND edge_node = %s"
        " AND (%s::bigint IS NULL OR bd_seq IS NOT DISTINCT FROM %s::bigint)",
        [(g, e, bd, bd) for g, e, bd in deaths],
    )


def find_session(conn: Conn, group: str, edge_node: str) -> SessionRow | None:
    """The stored session of one edge node, if any."""
    row = conn.execute(
        "SELECT group_id, edge_node, bd_seq, born_ms, aliases, types, devices"
        " FROM sparkplug_sessions WHERE group_id = %s AND edge_node = %s",
        (group, edge_node),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5], list(row[6]))
