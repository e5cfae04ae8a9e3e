"""Sparkplug B through a ``sparkplug_b`` profile: the host session (aliases, seq, rebirth,
deaths) by hand-made payloads, the pipeline's mapping, and a real edge node over a real broker:
data before birth, a sequence gap, a death."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as spb
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.services import mosquitto_installed
from ingest import profile_service
from ingest.pipeline import store_messages
from ingest.profiles import ProfileError, parse_profile
from ingest.schemas import IngestLimits, RawMessage
from ingest.sparkplug import SparkplugHost, parse_topic, rebirth_payload
from testkit.sparkplug import EdgeNode
from tests.ingest_helpers import OPERATOR, SmallFleet, make_fleet, started_ingestor

TIMEOUT = 60
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DOUBLE, INT32, INT64, STRING = 10, 3, 4, 12


def profile(group: str, device_ref: str, tire: str, other_ref: str | None = None) -> dict[str, Any]:
    """Edge node ``edge-1`` of ``group``: its device ``tpms`` maps onto a tire."""
    metrics = {
        "Pressure/psi": {"asset": tire, "metric": "pressure_kpa", "scale": 6.894757},
        "Temperature": {"asset": tire, "metric": "temperature_c"},
    }
    if other_ref is not None:
        metrics["Elevator"] = {"asset": other_ref, "metric": "pressure_kpa"}
    return {
        "name": f"spb-{group}",
        "format": "sparkplug_b",
        "sparkplug": [
            {
                "group": group,
                "edge_node": "edge-1",
                "device": "tpms",
                "fleetcare_device": device_ref,
                "metrics": metrics,
            }
        ],
    }


def payload(
    seq: int | None, ts_ms: int, *metrics: tuple[str | None, int | None, int, Any]
) -> bytes:
    p = spb.Payload(timestamp=ts_ms)
    if seq is not None:
        p.seq = seq
    for name, alias, datatype, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        if datatype:
            m.datatype = datatype
        if datatype == DOUBLE:
            m.double_value = value
        elif datatype == INT64:
            m.long_value = value
        elif datatype in (INT32, 0):  # 0: no type in DATA, the BIRTH's applies
            m.int_value = value
        elif datatype == STRING:
            m.string_value = value
    return p.SerializeToString()


# --- the host session, by hand ----------------------------------------------------------------


def test_topics() -> None:
    assert parse_topic("spBv1.0/g/NDATA/e") is not None
    t = parse_topic("spBv1.0/g/DDATA/e/d")
    assert t is not None and (t.group, t.message_type, t.edge_node, t.device) == (
        "g",
        "DDATA",
        "e",
        "d",
    )
    for bad in ("spBv1.0/g/NCMD/e", "spBv1.0/g/DDATA/e", "spBv1.0/g/NDATA/e/d", "spBv1.0//NDATA/e"):
        assert parse_topic(bad) is None, bad


class Same(dict[str, tuple[str, str, float, float]]):
    """A mapping of every metric name to itself (asset and metric), no conversion."""

    def get(self, name: str, default: object = None) -> tuple[str, str, float, float]:
        return (name, name, 1.0, 0.0)


SAME = Same()


def test_host_aliases_seq_gap_rebirth_and_death() -> None:
    sent: list[tuple[str, bytes]] = []
    host = SparkplugHost(lambda t, p: sent.append((t, p)), rebirth_interval_s=0)
    node = parse_topic("spBv1.0/g/NBIRTH/e")
    dev_birth, ddata = parse_topic("spBv1.0/g/DBIRTH/e/d"), parse_topic("spBv1.0/g/DDATA/e/d")
    ndeath = parse_topic("spBv1.0/g/NDEATH/e")
    assert node and dev_birth and ddata and ndeath
    # DATA before any BIRTH: the alias is not guessed, a rebirth is asked
    early = host.receive(ddata, payload(5, 1000, (None, 7, DOUBLE, 1.5)))
    assert early.values(SAME).unnamed == [7] and "before NBIRTH" in early.unnamed_why
    assert [t for t, _ in sent] == ["spBv1.0/g/NCMD/e"]
    command = spb.Payload.FromString(sent[0][1])
    assert [(m.name, m.boolean_value) for m in command.metrics] == [("Node Control/Rebirth", True)]
    # birth: node then device, aliases declared
    host.receive(node, payload(0, 1000, ("bdSeq", None, INT64, 3)))
    host.receive(dev_birth, payload(1, 1000, ("Pressure/psi", 7, DOUBLE, 100.0)))
    ok = host.receive(ddata, payload(2, 2000, (None, 7, DOUBLE, 101.0)))
    assert ok.values(SAME).by_time == {("Pressure/psi", 2000): {"Pressure/psi": 101.0}}
    scaled = ok.values({"Pressure/psi": ("T-1", "pressure_kpa", 2.0, 1.0), "x": ("", "", 1, 0)})
    assert scaled.by_time == {("T-1", 2000): {"pressure_kpa": 203.0}}
    assert ok.unnamed_why == ""
    # a gap (seq 4 after 2): the alias may mean something else now; named metrics still read
    gap = host.receive(ddata, payload(4, 3000, (None, 7, DOUBLE, 1.0), ("Temp", None, DOUBLE, 9.0)))
    found = gap.values(SAME)
    assert found.unnamed == [7] and list(found.by_time) == [("Temp", 3000)]
    assert "seq 4" in gap.unnamed_why
    assert len(sent) == 2 and host.seq_gaps == 1
    after = host.receive(ddata, payload(5, 3000, (None, 7, DOUBLE, 2.0)))
    assert after.values(SAME).unnamed == [7]  # untrusted until the next NBIRTH
    # the will of an older session is not this session's death
    assert not host.receive(ndeath, payload(None, 0, ("bdSeq", None, INT64, 2))).offline
    host.receive(node, payload(0, 4000, ("bdSeq", None, INT64, 4)))
    host.receive(dev_birth, payload(1, 4000, ("Pressure/psi", 7, DOUBLE, 1.0)))
    assert host.receive(ddata, payload(2, 5000, (None, 7, DOUBLE, 3.0))).values(SAME).by_time
    # seq wraps 255 → 0
    for seq in range(3, 256):
        assert host.receive(ddata, payload(seq, 5000, (None, 7, DOUBLE, 1.0))).unnamed_why == ""
    assert host.receive(ddata, payload(0, 5000, (None, 7, DOUBLE, 1.0))).unnamed_why == ""
    death = host.receive(ndeath, payload(None, 0, ("bdSeq", None, INT64, 4)))
    assert death.offline
    # signed integers come back signed; a payload that is not protobuf says so
    host.receive(node, payload(0, 1, ("bdSeq", None, INT64, 5), ("t", 1, INT32, (-5) & 0xFFFFFFFF)))
    assert host.nodes[("g", "e")].aliases[1] == ("t", INT32)
    nd = parse_topic("spBv1.0/g/NDATA/e")
    assert nd is not None
    signed = host.receive(nd, payload(1, 1, (None, 1, 0, (-5) & 0xFFFFFFFF))).values(SAME)
    assert signed.by_time == {("t", 1): {"t": -5}}
    assert "not a Sparkplug B payload" in (host.receive(nd, b"\xff\xff\xff").problem or "")
    assert spb.Payload.FromString(rebirth_payload(5)).timestamp == 5


def test_bad_sparkplug_profiles() -> None:
    good = profile("g", "dev", "T-1")
    assert parse_profile({**good, "format": "sparkplug"}, "x").format == "sparkplug_b"
    for change, says in (
        ({"sparkplug": None}, 'needs "sparkplug"'),
        ({"topic": "a/{device}"}, '"topic" does not apply'),
        ({"sparkplug": [{**good["sparkplug"][0], "group": "a/b"}]}, "sparkplug[0].group"),
        ({"sparkplug": [good["sparkplug"][0]] * 2}, "is mapped twice"),
    ):
        with pytest.raises(ProfileError, match=None) as err:
            parse_profile({**good, **change}, "spb.yaml")
        assert err.value.detail.startswith("spb.yaml: ") and says in err.value.detail, err.value


# --- the pipeline: mapping to devices, assets and metrics --------------------------------------


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn, tires=2)


def store(conn: Connection[Any], host: SparkplugHost, *msgs: tuple[str, bytes]) -> Any:
    raw = []
    for topic, body in msgs:
        parsed = parse_topic(topic)
        assert parsed is not None
        raw.append(RawMessage(topic, body, NOW, None, host.receive(parsed, body)))
    with conn.transaction():
        return store_messages(
            conn, raw, limits=IngestLimits(topic_root="x/v1"), clock=ManualClock(NOW)
        )


def new_session_group(
    conn: Connection[Any], small: SmallFleet, other_ref: str | None = None
) -> tuple[SparkplugHost, str, int]:
    """A new group mapped by :func:`profile` onto ``small``'s first tire (and ``other_ref``),
    a fresh host, the group's topic base and a time (ms) five minutes ago."""
    group = f"g{uuid.uuid4().hex[:6]}"
    profile_service.apply_profile(
        conn, OPERATOR, profile(group, small.device_a, small.tires[0], other_ref), source="t"
    )
    conn.commit()
    return SparkplugHost(), f"spBv1.0/{group}", int((NOW - timedelta(minutes=5)).timestamp() * 1000)


