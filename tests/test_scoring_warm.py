"""The warm pass's shortcuts give what the long way gives: the changed assets as columns, the
cache's array path for the windows the last pass moved on, and the chunks of a pass's writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from kinds.loader import builtin_kinds
from models import repository as repo
from models import scoring
from models.scoring import ModelCache, ReadingsCache, score_pass, write_chunks
from testkit import synthetic
from tests.fixtures.wear import install_model, make_fleet, pass_writes, trained_tire_model

TIRE = builtin_kinds()["tire"]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _records(conn: Connection[Any], kind: str | None, limit: int | None) -> list[tuple[Any, ...]]:
    """The changed assets as the query's rows, one record each (what the columns stand for)."""
    return conn.execute(
        """
        SELECT a.id, a.kind, a.renewed_at, seen.last_seen_at, s.data_until
          FROM assets a JOIN asset_seen seen ON seen.asset_id = a.id
               LEFT JOIN asset_scoring_state s ON s.asset_id = a.id
         WHERE a.retired_at IS NULL AND seen.last_seen_at IS NOT NULL
           AND (%(kind)s::text IS NULL OR a.kind = %(kind)s)
           AND (s.asset_id IS NULL OR seen.last_seen_at > s.seen_at
                OR a.renewed_at <> s.renewed_at)
         ORDER BY a.id LIMIT %(limit)s
        """,
        {"kind": kind, "limit": limit},
    ).fetchall()


def test_changed_assets_as_columns_like_the_records(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=6)
    ids = tires.asset_ids
    lift = conn.execute(
        "INSERT INTO assets (customer_id, kind, ref, installed_at, renewed_at)"
        " VALUES (%s, 'elevator', 'L-1', %s, %s) RETURNING id",
        (customer.id, NOW - timedelta(days=9), NOW - timedelta(days=9, microseconds=-7)),
    ).fetchone()
    assert lift is not None
    conn.execute(
        "INSERT INTO asset_seen (asset_id, last_seen_at) VALUES (%s, %s)"
        " ON CONFLICT (asset_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
        (lift[0], NOW - timedelta(microseconds=3)),
    )
    # scored before: ids[0] consumed up to a time (then seen again), ids[1] up to nothing
    # (its data_until NULL), ids[2] fully consumed (not changed)
    seen = dict(conn.execute("SELECT asset_id, last_seen_at FROM asset_seen").fetchall())
    renewed = dict(conn.execute("SELECT id, renewed_at FROM assets").fetchall())
    for a, seen_at, until in (
        (ids[0], seen[ids[0]] - timedelta(hours=1), seen[ids[0]] - timedelta(hours=2)),
        (ids[1], seen[ids[1]] - timedelta(hours=1), None),
        (ids[2], seen[ids[2]], seen[ids[2]]),
    ):
        repo.record_scoring_state(conn, [a], [seen_at], [until], [renewed[a]], NOW)
    conn.commit()

    for kind, limit in ((None, None), ("tire", None), (None, 3), ("elevator", None)):
        got = repo.find_changed_assets(conn, kind=kind, limit=limit)
        records = [r for c in got for r in c.records()]
        want = _records(conn, kind, limit)
        assert [_fields(r) for r in records] == [tuple(w) for w in want]
        # kinds in the order of their first asset, each one's ids ascending
        assert [c.kind for c in got] == list(dict.fromkeys(w[1] for w in want))
        assert all(np.all(np.diff(c.asset_id) > 0) for c in got)
    never = repo.find_changed_assets(conn, kind="tire")[0]
    assert never.until_us[never.asset_id == ids[1]].tolist() == [repo.NO_TIME]
    assert ids[2] not in never.asset_id.tolist()


def _fields(record: Any) -> tuple[Any, ...]:
    return (record.asset_id, record.kind, record.renewed_at, record.last_seen_at, record.data_until)


