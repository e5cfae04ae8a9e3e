"""SQL the wear models read: readings matrices, scoring windows, lifetimes, usage rates.

Readings matrix (the input of ``models.features.WindowFeatures``): one row per reading of the
kind's usage counter (the row grid), columns ``group id, usage, settings..., sensors...``;
every other metric enters a row as its latest value at or before the row's time (forward
fill: a metric read only now and then, like a depth from a drive-over reader), or, before its first
value in the group, as that first value (back fill). Rows of a group are contiguous and in
time order. Readings travel as one bytea of packed binary records that numpy reads: no
Python object per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg import Connection, sql
from psycopg.rows import class_row

from models.repository.arrays import BinaryArray, register_binary_arrays

Conn = Connection[Any]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# PostgreSQL's binary timestamptz: microseconds since 2000-01-01 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_US = int((PG_EPOCH - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
NO_LIMIT: int | None = None  # LIMIT NULL is LIMIT ALL
_INFINITY = datetime.max.replace(tzinfo=UTC)  # "no end" of a window

# One long reading as the server packs it (int8send || int2send || timestamptz_send ||
# float8send): group id, metric id, time (µs since 2000), value — 26 bytes, big-endian, so
# numpy reads the whole answer without a Python object per reading.
LONG_ROW = np.dtype([("group_id", ">i8"), ("metric_id", ">i2"), ("time", ">i8"), ("value", ">f8")])


@dataclass(frozen=True)
class MetricLayout:
    """The metric ids of one kind in readings-matrix column order."""

    usage_id: int
    column_ids: tuple[int, ...]  # settings then sensors, matrix columns 2..

    @property
    def n_columns(self) -> int:
        return 2 + len(self.column_ids)


@dataclass(frozen=True)
class Readings:
    """A readings matrix with the time of each row (UTC microseconds since 1970)."""

    matrix: FloatArray
    time_us: IntArray
    missing_groups: tuple[int, ...]  # groups left out: no usage reading or a metric never seen

    def group_ids(self) -> IntArray:
        """The groups in matrix order."""
        if self.matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        ids = self.matrix[:, 0]
        first = np.concatenate(([True], ids[1:] != ids[:-1]))
        return ids[first].astype(np.int64)

    def last_rows(self) -> NDArray[np.intp]:
        """Index of the last row of each group."""
        if self.matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.intp)
        ids = self.matrix[:, 0]
        return np.flatnonzero(np.concatenate((ids[1:] != ids[:-1], [True])))


@dataclass(frozen=True)
class Window:
    """One group to read: an asset's readings in [start, end]."""

    group_id: int
    asset_id: int
    start: datetime
    end: datetime | None  # None: up to now


def metric_layout(conn: Conn, kind: str, usage: str, columns: Sequence[str]) -> MetricLayout:
    """Metric ids of ``kind`` for the usage counter and the given columns, in that order."""
    rows = conn.execute("SELECT name, id FROM metrics WHERE kind = %s", (kind,)).fetchall()
    ids = {name: int(mid) for name, mid in rows}
    missing = [n for n in (usage, *columns) if n not in ids]
    if missing:
        raise LookupError(f"metrics of {kind!r} not in the catalogue: {', '.join(missing)}")
    return MetricLayout(usage_id=ids[usage], column_ids=tuple(ids[c] for c in columns))


