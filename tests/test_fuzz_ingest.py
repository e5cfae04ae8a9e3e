"""Malformed readings and positions beside good ones: each bad item is quarantined with a reason
that says where (``readings[1]``) and what, and the good items of the same message are stored.

Found by fuzzing the entry points: a lone surrogate (``"\\ud800"``, valid JSON, no UTF-8 form)
or a NUL in an asset, carrier or station reference reached PostgreSQL as a lookup parameter and
failed the whole batch, so the good readings of every message in it were retried one by one and
those of the bad message were lost as ``internal_error``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from ingest import profile_service
from ingest import service as devices
from ingest.pipeline import store_messages
from ingest.schemas import DeviceCreate, IngestLimits
from maintenance.mobility import service as mobility
from maintenance.mobility.schemas import CarrierCreate
from tests.ingest_helpers import OPERATOR, SmallFleet, make_fleet, raw

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
GOOD_METRIC = '"metrics": {"speed_kmh": 10}'

# (a bad reading, the reason it must be quarantined for)
BAD_READINGS: list[tuple[str, str]] = [
    ('{"asset": "\\ud800", "ts": %(ts)d, %(m)s}', "unknown_asset"),
    ('{"asset": "TRK-0-FL\\udc00", "ts": %(ts)d, %(m)s}', "unknown_asset"),
    ('{"asset": "\\ud83d", "ts": %(ts)d, %(m)s}', "unknown_asset"),
    ('{"asset": "TRK-0-FL", "ts": "\\ud800", %(m)s}', "bad_timestamp"),
    ('{"asset": "TRK-0-FL", "ts": %(ts)d, "metrics": {"\\ud800": 1}}', "unknown_metric"),
    ('{"asset": "TRK-0-FL", "ts": 253402300800000, %(m)s}', "ts_in_future"),
    ('{"asset": "TRK-0-FL", "ts": -9223372036854775808, %(m)s}', "ts_too_old"),
    ('{"asset": "TRK-0-FL", "ts": "2026-13-45T00:00:00Z", %(m)s}', "bad_timestamp"),
    ('{"asset": "TRK-0-FL", "ts": NaN, %(m)s}', "bad_timestamp"),
    ('{"asset": "TRK-0-FL", "ts": %(ts)d, "metrics": {"speed_kmh": -Infinity}}', "not_finite"),
    ('{"asset": "TRK-0-FL", "ts": %(ts)d, "metrics": {"speed_kmh": [1]}}', "not_a_number"),
    (
        '{"asset": "TRK-0-FL", "ts": %(ts)d, "metrics": {"speed_kmh": 1, "speed_kmh": 2}}',
        "duplicate_key",
    ),
    ('{"asset": "%(long)s", "ts": %(ts)d, %(m)s}', "unknown_asset"),
    ('"TRK-0-FL"', "bad_structure"),
]
BAD_POSITIONS: list[tuple[str, str]] = [
    ('{"carrier": "\\u0000", "ts": %(ts)d, "latitude": 1, "longitude": 2}', "unknown_carrier"),
    ('{"carrier": "\\ud800", "ts": %(ts)d, "latitude": 1, "longitude": 2}', "unknown_carrier"),
    ('{"carrier": "TAIL-1", "ts": %(ts)d, "station": "\\u0000"}', "unknown_station"),
    ('{"carrier": "TAIL-1", "ts": %(ts)d, "station": "\\udfff"}', "unknown_station"),
    ('{"carrier": "TAIL-1", "ts": %(ts)d, "latitude": NaN, "longitude": 2}', "not_finite"),
]


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn)


def _quarantined(conn: Connection[Any]) -> list[tuple[str, str]]:
    return conn.execute("SELECT reason, detail FROM quarantine ORDER BY id").fetchall()


def test_bad_readings_and_positions_are_quarantined_and_their_neighbours_stored(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    limits = IngestLimits(topic_root=topic_root)
    topic = f"{topic_root}/{small.device_a}/telemetry"
    failures: list[str] = []
    for i, (bad, reason) in enumerate(BAD_READINGS):
        good = [
            f'{{"asset": "TRK-1-FL", "ts": {NOW_MS - 1000 * (2 * i + k + 1)}, {GOOD_METRIC}}}'
            for k in (0, 1)
        ]
        item = bad % {"ts": NOW_MS - 60_000, "m": GOOD_METRIC, "long": "A" * 5000}
        payload = f'{{"readings": [{good[0]}, {item}, {good[1]}]}}'.encode("utf-8", "surrogatepass")
        before = len(_quarantined(conn))
        try:
            result = store_messages(
                conn, [raw(topic, payload)], limits=limits, clock=ManualClock(NOW)
            )
            conn.commit()
        except Exception as exc:  # the defect: the whole batch failed
            conn.rollback()
            failures.append(f"{item[:60]}: {type(exc).__name__}: {exc}")
            continue
        rows = _quarantined(conn)[before:]
        if result.stored != 2 or dict(result.quarantined) != {reason: 1}:
            failures.append(f"{item[:60]}: stored {result.stored}, {dict(result.quarantined)}")
        elif not (len(rows) == 1 and rows[0][1].startswith("readings[1]")):
            failures.append(f"{item[:60]}: quarantine rows {rows}")
    assert not failures, "\n".join(failures)
    _bad_positions_beside_good_ones(conn, small, topic_root)


def _bad_positions_beside_good_ones(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    mobility.create_carrier(
        conn,
        OPERATOR,
        CarrierCreate(customer_id=small.customer_a, ref="TAIL-1", carrier_type="aircraft"),
    )
    conn.commit()
    limits = IngestLimits(topic_root=topic_root)
    topic = f"{topic_root}/{small.device_a}/position"
    failures: list[str] = []
    for i, (bad, reason) in enumerate(BAD_POSITIONS):
        good = [
            f'{{"carrier": "TAIL-1", "ts": {NOW_MS - 1000 * (2 * i + k + 1)}, "latitude": 1,'
            ' "longitude": 2}'
            for k in (0, 1)
        ]
        item = bad % {"ts": NOW_MS - 60_000}
        payload = f'{{"positions": [{good[0]}, {item}, {good[1]}]}}'.encode(
            "utf-8", "surrogatepass"
        )
        try:
            result = store_messages(
                conn, [raw(topic, payload)], limits=limits, clock=ManualClock(NOW)
            )
            conn.commit()
        except Exception as exc:
            conn.rollback()
            failures.append(f"{item[:60]}: {type(exc).__name__}: {exc}")
            continue
        if result.positions_stored != 2 or dict(result.quarantined) != {reason: 1}:
            failures.append(
                f"{item[:60]}: stored {result.positions_stored}, {dict(result.quarantined)}"
            )
    assert not failures, "\n".join(failures)
    details = [d for _, d in _quarantined(conn)][len(BAD_READINGS) :]
    assert all(d.startswith("positions[1]") for d in details), details


CSV_PROFILE = {
    "name": "fuzz-csv",
    "format": "csv",
    "header": True,
    "layout": "long",
    "asset": "asset",
    "time": {"field": "time", "format": "epoch_ms"},
    "metric_column": "signal",
    "value_column": "value",
    "metrics": {"speed_kmh": {"field": "V"}},
}


def test_a_csv_line_the_csv_module_refuses_is_quarantined_and_the_rest_stored(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    """A field past the csv module's 131,072-character limit (csv.Error) failed the whole batch
    (500 over HTTP), and so did a message whose lines end in a lone CR."""
    profile_service.apply_profile(conn, OPERATOR, CSV_PROFILE, source="test")
    device = devices.create_device(
        conn,
        OPERATOR,
        DeviceCreate(customer_id=small.customer_a, ref="gw-fuzz-csv", profile="fuzz-csv"),
    )
    conn.commit()
    limits = IngestLimits(topic_root=topic_root)
    topic = f"{topic_root}/{device.ref}/telemetry"
    rows = [f"TRK-0-FL,{NOW_MS - 1000 * k},V,10" for k in (1, 2, 3)]
    huge = f"TRK-0-FL,{NOW_MS - 4000},V,{'9' * 140_000}"
    lf = "\n".join(["asset,time,signal,value", rows[0], huge, rows[1]]) + "\n"
    cr = "\r".join(["asset,time,signal,value", rows[2]]) + "\r"
    result = store_messages(
        conn,
        [raw(topic, lf.encode()), raw(topic, cr.encode())],
        limits=limits,
        clock=ManualClock(NOW),
    )
    conn.commit()
    assert (result.stored, dict(result.quarantined)) == (3, {"bad_structure": 1})
    (detail,) = conn.execute("SELECT detail FROM quarantine").fetchone() or ("",)
    assert detail.startswith("line 3: field larger than field limit"), detail


def test_a_number_too_long_to_read_is_said_so_not_as_python_advice(
    conn: Connection[Any], small: SmallFleet, topic_root: str
) -> None:
    """A 5,000-digit integer in a message or a position is the message's ``bad_json``; its
    detail told the device maker to call ``sys.set_int_max_str_digits()``."""
    limits = IngestLimits(topic_root=topic_root)
    digits = "9" * 5000
    messages = [
        raw(
            f"{topic_root}/{small.device_a}/telemetry",
            b'{"asset": "TRK-1-FL", "ts": %s}' % digits.encode(),
        ),
        raw(
            f"{topic_root}/{small.device_a}/position",
            b'{"carrier": "T", "ts": %s}' % digits.encode(),
        ),
    ]
    store_messages(conn, messages, limits=limits, clock=ManualClock(NOW))
    conn.commit()
    expected = "a number of 5000 digits (more than JSON numbers are read with)"
    assert _quarantined(conn) == [("bad_json", expected), ("bad_json", expected)]