def test_cache_moves_the_same_windows_on_as_arrays_like_a_full_read(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=5)
    ids = np.asarray(tires.asset_ids, dtype=np.int64)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    cache = ReadingsCache()
    head, tail = 4, 9

    def renewals() -> np.ndarray:
        (changed,) = [c for c in repo.find_changed_assets(conn) if c.kind == "tire"]
        assert changed.asset_id.tolist() == ids.tolist()
        return changed.renewed_us

    cache.readings_of(conn, layout, ids, renewals(), head, tail)
    assert (cache.full_reads, cache.array_advances) == (5, 0)
    km = {int(a): 60_000.0 for a in ids}
    tread = conn.execute(
        "SELECT id FROM metrics WHERE kind = 'tire' AND name = 'tread_depth_mm'"
    ).fetchone()
    assert tread is not None
    for step in range(1, 8):
        when = tires.last_time[int(ids[0])] + timedelta(hours=step)
        for a in ids.tolist():
            km[a] += 400.0
        synthetic.append_readings(conn, ids.tolist(), when, km, seen=when)
        if step == 3:  # a renewal: that asset is read in full, the others the long way twice
            conn.execute(
                "UPDATE assets SET renewed_at = %s WHERE id = %s",
                (when - timedelta(minutes=30), int(ids[2])),
            )
            conn.execute(
                "INSERT INTO telemetry VALUES (%s, %s, %s, 15.9)",
                (when - timedelta(minutes=29), int(ids[2]), tread[0]),
            )
        conn.commit()
        got = cache.readings_of(conn, layout, ids, renewals(), head, tail)
        windows = repo.scoring_windows(conn, ids.tolist())
        want = repo.fetch_readings(conn, layout, windows, head_rows=head, tail_rows=tail)
        np.testing.assert_array_equal(got.matrix, want.matrix)
        np.testing.assert_array_equal(got.time_us, want.time_us)
        assert got.missing_groups == want.missing_groups
    # the first warm call builds the block the long way, and so do the renewal's (the other
    # four windows) and the next (all five again); the other four move on as arrays
    assert cache.array_advances == 4
    assert cache.full_reads == 5 + 1

    # entries due for a rebuild are never moved on as arrays
    cache.max_age_s = 0.0
    cache.readings_of(conn, layout, ids, renewals(), head, tail)
    assert cache.array_advances == 4 and cache.full_reads > 6


def test_write_chunks_cover_every_asset_and_keep_the_last_small() -> None:
    for n in (0, 1, 499, 500, 1000, 1001, 2000, 2500, 9999, 10_000, 12_345):
        chunks = write_chunks(n)
        if n == 0:
            assert chunks == []
            continue
        assert [lo for lo, _ in chunks] == [0, *[hi for _, hi in chunks[:-1]]]
        assert chunks[-1][1] == n
        assert all(0 < hi - lo <= scoring.WRITE_CHUNK for lo, hi in chunks)
        if n > 2 * scoring.LAST_CHUNK:
            assert chunks[-1][1] - chunks[-1][0] == scoring.LAST_CHUNK
    assert write_chunks(10_000) == [
        (0, 2000), (2000, 4000), (4000, 6000), (6000, 8000), (8000, 9500), (9500, 10_000)
    ]  # fmt: skip


def test_warm_passes_in_small_chunks_write_what_a_full_read_writes(
    conn: Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=7)
    ids = tires.asset_ids
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    models, cache = ModelCache(), ReadingsCache()
    with conn.transaction():
        score_pass(conn, clock, models=models, cache=cache)
    km = {a: 60_000.0 for a in ids}
    monkeypatch.setattr(scoring, "WRITE_CHUNK", 3)
    monkeypatch.setattr(scoring, "LAST_CHUNK", 1)  # chunks of 3, 2, 1 and 1
    pressure = conn.execute(
        "SELECT id FROM metrics WHERE kind = 'tire' AND name = 'pressure_kpa'"
    ).fetchone()
    assert pressure is not None
    for hour in range(1, 4):
        when = tires.last_time[ids[0]] + timedelta(hours=hour)
        # at hour 2, ids[3] sends a pressure reading only: seen again, no new row (not
        # predicted), so the chunk around it is not one run of rows
        moved = [a for a in ids if hour != 2 or a != ids[3]]
        for a in moved:
            km[a] += 400.0
        synthetic.append_readings(conn, moved, when, km, seen=when)
        if hour == 2:
            conn.execute(
                "INSERT INTO telemetry VALUES (%s, %s, %s, 801.0)", (when, ids[3], pressure[0])
            )
            conn.execute(
                "UPDATE asset_seen SET last_seen_at = %s WHERE asset_id = %s", (when, ids[3])
            )
        conn.commit()
        clock.advance(60)
        with conn.transaction(force_rollback=True):  # the long way: full reads, one chunk
            monkeypatch.setattr(scoring, "WRITE_CHUNK", 2_000)
            score_pass(conn, clock, models=models, cache=None)
            want = pass_writes(conn, clock.now())
            monkeypatch.setattr(scoring, "WRITE_CHUNK", 3)
        with conn.transaction():
            result = score_pass(conn, clock, models=models, cache=cache)
        assert result.predictions == (6 if hour == 2 else 7)
        assert pass_writes(conn, clock.now()) == want
        assert [len(rows) for rows in want] == [result.predictions, 7, *[result.predictions] * 3]
    assert cache.array_advances == 2  # the second and third warm passes
