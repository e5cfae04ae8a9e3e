"""All SQL of the dashboard. Every query works on plain PostgreSQL and on TimescaleDB.

``telemetry_hourly`` is a table refreshed by ``fleetcare_refresh_telemetry_hourly`` on plain
PostgreSQL and a continuous aggregate on TimescaleDB; both have the same columns. Series are
downsampled with ``date_bin`` (PostgreSQL 14+), never with TimescaleDB-only functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import class_row

from api.dashboard.schemas import (
    AssetHealthRow,
    HealthCount,
    HealthWindows,
    LatestPrediction,
    LiveAsset,
    LiveEvent,
    ModelVersionRow,
    QuarantineReason,
    RulBucket,
    SeriesBucket,
)
from fleetcare.clock import MAX_DUE_DAYS
from ingest.schemas import QuarantineItem
from kinds.schemas import BUSY_DAY_FACTOR

Conn = Connection[Any]

# Fixed origin, so that buckets stay put while the user zooms and pans.
BUCKET_ORIGIN = "2000-01-01 00:00:00+00"

# A prediction without a due date (its RUL and risk are known, but less than a day of the
# asset's own usage counter gives no usage rate yet) is dated at a busy day of its kind,
# ``BUSY_DAY_FACTOR`` times its typical usage per day (``life.typical_per_day`` of the kind's
# definition), when the kind states one, as the policy dates its orders: an estimate, which
# the pages label as such (``due_estimated``), at most a century ahead. The kinds' rates are
# read once per statement (an uncorrelated sub-query); without a rate the estimate is NULL
# (``least`` ignores NULLs: the cap is on the RUL, not on the quotient).
BUSY_PER_DAY = (
    f"({float(BUSY_DAY_FACTOR)!r}"
    " * nullif(((SELECT jsonb_object_agg(name, definition->'life'->'typical_per_day')"
    " FROM asset_kinds) ->> a.kind)::float8, 0))"
)
DUE_SHOWN = (
    "coalesce(h.due_at_conservative, h.predicted_at"
    f" + least(h.rul_low, {MAX_DUE_DAYS} * {BUSY_PER_DAY})"
    f" / {BUSY_PER_DAY} * interval '1 day')"
)
# A prediction made before the asset was last renewed says nothing about the new part. A
# prediction that no rate dates at all is "undated", never "unknown": the page says what is
# missing.
HEALTH_CASE = sql.SQL(
    """CASE WHEN h.asset_id IS NULL OR h.predicted_at < a.renewed_at THEN 'unknown'
            WHEN {due} IS NULL THEN 'undated'
            WHEN {due} < %(now)s THEN 'overdue'
            WHEN {due} < %(due_until)s THEN 'due'
            WHEN {due} < %(watch_until)s THEN 'watch'
            ELSE 'ok' END""".replace("{due}", DUE_SHOWN)
)

# Sort orders of the overview list: (column, its row field, cursor kind, nullable); the first
# column goes in the chosen direction (NULLS LAST), the others ascending. The last column is
# the asset id, so that the order is total and a keyset page follows the last row shown.
SortColumn = tuple[str, str, str, bool]
_REF: SortColumn = ("a.ref", "ref", "str", False)
_ID: SortColumn = ("a.id", "asset_id", "int", False)
SORTS: dict[str, list[SortColumn]] = {
    "due": [(DUE_SHOWN, "due_at_shown", "time", True), _ID],
    "ref": [_REF, _ID],
    "customer": [("c.name", "customer_name", "str", False), _REF, _ID],
    "site": [("s.ref", "site_ref", "str", True), _REF, _ID],
    "risk": [("h.failure_probability", "failure_probability", "float", True), _ID],
    "kind": [("a.kind", "kind", "str", False), _REF, _ID],
}


def _order_by(columns: list[SortColumn], descending: bool) -> sql.Composable:
    first, *rest = columns
    parts = [f"{first[0]} {'DESC' if descending else 'ASC'} NULLS LAST"]
    parts += [f"{c[0]} ASC" for c in rest]
    return sql.SQL(", ".join(parts))


def _after_key(
    columns: list[SortColumn], key: list[Any], descending: bool
) -> tuple[sql.Composable, dict[str, Any]]:
    """Rows after ``key`` in the order of ``columns`` (NULLS LAST): c0 beyond k0, or equal
    and the rest beyond; a null k0 is followed only by nulls."""
    params: dict[str, Any] = {}
    condition: sql.Composable | None = None
    for i in reversed(range(len(columns))):
        column, _, kind, nullable = columns[i]
        name = f"k{i}"
        params[name] = key[i]
        cast = {"time": "timestamptz", "float": "float8", "str": "text", "int": "bigint"}[kind]
        value = sql.SQL("%({})s::{}").format(sql.SQL(name), sql.SQL(cast))
        col = sql.SQL(column)
        beyond_op = sql.SQL("<" if descending and i == 0 else ">")
        if key[i] is None:  # nulls come last: after a null only nulls, by the next columns
            beyond: sql.Composable = sql.SQL("false")
            equal: sql.Composable = sql.SQL("{} IS NULL").format(col)
        else:
            beyond = sql.SQL("{} {} {}").format(col, beyond_op, value)
            if nullable:
                beyond = sql.SQL("({} OR {} IS NULL)").format(beyond, col)
            equal = sql.SQL("{} = {}").format(col, value)
        condition = (
            beyond
            if condition is None
            else sql.SQL("({} OR ({} AND {}))").format(beyond, equal, condition)
        )
    assert condition is not None
    return condition, params


def sort_key(row: AssetHealthRow, sort: str) -> list[Any]:
    """The sort key of an overview row, what its cursor holds."""
    return [getattr(row, field) for _, field, _, _ in SORTS[sort]]


def sort_kinds(sort: str) -> list[str]:
    """The cursor kinds of a sort's key."""
    return [kind for _, _, kind, _ in SORTS[sort]]


