"""Sparkplug B DATA read in bulk (``ingest.sparkplug_bulk``) says what the careful way says:
which messages it may read as columns, and — through the pipeline, on a real database — the
same telemetry, quarantine, last-seen times and usage counters as the reading-by-reading way
for a batch that mixes good messages with every kind of bad one."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as spb
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from ingest import pipeline, profile_service
from ingest.pipeline import store_messages
from ingest.schemas import BatchResult, IngestLimits, RawMessage
from ingest.sparkplug import SparkplugHost, SparkplugMessage, parse_topic
from ingest.sparkplug_bulk import Columns, read_columns
from tests.ingest_helpers import OPERATOR, make_fleet

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
T0 = int((NOW - timedelta(minutes=5)).timestamp() * 1000)  # epoch ms, inside the window
DOUBLE, INT64, STRING = 10, 4, 12
WINDOW = (NOW_US - 86_400_000_000, NOW_US + 60_000_000)
TARGETS = {
    "A": ("a", "m", 1.0, 0.0),
    "B": ("b", "m", 2.0, 1.0),
    "I": ("i", "m", 1.0, 0.0),
}


def metric(p: Any, **fields: Any) -> None:
    m = p.metrics.add()
    for name, value in fields.items():
        setattr(m, name, value)


def born(*declared: tuple[str, int, int], group: str = "g") -> SparkplugHost:
    """A host that saw edge node ``e`` and its device ``d`` born with ``declared`` (name,
    alias, data type); the next DATA has seq 2."""
    host = SparkplugHost()
    nbirth = spb.Payload(timestamp=T0, seq=0)
    metric(nbirth, name="bdSeq", datatype=INT64, long_value=0)
    dbirth = spb.Payload(timestamp=T0, seq=1)
    for name, alias, datatype in declared:
        metric(dbirth, name=name, alias=alias, datatype=datatype, is_null=True)
    for kind, p in (("NBIRTH", nbirth), ("DBIRTH", dbirth)):
        topic = parse_topic(f"spBv1.0/{group}/{kind}/e" + ("/d" if kind == "DBIRTH" else ""))
        assert topic is not None
        host.receive(topic, p.SerializeToString())
    return host


def data(host: SparkplugHost, seq: int, *metrics: dict[str, Any], group: str = "g") -> Any:
    """A DDATA of device ``d`` as the host reads it, and its raw bytes."""
    p = spb.Payload(timestamp=T0, seq=seq)
    for fields in metrics:
        metric(p, **fields)
    body = p.SerializeToString()
    topic = parse_topic(f"spBv1.0/{group}/DDATA/e/d")
    assert topic is not None
    return host.receive(topic, body), body


DECLARED = (("A", 0, DOUBLE), ("B", 1, DOUBLE), ("F", 2, STRING), ("I", 3, INT64))


def columns(*metrics: dict[str, Any], targets: Any = None) -> Columns | None:
    host = born(*DECLARED)
    sp, _ = data(host, 2, *metrics)
    return read_columns(sp, TARGETS if targets is None else targets, *WINDOW)


def test_the_usual_data_is_read_as_columns() -> None:
    """Alias 0 sent, a scaled metric, one alias at two times, an alias the mapping skips."""
    got = columns(
        {"alias": 0, "timestamp": T0, "double_value": 5.0},
        {"alias": 1, "timestamp": T0, "double_value": 3.0},
        {"alias": 1, "timestamp": T0 + 1, "double_value": 4.0},
        {"alias": 2, "timestamp": T0, "double_value": 9.0},  # declared, not mapped: skipped
    )
    assert got is not None
    rows = got.rows
    assert [rows.assets[r] if r != rows.skip else None for r in got.row_of_metric] == [
        "a",
        "b",
        "b",
        None,
    ]
    assert got.times_ms == [T0, T0, T0 + 1, T0] and got.values == [5.0, 3.0, 4.0, 9.0]
    assert not rows.plain and rows.consistent


@pytest.mark.parametrize(
    "why, metrics",
    [
        ("a zero may be a null or another type", [{"alias": 1, "timestamp": T0}]),
        ("a value of another field", [{"alias": 1, "timestamp": T0, "long_value": 7}]),
        ("a null", [{"alias": 1, "timestamp": T0, "is_null": True}]),
        ("no time of its own", [{"alias": 1, "double_value": 1.0}]),
        ("no alias at all", [{"timestamp": T0, "double_value": 1.0}]),
        ("a name instead", [{"name": "A", "timestamp": T0, "double_value": 1.0}]),
        ("alias 0 with a name", [{"alias": 0, "name": "B", "timestamp": T0, "double_value": 1.0}]),
        ("an alias no BIRTH declared", [{"alias": 99, "timestamp": T0, "double_value": 1.0}]),
        ("declared as INT64", [{"alias": 3, "timestamp": T0, "double_value": 1.0}]),
        ("too old", [{"alias": 1, "timestamp": T0 - 2 * 86_400_000, "double_value": 1.0}]),
        ("ahead", [{"alias": 1, "timestamp": T0 + 86_400_000, "double_value": 1.0}]),
        (
            "one (asset, metric, time) twice",
            [{"alias": 1, "timestamp": T0, "double_value": v} for v in (1.0, 2.0)],
        ),
    ],
)
def test_what_the_careful_way_must_read(why: str, metrics: list[dict[str, Any]]) -> None:
    good = {"alias": 0, "timestamp": T0 + 5, "double_value": 1.0}
    assert columns(good) is not None and columns() is None  # (no metrics: nothing to read)
    assert columns(good, *metrics) is None, why


def test_untrusted_sessions_births_and_ambiguous_mappings_go_the_careful_way() -> None:
    good = {"alias": 1, "timestamp": T0, "double_value": 1.0}
    host = born(*DECLARED)
    sp, _ = data(host, 5, good)  # seq 5 where 2 was expected: aliases not trusted
    assert sp.aliases is None and read_columns(sp, TARGETS, *WINDOW) is None
    early = SparkplugHost()  # DATA before any BIRTH
    sp, _ = data(early, 2, good)
    assert read_columns(sp, TARGETS, *WINDOW) is None
    birth = born(*DECLARED)
    p = spb.Payload(timestamp=T0, seq=2)
    metric(p, name="A", alias=0, datatype=DOUBLE, timestamp=T0, double_value=1.0)
    topic = parse_topic("spBv1.0/g/DBIRTH/e/d")
    assert topic is not None
    assert read_columns(birth.receive(topic, p.SerializeToString()), TARGETS, *WINDOW) is None
    # two names for one (asset, metric) with different conversions: which one is meant
    # depends on the name, so each metric is read by itself
    clash = {**TARGETS, "A": ("b", "m", 1.0, 0.0)}
    assert columns(good, targets=clash) is None
    same = {**TARGETS, "A": ("b", "m", 2.0, 1.0)}
    assert columns(good, targets=same) is not None


# --- through the pipeline, against the careful way ----------------------------------------------


def snapshot(conn: Connection[Any], result: BatchResult) -> dict[str, Any]:
    def rows(sql: str) -> list[Any]:
        return sorted(conn.execute(sql).fetchall(), key=repr)

    return {
        "result": (result.stored, result.duplicates, dict(result.quarantined)),
        "telemetry": rows("SELECT asset_id, metric_id, time, value FROM telemetry"),
        "quarantine": rows("SELECT topic, device_ref, reason, detail, payload FROM quarantine"),
        "assets": rows("SELECT asset_id, last_seen_at, usage_counter, usage_at FROM asset_seen"),
        "devices": rows("SELECT id, last_seen_at, offline_at FROM devices"),
    }


def test_bulk_and_careful_ways_store_and_quarantine_alike(
    conn: Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = make_fleet(conn, tires=3)
    tire0, tire1, retired = small.tires
    fleet.retire_asset(conn, OPERATOR, small.tire_ids[retired])
    group = f"g{uuid.uuid4().hex[:6]}"
    mapping = {
        "P0": {"asset": tire0, "metric": "pressure_kpa", "scale": 6.894757},
        "T0": {"asset": tire0, "metric": "temperature_c"},
        "O0": {"asset": tire0, "metric": "odometer_km"},  # the tire's usage counter
        "P1": {"asset": tire1, "metric": "pressure_kpa", "scale": 6.894757},
        "D1": {"asset": tire1, "metric": "door_close_time_s"},  # not a tire's metric
        "PR": {"asset": retired, "metric": "pressure_kpa"},
        "PU": {"asset": "NOPE-1", "metric": "pressure_kpa"},
        "PE": {"asset": small.elevator, "metric": "door_close_time_s"},  # customer b's
    }
    profile_service.apply_profile(
        conn,
        OPERATOR,
        {
            "name": f"spb-{group}",
            "format": "sparkplug_b",
            "sparkplug": [
                {
                    "group": group,
                    "edge_node": "e",
                    "device": "d",
                    "fleetcare_device": small.device_a,
                    "metrics": mapping,
                }
            ],
        },
        source="t",
    )
    conn.commit()
    names = [*mapping, "FW"]
    alias = {name: i for i, name in enumerate(names)}
    host = born(*((n, alias[n], DOUBLE if n != "FW" else STRING) for n in names), group=group)

    def m(name: str, at: int, value: float) -> dict[str, Any]:
        return {"alias": alias[name], "timestamp": T0 + at, "double_value": value}

    batch = [
        [m("P0", 0, 100.0), m("T0", 0, 40.0), m("O0", 0, 1000.0), m("P1", 0, 101.0)],
        [m("P0", 1, 102.0), m("FW", 1, 3.0), m("O0", 5, 1500.0), m("P1", 1, 103.0)],
        [m("P0", 2, 104.0), m("T0", 2, 900.0)],  # out of bounds
        [m("P0", 3, 105.0), m("PR", 3, 1.0)],  # a retired asset
        [m("P1", 4, 106.0), m("PU", 4, 1.0)],  # an unknown asset
        [m("P1", 5, 107.0), m("PE", 5, 1.0)],  # another customer's asset
        [m("P1", 6, 108.0), m("D1", 6, 1.0)],  # a metric the tire's kind lacks
        [m("P0", 7, 109.0), m("T0", 7, 0.0)],  # a genuine zero (sent: not a null)
        [m("P0", 8, 110.0), m("T0", 8, math.nan)],  # not finite
        [m("P0", 9, 111.0), m("T0", 9, 41.0), m("T0", 9, 42.0)],  # twice: the last counts
        [m("P0", 10, 112.0), m("O0", 3, 1200.0)],  # an older odometer: the counter stays
        [m("P1", 11, 113.0), m("T0", -40 * 86_400_000, 40.0)],  # too old
        [m("P0", 0, 100.0), m("T0", 0, 40.0), m("O0", 0, 1000.0), m("P1", 0, 101.0)],  # again
    ]
    messages: list[RawMessage] = []
    for i, metrics in enumerate(batch):
        sp, body = data(host, 2 + i, *metrics, group=group)
        assert isinstance(sp, SparkplugMessage) and sp.aliases is not None
        received = NOW - timedelta(seconds=len(batch) - i)
        messages.append(RawMessage(f"spBv1.0/{group}/DDATA/e/d", body, received, None, sp))
    limits, clock = IngestLimits(topic_root="x/v1"), ManualClock(NOW)

    bulk_read = []

    def counting(*args: Any) -> Columns | None:
        got = read_columns(*args)
        bulk_read.append(got is not None)
        return got

    with conn.transaction(force_rollback=True):
        monkeypatch.setattr(pipeline, "read_columns", lambda *args: None)
        careful = snapshot(conn, store_messages(conn, messages, limits=limits, clock=clock))
    monkeypatch.setattr(pipeline, "read_columns", counting)
    with conn.transaction():
        bulk = snapshot(conn, store_messages(conn, messages, limits=limits, clock=clock))
    assert bulk == careful
    assert bulk_read.count(True) >= 4  # the good ones (and those failing only in bulk)
    stored, duplicates, quarantined = bulk["result"]
    assert (stored, duplicates) == (20, 4)  # the last message is the first again
    assert quarantined == {
        "out_of_bounds": 1,
        "retired_asset": 1,
        "unknown_asset": 2,
        "unknown_metric": 1,
        "not_finite": 1,
        "ts_too_old": 1,
    }
    by_id = {row[0]: row[1:] for row in bulk["assets"]}
    assert by_id[small.tire_ids[tire0]][1:] == (
        1500.0,
        datetime.fromtimestamp((T0 + 5) / 1000, UTC),
    )
    assert by_id[small.tire_ids[tire0]][0] == messages[-1].received_at
