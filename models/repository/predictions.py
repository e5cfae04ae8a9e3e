"""SQL of scoring's bookkeeping and of predictions: changed assets, scoring state, writes, lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg.rows import class_row

from models.repository.arrays import BinaryArray, register_binary_arrays
from models.repository.readings import PG_EPOCH, Conn
from models.schemas import ChangedAsset, Prediction


def tune_scoring_transaction(conn: Conn) -> None:
    """Settings for the rest of a scoring pass's transaction.

    No JIT: the readings queries are estimated at millions (a lateral lookup per asset and
    metric) and PostgreSQL compiled each with full optimisation, ~0.3 s a query that runs
    in less than that (EXPLAIN ANALYZE of the warm read on bench.score's fleet: JIT 0.5 s of
    a 5 s query at load 25). More work memory: the cold read's de-duplication of the usage
    rows (690,000 rows at 10,000 assets) spilled to disk in 21 batches at the default 4 MB.
    """
    conn.execute("SET LOCAL jit = off")
    conn.execute("SET LOCAL work_mem = '64MB'")


NO_TIME = np.iinfo(np.int64).min  # -infinity as a binary timestamptz: NULL in the upserts

# One changed asset as the server packs it (int8send || timestamptz_send x 3): id, renewal,
# last seen, data consumed (-infinity: none), times in µs since 2000, big-endian: numpy reads
# the answer without a Python object per asset.
CHANGED_ROW = np.dtype([("asset_id", ">i8"), ("renewed", ">i8"), ("seen", ">i8"), ("until", ">i8")])


@dataclass(frozen=True)
class ChangedAssets:
    """Assets of one kind whose telemetry moved since the scoring worker last consumed it, as
    columns (ids ascending; times in PostgreSQL µs since 2000, ``NO_TIME`` for none): a
    scoring pass reads 10,000 of them, and a record per asset (its datetimes made by psycopg,
    then the pass's look-ups) cost ~0.03 CPU-s a pass, more than the query."""

    kind: str
    asset_id: NDArray[np.int64]
    renewed_us: NDArray[np.int64]
    seen_us: NDArray[np.int64]
    until_us: NDArray[np.int64]  # what scoring last consumed; NO_TIME: never scored

    def __len__(self) -> int:
        return int(self.asset_id.shape[0])

    def where(self, keep: NDArray[np.bool_]) -> ChangedAssets:
        """The assets where ``keep`` is true."""
        return ChangedAssets(
            self.kind,
            self.asset_id[keep],
            self.renewed_us[keep],
            self.seen_us[keep],
            self.until_us[keep],
        )

    def records(self) -> list[ChangedAsset]:
        """One record per asset."""
        micro = timedelta(microseconds=1)
        return [
            ChangedAsset(a, self.kind, PG_EPOCH + r * micro, PG_EPOCH + s * micro, pg_datetime(u))
            for a, r, s, u in zip(
                self.asset_id.tolist(),
                self.renewed_us.tolist(),
                self.seen_us.tolist(),
                self.until_us.tolist(),
                strict=True,
            )
        ]


def find_changed_assets(
    conn: Conn, *, kind: str | None = None, limit: int | None = None
) -> list[ChangedAssets]:
    """Live assets whose last_seen_at moved past what scoring last consumed (or never scored),
    the first ``limit`` by id, per kind (kinds in the order of their first asset)."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            """
            SELECT c.kind,
                   string_agg(int8send(c.asset_id) || timestamptz_send(c.renewed_at)
                              || timestamptz_send(c.last_seen_at)
                              || timestamptz_send(coalesce(c.data_until, '-infinity')),
                              ''::bytea ORDER BY c.asset_id)
              FROM (SELECT a.id AS asset_id, a.kind, a.renewed_at, seen.last_seen_at,
                           s.data_until
                      FROM assets a JOIN asset_seen seen ON seen.asset_id = a.id
                           LEFT JOIN asset_scoring_state s ON s.asset_id = a.id
                     WHERE a.retired_at IS NULL AND seen.last_seen_at IS NOT NULL
                       AND (%(kind)s::text IS NULL OR a.kind = %(kind)s)
                       AND (s.asset_id IS NULL OR seen.last_seen_at > s.seen_at
                            OR a.renewed_at <> s.renewed_at)
                     ORDER BY a.id
                     LIMIT %(limit)s) c
             GROUP BY c.kind
             ORDER BY min(c.asset_id)
            """,
            {"kind": kind, "limit": limit},
        ).fetchall()
    out: list[ChangedAssets] = []
    for kind_name, packed in rows:
        got = np.frombuffer(packed, dtype=CHANGED_ROW)
        out.append(
            ChangedAssets(
                kind_name,
                got["asset_id"].astype(np.int64),
                got["renewed"].astype(np.int64),
                got["seen"].astype(np.int64),
                got["until"].astype(np.int64),
            )
        )
    return out


def pg_datetime(us: int) -> datetime | None:
    """PostgreSQL µs since 2000 as a UTC datetime (``NO_TIME``: None)."""
    return None if us == NO_TIME else PG_EPOCH + timedelta(microseconds=us)


def record_scoring_state(
    conn: Conn,
    asset_ids: Sequence[int] | np.ndarray,
    seen_at: Sequence[datetime] | np.ndarray,
    data_until: Sequence[datetime | None] | np.ndarray,
    renewed_at: Sequence[datetime] | np.ndarray,
    scored_at: datetime,
    windows: PersistedWindows | None = None,
) -> None:
    """Remember what scoring consumed per asset (moves seen_at forward only), and the
    readings windows given in ``windows`` (an asset without one keeps its stored window).
    The times may come as PostgreSQL µs since 2000 (arrays; :data:`NO_TIME` for none)."""
    if len(asset_ids) == 0:
        return
    n = len(asset_ids)
    blobs: Sequence[bytes | None] = windows.rows if windows else [None] * n
    built: Sequence[datetime | None] = windows.built_at if windows else [None] * n
    with conn.cursor(binary=True) as cur:
        register_binary_arrays(cur)
        cur.execute(
            _STATE_UPSERT,
            {
                "at": scored_at,
                "key": windows.key if windows else None,
                "ids": BinaryArray.of(np.asarray(asset_ids, dtype=np.int64), 20),
                "seen": _timestamps(seen_at),
                "until": _timestamps(data_until),
                "renewed": _timestamps(renewed_at),
                "built": _timestamps(built),
                "w": list(blobs),
            },
        )


def _timestamps(values: Sequence[datetime | None] | np.ndarray) -> BinaryArray:
    """Times (datetimes, None for NULL; or PostgreSQL µs since 2000, ``NO_TIME`` for NULL)
    as a binary timestamptz array: psycopg dumps a list of datetimes value by value."""
    if isinstance(values, np.ndarray):
        return BinaryArray.of(values.astype(np.int64), 1184)
    micro = timedelta(microseconds=1)
    return BinaryArray.of(
        np.fromiter(
            (NO_TIME if v is None else (v - PG_EPOCH) // micro for v in values),
            dtype=np.int64,
            count=len(values),
        ),
        1184,
    )


# Each value's NULL travels as -infinity (binary arrays here carry no NULLs).
_STATE_UPSERT = """
        INSERT INTO asset_scoring_state AS s (asset_id, seen_at, data_until, renewed_at,
            scored_at, window_key, window_renewed_at, window_built_at, window_rows)
        SELECT v.asset_id, v.seen_at, NULLIF(v.data_until, '-infinity'), v.renewed_at, %(at)s,
               CASE WHEN v.w IS NOT NULL THEN %(key)s::text END,
               CASE WHEN v.w IS NOT NULL THEN v.renewed_at END,
               NULLIF(v.built, '-infinity'), v.w
          FROM unnest(%(ids)b::bigint[], %(seen)b::timestamptz[], %(until)b::timestamptz[],
                      %(renewed)b::timestamptz[], %(built)b::timestamptz[], %(w)b::bytea[])
            AS v(asset_id, seen_at, data_until, renewed_at, built, w)
        ON CONFLICT (asset_id) DO UPDATE SET
            seen_at = greatest(s.seen_at, EXCLUDED.seen_at),
            data_until = coalesce(EXCLUDED.data_until, s.data_until),
            renewed_at = EXCLUDED.renewed_at,
            scored_at = EXCLUDED.scored_at,
            window_key = coalesce(EXCLUDED.window_key, s.window_key),
            window_renewed_at = coalesce(EXCLUDED.window_renewed_at, s.window_renewed_at),
            window_built_at = coalesce(EXCLUDED.window_built_at, s.window_built_at),
            window_rows = coalesce(EXCLUDED.window_rows, s.window_rows)
"""


@dataclass(frozen=True)
class PersistedWindows:
    """Readings windows to store with the scoring state, one entry per asset of the state
    write (None: keep the stored one); ``key`` names their format and layout."""

    key: str
    rows: Sequence[bytes | None]
    built_at: Sequence[datetime | None]


@dataclass(frozen=True)
class StoredWindow:
    """One asset's persisted readings window."""

    asset_id: int
    renewed_at: datetime
    built_at: datetime
    rows: bytes


def fetch_scoring_windows(conn: Conn, asset_ids: Sequence[int], key: str) -> list[StoredWindow]:
    """The persisted readings windows of ``asset_ids`` stored under ``key`` (others: none)."""
    if not asset_ids:
        return []
    with conn.cursor(binary=True, row_factory=class_row(StoredWindow)) as cur:
        return cur.execute(
            """
            SELECT asset_id, window_renewed_at AS renewed_at, window_built_at AS built_at,
                   window_rows AS rows
              FROM asset_scoring_state
             WHERE asset_id = ANY(%s) AND window_key = %s AND window_rows IS NOT NULL
            """,
            (list(asset_ids), key),
        ).fetchall()


# --- predictions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionBatch:
    """Predictions of one component for many assets, column-wise (arrays or sequences); times
    are numbers so that no Python object is made per row. NaN means "unknown" (stored as
    NULL)."""

    component: str
    asset_ids: Sequence[int] | np.ndarray
    rul: Sequence[float] | np.ndarray
    rul_low: Sequence[float] | np.ndarray
    rul_high: Sequence[float] | np.ndarray
    failure_probability: Sequence[float] | np.ndarray
    anomaly_score: Sequence[float] | np.ndarray
    usage_rate_per_day: Sequence[float] | np.ndarray
    due_unix_s: Sequence[float] | np.ndarray
    due_conservative_unix_s: Sequence[float] | np.ndarray
    data_until_unix_us: Sequence[int] | np.ndarray
    # JSON text per asset (models.explain; str, or bytes in UTF-8); () none
    explanation: Sequence[str | bytes | None] = ()
    low_confidence: Sequence[bool] | np.ndarray = ()  # the data-quality gate's verdict per asset


def insert_predictions(
    conn: Conn,
    batch: PredictionBatch,
    *,
    time: datetime,
    model_version_id: int | None,
    coverage: float,
    horizon: float,
) -> int:
    """Insert one batch; a repeat of the same (asset, component, time) is ignored. Returns how
    many rows were stored."""
    n = len(batch.asset_ids)
    if not n:
        return 0

    def floats(values: Any) -> BinaryArray:
        return BinaryArray.of(np.asarray(values, dtype=np.float64), 701)

    with conn.cursor(binary=True) as cur:
        register_binary_arrays(cur)
        cur.execute(
            """
            WITH stored AS (
                INSERT INTO predictions (time, asset_id, component, model_version_id, rul,
                    rul_low, rul_high, coverage, failure_probability, horizon, anomaly_score,
                    usage_rate_per_day, due_at, due_at_conservative, data_until, explanation,
                    low_confidence)
                SELECT %(time)s, v.asset_id, %(component)s, %(version)s, v.rul, v.low, v.high,
                       %(coverage)s, v.p, %(horizon)s, v.anomaly, NULLIF(v.rate, 'NaN'),
                       CASE WHEN v.due = 'NaN' THEN NULL ELSE to_timestamp(v.due) END,
                       CASE WHEN v.due_c = 'NaN' THEN NULL ELSE to_timestamp(v.due_c) END,
                       'epoch'::timestamptz + v.until_us * interval '1 microsecond',
                       v.explanation::jsonb, v.low_confidence
                  FROM unnest(%(ids)b::bigint[], %(rul)b::float8[], %(low)b::float8[],
                              %(high)b::float8[], %(p)b::float8[], %(anomaly)b::float8[],
                              %(rate)b::float8[], %(due)b::float8[], %(due_c)b::float8[],
                              %(until)b::bigint[], %(explanation)b::text[],
                              %(low_confidence)b::bool[])
                    AS v(asset_id, rul, low, high, p, anomaly, rate, due, due_c, until_us,
                         explanation, low_confidence)
                ON CONFLICT (asset_id, component, time) DO NOTHING
                RETURNING asset_id, component, time, model_version_id, rul, rul_low, rul_high,
                          failure_probability, anomaly_score, due_at, due_at_conservative
            ), batch AS (
                SELECT array_agg(asset_id) AS ids, array_agg(component) AS components,
                       array_agg(time) AS times, array_agg(model_version_id) AS versions,
                       array_agg(rul) AS rul, array_agg(rul_low) AS low,
                       array_agg(rul_high) AS high, array_agg(failure_probability) AS p,
                       array_agg(anomaly_score) AS anomaly, array_agg(due_at) AS due,
                       array_agg(due_at_conservative) AS due_c
                  FROM stored
            )
            -- what track_predictions does, from the rows just stored (migration 0341)
            SELECT coalesce(cardinality(ids), 0),
                   fleetcare_track_prediction_rows(ids, components, times, versions, rul, low,
                                                   high, p, anomaly, due, due_c)
              FROM batch
            """,
            {
                "time": time,
                "component": batch.component,
                "version": model_version_id,
                "coverage": coverage,
                "horizon": horizon,
                "ids": BinaryArray.of(np.asarray(batch.asset_ids, dtype=np.int64), 20),
                "rul": floats(batch.rul),
                "low": floats(batch.rul_low),
                "high": floats(batch.rul_high),
                "p": floats(batch.failure_probability),
                "anomaly": floats(batch.anomaly_score),
                "rate": floats(batch.usage_rate_per_day),
                "due": floats(batch.due_unix_s),
                "due_c": floats(batch.due_conservative_unix_s),
                "until": BinaryArray.of(np.asarray(batch.data_until_unix_us, dtype=np.int64), 20),
                "explanation": BinaryArray.of_texts(list(batch.explanation) or [None] * n),
                "low_confidence": BinaryArray.of(
                    np.asarray(batch.low_confidence, dtype=np.bool_)
                    if len(batch.low_confidence)
                    else np.zeros(n, dtype=np.bool_),
                    16,
                ),
            },
        )
        row = cur.fetchone()
    return int(row[0]) if row is not None else 0


def track_predictions(conn: Conn, keys: Sequence[tuple[int, str, datetime]]) -> None:
    """After inserting predictions, in the same transaction: queue them for the policy, keep
    the latest per asset component and the asset's health row, and notify listeners
    (migrations 0011, 0341). Every writer of predictions calls this with the (asset id,
    component, time) keys it inserted, but :func:`insert_predictions`, which does the same
    from the rows it inserted, in its own statement."""
    if not keys:
        return
    asset_ids, components, times = zip(*keys, strict=True)
    conn.execute(
        "SELECT fleetcare_track_predictions(%b::bigint[], %b::text[], %b::timestamptz[])",
        (list(asset_ids), list(components), list(times)),
    )


PREDICTION_COLUMNS = """time, asset_id, component, model_version_id, rul, rul_low, rul_high,
    coverage, failure_probability, horizon, anomaly_score, usage_rate_per_day, due_at,
    due_at_conservative, data_until, explanation,
    coalesce(low_confidence, false) AS low_confidence"""
"""The columns of a :class:`models.schemas.Prediction`, for every reader of ``predictions``."""


def get_prediction(conn: Conn, asset_id: int, component: str, time: datetime) -> Prediction | None:
    """One prediction by its key."""
    with conn.cursor(row_factory=class_row(Prediction)) as cur:
        return cur.execute(
            f"SELECT {PREDICTION_COLUMNS} FROM predictions"
            " WHERE asset_id = %s AND component = %s AND time = %s",
            (asset_id, component, time),
        ).fetchone()


def list_predictions(
    conn: Conn, asset_id: int, *, component: str | None = None, limit: int = 50
) -> list[Prediction]:
    """An asset's predictions, newest first."""
    with conn.cursor(row_factory=class_row(Prediction)) as cur:
        return cur.execute(
            f"""
            SELECT {PREDICTION_COLUMNS}
              FROM predictions
             WHERE asset_id = %(asset)s AND (%(component)s::text IS NULL
                                             OR component = %(component)s)
             ORDER BY time DESC, component LIMIT %(limit)s
            """,
            {"asset": asset_id, "component": component, "limit": limit},
        ).fetchall()


def asset_customer(conn: Conn, asset_id: int) -> int | None:
    """The customer that owns an asset, or None when there is no such asset."""
    row = conn.execute("SELECT customer_id FROM assets WHERE id = %s", (asset_id,)).fetchone()
    return int(row[0]) if row else None


# --- model versions ---------------------------------------------------------------------------