def _asset_filters(
    scope: int | None,
    customer_id: int | None,
    site_id: int | None,
    kind: str | None,
) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = [sql.SQL("a.retired_at IS NULL")]
    params: dict[str, Any] = {}
    for column, name, value in (
        ("a.customer_id", "scope", scope),
        ("a.customer_id", "customer_id", customer_id),
        ("a.site_id", "site_id", site_id),
        ("a.kind", "kind", kind),
    ):
        if value is not None:
            parts.append(sql.SQL(column + " = {}").format(sql.Placeholder(name)))
            params[name] = value
    if scope is None and customer_id is None:  # the operator's overview: no training fleets
        parts.append(sql.SQL("a.customer_id NOT IN (SELECT id FROM customers WHERE internal)"))
    return sql.SQL(" AND ").join(parts), params


def _window_params(windows: HealthWindows) -> dict[str, Any]:
    return {"now": windows.now, "due_until": windows.due_until, "watch_until": windows.watch_until}


def health_counts(
    conn: Conn,
    windows: HealthWindows,
    *,
    scope: int | None,
    customer_id: int | None = None,
    site_id: int | None = None,
    kind: str | None = None,
    by_site: bool = True,
) -> list[HealthCount]:
    """Assets in each health class per customer and site (or per customer only)."""
    where, params = _asset_filters(scope, customer_id, site_id, kind)
    site = sql.SQL("a.site_id" if by_site else "NULL::bigint")
    query = sql.SQL(
        """
        WITH classed AS (
            SELECT a.customer_id, {site} AS site_id, {health} AS health
              FROM assets a LEFT JOIN asset_health h ON h.asset_id = a.id
             WHERE {where}
        ), counted AS (
            SELECT customer_id, site_id,
                   count(*) FILTER (WHERE health = 'overdue') AS overdue,
                   count(*) FILTER (WHERE health = 'due') AS due,
                   count(*) FILTER (WHERE health = 'watch') AS watch,
                   count(*) FILTER (WHERE health = 'ok') AS ok,
                   count(*) FILTER (WHERE health = 'undated') AS undated,
                   count(*) FILTER (WHERE health = 'unknown') AS unknown,
                   count(*) AS total
              FROM classed GROUP BY customer_id, site_id
        )
        SELECT k.customer_id, c.name AS customer_name, k.site_id, s.ref AS site_ref,
               s.name AS site_name, k.overdue, k.due, k.watch, k.ok, k.undated, k.unknown,
               k.total
          FROM counted k JOIN customers c ON c.id = k.customer_id
          LEFT JOIN sites s ON s.id = k.site_id
         ORDER BY c.name, k.customer_id, s.ref NULLS LAST
        """
    ).format(site=site, health=HEALTH_CASE, where=where)
    with conn.cursor(row_factory=class_row(HealthCount)) as cur:
        return cur.execute(query, params | _window_params(windows)).fetchall()