_WINDOW_QUERY = """
WITH g AS (
    SELECT * FROM unnest(%(gid)b::bigint[], %(aid)b::bigint[], %(t0)b::timestamptz[],
                         %(t1)b::timestamptz[]) AS g(group_id, asset_id, t0, t1)
), head AS (
    SELECT g.group_id, g.asset_id, g.t0, h.time, h.value FROM g CROSS JOIN LATERAL (
        SELECT t.time, t.value FROM telemetry t
         WHERE t.asset_id = g.asset_id AND t.metric_id = %(usage)s AND t.time >= g.t0
           AND t.time <= g.t1
         ORDER BY t.time LIMIT %(head)s) h
), tail AS (
    SELECT g.group_id, h.time, h.value FROM g CROSS JOIN LATERAL (
        SELECT t.time, t.value FROM telemetry t
         WHERE t.asset_id = g.asset_id AND t.metric_id = %(usage)s AND t.time >= g.t0
           AND t.time <= g.t1
         ORDER BY t.time DESC LIMIT %(tail)s) h
), bounds AS (
    SELECT h.group_id, h.asset_id, h.t0, h.head_end, t.tail_start, t.last_time
      FROM (SELECT group_id, asset_id, t0, max(time) AS head_end FROM head
             GROUP BY group_id, asset_id, t0) h
      JOIN (SELECT group_id, min(time) AS tail_start, max(time) AS last_time FROM tail
             GROUP BY group_id) t USING (group_id)
), readings AS (
SELECT group_id, %(usage)s::smallint AS metric_id, time, value FROM head
UNION
SELECT group_id, %(usage)s::smallint, time, value FROM tail
UNION ALL
SELECT b.group_id, m.id, x.time, x.value
  FROM bounds b CROSS JOIN unnest(%(metrics)b::smallint[]) AS m(id) CROSS JOIN LATERAL (
      (SELECT t.time, t.value FROM telemetry t
        WHERE t.asset_id = b.asset_id AND t.metric_id = m.id
          AND t.time >= b.t0 AND t.time <= b.head_end)
      UNION
      (SELECT t.time, t.value FROM telemetry t
        WHERE t.asset_id = b.asset_id AND t.metric_id = m.id
          AND t.time >= b.tail_start AND t.time <= b.last_time)
      UNION
      (SELECT t.time, t.value FROM telemetry t
        WHERE t.asset_id = b.asset_id AND t.metric_id = m.id
          AND t.time >= b.t0 AND t.time < b.tail_start
        ORDER BY t.time DESC LIMIT 1)
      UNION
      (SELECT t.time, t.value FROM telemetry t
        WHERE t.asset_id = b.asset_id AND t.metric_id = m.id
          AND t.time >= b.t0 AND t.time <= b.last_time
        ORDER BY t.time LIMIT 1)
  ) x
)
SELECT {packed} FROM readings
"""


def fetch_long_readings(
    conn: Conn,
    layout: MetricLayout,
    windows: Sequence[Window],
    *,
    head_rows: int | None = NO_LIMIT,
    tail_rows: int | None = NO_LIMIT,
) -> np.ndarray:
    """Long readings (group_id, metric_id, time, value) that the matrices of ``windows`` need.

    Per window: the first ``head_rows`` and the last ``tail_rows`` usage readings (all when
    None), every other metric's values in those spans, the last value before the tail (for
    forward fill) and the first value (for back fill).
    """
    if not windows:
        return np.zeros(0, dtype=LONG_ROW)
    query = sql.SQL(_WINDOW_QUERY).format(packed=sql.SQL(_PACKED))
    params = {
        "gid": [w.group_id for w in windows],
        "aid": [w.asset_id for w in windows],
        "t0": [w.start for w in windows],
        "t1": [w.end or _INFINITY for w in windows],
        "usage": layout.usage_id,
        "head": head_rows,
        "tail": tail_rows,
        "metrics": list(layout.column_ids),
    }
    return _packed_rows(conn, query, params)


@dataclass(frozen=True)
class LongColumns:
    """Long readings as columns, each reading's group found in a list of group ids."""

    pos: NDArray[np.intp]  # the group's position in the ids (-1: not there)
    metric: IntArray
    time: IntArray  # µs since 2000
    value: FloatArray

    @classmethod
    def of(cls, long: np.ndarray, ids: IntArray) -> LongColumns:
        """Columns of ``long`` with each reading's position in ``ids`` (the first of repeats)."""
        return cls(
            pos=positions_in(ids, long["group_id"].astype(np.int64)),
            metric=long["metric_id"].astype(np.int64),
            time=long["time"].astype(np.int64),
            value=long["value"].astype(np.float64),
        )

    def metric_rows(self, metric_id: int) -> tuple[NDArray[np.intp], IntArray, FloatArray]:
        """(position, time, value) of one metric's readings of known groups, in (position,
        time) order (readings at the same time in their order here)."""
        sel = (self.pos >= 0) & (self.metric == metric_id)
        pos, time, value = self.pos[sel], self.time[sel], self.value[sel]
        o = np.lexsort((time, pos))
        return pos[o], time[o], value[o]

    def usage_rows(self, usage_id: int) -> tuple[NDArray[np.intp], IntArray, FloatArray]:
        """The row grid: :meth:`metric_rows` of the usage counter, the first reading of each
        (position, time)."""
        pos, time, value = self.metric_rows(usage_id)
        if time.size:
            first = np.concatenate(([True], (pos[1:] != pos[:-1]) | (time[1:] != time[:-1])))
            pos, time, value = pos[first], time[first], value[first]
        return pos, time, value


