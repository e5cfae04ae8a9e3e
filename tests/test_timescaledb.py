"""The TimescaleDB path at work: its policies run as background jobs without error, and the
dashboard's and scoring's queries read the continuous aggregate and only the chunks they need
(the plans are read from EXPLAIN ANALYZE of the product's own queries)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest
from psycopg import Connection, sql

from api.dashboard import repository as dash_repo
from fleetcare.db import connect
from models import repository as model_repo
from models.repository.arrays import register_binary_arrays
from tests.fixtures.dashboard import insert_prediction, insert_readings, metric_id
from tests.fixtures.services import fresh_database, storage_server

JOB_TIMEOUT_S = 180.0
POLICIES = {
    ("policy_compression", "telemetry"),
    ("policy_compression", "predictions"),
    ("policy_retention", "telemetry"),
    ("policy_retention", "predictions"),
    ("policy_refresh_continuous_aggregate", "telemetry_hourly"),
    ("policy_retention", "carrier_positions"),
}


@pytest.fixture
def tsdb_url() -> Iterator[str]:
    """A fresh database on the TimescaleDB path (skipped without one, failed in CI)."""
    with fresh_database(storage_server("timescaledb")) as url:
        yield url


def _now_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _tire(conn: Connection[Any]) -> int:
    row = conn.execute(
        "WITH c AS (INSERT INTO customers (slug, name) VALUES ('ts', 'TS') RETURNING id)"
        " INSERT INTO assets (customer_id, kind, ref, renewed_at)"
        " SELECT id, 'tire', 'TS-1', now() - interval '60 days' FROM c RETURNING id"
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def _policies(conn: Connection[Any]) -> dict[int, tuple[str, str]]:
    rows = conn.execute(
        "SELECT job_id, proc_name, hypertable_name FROM timescaledb_information.jobs"
        " WHERE proc_schema = '_timescaledb_functions'"
        "   AND proc_name IN ('policy_compression', 'policy_retention',"
        "                     'policy_refresh_continuous_aggregate')"
    ).fetchall()
    return {int(job): (proc, table) for job, proc, table in rows}


def test_policies_run_as_background_jobs_without_error(tsdb_url: str) -> None:
    now = _now_hour()
    with connect(tsdb_url) as conn:
        asset = _tire(conn)
        pressure = metric_id(conn, "tire", "pressure_kpa")
        insert_readings(
            conn,
            asset,
            pressure,
            start=now - timedelta(days=40),
            stop=now,
            every=timedelta(hours=1),
        )
        ancient = now - timedelta(days=1900)  # past the 1825-day retention
        insert_readings(conn, asset, pressure, start=ancient, stop=ancient + timedelta(hours=3),
                        every=timedelta(hours=1))  # fmt: skip
        insert_prediction(conn, asset, time=now - timedelta(days=45), due_in=timedelta(days=9))
        insert_prediction(conn, asset, time=now - timedelta(days=1), due_in=timedelta(days=3))
        # a carrier's positions: one within the 180 days of history, one far beyond
        conn.execute(
            "WITH c AS (INSERT INTO carriers (customer_id, ref, carrier_type)"
            "           SELECT customer_id, 'D-TS', 'aircraft' FROM assets WHERE id = %s"
            "           RETURNING id, customer_id)"
            " INSERT INTO carrier_positions (carrier_id, ts, customer_id, latitude, longitude)"
            " SELECT id, t, customer_id, 50.0, 8.5 FROM c, unnest(%s::timestamptz[]) t",
            (asset, [now - timedelta(days=1), now - timedelta(days=400)]),
        )
        conn.commit()
        jobs = _policies(conn)
        assert set(jobs.values()) == POLICIES
        # let the scheduler start each policy now (their schedules are hours away), one after
        # the other as their own schedules space them: retention, compression, the rollup
        conn.execute("SELECT _timescaledb_functions.start_background_workers()")
        conn.commit()
        order = {"policy_retention": 0, "policy_compression": 1}
        stats: list[tuple[Any, ...]] = []
        for job in sorted(jobs, key=lambda j: order.get(jobs[j][0], 2)):
            asked = conn.execute("SELECT now(), alter_job(%s, next_start => now())", (job,))
            asked_at = asked.fetchone()
            assert asked_at is not None
            conn.commit()
            deadline = time.monotonic() + JOB_TIMEOUT_S
            done: list[tuple[Any, ...]] = []
            while not done and time.monotonic() < deadline:
                done = conn.execute(
                    "SELECT job_id, total_runs, total_successes, total_failures,"
                    "       last_run_status, job_status"
                    "  FROM timescaledb_information.job_stats"
                    " WHERE job_id = %s AND last_run_started_at >= %s"
                    "   AND job_status <> 'Running' AND last_run_status IS NOT NULL"
                    # a policy may start again at once (seen on CI: runs 2, successes 1, the
                    # second run's status not yet written): wait until its runs have ended
                    "   AND total_runs = total_successes + total_failures",
                    (job, asked_at[0]),
                ).fetchall()
                conn.commit()
                if not done:
                    time.sleep(0.2)
            stats += done
        assert len(stats) == len(jobs), f"jobs that never ran: {stats}"
        errors = conn.execute(
            "SELECT job_id, proc_name, sqlerrcode, err_message"
            "  FROM timescaledb_information.job_errors WHERE job_id = ANY(%s)",
            (list(jobs),),
        ).fetchall()
        assert errors == []
        for job_id, runs, successes, failures, last_status, _ in stats:
            assert (runs, failures, last_status) == (successes, 0, "Success"), jobs[job_id]

        # what the jobs did: old chunks compressed, the ancient one dropped, the rollup filled
        chunks = conn.execute(
            "SELECT hypertable_name, range_end, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name IN ('telemetry', 'predictions')"
        ).fetchall()
        old_telemetry = [c for c in chunks if c[0] == "telemetry" and c[1] <= now - timedelta(7)]
        assert old_telemetry and all(c[2] for c in old_telemetry)
        assert any(c[0] == "predictions" and c[2] for c in chunks)
        assert all(c[1] > now - timedelta(days=1825) for c in chunks)
        row = conn.execute(
            "SELECT count(*) FROM telemetry WHERE time < now() - interval '1825 days'"
        ).fetchone()
        assert row == (0,)
        kept = conn.execute("SELECT ts FROM carrier_positions").fetchall()
        assert kept == [(now - timedelta(days=1),)]
        mat = conn.execute(
            "SELECT format('%I.%I', materialization_hypertable_schema,"
            "              materialization_hypertable_name)"
            "  FROM timescaledb_information.continuous_aggregates"
            " WHERE view_name = 'telemetry_hourly'"
        ).fetchone()
        assert mat is not None
        materialized = conn.execute(
            sql.SQL("SELECT count(*), sum(n) FROM {}").format(sql.SQL(mat[0]))
        ).fetchone()
        assert materialized is not None and materialized[0] > 0
        # compressed history still reads the same through the rollup and the raw table
        month = now - timedelta(days=29)
        rolled = conn.execute(
            "SELECT sum(n) FROM telemetry_hourly WHERE bucket >= %s AND bucket < %s", (month, now)
        ).fetchone()
        raw = conn.execute(
            "SELECT count(*) FROM telemetry WHERE time >= %s AND time < %s", (month, now)
        ).fetchone()
        assert rolled == raw and raw == (29 * 24,)


# --- plans --------------------------------------------------------------------------------------


class ExplainingConnection:
    """Stands in for a connection: runs each query the product sends, after recording the
    EXPLAIN (ANALYZE) of that same query with the same parameters."""

    def __init__(self, conn: Connection[Any]) -> None:
        self.conn = conn
        self.plans: list[dict[str, Any]] = []

    @property
    def autocommit(self) -> bool:
        return self.conn.autocommit

    def explain(self, query: str | sql.Composable, params: Any) -> None:
        text = query if isinstance(query, str) else query.as_string(self.conn)
        if text.lstrip().upper().startswith("SET "):  # a setting: no plan
            return
        with self.conn.cursor() as cur:
            register_binary_arrays(cur)  # what the product's cursors send arrays with
            row = cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, params).fetchone()
        assert row is not None
        self.plans.append(row[0][0]["Plan"])

    def execute(self, query: str | sql.Composable, params: Any = None) -> Any:
        self.explain(query, params)
        return self.conn.execute(cast(Any, query), params)

    def cursor(self, **kwargs: Any) -> ExplainingCursor:
        return ExplainingCursor(self, self.conn.cursor(**kwargs))


class ExplainingCursor:
    def __init__(self, owner: ExplainingConnection, cursor: psycopg.Cursor[Any]) -> None:
        self.owner = owner
        self.cursor = cursor

    def __enter__(self) -> ExplainingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cursor.close()

    @property
    def adapters(self) -> Any:
        return self.cursor.adapters

    def execute(self, query: str | sql.Composable, params: Any = None) -> Any:
        self.owner.explain(query, params)
        return self.cursor.execute(cast(Any, query), params)


def _scans(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """(relation, loops) of every scan node of a plan; loops 0 means never executed."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Relation Name"], int(plan.get("Actual Loops", 0))))
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