def list_asset_health(
    conn: Conn,
    windows: HealthWindows,
    *,
    scope: int | None,
    customer_id: int | None = None,
    site_id: int | None = None,
    kind: str | None = None,
    health: str | None = None,
    sort: str = "due",
    descending: bool = False,
    limit: int = 100,
    after: list[Any] | None = None,
) -> tuple[list[AssetHealthRow], int, bool]:
    """One keyset page of assets with their health, sorted (after the row whose sort key is
    ``after``); how many match in all; whether more follow."""
    where, params = _asset_filters(scope, customer_id, site_id, kind)
    if health is not None:
        where = sql.SQL("{} AND {} = %(health)s").format(where, HEALTH_CASE)
        params["health"] = health
    count_query = sql.SQL(
        "SELECT count(*) FROM assets a LEFT JOIN asset_health h ON h.asset_id = a.id WHERE {}"
    ).format(where)
    total_row = conn.execute(count_query, params | _window_params(windows)).fetchone()
    total = int(total_row[0]) if total_row else 0
    columns = SORTS[sort]
    if after is not None:
        beyond, key_params = _after_key(columns, after, descending)
        where = sql.SQL("{} AND {}").format(where, beyond)
        params |= key_params
    query = sql.SQL(
        """
        SELECT a.id AS asset_id, a.ref, a.kind, a.customer_id, c.name AS customer_name,
               a.site_id, s.ref AS site_ref, {health} AS health,
               h.component, h.predicted_at, h.rul, h.rul_low, h.rul_high,
               h.failure_probability, h.due_at, h.due_at_conservative, seen.last_seen_at,
               {due} AS due_at_shown,
               (h.due_at_conservative IS NULL AND {due} IS NOT NULL) AS due_estimated
          FROM assets a
          JOIN customers c ON c.id = a.customer_id
          LEFT JOIN sites s ON s.id = a.site_id
          LEFT JOIN asset_health h ON h.asset_id = a.id
          LEFT JOIN asset_seen seen ON seen.asset_id = a.id
         WHERE {where}
         ORDER BY {order}
         LIMIT %(limit)s
        """
    ).format(
        health=HEALTH_CASE,
        due=sql.SQL(DUE_SHOWN),
        where=where,
        order=_order_by(columns, descending),
    )
    params |= _window_params(windows) | {"limit": limit + 1}
    with conn.cursor(row_factory=class_row(AssetHealthRow)) as cur:
        rows = cur.execute(query, params).fetchall()
    return rows[:limit], total, len(rows) > limit


def asset_health_of(conn: Conn, windows: HealthWindows, asset_id: int) -> str:
    """The health class of one asset."""
    query = sql.SQL(
        "SELECT {} FROM assets a LEFT JOIN asset_health h ON h.asset_id = a.id WHERE a.id = %(id)s"
    ).format(HEALTH_CASE)
    row = conn.execute(query, _window_params(windows) | {"id": asset_id}).fetchone()
    return str(row[0]) if row else "unknown"


