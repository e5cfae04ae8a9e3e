"""Scoring: readings matrices from the database, one prediction per changed asset, due dates,
the same features in training and scoring, and per-customer scoping of predictions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from kinds.loader import builtin_kinds
from models import repository as repo
from models.lifetimes import lifetime_matrices
from models.readings_cache import decode_window, decode_windows
from models.scoring import (
    USAGE_RATE_LOOKBACK,
    USAGE_RATE_MIN_HISTORY,
    ModelCache,
    ReadingsCache,
    pg_us_to_datetime,
    score_pass,
    usage_rates_from_windows,
)
from models.worker import ScoringWorker
from testkit import synthetic
from tests.conftest import Tenant
from tests.fixtures.wear import START, install_model, make_fleet, pass_writes, trained_tire_model

TIRE = builtin_kinds()["tire"]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _count_predictions(conn: Connection[Any]) -> dict[int, int]:
    rows = conn.execute("SELECT asset_id, count(*) FROM predictions GROUP BY 1").fetchall()
    return {int(a): int(n) for a, n in rows}


def _pass(conn: Connection[Any], clock: ManualClock, models: ModelCache, cache: Any) -> Any:
    with conn.transaction():
        return score_pass(conn, clock, models=models, cache=cache)


@pytest.mark.parametrize("use_cache", [True, False])
def test_one_prediction_per_changed_asset_none_for_unchanged(
    conn: Connection[Any], use_cache: bool
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=8)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    models, cache = ModelCache(), (ReadingsCache() if use_cache else None)

    first = _pass(conn, clock, models, cache)
    assert first.scored_assets == 8 and first.predictions == 8
    assert _count_predictions(conn) == {a: 1 for a in tires.asset_ids}
    first_time = clock.now()

    clock.advance(60)
    nothing = _pass(conn, clock, models, cache)
    assert nothing.changed_assets == 0 and nothing.predictions == 0

    changed = tires.asset_ids[:3]
    when = {a: tires.last_time[a] + timedelta(hours=1) for a in changed}
    for a in changed:
        synthetic.append_readings(conn, [a], when[a], {a: 70_000.0}, seen=NOW)
    conn.commit()
    clock.advance(60)
    second = _pass(conn, clock, models, cache)
    assert second.changed_assets == 3 and second.predictions == 3
    counts = _count_predictions(conn)
    assert {a: counts[a] for a in changed} == {a: 2 for a in changed}
    assert all(counts[a] == 1 for a in tires.asset_ids[3:])
    latest = repo.list_predictions(conn, changed[0])[0]
    assert latest.data_until == when[changed[0]]
    assert latest.rul_low <= latest.rul <= latest.rul_high
    # each stored prediction is queued for the policy once; the dashboard's latest prediction
    # and health row follow the newest one
    queued = conn.execute("SELECT count(*) FROM policy_queue").fetchone()
    assert queued == (8 + 3,)
    kept = dict(conn.execute("SELECT asset_id, time FROM latest_predictions").fetchall())
    assert kept == {a: latest.time if a in changed else first_time for a in tires.asset_ids}
    health = dict(conn.execute("SELECT asset_id, predicted_at FROM asset_health").fetchall())
    assert health == kept

    # seen again (last_seen_at moved) but no new usage reading: no new prediction
    conn.execute(
        "UPDATE asset_seen SET last_seen_at = %s WHERE asset_id = %s",
        (NOW + timedelta(1), changed[0]),
    )
    conn.commit()
    clock.advance(60)
    third = _pass(conn, clock, models, cache)
    assert third.changed_assets == 1 and third.unchanged_assets == 1 and third.predictions == 0


def test_no_active_model_leaves_assets_for_later(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=6)
    clock = ManualClock(NOW)
    models, cache = ModelCache(), ReadingsCache()
    before = _pass(conn, clock, models, cache)
    assert before.no_model == 6 and before.predictions == 0
    install_model(conn, trained_tire_model(), clock)
    after = _pass(conn, clock, models, cache)
    assert after.predictions == len(tires.asset_ids)


def _score_steady_usage(
    conn: Connection[Any], ref: str, hours: int, every_h: int, km_per_h: float
) -> Any:
    """Score one tire renewed at START that read every metric every ``every_h`` hours for
    ``hours`` hours, driving ``km_per_h``; its prediction."""
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    aid = conn.execute(
        "WITH a AS (INSERT INTO assets (customer_id, kind, ref, renewed_at)"
        " VALUES (%s, 'tire', %s, %s) RETURNING id)"
        " INSERT INTO asset_seen (asset_id, last_seen_at) SELECT id, %s FROM a RETURNING asset_id",
        (customer.id, ref, START, START + timedelta(hours=hours)),
    ).fetchone()[0]  # type: ignore[index]
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    with conn.cursor() as cur:
        for hour in range(0, hours + 1, every_h):
            t = START + timedelta(hours=hour)
            for name in TIRE.metric_names:
                value = km_per_h * hour if name == "odometer_km" else 50.0 + hour % 7
                cur.execute(
                    "INSERT INTO telemetry VALUES (%s, %s, %s, %s)", (t, aid, ids[name], value)
                )
    conn.commit()
    _pass(conn, clock, ModelCache(), ReadingsCache())
    return repo.list_predictions(conn, aid)[0]


def test_due_dates_from_usage_rate(conn: Connection[Any]) -> None:
    # one asset with a known usage history: 240 km per day for 10 days
    p = _score_steady_usage(conn, "RATE-1", hours=240, every_h=6, km_per_h=10.0)
    assert p.usage_rate_per_day == pytest.approx(240.0)
    assert p.due_at is not None and p.due_at_conservative is not None
    assert (p.due_at - NOW).total_seconds() / 86400 == pytest.approx(p.rul / 240.0, rel=1e-6)
    assert (p.due_at_conservative - NOW).total_seconds() / 86400 == pytest.approx(
        p.rul_low / 240.0, rel=1e-6
    )
    assert p.due_at_conservative <= p.due_at


def test_no_usage_rate_before_a_day_of_history(conn: Connection[Any]) -> None:
    # renewed 12 hours ago, all of them driving: 12 h at 60 km/h is not 1,440 km per day
    p = _score_steady_usage(conn, "FRESH-1", hours=12, every_h=3, km_per_h=60.0)
    assert p.usage_rate_per_day is None
    assert p.due_at is None and p.due_at_conservative is None


def test_usage_rates_from_windows_like_the_lookups(conn: Connection[Any]) -> None:
    """Rates from the readings windows equal the telemetry lookups; assets whose window may
    not hold the reading 7 days back are left to the lookup."""
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    # (readings every h hours, for d days, km per reading): window of 3 + 5 rows
    histories = {
        "YOUNG": (6, 3, 60.0),  # renewed 3 days ago: the first reading since renewal
        "SPARSE": (48, 20, 500.0),  # the reading 7 days back is in the last 5 rows
        "DENSE": (6, 10, 60.0),  # ... in the gap between the first 3 and last 5: look it up
        "WHOLE": (48, 10, 500.0),  # 6 rows: the window holds every reading
        "PARKED": (12, 5, 0.0),  # the counter did not move: no rate
        "HOURS": (3, 0.5, 30.0),  # under a day of history: no rate
    }
    assets: dict[str, int] = {}
    with conn.cursor() as cur:
        for ref, (every_h, days, km) in histories.items():
            aid = conn.execute(
                "INSERT INTO assets (customer_id, kind, ref, renewed_at) VALUES (%s, 'tire', %s,"
                " %s) RETURNING id",
                (customer.id, ref, START),
            ).fetchone()[0]  # type: ignore[index]
            assets[ref] = int(aid)
            for i in range(int(days * 24 / every_h) + 1):
                t = START + timedelta(hours=every_h * i)
                for name in TIRE.metric_names:
                    value = km * i if name == "odometer_km" else 50.0 + i % 7
                    cur.execute(
                        "INSERT INTO telemetry VALUES (%s, %s, %s, %s)", (t, aid, ids[name], value)
                    )
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    windows = repo.scoring_windows(conn, list(assets.values()))
    readings = repo.fetch_readings(conn, layout, windows, head_rows=3, tail_rows=5)
    last = readings.last_rows()
    idx = np.arange(last.shape[0])
    rate, look_up = usage_rates_from_windows(
        readings, last, idx, (3, 5), USAGE_RATE_LOOKBACK, USAGE_RATE_MIN_HISTORY
    )
    group = readings.group_ids()
    until = [pg_us_to_datetime(int(u) - repo.PG_EPOCH_US) for u in readings.time_us[last]]
    want = repo.usage_rates_per_day(
        conn,
        layout.usage_id,
        group.tolist(),
        until,
        readings.matrix[last, 1].tolist(),
        USAGE_RATE_LOOKBACK,
        USAGE_RATE_MIN_HISTORY,
    )
    assert group[look_up].tolist() == [assets["DENSE"]]
    from_windows = {a: r for a, r in zip(group.tolist(), rate.tolist(), strict=True)}
    for ref, aid in assets.items():
        if ref == "DENSE":
            continue
        assert (aid in want) == (from_windows[aid] == from_windows[aid]), ref  # NaN: none
        if aid in want:
            assert from_windows[aid] == want[aid], ref  # the same float, not approximately
    assert assets["SPARSE"] in want and assets["YOUNG"] in want and assets["WHOLE"] in want
    assert assets["PARKED"] not in want and assets["HOURS"] not in want


def _direct_matrix(
    group: float, times: list[datetime], rows: dict[str, list[float | None]]
) -> np.ndarray:
    """The readings matrix computed by hand: odometer rows, other metrics as of each row."""
    names = list(TIRE.sensor_names)
    out = []
    last: dict[str, float | None] = dict.fromkeys(names)
    first = {n: next(v for v in rows[n] if v is not None) for n in names}
    for i, _t in enumerate(times):
        for n in names:
            if rows[n][i] is not None:
                last[n] = rows[n][i]
        out.append(
            [
                group,
                rows["odometer_km"][i],
                *[(last[n] if last[n] is not None else first[n]) for n in names],
            ]
        )
    return np.array(out, dtype=np.float64)


def test_features_identical_in_training_and_scoring(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    model = trained_tire_model()
    head, tail = model.history_rows()

    # an asset whose whole life is known here: a finished life and the current one
    rng = np.random.default_rng(7)
    n_life, n_now = 70, 130  # longer than head + tail: scoring reads a bounded window
    renewed = START + timedelta(hours=n_life)
    aid = int(
        conn.execute(
            "WITH a AS (INSERT INTO assets (customer_id, kind, ref, renewed_at)"
            " VALUES (%s, 'tire', 'SAME-1', %s) RETURNING id) INSERT INTO asset_seen"
            " (asset_id, last_seen_at) SELECT id, %s FROM a RETURNING asset_id",
            (customer.id, renewed, NOW),
        ).fetchone()[0]  # type: ignore[index]
    )
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    times = [START + timedelta(hours=h) for h in range(n_life + n_now)]
    values: dict[str, list[float | None]] = {}
    for name in TIRE.metric_names:
        if name == "odometer_km":
            km = [500.0 * h for h in range(n_life)] + [500.0 * h for h in range(n_now)]
            values[name] = list(km)
        elif name == "tread_depth_mm":  # a drive-over read every 9 hours, a minute late
            values[name] = [float(16 - h / 20) if h % 9 == 4 else None for h in range(len(times))]
        else:
            values[name] = list(rng.normal(100, 5, len(times)))
    with conn.cursor() as cur:
        for i, t in enumerate(times):
            for name, vals in values.items():
                v = vals[i]
                if v is None:
                    continue
                late = timedelta(minutes=1) if name == "tread_depth_mm" else timedelta(0)
                cur.execute(
                    "INSERT INTO telemetry VALUES (%s, %s, %s, %s)", (t + late, aid, ids[name], v)
                )
        cur.execute(
            "INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason,"
            " usage_at_end) VALUES (%s, 'tire', %s, %s, 'failure', %s)",
            (aid, START, times[n_life - 1], 500.0 * n_life),
        )
    conn.commit()
    # tread read at h (+1 min) enters the row at h+1: shift the by-hand sparse series by one
    tread = values["tread_depth_mm"]
    values["tread_depth_mm"] = [None, *tread[:-1]]

    def part(a: int, b: int) -> dict[str, list[float | None]]:
        return {n: v[a:b] for n, v in values.items()}

    current = _direct_matrix(float(aid), times[n_life:], part(n_life, len(times)))
    # scoring path, both ways (full read with bounds, and the cache)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, model.column_names)
    window = repo.scoring_windows(conn, [aid])
    fetched = repo.fetch_readings(conn, layout, window, head_rows=head, tail_rows=tail)
    cached = ReadingsCache().readings(conn, layout, window, head, tail)
    np.testing.assert_array_equal(fetched.matrix, cached.matrix)
    np.testing.assert_array_equal(fetched.matrix, np.concatenate((current[:head], current[-tail:])))
    _, scored = model.features.transform_last(fetched.matrix)
    full = model.features.transform(current)[-1]
    # Scoring reads a bounded window: only rows whose weight in the smoothed level is below
    # 1e-9 are left out. The window std is the sqrt of a difference of sums, so where it is
    # exactly 0 (a constant tread read) rounding leaves up to ~1e-7 either way.
    np.testing.assert_allclose(scored[0], full, rtol=1e-8, atol=1e-6)
    # over the same rows, the scoring transform is the training transform up to rounding
    np.testing.assert_allclose(
        model.features.transform_last(current)[1][0], full, rtol=1e-8, atol=1e-6
    )
    # training path: the recorded life, row for row
    life_row = conn.execute("SELECT id FROM asset_lives WHERE asset_id = %s", (aid,)).fetchone()
    assert life_row is not None
    life_id = int(life_row[0])
    matrix, rul = lifetime_matrices(conn, "tire", model.column_names, asset_ids=[aid])["tire"]
    direct_life = _direct_matrix(float(life_id), times[:n_life], part(0, n_life))
    np.testing.assert_array_equal(matrix, direct_life)
    np.testing.assert_array_equal(rul, 500.0 * n_life - direct_life[:, 1])
    np.testing.assert_array_equal(
        model.features.transform(matrix), model.features.transform(direct_life)
    )


def test_cache_follows_new_readings_like_a_full_read(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=5)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    cache = ReadingsCache()
    head, tail = 4, 9
    windows = repo.scoring_windows(conn, tires.asset_ids)
    cache.readings(conn, layout, windows, head, tail)
    metric_ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    for step in range(1, 13):
        when = {a: tires.last_time[a] + timedelta(hours=step) for a in tires.asset_ids}
        for a in tires.asset_ids[: 2 + step % 3]:
            synthetic.append_readings(conn, [a], when[a], {a: 60_000.0 + step}, seen=NOW)
        if step % 4 == 0:  # a drive-over tread read between rows
            conn.execute(
                "INSERT INTO telemetry VALUES (%s, %s, %s, %s)",
                (
                    when[tires.asset_ids[0]] + timedelta(minutes=5),
                    tires.asset_ids[0],
                    metric_ids["tread_depth_mm"],
                    5.0 + step,
                ),
            )
        conn.commit()
        got = cache.readings(conn, layout, windows, head, tail)
        want = repo.fetch_readings(conn, layout, windows, head_rows=head, tail_rows=tail)
        np.testing.assert_array_equal(got.matrix, want.matrix)
        np.testing.assert_array_equal(got.time_us, want.time_us)
    assert cache.incremental_reads > 0


def test_pivot_forward_fills_sparse_metrics_and_skips_incomplete_assets(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    a = conn.execute(
        "INSERT INTO assets (customer_id, kind, ref, renewed_at) VALUES (%s, 'tire', 'P1', %s)"
        " RETURNING id",
        (customer.id, START),
    ).fetchone()[0]  # type: ignore[index]
    b = conn.execute(
        "INSERT INTO assets (customer_id, kind, ref, renewed_at) VALUES (%s, 'tire', 'P2', %s)"
        " RETURNING id",
        (customer.id, START),
    ).fetchone()[0]  # type: ignore[index]
    with conn.cursor() as cur:
        for h in range(6):
            t = START + timedelta(hours=h)
            for asset in (a, b):
                for name in (
                    "odometer_km",
                    "pressure_kpa",
                    "temperature_c",
                    "load_kg",
                    "speed_kmh",
                ):
                    cur.execute(
                        "INSERT INTO telemetry VALUES (%s, %s, %s, %s)",
                        (t, asset, ids[name], float(h)),
                    )
        # asset a: tread read at 02:30 and 04:00; asset b never has a tread reading
        cur.execute(
            "INSERT INTO telemetry VALUES (%s, %s, %s, 9.5)",
            (START + timedelta(hours=2.5), a, ids["tread_depth_mm"]),
        )
        cur.execute(
            "INSERT INTO telemetry VALUES (%s, %s, %s, 9.0)",
            (START + timedelta(hours=4), a, ids["tread_depth_mm"]),
        )
        # a reading before the renewal does not count
        cur.execute(
            "INSERT INTO telemetry VALUES (%s, %s, %s, 99.0)",
            (START - timedelta(hours=1), a, ids["tread_depth_mm"]),
        )
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    got = repo.fetch_readings(conn, layout, repo.scoring_windows(conn, [a, b]))
    assert got.missing_groups == (b,)
    tread = got.matrix[:, 2 + TIRE.sensor_names.index("tread_depth_mm")]
    assert tread.tolist() == [9.5, 9.5, 9.5, 9.5, 9.0, 9.0]
    assert got.matrix[:, 1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_readings_are_read_without_jit_for_the_transaction_only(db_url: str) -> None:
    """JIT compiled a training read (12 pump lives, 267 daily TimescaleDB chunks) for 34.3 of
    its 34.5 s: the readings queries turn it off until the caller's transaction ends; an
    autocommit connection's own setting is left as it was."""
    window = repo.Window(group_id=1, asset_id=1, start=START, end=None)
    with connect(db_url) as conn:
        default = conn.execute("SHOW jit").fetchone()
        conn.commit()
        layout = repo.metric_layout(conn, "tire", "odometer_km", ["pressure_kpa"])
        repo.fetch_long_readings(conn, layout, [window])
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        conn.commit()
        assert conn.execute("SHOW jit").fetchone() == default
    with connect(db_url, autocommit=True) as conn:
        repo.fetch_long_readings(conn, layout, [window])
        assert conn.execute("SHOW jit").fetchone() == default


