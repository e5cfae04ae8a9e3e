"""store_messages called directly: validation, quarantine, idempotence, usage counters."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from ingest import repository as repo
from ingest import service as devices
from ingest.pipeline import device_ref_from_topic, parse_timestamp_us, store_messages
from ingest.schemas import IngestLimits, RawMessage
from tests.ingest_helpers import OPERATOR, SmallFleet, epoch_ms, make_fleet, raw, reading

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn)


@pytest.fixture
def limits(topic_root: str) -> IngestLimits:
    return IngestLimits(topic_root=topic_root, max_payload_bytes=4096, max_readings_per_message=10)


def topic(root: str, device: str) -> str:
    return f"{root}/{device}/telemetry"


def telemetry_rows(conn: Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT asset_id, m.name, time, value FROM telemetry t JOIN metrics m ON m.id = t.metric_id"
        " ORDER BY asset_id, m.name, time"
    ).fetchall()


def quarantine_rows(conn: Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT reason, device_ref, customer_id, topic, payload, detail FROM quarantine ORDER BY id"
    ).fetchall()


def test_topic_and_timestamp_parsing() -> None:
    assert device_ref_from_topic("r/x/telemetry", "r") == "x"
    assert device_ref_from_topic("a/b/dev-1/telemetry", "a/b") == "dev-1"
    for bad in ("r/telemetry", "r//telemetry", "r/x/y/telemetry", "q/x/telemetry", "r/x/status"):
        assert device_ref_from_topic(bad, "r") is None, bad
    assert parse_timestamp_us("2026-11-26T10:00:00.120Z") == epoch_ms(NOW) * 1000 + 120_000
    assert parse_timestamp_us("2026-11-26T11:00:00+01:00") == epoch_ms(NOW) * 1000
    assert parse_timestamp_us(epoch_ms(NOW)) == epoch_ms(NOW) * 1000
    bad_times: list[object] = ["2026-11-26T10:00:00", "yesterday", 1.5, True, None, [1]]
    for bad_ts in bad_times:
        assert parse_timestamp_us(bad_ts) is None, bad_ts


def test_good_readings_stored_once_with_usage_and_last_seen(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    clock = ManualClock(NOW)
    t = topic(limits.topic_root, small.device_a)
    tire = small.tires[0]
    batch = [
        raw(t, reading(tire, "2026-11-26T09:59:00Z", pressure_kpa=800.0, odometer_km=1000)),
        raw(
            t,
            {
                "readings": [
                    reading(tire, epoch_ms(NOW - timedelta(seconds=30)), odometer_km=1010.5),
                    reading(small.tires[1], "2026-11-26T09:59:30Z", temperature_c=40),
                ]
            },
        ),
    ]
    result = store_messages(conn, batch, limits=limits, clock=clock)
    assert (result.stored, result.duplicates, result.quarantined_total) == (4, 0, 0)
    again = store_messages(conn, batch, limits=limits, clock=clock)  # a redelivery
    assert (again.stored, again.duplicates) == (0, 4)
    conn.commit()
    assert len(telemetry_rows(conn)) == 4
    usage = conn.execute(
        "SELECT usage_counter, usage_at, last_seen_at IS NOT NULL FROM asset_seen"
        " WHERE asset_id = %s",
        (small.tire_ids[tire],),
    ).fetchone()
    assert usage == (1010.5, NOW - timedelta(seconds=30), True)
    # an older usage reading arriving late does not move the counter back
    late = [raw(t, reading(tire, "2026-11-26T09:00:00Z", odometer_km=900))]
    assert store_messages(conn, late, limits=limits, clock=clock).stored == 1
    row = conn.execute(
        "SELECT usage_counter FROM asset_seen WHERE asset_id = %s", (small.tire_ids[tire],)
    ).fetchone()
    assert row == (1010.5,)
    seen = conn.execute(
        "SELECT last_seen_at FROM devices WHERE ref = %s", (small.device_a,)
    ).fetchone()
    assert seen is not None and seen[0] is not None


def test_every_bad_input_class_is_quarantined_with_its_reason(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    clock = ManualClock(NOW)
    root = limits.topic_root
    ta, tb = topic(root, small.device_a), topic(root, small.device_b)
    tire = small.tires[0]
    ok_ts = "2026-11-26T09:59:00Z"
    # retire a device and an asset of their own
    spare = devices.create_device(
        conn,
        OPERATOR,
        devices.DeviceCreate(customer_id=small.customer_a, ref=f"{small.device_a}-x"),
    )
    devices.retire_device(conn, OPERATOR, spare.id)
    fleet.retire_asset(conn, OPERATOR, small.tire_ids[small.tires[2]])
    cases: list[tuple[str, RawMessage]] = [
        ("bad_topic", raw(f"{root}/{small.device_a}/other", reading(tire, ok_ts, speed_kmh=1))),
        ("unknown_device", raw(topic(root, "nobody"), reading(tire, ok_ts, speed_kmh=1))),
        ("retired_device", raw(topic(root, spare.ref), reading(tire, ok_ts, speed_kmh=1))),
        ("oversized", raw(ta, b"{" + b" " * 5000 + b"}")),
        ("bad_encoding", raw(ta, b'{"asset": "\xff\xfe"}')),
        ("bad_json", raw(ta, b'{"asset": "TRK-0-FL", ')),
        ("bad_structure", raw(ta, b"[1, 2]")),
        ("bad_structure", raw(ta, {"asset": tire, "metrics": {"speed_kmh": 1}})),
        ("too_many_readings", raw(ta, {"readings": [reading(tire, ok_ts, speed_kmh=1)] * 11})),
        ("unknown_asset", raw(ta, reading("NOPE", ok_ts, speed_kmh=1))),
        # an asset of another customer is unknown to this device: refs are per customer
        ("unknown_asset", raw(ta, reading(small.elevator, ok_ts, trip_count=1))),
        ("retired_asset", raw(ta, reading(small.tires[2], ok_ts, speed_kmh=1))),
        ("bad_timestamp", raw(ta, reading(tire, "2026-11-26 noon", speed_kmh=1))),
        ("ts_in_future", raw(ta, reading(tire, "2026-11-26T11:00:00Z", speed_kmh=1))),
        ("ts_too_old", raw(ta, reading(tire, "2020-01-01T00:00:00Z", speed_kmh=1))),
        ("unknown_metric", raw(ta, reading(tire, ok_ts, trip_count=1))),
        ("not_a_number", raw(ta, reading(tire, ok_ts, speed_kmh="fast"))),
        (
            "not_finite",
            raw(
                ta,
                b'{"asset": "TRK-0-FL", "ts": 1, "metrics": {"speed_kmh": NaN}}'.replace(
                    b'"ts": 1', f'"ts": {epoch_ms(NOW)}'.encode()
                ),
            ),
        ),
        ("out_of_bounds", raw(ta, reading(tire, ok_ts, speed_kmh=999))),
        ("out_of_bounds", raw(tb, reading(small.elevator, ok_ts, brake_wear_pct=-1))),
    ]
    result = store_messages(conn, [m for _, m in cases], limits=limits, clock=clock)
    conn.commit()
    assert result.stored == 0
    rows = quarantine_rows(conn)
    # one row per case, with its reason, raw bytes and topic (message-level rejections first)
    assert sorted((r[0], r[3], bytes(r[4])) for r in rows) == sorted(
        (reason, m.topic, m.payload) for reason, m in cases
    )
    by_reason = {r[0]: r for r in rows}
    assert by_reason["unknown_device"][1] == "nobody" and by_reason["unknown_device"][2] is None
    # the last out_of_bounds is device b's elevator
    assert by_reason["out_of_bounds"][1:3] == (small.device_b, small.customer_b)
    assert result.quarantined["out_of_bounds"] == 2
    assert result.quarantined_by_device[(small.device_b, "out_of_bounds")] == 1
    assert telemetry_rows(conn) == []
    # the time limits in words, not as Python's timedelta ("30 days, 0:00:00", "0:10:00")
    details = dict(conn.execute("SELECT reason, detail FROM quarantine").fetchall())
    assert details["ts_too_old"].endswith(f"is more than {limits.max_past.days} days old")
    assert details["ts_in_future"].endswith(
        f"is more than {limits.max_future.seconds // 60} min ahead"
    )


def test_partly_bad_message_keeps_its_good_readings(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    t = topic(limits.topic_root, small.device_a)
    ts = "2026-11-26T09:59:00Z"
    msg = raw(
        t,
        {
            "readings": [
                reading(small.tires[0], ts, pressure_kpa=800, speed_kmh=5000, bogus=1),
                reading("NOPE", ts, pressure_kpa=1),
                reading(small.tires[1], ts, pressure_kpa=801),
                "junk",
            ]
        },
    )
    result = store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW))
    conn.commit()
    assert result.stored == 2
    assert dict(result.quarantined) == {
        "out_of_bounds": 1,
        "unknown_metric": 1,
        "unknown_asset": 1,
        "bad_structure": 1,
    }
    assert [r[1:] for r in telemetry_rows(conn)] == [
        ("pressure_kpa", NOW - timedelta(minutes=1), 800.0),
        ("pressure_kpa", NOW - timedelta(minutes=1), 801.0),
    ]
    details = [r[5] for r in quarantine_rows(conn)]
    assert any("readings[0]: speed_kmh = 5000" in d for d in details), details


def test_deeply_nested_json_is_quarantined_as_too_deep_and_the_batch_goes_on(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    limits = IngestLimits(topic_root=topic_root)  # 256 KiB: the nesting is the problem
    t = topic(topic_root, small.device_a)
    ts = "2026-11-26T09:59:00Z"
    nested = b"[" * 100_000 + b"]" * 100_000
    deep = [
        raw(t, b'{"asset": "X", "ts": 1, "metrics": {}, "deep": ' + nested + b"}"),
        raw(t, b'{"readings": [{"asset": "X", "ts": 1, "metrics": {"p": ' + nested + b"}}]}"),
        raw(t, b'{"readings": ' + b"[" * 40 + b"]" * 40 + b"}"),
    ]
    good = [raw(t, reading(small.tires[i], ts, pressure_kpa=800 + i)) for i in range(3)]
    batch = [good[0], *deep[:2], good[1], deep[2], good[2]]
    result = store_messages(conn, batch, limits=limits, clock=ManualClock(NOW))
    assert result.stored == 3
    assert dict(result.quarantined) == {"too_deep": 3}
    details = [r[5] for r in quarantine_rows(conn)]
    assert details == ["JSON nested deeper than 32 levels (a reading needs 4)"] * 3
    # within the bound, nesting where a number belongs is an ordinary rejection
    shallow = raw(t, {"asset": small.tires[0], "ts": ts, "metrics": {"pressure_kpa": [[1]]}})
    assert store_messages(conn, [shallow], limits=limits, clock=ManualClock(NOW)).quarantined == {
        "not_a_number": 1
    }


def test_a_repeated_key_is_refused_as_ambiguous(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    t = topic(limits.topic_root, small.device_a)
    tire, other = small.tires[0], small.tires[1]
    ts = '"2026-11-26T09:59:00Z"'
    one = (
        f'{{"asset": "{tire}", "ts": {ts}, "metrics": {{"pressure_kpa": 5000,'
        ' "pressure_kpa": 7.5}}'
    )
    in_batch = (
        f'{{"readings": [{{"asset": "{tire}", "ts": {ts}, "metrics": {{"temperature_c": 40,'
        f' "temperature_c": 41}}}}, {{"asset": "{other}", "ts": {ts}, "metrics":'
        ' {"pressure_kpa": 810}}]}'
    )
    twice = (
        f'{{"asset": "{tire}", "asset": "{other}", "ts": {ts}, "metrics": {{"pressure_kpa": 1}}}}'
    )
    spaced = f'{{"asset" : "{tire}", "ts" : {ts}, "metrics" : {{"odometer_km" : 12}}}}'
    result = store_messages(
        conn,
        [raw(t, p.encode()) for p in (one, in_batch, twice, spaced)],
        limits=limits,
        clock=ManualClock(NOW),
    )
    conn.commit()
    assert dict(result.quarantined) == {"duplicate_key": 3}
    # the other reading of the batch and the oddly spaced (unambiguous) message are stored
    assert sorted(r[1:] for r in telemetry_rows(conn)) == [
        ("odometer_km", NOW - timedelta(minutes=1), 12.0),
        ("pressure_kpa", NOW - timedelta(minutes=1), 810.0),
    ]
    details = [r[5] for r in quarantine_rows(conn)]
    assert details == [  # a whole message first, then the rejected readings
        "key 'asset' appears twice",
        "reading: metric 'pressure_kpa' appears twice (which value was meant is unknown)",
        "readings[0]: metric 'temperature_c' appears twice (which value was meant is unknown)",
    ]


def test_many_bad_items_in_one_message_are_summarised(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    limits = IngestLimits(topic_root=topic_root, max_quarantine_rows_per_message=3)
    t = topic(topic_root, small.device_a)
    msg = raw(t, {"readings": [reading("NOPE", "2026-11-26T09:59:00Z", speed_kmh=1)] * 10})
    result = store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW))
    assert result.quarantined["unknown_asset"] == 10
    rows = quarantine_rows(conn)
    assert len(rows) == 3 and rows[-1][5].startswith("8 more rejected items")


def test_storing_in_the_callers_transaction_never_commits(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    t = topic(limits.topic_root, small.device_a)
    msg = raw(t, reading(small.tires[0], "2026-11-26T09:59:00Z", pressure_kpa=800))
    assert store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW)).stored == 1
    conn.rollback()
    assert telemetry_rows(conn) == []


def test_the_same_reading_twice_in_one_batch_is_stored_once(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    t = topic(limits.topic_root, small.device_a)
    msg = raw(t, reading(small.tires[0], "2026-11-26T09:59:00Z", pressure_kpa=800))
    result = store_messages(conn, [msg, msg], limits=limits, clock=ManualClock(NOW))
    assert (result.stored, result.duplicates) == (1, 1)
    # the fast path's failed COPY left the transaction usable
    assert store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW)).duplicates == 1
    conn.commit()
    assert len(telemetry_rows(conn)) == 1


def test_an_optimistic_batch_meeting_a_stored_reading_raises_and_the_keyed_retry_stores_once(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    """``optimistic`` (the ingestor's first try) copies without a savepoint: a reading stored
    before makes the whole transaction fail, nothing of it stays, and the batch stored again
    the keyed way keeps each reading once (what ``IngestWorker`` does on UniqueViolation)."""
    import psycopg

    t = topic(limits.topic_root, small.device_a)
    old = raw(t, reading(small.tires[0], "2026-11-26T09:59:00Z", pressure_kpa=800))
    new = raw(t, reading(small.tires[1], "2026-11-26T09:59:00Z", pressure_kpa=810))
    store_messages(conn, [old], limits=limits, clock=ManualClock(NOW), optimistic=True)
    conn.commit()
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        store_messages(conn, [new, old], limits=limits, clock=ManualClock(NOW), optimistic=True)
    assert len(telemetry_rows(conn)) == 1  # the new reading went with the failed transaction
    with conn.transaction():
        result = store_messages(conn, [new, old], limits=limits, clock=ManualClock(NOW))
    assert (result.stored, result.duplicates) == (1, 1)
    assert len(telemetry_rows(conn)) == 2


def test_inbox_is_bounded_by_messages_and_bytes() -> None:
    from ingest.inbox import Inbox

    def msg(size: int) -> RawMessage:
        return RawMessage("t", b"x" * size, NOW)

    by_count = Inbox(maxsize=2)
    assert by_count.put(msg(1), 0.01) and by_count.put(msg(1), 0.01)
    assert not by_count.put(msg(1), 0.01)  # full: the network thread would wait here
    assert len(by_count.take(10, 10**6, 0.01, 0.0)) == 2
    assert by_count.put(msg(1), 0.01)

    by_bytes = Inbox(maxsize=100, max_bytes=1000)
    assert by_bytes.put(msg(600), 0.01) and by_bytes.put(msg(600), 0.01)
    assert not by_bytes.put(msg(1), 0.01)
    assert [len(m.payload) for m in by_bytes.take(1, 10**6, 0.01, 0.0)] == [600]
    assert by_bytes.put(msg(500), 0.01)  # 600 held < 1000: room (the bound is checked first)
    assert not by_bytes.put(msg(1), 0.01)  # 1100 held
    assert by_bytes.qsize() == 2
    assert by_bytes.take(10, 10**6, 0.01, 0.0) and by_bytes.take(10, 10**6, 0.01, 0.0) == []


def test_inbox_closes_a_batch_when_the_stream_pauses() -> None:
    """A batch being gathered closes once nothing came for ``idle_s``, not at the end of the
    (here: one minute) gather window; without ``idle_s`` the window still holds it open."""
    from ingest.inbox import Inbox

    inbox = Inbox(maxsize=100)
    for _ in range(3):
        assert inbox.put(RawMessage("t", b"x", NOW), 0.01)
    taken: list[int] = []
    taker = threading.Thread(
        target=lambda: taken.append(len(inbox.take(10, 10**6, 0.01, 60.0, idle_s=0.05)))
    )
    taker.start()
    taker.join(timeout=20)
    assert not taker.is_alive() and taken == [3]

    assert inbox.put(RawMessage("t", b"x", NOW), 0.01)
    held = threading.Thread(target=lambda: taken.append(len(inbox.take(10, 10**6, 0.01, 1.0))))
    held.start()
    held.join(timeout=0.3)
    assert held.is_alive()  # still gathering: no idle bound given
    held.join(timeout=20)
    assert taken == [3, 1]


def test_inbox_adaptive_batches_take_a_share_of_what_waits() -> None:
    """With ``min_bytes`` a batch is the writers' share of what the inbox holds when it
    starts, between ``min_bytes`` and ``max_bytes``: full batches from a backlog, smaller ones
    as it drains, none left behind smaller than ``min_bytes``; every message taken once, in
    order."""
    from ingest.inbox import Inbox

    inbox = Inbox(maxsize=1000, max_bytes=10**9)
    sent = [RawMessage(f"t{i}", b"x" * 100, NOW) for i in range(100)]  # 10,000 bytes
    for m in sent:
        assert inbox.put(m, 0.01)
    sizes: list[int] = []
    taken: list[RawMessage] = []
    while batch := inbox.take(1000, 4000, 0.01, 0.0, min_bytes=1000, share=2):
        sizes.append(sum(len(m.payload) for m in batch))
        taken += batch
    # 10,000 held: half is 5,000, bounded to 4,000; then 3,000 of 6,000; then of 3,000 half
    # would leave 1,500, so 1,500; of the last 1,500 half (750) is below the least bound and
    # would leave less than it: all
    assert sizes == [4000, 3000, 1500, 1500]
    assert [m.topic for m in taken] == [m.topic for m in sent]

    fixed = Inbox(maxsize=1000, max_bytes=10**9)  # without min_bytes: max_bytes each time
    for m in sent:
        assert fixed.put(m, 0.01)
    assert [len(fixed.take(1000, 4000, 0.01, 0.0)) for _ in range(3)] == [40, 40, 20]


def test_inbox_adaptive_batches_gather_a_least_batch_from_a_steady_stream() -> None:
    """When less than ``min_bytes`` waits (the writers keep up with a steady stream), a batch
    still gathers up to ``min_bytes`` (or its time bounds) instead of closing at what waited
    when it started: many tiny batches each paid a batch's fixed cost in PostgreSQL."""
    from ingest.inbox import Inbox

    inbox = Inbox(maxsize=1000, max_bytes=10**9)
    for i in range(3):
        assert inbox.put(RawMessage(f"t{i}", b"x" * 100, NOW), 0.01)
    stop = threading.Event()

    def stream() -> None:  # 100 bytes every millisecond, for the taker to gather
        i = 3
        while not stop.is_set() and i < 200:
            inbox.put(RawMessage(f"t{i}", b"x" * 100, NOW), 0.01)
            i += 1
            time.sleep(0.001)

    feeder = threading.Thread(target=stream)
    feeder.start()
    try:
        batch = inbox.take(1000, 4000, 0.01, 5.0, 1.0, min_bytes=1000, share=2)
    finally:
        stop.set()
        feeder.join(timeout=20)
    assert sum(len(m.payload) for m in batch) == 1000  # not the 300 bytes held at the start
    assert [m.topic for m in batch] == [f"t{i}" for i in range(10)]


def test_store_messages_on_each_storage_path(db_url: str, storage: str, topic_root: str) -> None:
    with connect(db_url) as conn:
        assert conn.execute("SELECT storage FROM schema_storage").fetchone() == (storage,)
        small = make_fleet(conn)
        limits = IngestLimits(topic_root=topic_root)
        t = topic(topic_root, small.device_a)
        rows = [
            reading(small.tires[0], epoch_ms(NOW) - i * 1000, pressure_kpa=800, odometer_km=10 + i)
            for i in range(50)
        ]
        msg = raw(t, {"readings": rows})
        first = store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW))
        again = store_messages(conn, [msg], limits=limits, clock=ManualClock(NOW))
        conn.commit()
        assert (first.stored, again.stored, again.duplicates) == (100, 0, 100)
        usage = conn.execute(
            "SELECT usage_counter FROM asset_seen WHERE asset_id = %s",
            (small.tire_ids[small.tires[0]],),
        ).fetchone()
        assert usage == (10.0,)  # the latest by time


def test_copy_rows_in_key_order_are_the_same_rows_sorted() -> None:
    """``in_key_order`` sorts the rows by (asset, metric, time) and changes nothing else."""
    times = [5_000, 1_000, 3_000, 1_000, 2_000]
    assets = [2, 2, 1, 1, 2]
    metrics = [1, 1, 3, 1, 2]
    values = [0.5, 1.5, 2.5, 3.5, 4.5]
    plain = repo.encode_telemetry_copy(times, assets, metrics, values)
    ordered = repo.encode_telemetry_copy(times, assets, metrics, values, in_key_order=True)
    rows = len(times)
    header, size = 19, (len(plain) - 19 - 2) // rows
    assert len(ordered) == len(plain) and ordered[:header] == plain[:header]

    def cut(data: bytes) -> list[bytes]:
        return [data[header + i * size : header + (i + 1) * size] for i in range(rows)]

    key = sorted(range(rows), key=lambda i: (assets[i], metrics[i], times[i]))
    assert cut(ordered) == [cut(plain)[i] for i in key]
