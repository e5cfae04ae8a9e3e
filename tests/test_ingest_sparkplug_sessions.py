"""Sparkplug B sessions outlive an ingestor: the BIRTHs' alias tables are stored with the batch,
a restarted (or second) ingestor resumes them and names DATA without asking for a rebirth;
an NDEATH ends the stored session, and a seq gap still asks for a rebirth."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.services import mosquitto_installed
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits, RawMessage
from ingest.sparkplug import SparkplugHost, SparkplugTopic, parse_topic
from ingest.sparkplug_sessions import StoredSessions
from testkit.sparkplug import EdgeNode
from tests.ingest_helpers import started_ingestor
from tests.test_ingest_sparkplug import DOUBLE, INT64, SAME, mapped_group, payload, wait_until
from tests.test_ingest_sparkplug_state import StateWatcher

TIMEOUT = 60
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]


def pt(topic: str) -> SparkplugTopic:
    parsed = parse_topic(topic)
    assert parsed is not None
    return parsed


def store(conn: Connection[Any], host: SparkplugHost, *msgs: tuple[str, bytes]) -> list[Any]:
    """Read messages with ``host`` (in order) and store them in one committed batch."""
    raw = []
    for topic, body in msgs:
        parsed = parse_topic(topic)
        assert parsed is not None
        raw.append(RawMessage(topic, body, NOW, None, host.receive(parsed, body)))
    with conn.transaction():
        store_messages(conn, raw, limits=IngestLimits(topic_root="x/v1"), clock=ManualClock(NOW))
    conn.commit()
    return [m.sparkplug for m in raw]


def test_a_second_host_resumes_the_stored_session_and_a_death_ends_it(
    conn: Connection[Any], db_url: str
) -> None:
    base, t0 = "spBv1.0/g", 1_000
    nbirth, dbirth = f"{base}/NBIRTH/e", f"{base}/DBIRTH/e/d"
    ddata, ndeath = f"{base}/DDATA/e/d", f"{base}/NDEATH/e"
    first = SparkplugHost()
    store(
        conn,
        first,
        (nbirth, payload(0, t0, ("bdSeq", None, INT64, 7), ("Node/T", 1, DOUBLE, 1.0))),
        (dbirth, payload(1, t0, ("Pressure/psi", 10, DOUBLE, 100.0))),
    )
    rows = conn.execute("SELECT bd_seq, born_ms, aliases, types, devices FROM sparkplug_sessions")
    assert rows.fetchall() == [
        (
            7,
            t0,
            {"1": ["Node/T", DOUBLE], "10": ["Pressure/psi", DOUBLE]},
            {"": {"bdSeq": INT64, "Node/T": DOUBLE}, "d": {"Pressure/psi": DOUBLE}},
            ["d"],
        )
    ]
    # another process: no BIRTH seen, the stored session is resumed at the message's seq
    sent: list[str] = []
    second = SparkplugHost(
        lambda t, _p: sent.append(t), rebirth_interval_s=0, resume=StoredSessions(db_url, [])
    )
    got = second.receive(pt(ddata), payload(2, 2_000, (None, 10, DOUBLE, 101.0)))
    assert got.values(SAME).by_time == {("Pressure/psi", 2_000): {"Pressure/psi": 101.0}}
    assert got.unnamed_why == "" and sent == [] and second.sessions_resumed == 1
    # in sequence from there on; a gap still asks for a rebirth (a BIRTH may have been missed)
    assert second.receive(pt(ddata), payload(3, 2_001, (None, 10, DOUBLE, 1.0))).unnamed_why == ""
    gap = second.receive(pt(ddata), payload(9, 2_002, (None, 10, DOUBLE, 1.0)))
    assert gap.values(SAME).unnamed == [10] and sent == ["spBv1.0/g/NCMD/e"]
    # a death ends the stored session: a third process asks for a rebirth
    store(conn, first, (ndeath, payload(None, 0, ("bdSeq", None, INT64, 7))))
    assert conn.execute("SELECT count(*) FROM sparkplug_sessions").fetchone() == (0,)
    third = SparkplugHost(
        lambda t, _p: sent.append(t), rebirth_interval_s=0, resume=StoredSessions(db_url, [])
    )
    late = third.receive(pt(ddata), payload(4, 3_000, (None, 10, DOUBLE, 1.0)))
    assert late.values(SAME).unnamed == [10] and len(sent) == 2 and third.sessions_resumed == 0


def test_a_birth_naming_a_metric_with_a_nul_character_is_stored_and_resumed(
    conn: Connection[Any], db_url: str
) -> None:
    """A metric name holding NUL (valid UTF-8, so valid protobuf) made storing the session
    fail (PostgreSQL's jsonb refuses \\u0000): the batch was retried message by message and
    the BIRTH quarantined as internal_error. The name is kept with U+FFFD for NUL (no profile
    can map a name with NUL), the rest of the session as it came."""
    base, t0 = "spBv1.0/g", 1_000
    first = SparkplugHost()
    store(
        conn,
        first,
        (f"{base}/NBIRTH/e", payload(0, t0, ("bdSeq", None, INT64, 7), ("A\x00B", 1, DOUBLE, 1.0))),
        (f"{base}/DBIRTH/e/d", payload(1, t0, ("Pressure/psi", 10, DOUBLE, 100.0))),
    )
    internal = "SELECT count(*) FROM quarantine WHERE reason = 'internal_error'"
    assert conn.execute(internal).fetchone() == (0,)
    row = conn.execute("SELECT aliases, types FROM sparkplug_sessions").fetchone()
    assert row is not None
    aliases, types = row
    assert aliases == {"1": ["A\ufffdB", DOUBLE], "10": ["Pressure/psi", DOUBLE]}
    assert types[""] == {"bdSeq": INT64, "A\ufffdB": DOUBLE}
    second = SparkplugHost(rebirth_interval_s=0, resume=StoredSessions(db_url, []))
    got = second.receive(pt(f"{base}/DDATA/e/d"), payload(2, 2_000, (None, 10, DOUBLE, 101.0)))
    assert got.values(SAME).by_time == {("Pressure/psi", 2_000): {"Pressure/psi": 101.0}}


def test_births_of_one_session_merge_in_any_order_and_an_older_session_changes_nothing(
    conn: Connection[Any], db_url: str
) -> None:
    base = "spBv1.0/g"
    a, b = SparkplugHost(), SparkplugHost()
    nb = (f"{base}/NBIRTH/e", payload(0, 5_000, ("bdSeq", None, INT64, 1)))
    d1 = (f"{base}/DBIRTH/e/d1", payload(1, 5_000, ("P1", 1, DOUBLE, 1.0)))
    d2 = (f"{base}/DBIRTH/e/d2", payload(2, 5_000, ("P2", 2, DOUBLE, 1.0)))
    # ingestor a commits the node's births up to d2; ingestor b, reading the same messages,
    # commits its (older) snapshot after d1 later: nothing is lost
    seen_a = [a.receive(pt(t), p) for t, p in (nb, d1, d2)]
    seen_b = [b.receive(pt(t), p) for t, p in (nb, d1)]
    for sp in (seen_a[-1], seen_b[-1]):
        with conn.transaction():
            store_messages(
                conn,
                [RawMessage("t", b"", NOW, None, sp)],
                limits=IngestLimits(topic_root="x/v1"),
                clock=ManualClock(NOW),
            )
    row = conn.execute("SELECT aliases, devices FROM sparkplug_sessions").fetchone()
    assert row == ({"1": ["P1", DOUBLE], "2": ["P2", DOUBLE]}, ["d1", "d2"])
    # an older session's birth arriving late changes nothing
    old = SparkplugHost()
    sp = old.receive(
        pt(f"{base}/NBIRTH/e"),
        payload(0, 4_000, ("bdSeq", None, INT64, 0), ("X", 1, DOUBLE, 0.0)),
    )
    with conn.transaction():
        store_messages(
            conn,
            [RawMessage("t", b"", NOW, None, sp)],
            limits=IngestLimits(topic_root="x/v1"),
            clock=ManualClock(NOW),
        )
    assert conn.execute("SELECT bd_seq, born_ms FROM sparkplug_sessions").fetchone() == (1, 5_000)
    # the database away: the host asks for a rebirth as before, it does not fail
    away = SparkplugHost(resume=StoredSessions("postgresql://nobody@127.0.0.1:1/x", []))
    msg = away.receive(pt(f"{base}/DDATA/e/d1"), payload(3, 1, (None, 1, DOUBLE, 1.0)))
    assert msg.values(SAME).unnamed == [1] and away.sessions_resumed == 0


def count(db_url: str, sql: str) -> Any:
    with connect(db_url) as c:
        return c.execute(sql).fetchone()[0]  # type: ignore[index]


@pytest.mark.skipif(not mosquitto_installed(), reason="needs mosquitto")
def test_an_ingestor_killed_after_birth_and_another_started_names_data_without_rebirth(
    conn: Connection[Any], db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    _small, group = mapped_group(conn)
    host_id = f"fc-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FLEETCARE_DATABASE_URL": db_url,
        "FLEETCARE_MQTT_URL": mqtt_url,
        "FLEETCARE_TOPIC_ROOT": topic_root,
        "FLEETCARE_INGEST_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}",
        "FLEETCARE_SPARKPLUG_HOST_ID": host_id,
    }
    watcher = StateWatcher(mqtt_url, host_id)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest", "--batch-wait-ms", "50"],
            env=env,
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
    node = EdgeNode(mqtt_url, group, "edge-1", "tpms", ["Pressure/psi", "Temperature"])
    second = None
    try:
        try:
            watcher.until(True)  # subscribed: its STATE comes after its subscriptions
        except queue.Empty:
            raise AssertionError(log.read_text()[-2000:]) from None
        now_ms = int(time.time() * 1000)
        node.birth({"Pressure/psi": 100.0, "Temperature": 40.0}, now_ms - 3000)
        wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") == 2, "the births")
        assert count(db_url, "SELECT count(*) FROM sparkplug_sessions") == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
        second = started_ingestor(mqtt_url, db_url, topic_root, TIMEOUT)
        node.data({"Pressure/psi": 101.0, "Temperature": 41.0}, now_ms - 2000)
        wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") == 4, "the DATA")
        assert second.sparkplug.sessions_resumed == 1
        assert node.rebirths == 0 and second.sparkplug.rebirths_requested == 0
        assert count(db_url, "SELECT count(*) FROM quarantine") == 0
        psi = count(
            db_url,
            "SELECT round(value::numeric / 6.894757, 1) FROM telemetry t JOIN metrics m"
            " ON m.id = t.metric_id WHERE m.name = 'pressure_kpa' ORDER BY time DESC LIMIT 1",
        )
        assert float(psi) == 101.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        node.close()
        watcher.close()
        if second is not None:
            second.stop()