def _chunk_ranges(conn: Connection[Any], hypertable: str) -> dict[str, tuple[datetime, datetime]]:
    rows = conn.execute(
        "SELECT chunk_name, range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_name = %s",
        (hypertable,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _read_chunks(
    plan: dict[str, Any], chunks: dict[str, tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The ranges of the distinct chunks that the executed plan actually read."""
    return sorted({chunks[rel] for rel, loops in _scans(plan) if rel in chunks and loops > 0})


def _overlaps(ranges: list[tuple[datetime, datetime]], start: datetime, stop: datetime) -> bool:
    return all(lo < stop and hi > start for lo, hi in ranges)


def test_dashboard_and_scoring_read_the_rollup_and_only_the_chunks_they_need(
    tsdb_url: str,
) -> None:
    now = _now_hour()
    with connect(tsdb_url) as conn:
        asset = _tire(conn)
        pressure = metric_id(conn, "tire", "pressure_kpa")
        odometer = metric_id(conn, "tire", "odometer_km")
        for metric in (pressure, odometer):
            insert_readings(
                conn, asset, metric, start=now - timedelta(days=40), stop=now,
                every=timedelta(minutes=30),
            )  # fmt: skip
    with psycopg.connect(tsdb_url, autocommit=True) as admin:
        admin.execute(
            "CALL refresh_continuous_aggregate('telemetry_hourly', NULL, %s)",
            (now - timedelta(hours=2),),
        )
    with connect(tsdb_url) as conn:
        telemetry = _chunk_ranges(conn, "telemetry")
        assert len(telemetry) >= 40
        mat_row = conn.execute(
            "SELECT materialization_hypertable_name FROM timescaledb_information"
            ".continuous_aggregates WHERE view_name = 'telemetry_hourly'"
        ).fetchone()
        assert mat_row is not None
        rollup = _chunk_ranges(conn, mat_row[0])
        spy = ExplainingConnection(conn)
        repo_conn = cast(Any, spy)

        # raw series of the last day: chunk exclusion at planning time
        day = now - timedelta(days=1)
        dash_repo.raw_series(repo_conn, asset, [pressure], day, now, timedelta(minutes=30))
        read = _read_chunks(spy.plans[-1], telemetry)
        assert read and len(read) <= 2 and _overlaps(read, day, now)
        assert len(_scans(spy.plans[-1])) <= 2  # the other chunks are not even in the plan

        # a week of hourly series: the continuous aggregate, and raw rows only after its edge
        week = now - timedelta(days=7)
        series = dash_repo.hourly_series(
            repo_conn, asset, [pressure], week, now, timedelta(hours=2)
        )
        assert sum(b.n for b in series) == 7 * 48
        read_rollup = _read_chunks(spy.plans[-1], rollup)
        assert read_rollup and _overlaps(read_rollup, week, now)
        read = _read_chunks(spy.plans[-1], telemetry)
        assert len(read) <= 2 and _overlaps(read, now - timedelta(hours=3), now)

        # the ingest health chart: readings per hour from the rollup
        per_hour = dash_repo.readings_per_hour(repo_conn, day, scope=None)
        assert sum(n for _, n in per_hour) == 24 * 2 * 2
        assert _read_chunks(spy.plans[-1], rollup)
        read = _read_chunks(spy.plans[-1], telemetry)
        assert _overlaps(read, now - timedelta(hours=3), now)

        # scoring's warm pass: only the readings after what it last scored (runtime exclusion)
        layout = model_repo.metric_layout(conn, "tire", "odometer_km", ["pressure_kpa"])
        since = now - timedelta(hours=6)
        long = model_repo.fetch_new_long_readings(repo_conn, layout, [asset], [since])
        assert len(long) == 2 * 6 * 2 - 2  # both metrics, every 30 min, after ``since``
        read = _read_chunks(spy.plans[-1], telemetry)
        assert read and len(read) <= 2 and _overlaps(read, since, now)

        # scoring's windows: a bounded window reads the chunks it spans
        window = model_repo.Window(group_id=asset, asset_id=asset, start=now - timedelta(days=3),
                                   end=now - timedelta(days=2))  # fmt: skip
        model_repo.fetch_long_readings(repo_conn, layout, [window])
        read = _read_chunks(spy.plans[-1], telemetry)
        # the window's end is inclusive: when it falls on a chunk boundary (``now`` at midnight)
        # the chunk that starts there holds its last row and is read too
        inclusive_end = now - timedelta(days=2) + timedelta(microseconds=1)  # window.end
        assert read and len(read) <= 3 and _overlaps(read, window.start, inclusive_end)