def positions_in(ids: IntArray, wanted: IntArray) -> NDArray[np.intp]:
    """Each of ``wanted``'s position in ``ids`` (the first where repeated; -1: not there)."""
    if ids.shape[0] == 0:
        return np.full(wanted.shape[0], -1, dtype=np.intp)
    sorter = np.argsort(ids, kind="stable")
    at = sorter[np.clip(np.searchsorted(ids, wanted, sorter=sorter), 0, ids.shape[0] - 1)]
    return np.where(ids[at] == wanted, at, -1)


def assemble_matrix(long: np.ndarray, layout: MetricLayout, group_order: Sequence[int]) -> Readings:
    """Pivot long readings into a readings matrix (rows on the usage grid, as-of fill)."""
    order_ids = np.asarray(list(group_order), dtype=np.int64)
    cols = LongColumns.of(long, order_ids)  # dense group index in the requested order
    g_idx, g_t, g_v = cols.usage_rows(layout.usage_id)
    n = g_idx.shape[0]
    matrix = np.empty((n, layout.n_columns), dtype=np.float64)
    matrix[:, 0] = order_ids[g_idx] if n else 0
    matrix[:, 1] = g_v
    bad = np.zeros(len(order_ids), dtype=bool)
    present = np.zeros(len(order_ids), dtype=bool)
    present[g_idx] = True
    t_base = int(g_t.min()) if n else 0
    span = int(g_t.max()) - t_base + 1 if n else 1
    for j, metric_id in enumerate(layout.column_ids):
        m_idx, m_t, m_v = cols.metric_rows(metric_id)
        col = np.full(n, np.nan)
        if m_idx.size and n:
            lo = min(t_base, int(m_t.min()))
            width = max(span + t_base, int(m_t.max()) + 1) - lo
            if width * (len(order_ids) + 1) < 2**62:
                m_key = m_idx * width + (m_t - lo)
                g_key = g_idx * width + (g_t - lo)
                at = np.searchsorted(m_key, g_key, side="right") - 1
                prev_ok = (at >= 0) & (m_idx[np.maximum(at, 0)] == g_idx)
                nxt = np.minimum(at + 1, m_idx.size - 1)
                next_ok = m_idx[nxt] == g_idx
                col = np.where(prev_ok, m_v[np.maximum(at, 0)], np.where(next_ok, m_v[nxt], np.nan))
            else:  # keys would overflow: one group at a time
                for gi in np.unique(g_idx):
                    rows = np.flatnonzero(g_idx == gi)
                    mine = m_idx == gi
                    if not mine.any():
                        continue
                    mt, mv = m_t[mine], m_v[mine]
                    at = np.searchsorted(mt, g_t[rows], side="right") - 1
                    col[rows] = mv[np.maximum(at, 0)]
        matrix[:, 2 + j] = col
        missing = np.isnan(col)
        if missing.any():
            bad[np.unique(g_idx[missing])] = True
    drop = bad[g_idx] if n else np.zeros(0, dtype=bool)
    missing_groups = tuple(int(order_ids[i]) for i in np.flatnonzero(bad | ~present))
    time_us = g_t + PG_EPOCH_US
    return Readings(matrix=matrix[~drop], time_us=time_us[~drop], missing_groups=missing_groups)


def fetch_readings(
    conn: Conn,
    layout: MetricLayout,
    windows: Sequence[Window],
    *,
    head_rows: int | None = NO_LIMIT,
    tail_rows: int | None = NO_LIMIT,
) -> Readings:
    """The readings matrix of ``windows`` (see :func:`fetch_long_readings` for the limits)."""
    long = fetch_long_readings(conn, layout, windows, head_rows=head_rows, tail_rows=tail_rows)
    return assemble_matrix(long, layout, [w.group_id for w in windows])