def latest_predictions(conn: Conn, asset_id: int) -> list[LatestPrediction]:
    """The newest prediction of each component of an asset, due first."""
    with conn.cursor(row_factory=class_row(LatestPrediction)) as cur:
        return cur.execute(
            """
            SELECT lp.component, lp.time, lp.model_version_id, mv.algorithm,
                   mv.status AS model_status, lp.rul, lp.rul_low, lp.rul_high,
                   lp.failure_probability, lp.anomaly_score, lp.due_at, lp.due_at_conservative,
                   p.explanation, coalesce(p.low_confidence, false) AS low_confidence,
                   CASE WHEN lp.due_at_conservative IS NULL THEN lp.time
                        + least(lp.rul_low, {MAX_DUE_DAYS} * {BUSY_PER_DAY})
                          / {BUSY_PER_DAY} * interval '1 day'
                   END AS due_estimated_at
              FROM latest_predictions lp
              JOIN assets a ON a.id = lp.asset_id
              LEFT JOIN model_versions mv ON mv.id = lp.model_version_id
              LEFT JOIN predictions p ON p.asset_id = lp.asset_id
                   AND p.component = lp.component AND p.time = lp.time
             WHERE lp.asset_id = %s
             ORDER BY lp.due_at_conservative NULLS LAST, due_estimated_at NULLS LAST,
                      lp.component
            """.replace("{BUSY_PER_DAY}", BUSY_PER_DAY).replace(
                "{MAX_DUE_DAYS}", str(MAX_DUE_DAYS)
            ),
            (asset_id,),
        ).fetchall()


def raw_series(
    conn: Conn,
    asset_id: int,
    metric_ids: Sequence[int],
    start: datetime,
    stop: datetime,
    width: timedelta,
) -> list[SeriesBucket]:
    """Readings of an asset's metrics in [start, stop), averaged into buckets of ``width``."""
    with conn.cursor(row_factory=class_row(SeriesBucket)) as cur:
        return cur.execute(
            """
            SELECT metric_id, date_bin(%(width)s, time, %(origin)s::timestamptz) AS bucket,
                   avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
                   count(*) AS n
              FROM telemetry
             WHERE asset_id = %(asset)s AND metric_id = ANY(%(metrics)s)
               AND time >= %(start)s AND time < %(stop)s
             GROUP BY 1, 2
             ORDER BY 1, 2
            """,
            {
                "width": width,
                "origin": BUCKET_ORIGIN,
                "asset": asset_id,
                "metrics": list(metric_ids),
                "start": start,
                "stop": stop,
            },
        ).fetchall()


def hourly_series(
    conn: Conn,
    asset_id: int,
    metric_ids: Sequence[int],
    start: datetime,
    stop: datetime,
    width: timedelta,
) -> list[SeriesBucket]:
    """Hourly rollups of an asset's metrics in [start, stop), merged into buckets of ``width``.

    The newest rolled-up hour and anything after it come from raw readings, so a rollup that
    lags behind (plain PostgreSQL between refreshes) or a partly filled last hour still shows
    every reading. ``width`` is a whole number of hours.
    """
    with conn.cursor(row_factory=class_row(SeriesBucket)) as cur:
        return cur.execute(
            """
            WITH rolled AS (
                SELECT metric_id, bucket, n, avg_value, min_value, max_value
                  FROM telemetry_hourly
                 WHERE asset_id = %(asset)s AND metric_id = ANY(%(metrics)s)
                   AND bucket >= date_trunc('hour', %(start)s::timestamptz)
                   AND bucket < %(stop)s
            ), edge AS (
                SELECT coalesce(max(bucket), date_trunc('hour', %(start)s::timestamptz))
                       AS raw_from
                  FROM rolled
            ), merged AS (
                SELECT r.metric_id, r.bucket, r.n, r.avg_value, r.min_value, r.max_value
                  FROM rolled r, edge WHERE r.bucket < edge.raw_from
                UNION ALL
                -- the edge as a scalar subquery (an InitPlan parameter): TimescaleDB then
                -- excludes the older chunks at run time instead of reading every chunk
                SELECT t.metric_id, date_trunc('hour', t.time), count(*), avg(t.value),
                       min(t.value), max(t.value)
                  FROM telemetry t
                 WHERE t.asset_id = %(asset)s AND t.metric_id = ANY(%(metrics)s)
                   AND t.time >= (SELECT raw_from FROM edge)
                   AND t.time >= date_trunc('hour', %(start)s::timestamptz)
                   AND t.time < %(stop)s
                 GROUP BY 1, 2
            )
            SELECT metric_id, date_bin(%(width)s, bucket, %(origin)s::timestamptz) AS bucket,
                   sum(avg_value * n) / sum(n) AS avg_value, min(min_value) AS min_value,
                   max(max_value) AS max_value, sum(n)::bigint AS n
              FROM merged
             GROUP BY 1, 2
             ORDER BY 1, 2
            """,
            {
                "width": width,
                "origin": BUCKET_ORIGIN,
                "asset": asset_id,
                "metrics": list(metric_ids),
                "start": start,
                "stop": stop,
            },
        ).fetchall()