def test_positions_in_gives_the_first_of_repeats_and_minus_one_for_the_unknown() -> None:
    rng = np.random.default_rng(7)
    for size in (0, 1, 5, 40):
        ids = rng.integers(0, 12, size).astype(np.int64)
        wanted = rng.integers(-2, 14, 50).astype(np.int64)
        expected = [ids.tolist().index(w) if w in ids.tolist() else -1 for w in wanted.tolist()]
        assert repo.positions_in(ids, wanted).tolist() == expected


def test_worker_loop_scores_and_stops(conn: Connection[Any], db_url: str) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=4)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    worker = ScoringWorker(db_url, clock, poll_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(100):  # passes, each signalled; the first one scores everything
            assert worker.pass_done.wait(30)
            worker.pass_done.clear()
            if worker.predictions_total >= len(tires.asset_ids):
                break
        assert worker.predictions_total == len(tires.asset_ids)
        assert _count_predictions(conn) == {a: 1 for a in tires.asset_ids}
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_worker_wakes_on_new_telemetry_not_its_poll(conn: Connection[Any], db_url: str) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=3)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    # An hour's poll: only a wake-up can bring the next passes in time. The listener also wakes
    # the loop once when it connects (what was committed before it listened), so two rounds:
    # the second can only be the NOTIFY of migration 0160.
    worker = ScoringWorker(db_url, clock, poll_s=3600)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)

    def wait_for_predictions(total: int) -> None:
        for _ in range(10):  # passes, each signalled
            if worker.predictions_total >= total:
                return
            assert worker.pass_done.wait(60), f"no pass; {worker.predictions_total} predictions"
            worker.pass_done.clear()
        assert worker.predictions_total == total

    thread.start()
    try:
        wait_for_predictions(len(tires.asset_ids))  # the first pass scores everything
        a = tires.asset_ids[0]
        for k in (1, 2):
            clock.advance(60)  # a prediction's time is its pass's: one per asset and minute
            when = tires.last_time[a] + timedelta(hours=k)
            seen = NOW + timedelta(days=k)
            synthetic.append_readings(conn, [a], when, {a: 70_000.0 + k}, seen=seen)
            conn.commit()
            wait_for_predictions(len(tires.asset_ids) + k)
        assert worker.predictions_total == len(tires.asset_ids) + 2
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_predictions_api_is_scoped(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    tires = make_fleet(conn, alice.customer.id, n_assets=6)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    _pass(conn, clock, ModelCache(), ReadingsCache())
    asset = tires.asset_ids[0]
    mine = client.get(f"/v1/assets/{asset}/predictions", headers=alice.headers)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert len(body) == 1 and body[0]["asset_id"] == asset and body[0]["component"] == "tire"
    assert body[0]["rul_low"] <= body[0]["rul"] <= body[0]["rul_high"]
    assert (
        client.get(f"/v1/assets/{asset}/predictions", headers=operator_headers).status_code == 200
    )
    other = client.get(f"/v1/assets/{asset}/predictions", headers=bob.headers)
    assert other.status_code == 404 and other.json()["error"] == "asset_not_found"
    assert client.get("/v1/assets/999999/predictions", headers=alice.headers).status_code == 404
    assert client.get(f"/v1/assets/{asset}/predictions").status_code == 401
    assert (
        client.get(f"/v1/assets/{asset}/predictions?limit=0", headers=alice.headers).status_code
        == 422
    )


def test_cache_rebuilds_expired_entries_a_few_at_a_time(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=5)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    windows = repo.scoring_windows(conn, tires.asset_ids)
    cache = ReadingsCache(max_age_s=0.0, rebuilds_per_pass=2)
    first = cache.readings(conn, layout, windows, 4, 9)
    assert cache.full_reads == 5
    again = cache.readings(conn, layout, windows, 4, 9)
    assert (cache.full_reads, cache.incremental_reads) == (7, 3)
    np.testing.assert_array_equal(first.matrix, again.matrix)


def _outcome(conn: Connection[Any], clock: ManualClock, models: ModelCache, cache: Any) -> Any:
    """What a pass writes (predictions, state, latest predictions, health, policy queue),
    rolled back."""
    with conn.transaction(force_rollback=True):
        score_pass(conn, clock, models=models, cache=cache)
        return pass_writes(conn, clock.now())


def test_fresh_worker_starts_from_persisted_windows_like_a_full_read(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=6)
    ids = tires.asset_ids
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    metric = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    last = tires.last_time[ids[0]]
    km = {a: 60_000.0 for a in ids}

    def append(assets: list[int], hour: int) -> None:
        when = last + timedelta(hours=hour)
        for a in assets:
            km[a] += 400.0
        synthetic.append_readings(conn, assets, when, km, seen=when)

    worker = ReadingsCache(persist_after_rows=3)
    _pass(conn, clock, ModelCache(), worker)  # reads every window in full, persists them
    assert (worker.full_reads, worker.persisted_writes) == (6, 6)
    # four hours for all but the last asset (persisted again: >= 3 rows), one for it
    for hour in range(1, 5):
        append(ids[:-1], hour)
    append(ids[-1:], 1)
    conn.commit()
    clock.advance(60)
    _pass(conn, clock, ModelCache(), worker)
    assert worker.persisted_writes == 6 + 5
    # then: a new hour for all; a late tread reading inside ids[0]'s window (the latest
    # tread at its later rows); ids[1] renewed (its stored window is of its earlier life)
    append(ids, 5)
    conn.execute(
        "INSERT INTO telemetry VALUES (%s, %s, %s, 3.0)",
        (last - timedelta(minutes=30), ids[0], metric["tread_depth_mm"]),
    )
    renewal = last + timedelta(hours=2, minutes=30)
    conn.execute("UPDATE assets SET renewed_at = %s WHERE id = %s", (renewal, ids[1]))
    conn.execute(
        "INSERT INTO telemetry VALUES (%s, %s, %s, 15.9)",
        (renewal + timedelta(minutes=1), ids[1], metric["tread_depth_mm"]),
    )
    # ids[0]'s window was read in full an hour ago: a fresh worker rebuilds it (max_age_s),
    # which picks up the late reading, as the worker that wrote it would have
    conn.execute(
        "UPDATE asset_scoring_state SET window_built_at = window_built_at - interval '1 hour'"
        " WHERE asset_id = %s",
        (ids[0],),
    )
    conn.commit()
    clock.advance(60)

    full = _outcome(conn, clock, ModelCache(), None)
    fresh = ReadingsCache(range_read_rows=2)
    restarted = _outcome(conn, clock, ModelCache(), fresh)
    assert len(full[0]) == 6 and len(full[1]) == 6 and len(full[3]) == 6
    assert restarted == full
    # ids[0] (expired) and ids[1] (renewed) read in full; the others from their windows,
    # ids[-1] (four rows behind the rest) with per-asset lookups, the rest in the range scan
    assert fresh.persisted_loads == 5 and fresh.full_reads == 2
    assert fresh.range_reads == 3 and fresh.incremental_reads == 4


def test_persisted_window_of_another_layout_is_read_again(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=3)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    _pass(conn, clock, ModelCache(), ReadingsCache())
    keys = conn.execute("SELECT DISTINCT window_key FROM asset_scoring_state").fetchall()
    assert len(keys) == 1 and keys[0][0].startswith("w1:")
    conn.execute(
        "UPDATE asset_scoring_state SET window_key = 'w0:an-older-format' WHERE asset_id <> %s",
        (tires.asset_ids[0],),
    )
    conn.execute(  # and one window whose bytes do not fit its key
        "UPDATE asset_scoring_state SET window_rows = '\\x0100'::bytea WHERE asset_id = %s",
        (tires.asset_ids[0],),
    )
    when = tires.last_time[tires.asset_ids[0]] + timedelta(hours=1)
    synthetic.append_readings(
        conn, tires.asset_ids, when, {a: 70_000.0 for a in tires.asset_ids}, seen=when
    )
    conn.commit()
    clock.advance(60)
    full = _outcome(conn, clock, ModelCache(), None)
    fresh = ReadingsCache()
    assert _outcome(conn, clock, ModelCache(), fresh) == full
    assert (fresh.persisted_loads, fresh.full_reads) == (0, 3)


def test_persisted_windows_decode_together_as_one_by_one(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=4)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    worker = ReadingsCache()
    _pass(conn, clock, ModelCache(), worker)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    assert worker.key is not None
    stored = repo.fetch_scoring_windows(conn, tires.asset_ids, worker.key)
    ids = [s.asset_id for s in stored]
    blobs = [s.rows for s in stored]
    tampered = bytearray(blobs[0])
    tampered[-1] ^= 1  # the last seed's value is no longer the last row's
    short = blobs[1][:-26]  # a seed less: another size, decoded on its own
    ids += [ids[0], ids[1], ids[2]]
    blobs += [bytes(tampered), short, b"\x01\x00"]
    together = decode_windows(ids, blobs, layout)
    for i, (asset_id, blob) in enumerate(zip(ids, blobs, strict=True)):
        one = decode_window(asset_id, blob, layout.column_ids)
        got = together[i]
        assert (got is None) == (one is None), i
        if got is not None and one is not None:
            for a, b in zip(got, one, strict=True):
                np.testing.assert_array_equal(a, b)
            assert got[0][-1, 0] == asset_id
    assert [g is None for g in together] == [False] * 4 + [True, True, True]
    # and the decoded window is the one the worker holds
    entry = worker.entries[ids[0]]
    decoded = together[0]
    assert decoded is not None
    np.testing.assert_array_equal(decoded[0], entry.rows)
    np.testing.assert_array_equal(decoded[2], entry.seed_pg_us)


def test_cache_keeps_each_kinds_entries_side_by_side(conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=4)
    layout = repo.metric_layout(conn, "tire", TIRE.usage_metric, TIRE.sensor_names)
    windows = repo.scoring_windows(conn, tires.asset_ids)
    first, second = windows[:2], windows[2:]  # two "kinds": another history length each
    cache = ReadingsCache()
    cache.readings(conn, layout, first, 4, 9)
    cache.readings(conn, layout, second, 5, 9)
    assert cache.full_reads == 4
    again = cache.readings(conn, layout, first, 4, 9)
    assert (cache.full_reads, cache.incremental_reads) == (4, 2)
    want = repo.fetch_readings(conn, layout, first, head_rows=4, tail_rows=9)
    np.testing.assert_array_equal(again.matrix, want.matrix)
    # the same assets under another key are read again
    cache.readings(conn, layout, first, 5, 9)
    assert cache.full_reads == 6