# A lateral lookup per asset and metric: on TimescaleDB each lookup excludes at run time the
# chunks older than ``since`` (a plain join probes every chunk's index for every asset).
_NEW_ROWS_QUERY = """
SELECT {packed}
  FROM unnest(%(gid)b::bigint[], %(since)b::timestamptz[]) AS v(group_id, since)
 CROSS JOIN unnest(%(metrics)b::smallint[]) AS m(id)
 CROSS JOIN LATERAL (
     SELECT time, value FROM telemetry
      WHERE asset_id = v.group_id AND metric_id = m.id AND time > v.since
      ORDER BY time) t
"""

# Aggregates the readings into one bytea of LONG_ROW records (see LONG_ROW).
_PACKED = (
    "string_agg(int8send(group_id) || int2send(metric_id) || timestamptz_send(time)"
    " || float8send(value), ''::bytea)"
)
_PACKED_NEW = (
    "string_agg(int8send(v.group_id) || int2send(m.id) || timestamptz_send(t.time)"
    " || float8send(t.value), ''::bytea)"
)


def fetch_new_long_readings(
    conn: Conn, layout: MetricLayout, asset_ids: Sequence[int], since: Sequence[datetime]
) -> np.ndarray:
    """Long readings of each asset (as its own group) newer than its ``since`` time."""
    if not asset_ids:
        return np.zeros(0, dtype=LONG_ROW)
    query = sql.SQL(_NEW_ROWS_QUERY).format(packed=sql.SQL(_PACKED_NEW))
    params = {
        "gid": list(asset_ids),
        "since": list(since),
        "metrics": [layout.usage_id, *layout.column_ids],
    }
    return _packed_rows(conn, query, params)


# One range scan of what arrived after ``floor`` for the listed assets: on plain PostgreSQL
# the BRIN index on time, on TimescaleDB the chunks after ``floor`` (excluded at plan time) and
# their time index; no join, so no row estimate can turn it into a nested loop. The caller
# drops the rows at or before each asset's own ``since``.
_RECENT_ROWS_QUERY = """
SELECT {packed} FROM (
    SELECT asset_id AS group_id, metric_id, time, value FROM telemetry
     WHERE time > %(floor)s AND asset_id = ANY(%(gid)b::bigint[])
       AND metric_id = ANY(%(metrics)b::smallint[])) r
"""


def fetch_recent_long_readings(
    conn: Conn, layout: MetricLayout, asset_ids: Sequence[int] | np.ndarray, floor: datetime
) -> np.ndarray:
    """Long readings of each asset (as its own group) newer than ``floor``, in one range scan."""
    if not len(asset_ids):
        return np.zeros(0, dtype=LONG_ROW)
    query = sql.SQL(_RECENT_ROWS_QUERY).format(packed=sql.SQL(_PACKED))
    params = {
        "gid": BinaryArray.of(np.asarray(asset_ids, dtype=np.int64), 20),  # 10,000 ids at once
        "floor": floor,
        "metrics": [layout.usage_id, *layout.column_ids],
    }
    return _packed_rows(conn, query, params)


def _packed_rows(conn: Conn, query: sql.Composed, params: dict[str, Any]) -> np.ndarray:
    # No JIT for the readings queries (until the caller's transaction ends; an autocommit
    # connection gets a transaction of its own). A lateral lookup per window and metric is
    # estimated at millions, so PostgreSQL compiles it with full optimisation; on TimescaleDB
    # every chunk's scan is compiled too: training 12 pump lives over 267 daily chunks read
    # 13,695 rows in 34.5 s, of which JIT was 34.3 s (8,622 functions; EXPLAIN ANALYZE).
    with conn.transaction() if conn.autocommit else nullcontext(), conn.cursor(binary=True) as cur:
        register_binary_arrays(cur)
        cur.execute("SET LOCAL jit = off")
        row = cur.execute(query, params).fetchone()
    if row is None or row[0] is None:
        return np.zeros(0, dtype=LONG_ROW)
    return np.frombuffer(bytes(row[0]), dtype=LONG_ROW)


def empty_long() -> np.ndarray:
    """An empty long-readings array."""
    return np.zeros(0, dtype=LONG_ROW)


def pg_us(at: datetime) -> int:
    """A time as PostgreSQL's binary timestamptz: µs since 2000-01-01 UTC."""
    return (at - PG_EPOCH) // timedelta(microseconds=1)


