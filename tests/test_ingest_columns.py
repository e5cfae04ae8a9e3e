"""Whole messages checked column by column (ingest.columns) store, quarantine and move usage
counters and last-seen times exactly as the reading-by-reading checks do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from ingest import pipeline
from ingest.decode import FAST_BATCH, Decoded
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits, RawMessage
from tests.ingest_helpers import SmallFleet, epoch_ms, make_fleet, raw, reading

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn)


@pytest.fixture
def limits(topic_root: str) -> IngestLimits:
    return IngestLimits(topic_root=topic_root)


def ms(seconds_ago: float) -> int:
    return epoch_ms(NOW - timedelta(seconds=seconds_ago))


def mixed_batch(small: SmallFleet, root: str) -> list[RawMessage]:
    """Whole messages of two customers, good and with every kind of problem the columns must
    hand back, in one batch; received at different times."""
    a, b = f"{root}/{small.device_a}/telemetry", f"{root}/{small.device_b}/telemetry"
    t0, t1, t2 = small.tires
    at = [NOW - timedelta(seconds=s) for s in (5, 4, 3, 2, 1, 0)]

    def batch(*readings: dict[str, Any]) -> dict[str, Any]:
        return {"readings": list(readings)}

    return [
        # good, several metrics per reading, the usage counter among them
        raw(
            a,
            batch(
                reading(t0, ms(60), pressure_kpa=800.0, odometer_km=1000.0),
                reading(t1, ms(60), temperature_c=40.5),
                reading(t0, ms(50), odometer_km=1001.0, speed_kmh=80.0, load_kg=2500.0),
            ),
            at[0],
        ),
        # an unknown asset and a value out of bounds: the other readings kept
        raw(
            a,
            batch(
                reading(t1, ms(40), pressure_kpa=810.0),
                reading("TRK-NOPE", ms(40), pressure_kpa=810.0),
                reading(t2, ms(40), pressure_kpa=5000.0, temperature_c=30.0),
            ),
            at[1],
        ),
        # a time as RFC 3339 text, one too old, an unknown metric
        raw(
            a,
            batch(
                reading(t2, "2026-11-26T09:59:10Z", pressure_kpa=820.0),
                reading(t2, ms(40 * 86400), pressure_kpa=820.0),
                reading(t1, ms(30), humidity=3.0, pressure_kpa=830.0),
            ),
            at[2],
        ),
        # the same key twice in the batch (the first one counts) and the usage counter at the
        # same time twice (the later one counts)
        raw(a, batch(reading(t1, ms(20), pressure_kpa=700.0, odometer_km=2000.0)), at[3]),
        raw(a, batch(reading(t1, ms(20), pressure_kpa=701.0, odometer_km=2001.0)), at[4]),
        # a single reading; another customer's elevator; a reading without metrics
        raw(a, reading(t2, ms(15), tread_depth_mm=7.5), at[5]),
        raw(b, reading(small.elevator, ms(15), door_close_time_s=3.1, trip_count=120.0), at[2]),
        raw(a, batch(reading(t0, ms(14)), reading(t0, ms(13), pressure_kpa=790.0)), at[1]),
    ]


def outcome(conn: Connection[Any]) -> dict[str, Any]:
    return {
        "telemetry": conn.execute(
            "SELECT asset_id, metric_id, time, value FROM telemetry ORDER BY 1, 2, 3"
        ).fetchall(),
        "quarantine": conn.execute(
            "SELECT reason, device_ref, customer_id, topic, detail, payload FROM quarantine"
            " ORDER BY id"
        ).fetchall(),
        "assets": conn.execute(
            "SELECT id, last_seen_at, usage_counter, usage_at FROM assets ORDER BY id"
        ).fetchall(),
    }


def store_both_ways(
    conn: Connection[Any], batch: list[RawMessage], limits: IngestLimits, monkeypatch: Any
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """(outcome with the columns, outcome reading by reading, both results), each in its own
    rolled-back transaction."""
    clock = ManualClock(NOW)
    results = []
    outcomes = []
    for columns in (True, False):
        with monkeypatch.context() as m:
            if not columns:  # every message the reading-by-reading way
                m.setattr(pipeline, "check_whole_messages", lambda indexes, *_: list(indexes))
            tx = conn.transaction(force_rollback=True)
            with tx:
                results.append(store_messages(conn, batch, limits=limits, clock=clock))
                outcomes.append(outcome(conn))
    return outcomes[0], outcomes[1], results


def test_columns_store_and_quarantine_as_reading_by_reading(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits, monkeypatch: Any
) -> None:
    batch = mixed_batch(small, limits.topic_root)
    columns, careful, (r_columns, r_careful) = store_both_ways(conn, batch, limits, monkeypatch)
    assert columns == careful
    assert r_columns.stored == r_careful.stored and r_columns.duplicates == r_careful.duplicates
    assert r_columns.quarantined == r_careful.quarantined
    # the batch did what it says: kept the good readings of partly bad messages, refused the
    # rest with reasons, the first of a repeated key, the later usage counter of equal times
    reasons = sorted(q[0] for q in columns["quarantine"])
    assert reasons == sorted(["unknown_asset", "out_of_bounds", "ts_too_old", "unknown_metric"]), (
        reasons
    )
    tire_1 = small.tire_ids[small.tires[1]]
    t20 = NOW - timedelta(seconds=20)
    at_t20 = sorted(v for a, _, t, v in columns["telemetry"] if a == tire_1 and t == t20)
    assert at_t20 == [700.0, 2000.0]  # the first message's pressure and odometer
    usage = {row[0]: row[2] for row in columns["assets"]}
    assert usage[tire_1] == 2001.0
    assert usage[small.tire_ids[small.tires[0]]] == 1001.0


def test_columns_hand_back_what_only_the_careful_checks_can_judge(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits, monkeypatch: Any
) -> None:
    """Every whole message with a problem goes the reading-by-reading way; good ones not."""
    batch = mixed_batch(small, limits.topic_root)
    handed: list[list[int]] = []
    original = pipeline.check_whole_messages

    def spy(indexes: list[int], decoded: list[Decoded], *rest: Any) -> list[int]:
        back = original(indexes, decoded, *rest)
        handed.append(back)
        return back

    monkeypatch.setattr(pipeline, "check_whole_messages", spy)
    with conn.transaction(force_rollback=True):
        store_messages(conn, batch, limits=limits, clock=ManualClock(NOW))
    # messages 1 and 2 (of customer A's whole messages: indexes in the decoded list) only
    assert sorted(i for back in handed for i in back) == [1, 2]


def test_a_large_batch_of_good_messages_is_stored_whole(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits, monkeypatch: Any
) -> None:
    """Many readings, several per message, several metrics each: same rows either way."""
    t = f"{limits.topic_root}/{small.device_a}/telemetry"
    batch = [
        raw(
            t,
            {
                "readings": [
                    reading(
                        small.tires[(k + j) % 3],
                        ms(3000 - k) + j,
                        pressure_kpa=700.0 + k % 50,
                        odometer_km=float(k * 10 + j),
                    )
                    for j in range(20)
                ]
            },
            NOW - timedelta(seconds=(k * 7) % 11),
        )
        for k in range(60)
    ]
    assert all(FAST_BATCH.decode(m.payload) for m in batch)  # the fast decoder reads them whole
    columns, careful, (r_columns, _) = store_both_ways(conn, batch, limits, monkeypatch)
    assert columns == careful
    assert r_columns.stored == 60 * 20 * 2 and not columns["quarantine"]
