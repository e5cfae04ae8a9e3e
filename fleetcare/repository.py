"""Generic statements for the domain repositories: one row, a keyset page, an insert, an update.

Table-agnostic building blocks called only from ``repository.py`` files, each of which names
its own tables; services call their repository's named functions, never these. Identifiers
are composed with ``psycopg.sql``; values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import Connection, sql
from psycopg.rows import class_row

R = TypeVar("R")

MAX_PAGE = 500


@dataclass(frozen=True)
class SideTable:
    """Columns of a table's rows kept in a narrow table of their own (``table``, keyed by
    ``key``: the main row's id; at most one row each, none reads as NULLs), read with the
    main row as if they were its own. Written elsewhere (e.g. ingest's last-seen times)."""

    table: str
    key: str
    columns: tuple[str, ...]


def _source(table: str, side: SideTable | None) -> tuple[sql.Composable, sql.Composable]:
    """(the columns, the FROM) of ``table``'s rows with their ``side`` columns."""
    main = sql.Identifier(table)
    if side is None:
        return sql.SQL("*"), main
    columns = sql.SQL(", ").join(
        [sql.SQL("{}.*").format(main), *(sql.Identifier(side.table, c) for c in side.columns)]
    )
    joined = sql.SQL("{} LEFT JOIN {} ON {} = {}").format(
        main,
        sql.Identifier(side.table),
        sql.Identifier(side.table, side.key),
        sql.Identifier(table, "id"),
    )
    return columns, joined


def _where(
    table: str,
    scope_column: str,
    scope: int | None,
    filters: Mapping[str, Any],
    include_retired: bool,
) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    if scope is not None:
        parts.append(sql.SQL("{} = %s").format(sql.Identifier(table, scope_column)))
        params.append(scope)
    for column, value in filters.items():
        if value is None:
            continue
        parts.append(sql.SQL("{} = %s").format(sql.Identifier(table, column)))
        params.append(value)
    if not include_retired:
        parts.append(sql.SQL("{} IS NULL").format(sql.Identifier(table, "retired_at")))
    return sql.SQL(" AND ").join(parts), params


def fetch_page(
    conn: Connection[Any],
    table: str,
    row_type: type[R],
    *,
    scope_column: str = "customer_id",
    scope: int | None,
    filters: Mapping[str, Any] | None = None,
    include_retired: bool = False,
    after: int | None = None,
    limit: int = 50,
    side: SideTable | None = None,
) -> tuple[list[R], int | None]:
    """One keyset page of ``table`` ordered by id, confined to ``scope`` when it is set."""
    where, params = _where(table, scope_column, scope, filters or {}, include_retired)
    row_id = sql.Identifier(table, "id")
    if after is not None:
        where = sql.SQL("{} AND {} > %s").format(where, row_id)
        params.append(after)
    limit = max(1, min(limit, MAX_PAGE))
    columns, source = _source(table, side)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
        columns, source, where, row_id
    )
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        rows = cur.execute(query, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (getattr(rows[-1], "id") if more and rows else None)  # noqa: B009


def fetch_one(
    conn: Connection[Any],
    table: str,
    row_type: type[R],
    row_id: int,
    *,
    scope_column: str = "customer_id",
    scope: int | None,
    for_update: bool = False,
    side: SideTable | None = None,
) -> R | None:
    """The row ``row_id`` of ``table`` when it is within ``scope``; None otherwise."""
    where, params = _where(table, scope_column, scope, {"id": row_id}, include_retired=True)
    columns, source = _source(table, side)
    lock = sql.SQL(" FOR UPDATE OF {}").format(sql.Identifier(table)) if for_update else sql.SQL("")
    query = sql.SQL("SELECT {} FROM {} WHERE {}{}").format(columns, source, where, lock)
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        return cur.execute(query, params).fetchone()


def _returning(statement: sql.Composable, side: SideTable | None) -> sql.Composed:
    """``statement ... RETURNING *``, with the row's ``side`` columns (as they were before the
    statement, which does not touch them)."""
    if side is None:
        return sql.SQL("{} RETURNING *").format(statement)
    return sql.SQL(
        "WITH t AS ({} RETURNING *) SELECT t.*, {} FROM t LEFT JOIN {} ON {} = t.id"
    ).format(
        statement,
        sql.SQL(", ").join(sql.Identifier(side.table, c) for c in side.columns),
        sql.Identifier(side.table),
        sql.Identifier(side.table, side.key),
    )


def insert_row(
    conn: Connection[Any],
    table: str,
    row_type: type[R],
    values: Mapping[str, Any],
    *,
    side: SideTable | None = None,
) -> R:
    """Insert one row and return it."""
    columns = list(values)
    query = _returning(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        side,
    )
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        row = cur.execute(query, [values[c] for c in columns]).fetchone()
    assert row is not None
    return row


def update_row(
    conn: Connection[Any],
    table: str,
    row_type: type[R],
    row_id: int,
    values: Mapping[str, Any],
    *,
    extra_sets: Sequence[str] = (),
    side: SideTable | None = None,
) -> R | None:
    """Set ``values`` (and literal ``extra_sets`` such as ``retired_at = now()``) on one row."""
    sets: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values]
    sets += [sql.SQL(s) for s in extra_sets]
    if not sets:
        return None
    query = _returning(
        sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            sql.Identifier(table), sql.SQL(", ").join(sets)
        ),
        side,
    )
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        return cur.execute(query, [*values.values(), row_id]).fetchone()