def rul_series(
    conn: Conn, asset_id: int, start: datetime, stop: datetime, width: timedelta
) -> list[RulBucket]:
    """Predicted RUL of each component of an asset in [start, stop), in buckets of ``width``."""
    with conn.cursor(row_factory=class_row(RulBucket)) as cur:
        return cur.execute(
            """
            SELECT component, date_bin(%(width)s, time, %(origin)s::timestamptz) AS bucket,
                   avg(rul) AS rul, min(rul_low) AS rul_low, max(rul_high) AS rul_high,
                   max(failure_probability) AS failure_probability
              FROM predictions
             WHERE asset_id = %(asset)s AND time >= %(start)s AND time < %(stop)s
             GROUP BY 1, 2
             ORDER BY 1, 2
            """,
            {
                "width": width,
                "origin": BUCKET_ORIGIN,
                "asset": asset_id,
                "start": start,
                "stop": stop,
            },
        ).fetchall()


def list_model_versions(conn: Conn, kind: str | None = None) -> list[ModelVersionRow]:
    """Registered model versions, newest first (artifacts left out)."""
    with conn.cursor(row_factory=class_row(ModelVersionRow)) as cur:
        return cur.execute(
            """
            SELECT id, kind, kind_version, algorithm, status, metrics, trained_from, trained_to,
                   training_assets, training_rows, created_at, promoted_at
              FROM model_versions
             WHERE %(kind)s::text IS NULL OR kind = %(kind)s
             ORDER BY kind, id DESC
            """,
            {"kind": kind},
        ).fetchall()


# --- ingest health ---------------------------------------------------------------------------


def _telemetry_scope(scope: int | None) -> tuple[sql.Composable, dict[str, Any]]:
    if scope is None:
        return sql.SQL("true"), {}
    return (
        sql.SQL("asset_id IN (SELECT id FROM assets WHERE customer_id = %(scope)s)"),
        {"scope": scope},
    )


def readings_since(conn: Conn, since: datetime, scope: int | None) -> int:
    """How many readings have a reading time at or after ``since``."""
    where, params = _telemetry_scope(scope)
    query = sql.SQL("SELECT count(*) FROM telemetry WHERE time >= %(since)s AND {}").format(where)
    row = conn.execute(query, params | {"since": since}).fetchone()
    return int(row[0]) if row else 0


def readings_per_hour(conn: Conn, since: datetime, scope: int | None) -> list[tuple[datetime, int]]:
    """Readings per hour from the hourly rollup since ``since``."""
    where, params = _telemetry_scope(scope)
    query = sql.SQL(
        "SELECT bucket, sum(n)::bigint FROM telemetry_hourly"
        " WHERE bucket >= %(since)s AND {} GROUP BY bucket ORDER BY bucket"
    ).format(where)
    return [(r[0], int(r[1])) for r in conn.execute(query, params | {"since": since})]


def asset_activity(
    conn: Conn, since: datetime, scope: int | None
) -> tuple[datetime | None, int, int]:
    """Newest reading time over live assets, assets seen since ``since``, and live assets."""
    where, params = _asset_filters(scope, None, None, None)
    query = sql.SQL(
        "SELECT max(seen.last_seen_at), count(*) FILTER (WHERE seen.last_seen_at >= %(since)s),"
        " count(*) FROM assets a LEFT JOIN asset_seen seen ON seen.asset_id = a.id WHERE {}"
    ).format(where)
    row = conn.execute(query, params | {"since": since}).fetchone()
    assert row is not None
    return row[0], int(row[1]), int(row[2])