def test_pipeline_maps_names_quarantines_the_unsure_and_marks_deaths(
    conn: Connection[Any], small: SmallFleet
) -> None:
    host, base, t0 = new_session_group(conn, small, small.elevator)
    result = store(
        conn,
        host,
        (f"{base}/DDATA/edge-1/tpms", payload(3, t0, (None, 1, DOUBLE, 30.0))),  # before birth
        (f"{base}/NBIRTH/edge-1", payload(0, t0, ("bdSeq", None, INT64, 0))),
        (
            f"{base}/DBIRTH/edge-1/tpms",
            payload(
                1,
                t0,
                ("Pressure/psi", 1, DOUBLE, 100.0),
                ("Temperature", 2, DOUBLE, 40.0),
                ("Elevator", 3, DOUBLE, 5.0),  # customer b's asset: not device a's to name
                ("Firmware", 4, STRING, "1.2"),  # not mapped: not read
            ),
        ),
        (f"{base}/DDATA/edge-1/tpms", payload(2, t0 + 1000, (None, 1, DOUBLE, 110.0))),
        (f"{base}/DDATA/edge-1/other", payload(3, t0, ("Temperature", None, DOUBLE, 1.0))),
        (f"{base}/DDATA/edge-1/tpms", b"not protobuf"),
    )
    rows = conn.execute(
        "SELECT a.ref, m.name, t.time, round(t.value::numeric, 2)::float8 FROM telemetry t"
        " JOIN assets a ON a.id = t.asset_id JOIN metrics m ON m.id = t.metric_id"
        " ORDER BY t.time, m.name"
    ).fetchall()
    tire = small.tires[0]
    at = datetime.fromtimestamp(t0 / 1000, UTC)
    assert rows == [
        (tire, "pressure_kpa", at, pytest.approx(689.48, abs=0.01)),
        (tire, "temperature_c", at, 40),
        (tire, "pressure_kpa", at + timedelta(seconds=1), pytest.approx(758.42, abs=0.01)),
    ]
    reasons = sorted(
        r[0] for r in conn.execute("SELECT reason FROM quarantine ORDER BY id").fetchall()
    )
    assert reasons == ["bad_protobuf", "no_birth", "unknown_asset", "unknown_device"]
    assert result.stored == 3
    # a device death marks the mapped device offline; its next message clears it
    store(
        conn,
        host,
        (
            f"{base}/DDEATH/edge-1/tpms",
            payload(
                3,
                t0,
            ),
        ),
    )
    offline = conn.execute("SELECT offline_at FROM devices WHERE ref = %s", (small.device_a,))
    assert offline.fetchone() == (NOW,)
    store(
        conn, host, (f"{base}/DBIRTH/edge-1/tpms", payload(4, t0, ("Temperature", 2, DOUBLE, 41.0)))
    )
    offline = conn.execute("SELECT offline_at FROM devices WHERE ref = %s", (small.device_a,))
    assert offline.fetchone() == (None,)