@dataclass(frozen=True)
class ScopedTable(Generic[R]):
    """One table whose rows belong to a customer (``scope_column``), declared in the
    repository that owns it; its methods are that repository's generic reads and writes.
    ``side``: columns of its rows kept in a table of their own, read with each row."""

    table: str
    row_type: type[R]
    scope_column: str = "customer_id"
    retired_column: str = "retired_at"
    side: SideTable | None = None

    def get(
        self, conn: Connection[Any], row_id: int, *, scope: int | None, for_update: bool = False
    ) -> R | None:
        """The row ``row_id`` when within ``scope`` (None: any customer's)."""
        return fetch_one(
            conn,
            self.table,
            self.row_type,
            row_id,
            scope_column=self.scope_column,
            scope=scope,
            for_update=for_update,
            side=self.side,
        )

    def page(
        self,
        conn: Connection[Any],
        *,
        scope: int | None,
        filters: Mapping[str, Any] | None = None,
        include_retired: bool = False,
        after: int | None = None,
        limit: int = 50,
    ) -> tuple[list[R], int | None]:
        """One keyset page within ``scope``."""
        return fetch_page(
            conn,
            self.table,
            self.row_type,
            scope_column=self.scope_column,
            scope=scope,
            filters=filters,
            include_retired=include_retired,
            after=after,
            limit=limit,
            side=self.side,
        )

    def insert(self, conn: Connection[Any], values: Mapping[str, Any]) -> R:
        """Insert one row."""
        return insert_row(conn, self.table, self.row_type, values, side=self.side)

    def update(self, conn: Connection[Any], row_id: int, values: Mapping[str, Any]) -> R | None:
        """Set columns of one row (None when ``values`` is empty)."""
        return update_row(conn, self.table, self.row_type, row_id, values, side=self.side)

    def retire(self, conn: Connection[Any], row_id: int) -> R:
        """Mark one row retired (or revoked) now."""
        row = update_row(
            conn,
            self.table,
            self.row_type,
            row_id,
            {},
            extra_sets=[f"{self.retired_column} = now()"],
            side=self.side,
        )
        assert row is not None
        return row


def replica_lag_s(conn: Connection[Any]) -> float | None:
    """How far a streaming replica is behind, in seconds; None on a primary.

    Nothing received and not yet replayed is no lag, however old the last transaction is (an
    idle primary sends nothing); a replica that is not streaming counts as infinitely behind.
    While WAL is being replayed the lag is the age of the last replayed commit, so WAL without
    a transaction (a checkpoint) after a quiet spell counts as lag until it is replayed.
    """
    row = conn.execute(
        """
        SELECT pg_is_in_recovery(),
               EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
               CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
        """
    ).fetchone()
    if row is None or not row[0]:
        return None
    if not row[1]:
        return float("inf")
    return max(0.0, float(row[2] or 0.0))