def windows_since(asset_ids: IntArray, renewed_us: IntArray) -> list[Window]:
    """Each asset's scoring window since its renewal (PostgreSQL µs since 2000)."""
    micro = timedelta(microseconds=1)
    return [
        Window(a, a, PG_EPOCH + r * micro, None)
        for a, r in zip(asset_ids.tolist(), renewed_us.tolist(), strict=True)
    ]


def scoring_windows(conn: Conn, asset_ids: Sequence[int]) -> list[Window]:
    """Each asset's window since its last renewal, in the given order."""
    rows = conn.execute(
        "SELECT id, renewed_at FROM assets WHERE id = ANY(%s)", (list(asset_ids),)
    ).fetchall()
    renewed = {int(r[0]): r[1] for r in rows}
    return [Window(a, a, renewed[a], None) for a in asset_ids if a in renewed]


# --- lifetimes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Life:
    """One recorded life of an asset's component."""

    id: int
    asset_id: int
    component: str
    started_at: datetime
    ended_at: datetime
    end_reason: str
    usage_at_end: float | None
    # what was found (failure, confirmed_wear, false_alarm, other_fault; None: not recorded)
    outcome: str | None = None
    remaining_at_end: float | None = None  # measured life left when it was replaced


def fetch_lives(conn: Conn, kind: str) -> list[Life]:
    """Recorded lives of assets of ``kind``, ordered by asset and end."""
    with conn.cursor(row_factory=class_row(Life)) as cur:
        return cur.execute(
            """
            SELECT l.id, l.asset_id, l.component, l.started_at, l.ended_at, l.end_reason,
                   l.usage_at_end, l.outcome, l.remaining_at_end
              FROM asset_lives l JOIN assets a ON a.id = l.asset_id
             WHERE a.kind = %s ORDER BY l.asset_id, l.ended_at, l.component
            """,
            (kind,),
        ).fetchall()


# --- usage rate -------------------------------------------------------------------------------


def usage_rates_per_day(
    conn: Conn,
    usage_id: int,
    asset_ids: Sequence[int],
    last_time: Sequence[datetime],
    last_value: Sequence[float],
    lookback: timedelta,
    min_history: timedelta = timedelta(days=1),
) -> dict[int, float]:
    """Usage per day of each asset from its counter ``lookback`` before its last reading.

    Uses the counter reading at or before ``last_time - lookback`` (or the first reading
    since renewal when the history is shorter). Assets with less than ``min_history`` of
    history, or a counter that did not move, are left out: usage comes in shifts and
    flights, so a few hours since renewal overstate the daily rate (and the due date then
    comes far too early).
    """
    if not asset_ids:
        return {}
    rows = conn.execute(
        """
        WITH v AS (
            SELECT * FROM unnest(%(ids)b::bigint[], %(t)b::timestamptz[], %(v)b::float8[])
                AS v(asset_id, t, value)
        )
        SELECT v.asset_id, v.t, v.value, coalesce(p.time, f.time), coalesce(p.value, f.value)
          FROM v JOIN assets a ON a.id = v.asset_id
          LEFT JOIN LATERAL (
              SELECT time, value FROM telemetry
               WHERE asset_id = v.asset_id AND metric_id = %(usage)s
                 AND time >= a.renewed_at AND time <= v.t - %(lookback)s
               ORDER BY time DESC LIMIT 1) p ON true
          LEFT JOIN LATERAL (
              SELECT time, value FROM telemetry
               WHERE asset_id = v.asset_id AND metric_id = %(usage)s AND time >= a.renewed_at
               ORDER BY time LIMIT 1) f ON p.time IS NULL
        """,
        {
            "ids": list(asset_ids),
            "t": list(last_time),
            "v": list(last_value),
            "usage": usage_id,
            "lookback": lookback,
        },
    ).fetchall()
    rates: dict[int, float] = {}
    for asset_id, t, value, t0, v0 in rows:
        if t0 is None:
            continue
        days = (t - t0).total_seconds() / 86400.0
        if days >= min_history.total_seconds() / 86400.0 and value > v0:
            rates[int(asset_id)] = float((value - v0) / days)
    return rates


# --- changed assets and scoring state ---------------------------------------------------------