def test_metrics_a_trusted_session_cannot_name_are_quarantined_saying_why(
    conn: Connection[Any], small: SmallFleet
) -> None:
    """In a session born in order, an alias no BIRTH declared and a metric with neither name
    nor alias: each quarantined with what is wrong (the detail read "alias 9 unknown ();
    rebirth asked", though no rebirth was asked), the good metric beside them stored."""
    host, base, t0 = new_session_group(conn, small)
    result = store(
        conn,
        host,
        (f"{base}/NBIRTH/edge-1", payload(0, t0, ("bdSeq", None, INT64, 0))),
        (f"{base}/DBIRTH/edge-1/tpms", payload(1, t0, ("Temperature", 2, DOUBLE, 40.0))),
        (
            f"{base}/DDATA/edge-1/tpms",
            payload(
                2,
                t0 + 1000,
                (None, 9, DOUBLE, 1.0),
                (None, None, DOUBLE, 2.0),
                (None, 2, DOUBLE, 41.0),
            ),
        ),
    )
    assert result.stored == 2  # the birth's value and the good one
    details = conn.execute("SELECT reason, detail FROM quarantine ORDER BY id").fetchall()
    assert details == [
        (
            "no_birth",
            "DDATA/edge-1/tpms: alias 9 is not declared by the node's BIRTHs of this session",
        ),
        ("no_birth", "DDATA/edge-1/tpms: a metric with neither name nor alias"),
    ]
    assert host.rebirths_requested == 0