def _quarantine_scope(scope: int | None) -> tuple[sql.Composable, dict[str, Any]]:
    # Messages whose sender could not be identified (customer_id NULL) are the operator's only.
    if scope is None:
        return sql.SQL("true"), {}
    return sql.SQL("customer_id = %(scope)s"), {"scope": scope}


def quarantine_by_reason(conn: Conn, since: datetime, scope: int | None) -> list[QuarantineReason]:
    """Quarantined messages per reason since ``since``, most frequent first."""
    where, params = _quarantine_scope(scope)
    query = sql.SQL(
        """
        SELECT reason, count(*) AS count, max(received_at) AS last_at
          FROM quarantine WHERE received_at >= %(since)s AND {}
         GROUP BY reason ORDER BY count(*) DESC, reason
        """
    ).format(where)
    with conn.cursor(row_factory=class_row(QuarantineReason)) as cur:
        return cur.execute(query, params | {"since": since}).fetchall()


def quarantine_samples(
    conn: Conn, reasons: Sequence[str], per_reason: int, scope: int | None
) -> list[QuarantineItem]:
    """The newest ``per_reason`` quarantined messages of each reason."""
    where, params = _quarantine_scope(scope)
    query = sql.SQL(
        """
        SELECT q.id, q.received_at, q.topic, q.device_ref, q.reason, q.detail,
               substring(q.payload FROM 1 FOR 300) AS payload_text,
               length(q.payload) AS payload_size
          FROM unnest(%(reasons)s::text[]) AS r(reason)
          CROSS JOIN LATERAL (
              SELECT * FROM quarantine
               WHERE reason = r.reason AND {}
               ORDER BY received_at DESC LIMIT %(per_reason)s
          ) q
         ORDER BY q.reason, q.received_at DESC
        """
    ).format(where)
    with conn.cursor(row_factory=class_row(QuarantineItem)) as cur:
        return cur.execute(
            query, params | {"reasons": list(reasons), "per_reason": per_reason}
        ).fetchall()


def list_quarantine(
    conn: Conn, scope: int | None, *, reason: str | None, before: int | None, limit: int
) -> list[QuarantineItem]:
    """Quarantined items newest first, a keyset page (ids below ``before``)."""
    where, params = _quarantine_scope(scope)
    query = sql.SQL(
        """
        SELECT id, received_at, topic, device_ref, reason, detail,
               substring(payload FROM 1 FOR 300) AS payload_text,
               length(payload) AS payload_size
          FROM quarantine
         WHERE {} AND (%(reason)s::text IS NULL OR reason = %(reason)s)
           AND (%(before)s::bigint IS NULL OR id < %(before)s)
         ORDER BY id DESC LIMIT %(limit)s
        """
    ).format(where)
    with conn.cursor(row_factory=class_row(QuarantineItem)) as cur:
        return cur.execute(
            query, params | {"reason": reason, "before": before, "limit": limit}
        ).fetchall()


# --- live feed -------------------------------------------------------------------------------


def live_assets(conn: Conn, asset_ids: Sequence[int]) -> list[LiveAsset]:
    """The health rows of assets that just got predictions, with their owner."""
    with conn.cursor(row_factory=class_row(LiveAsset)) as cur:
        return cur.execute(
            """
            SELECT a.id AS asset_id, a.customer_id, a.ref, h.component, h.predicted_at, h.rul,
                   h.rul_low, h.rul_high, h.due_at_conservative, h.failure_probability
              FROM asset_health h JOIN assets a ON a.id = h.asset_id
             WHERE h.asset_id = ANY(%s)
            """,
            (list(asset_ids),),
        ).fetchall()


def live_events(conn: Conn, event_ids: Sequence[int]) -> list[LiveEvent]:
    """Outbox events by id, oldest first."""
    with conn.cursor(row_factory=class_row(LiveEvent)) as cur:
        return cur.execute(
            """
            SELECT id, public_id, customer_id, type, subject, occurred_at
              FROM events WHERE id = ANY(%s) ORDER BY id
            """,
            (list(event_ids),),
        ).fetchall()