def test_a_node_mapped_twice_is_refused(conn: Connection[Any], small: SmallFleet) -> None:
    doc = profile("gdup", small.device_a, small.tires[0])
    profile_service.apply_profile(conn, OPERATOR, doc, source="t")
    with pytest.raises(ProfileError, match="is profile spb-gdup's"):
        profile_service.apply_profile(conn, OPERATOR, {**doc, "name": "another"}, source="t")


# --- a real edge node over the broker ---------------------------------------------------------


def mapped_group(conn: Connection[Any]) -> tuple[SmallFleet, str]:
    """A small fleet and a new group whose edge node ``edge-1`` maps onto its first tire."""
    small = make_fleet(conn, tires=1)
    group = f"g{uuid.uuid4().hex[:8]}"
    profile_service.apply_profile(
        conn, OPERATOR, profile(group, small.device_a, small.tires[0]), source="t"
    )
    conn.commit()
    return small, group


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def worker(db_url: str, mqtt_url: str, topic_root: str, small: SmallFleet) -> Iterator[Any]:
    group = f"g{uuid.uuid4().hex[:8]}"
    with connect(db_url) as c:
        profile_service.apply_profile(
            c, OPERATOR, profile(group, small.device_a, small.tires[0]), source="t"
        )
        c.commit()
    w = started_ingestor(mqtt_url, db_url, topic_root, TIMEOUT)
    yield w, group
    w.stop()


def count(db_url: str, sql: str, *args: Any) -> Any:
    with connect(db_url) as c:
        return c.execute(sql, args).fetchone()[0]  # type: ignore[index]


@pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")
def test_edge_node_over_mqtt_rebirth_seq_gap_and_death(
    worker: Any, db_url: str, mqtt_url: str, small: SmallFleet
) -> None:
    ingest, group = worker
    node = EdgeNode(mqtt_url, group, "edge-1", "tpms", ["Pressure/psi", "Temperature"])
    try:
        now_ms = int(time.time() * 1000)
        # DDATA before any birth: the host asks for a rebirth and keeps the message's raw
        # bytes in quarantine; the node is born again and its data is stored
        node.seq = 7
        node.data({"Pressure/psi": 100.0}, now_ms - 3000)
        assert node.rebirth_asked.wait(TIMEOUT), "no rebirth asked for DATA before BIRTH"
        wait_until(
            lambda: count(db_url, "SELECT count(*) FROM quarantine WHERE reason = 'no_birth'") == 1,
            "the early DATA in quarantine",
        )
        node.birth({"Pressure/psi": 101.0, "Temperature": 40.0}, now_ms - 2000)
        node.data({"Pressure/psi": 102.0, "Temperature": 41.0}, now_ms - 1000)
        wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") == 4, "4 readings")
        # a gap in seq: nothing mis-mapped, a rebirth asked, then data flows again
        node.rebirth_asked.clear()
        node.data({"Pressure/psi": 103.0}, now_ms - 500, skip_seq=2)
        assert node.rebirth_asked.wait(TIMEOUT), "no rebirth asked after a seq gap"
        wait_until(
            lambda: count(db_url, "SELECT count(*) FROM quarantine WHERE reason = 'no_birth'") == 2,
            "the gapped DATA in quarantine",
        )
        node.birth({"Pressure/psi": 104.0, "Temperature": 42.0}, now_ms - 400)
        node.data({"Pressure/psi": 105.0}, now_ms - 300)
        wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") == 7, "7 readings")
        kpa = count(
            db_url,
            "SELECT array_agg(round(value::numeric / 6.894757, 1) ORDER BY time) FROM telemetry"
            " t JOIN metrics m ON m.id = t.metric_id WHERE m.name = 'pressure_kpa'",
        )
        assert [float(v) for v in kpa] == [101.0, 102.0, 104.0, 105.0]  # never 103 mis-mapped
        assert ingest.sparkplug.seq_gaps == 1
        # the node dies (its will, NDEATH with its bdSeq): the device is offline
        node.close(clean=False)
        wait_until(
            lambda: (
                count(db_url, "SELECT offline_at FROM devices WHERE ref = %s", small.device_a)
                is not None
            ),
            "the device offline after NDEATH",
        )
    finally:
        node.close()


def test_the_alias_fast_path_reads_zeros_nulls_other_types_and_alias_zero() -> None:
    """DATA by alias is read through one lookup per metric; a zero, a null, a value of another
    type than the BIRTH's, alias 0, a name without a declared alias and a metric with neither
    go the careful way and mean what they say."""
    host = SparkplugHost()
    node, dev = parse_topic("spBv1.0/g/NBIRTH/e"), parse_topic("spBv1.0/g/DBIRTH/e/d")
    ddata = parse_topic("spBv1.0/g/DDATA/e/d")
    assert node and dev and ddata
    host.receive(node, payload(0, 1, ("bdSeq", None, INT64, 1)))
    host.receive(
        dev,
        payload(1, 1, ("A", 0, DOUBLE, 1.0), ("B", 1, DOUBLE, 1.0), ("C", 2, INT64, 1)),
    )
    targets = {
        "A": ("a", "m", 1.0, 0.0),
        "B": ("b", "m", 2.0, 1.0),
        "C": ("c", "m", 1.0, 0.0),
        "N": ("n", "m", 1.0, 0.0),
    }
    p = spb.Payload.FromString(payload(2, 10, (None, 0, 0, 0)))
    p.metrics[0].double_value = 5.0  # alias 0, declared: read by the fast path
    for alias, value in ((1, 0.0), (1, 3.0)):  # a genuine zero, then scaled
        m = p.metrics.add()
        m.alias, m.double_value, m.timestamp = alias, value, 20 if value else 30
    m = p.metrics.add()
    m.alias, m.is_null = 1, True  # null: no reading
    m = p.metrics.add()
    m.alias, m.long_value, m.timestamp = 1, 7, 40  # B sent as an integer this time
    m = p.metrics.add()
    m.alias, m.long_value, m.timestamp = 2, (-2) & ((1 << 64) - 1), 50  # C: INT64, signed
    m = p.metrics.add()
    m.name, m.datatype, m.double_value, m.timestamp = "N", DOUBLE, 9.0, 60  # by name
    m = p.metrics.add()
    m.double_value = 1.0  # neither name nor alias
    m = p.metrics.add()
    m.alias, m.double_value = 99, 1.0  # an alias no BIRTH declared
    found = host.receive(ddata, p.SerializeToString()).values(targets)
    assert found.by_time == {
        ("a", 10): {"m": 5.0},
        ("b", 30): {"m": 1.0},  # 0.0 * 2 + 1
        ("b", 20): {"m": 7.0},
        ("b", 40): {"m": 15},
        ("c", 50): {"m": -2},
        ("n", 60): {"m": 9.0},
    }
    assert found.unnamed == [None, 99] and found.untimed == []
