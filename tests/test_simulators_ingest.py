"""The simulated fleet through the product: registration, ingest's validation of its
telemetry and of its malformed payloads, history for training, and the ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleet.service import issue_api_key
from fleetcare.clock import ManualClock
from fleetcare.errors import Conflict, Invalid
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits, QuarantineReason, RawMessage
from kinds.loader import builtin_kinds
from simulators import service
from simulators.api_client import ProductAPI
from simulators.devices import QUARANTINE_REASON, Malformed, malformed_payload, telemetry_topic
from simulators.failures import FailureReporter
from simulators.fleet import Fleet, ms_of
from simulators.history import write_history
from simulators.schemas import FleetSpec

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def quarantine_reasons(conn: Connection[Any]) -> list[tuple[str, str | None]]:
    return conn.execute("SELECT reason, device_ref FROM quarantine ORDER BY id").fetchall()


def test_registration_goes_through_the_product_and_is_idempotent(
    conn: Connection[Any], tmp_path: Path
) -> None:
    fleet = Fleet(FleetSpec(customer="sim-reg", tires=6, elevators=3, engines=2, seed=1))
    with conn.transaction():
        first = service.register_fleet(conn, fleet, {})
    service.save_secrets(tmp_path, first.secrets)
    assert set(first.secrets) == {d.ref for d in fleet.devices}
    assert len(first.asset_ids) == 6 + 3 + 2
    assert (tmp_path / service.SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    with conn.transaction():
        again = service.register_fleet(conn, fleet, service.load_secrets(tmp_path))
    assert again == first
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM assets), (SELECT count(*) FROM devices),"
        " (SELECT count(*) FROM sites), (SELECT count(*) FROM customers)"
    ).fetchone()
    assert counts == (11, 3, 3, 1)
    with pytest.raises(Conflict, match="secret is not in"), conn.transaction():
        service.register_fleet(conn, fleet, {})
    # retired through the API (or the dashboard): said, with the way out (up's demo stopped
    # with "customer 'acme-logistics' is retired" and nothing more)
    secrets = service.load_secrets(tmp_path)
    conn.execute("UPDATE assets SET retired_at = now() WHERE ref = %s", (fleet.assets[0].ref,))
    with pytest.raises(Invalid, match="is retired: its fleet cannot be simulated again on this"):
        service.register_fleet(conn, fleet, secrets)
    conn.execute("UPDATE customers SET retired_at = now() WHERE slug = 'sim-reg'")
    with pytest.raises(Invalid, match=r"customer 'sim-reg' is retired: .* a fresh database"):
        service.register_fleet(conn, fleet, secrets)


def _fleet_messages(fleet: Fleet, topic_root: str, ticks: int) -> list[RawMessage]:
    now = NOW
    fleet.start(now)
    messages = []
    for _ in range(ticks):
        now += timedelta(seconds=1)
        fleet.advance_to(now)
        payloads, _ = fleet.payloads(now.timestamp(), 1.0)
        messages += [RawMessage(telemetry_topic(topic_root, ref), p, now) for ref, p in payloads]
    return messages


def test_fleet_telemetry_passes_ingest_validation(conn: Connection[Any], topic_root: str) -> None:
    # faults on (stuck, spikes, dropouts stay within bounds), skewed clocks, RFC 3339 and ms
    spec = FleetSpec(customer="sim-valid", tires=12, elevators=6, engines=4, seed=5, speedup=30_000)
    fleet = Fleet(spec)
    with conn.transaction():
        service.register_fleet(conn, fleet, {})
    messages = _fleet_messages(fleet, topic_root, 30)
    styles = {g.ts_style for g in fleet.gateways.values()}
    with conn.transaction():
        result = store_messages(
            conn,
            messages,
            limits=IngestLimits(topic_root=topic_root),
            clock=ManualClock(NOW + timedelta(seconds=31)),
        )
    assert styles == {"epoch_ms", "rfc3339"}
    assert result.quarantined_total == 0, result.quarantined
    assert result.stored > 1000
    assert quarantine_reasons(conn) == []


def test_malformed_payloads_land_in_quarantine_with_the_expected_reasons(
    conn: Connection[Any], topic_root: str
) -> None:
    fleet = Fleet(FleetSpec(customer="sim-bad", tires=6, elevators=3, engines=2, seed=2))
    with conn.transaction():
        service.register_fleet(conn, fleet, {})
    messages = []
    for kind in Malformed:
        device = fleet.devices[list(Malformed).index(kind) % len(fleet.devices)]
        asset = next(a for a in fleet.assets if a.ref == device.assets[0])
        payload = malformed_payload(kind, asset.ref, builtin_kinds()[asset.kind], ms_of(NOW))
        messages.append(RawMessage(telemetry_topic(topic_root, device.ref), payload, NOW))
    with conn.transaction():
        result = store_messages(
            conn, messages, limits=IngestLimits(topic_root=topic_root), clock=ManualClock(NOW)
        )
    assert result.stored == 0
    reasons = sorted(r for r, _ in quarantine_reasons(conn))
    assert reasons == sorted(QUARANTINE_REASON[k] for k in Malformed)
    assert dict(result.quarantined) == {reason: 1 for reason in QUARANTINE_REASON.values()}
    assert set(QUARANTINE_REASON.values()) <= {r.value for r in QuarantineReason}


def test_history_writes_complete_lives_through_ingest(
    conn: Connection[Any], topic_root: str, tmp_path: Path
) -> None:
    spec = FleetSpec(customer="sim-hist", tires=6, elevators=3, engines=2, seed=4, batch_max=1000)
    summary = write_history(conn, spec, 3, topic_root, tmp_path, now=NOW)
    assert not summary.quarantined, summary.quarantined
    lives = conn.execute(
        "SELECT a.kind, l.component, count(*), count(*) FILTER (WHERE l.end_reason = 'failure'),"
        " max(l.ended_at), min(l.started_at)"
        " FROM asset_lives l JOIN assets a ON a.id = l.asset_id GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    by = {(k, c): (n, failures, last, first) for k, c, n, failures, last, first in lives}
    # 3 lifetimes asked: whole groups are simulated (6 tires, 3 elevators, 2 engines)
    assert by[("tire", "tire")][0] >= 6
    assert by[("elevator", "door_operator")][0] >= 3
    assert by[("elevator", "brake")][0] >= 3
    assert by[("engine", "hpc_module")][0] >= 2
    for _n, failures, last, first in by.values():
        assert failures >= 1
        assert first < last <= NOW
        # whole weeks before now: simulated days and weeks follow the calendar
        assert (NOW - first) % timedelta(days=7) == timedelta(0)
    assert all(ref.startswith("H-") for (ref,) in conn.execute("SELECT ref FROM assets").fetchall())
    # the telemetry went through ingest: stored rows, usage counters moved
    stored = conn.execute("SELECT count(*), min(time), max(time) FROM telemetry").fetchone()
    assert stored is not None and stored[0] == summary.stored > 10_000
    assert stored[1] < NOW - timedelta(days=30) and stored[2] <= NOW
    assert conn.execute(
        "SELECT count(*) FROM assets a LEFT JOIN asset_seen s ON s.asset_id = a.id"
        " WHERE s.usage_counter IS NULL"
    ).fetchone() == (0,)
    # ground truth: exact remaining life of lives that ended in failure, from life length
    truth = conn.execute(
        "SELECT g.usage, g.rul_actual, l.usage_at_end - l.usage_at_start"
        " FROM sim_ground_truth g JOIN sim_lives l ON l.asset_id = g.asset_id"
        " AND l.component = g.component AND l.started_at = g.life_started_at"
        " WHERE l.end_reason = 'failure'"
    ).fetchall()
    assert len(truth) > 100
    for usage, rul_actual, length in truth:
        assert rul_actual == pytest.approx(max(length - usage, 0.0))
    modes = {m for (m,) in conn.execute("SELECT DISTINCT failure_mode FROM sim_lives").fetchall()}
    assert {"egt_margin_exhausted", "tread_worn"} <= modes
    # history is written once per customer: a second run is refused, not duplicated
    with pytest.raises(Conflict, match="already has tire history"):
        write_history(conn, spec, 3, topic_root, tmp_path, now=NOW + timedelta(days=1))


def test_models_never_read_the_ground_truth() -> None:
    """Features come from telemetry only: no wear-model code names the simulators' tables."""
    root = Path(__file__).resolve().parents[1] / "models"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "sim_ground_truth" not in text and "sim_lives" not in text, path


def test_a_live_failure_is_reported_to_the_product_and_fixes_the_truth(
    conn: Connection[Any], client: TestClient
) -> None:
    spec = FleetSpec(customer="sim-fail", tires=6, elevators=0, engines=0, repair_after_h=None)
    fleet = Fleet(spec)
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday morning: the truck drives
    fleet.start(start)
    with conn.transaction():
        registration = service.register_fleet(conn, fleet, {})
        service.record_truth(conn, fleet.truth(), registration.asset_ids)
        key = issue_api_key(conn, role="technician", customer_id=registration.customer_id)
    reporter = FailureReporter(ProductAPI(str(client.base_url), key.key, client=client))
    kf, index = fleet.locate("TRK-001-RLO")
    kf.population.tread[index] = 1.61  # type: ignore[attr-defined]
    [life] = fleet.advance_to(start + timedelta(seconds=60)).life_ends
    assert (life.asset_ref, life.end_reason, life.failure_mode) == (
        "TRK-001-RLO", "failure", "tread_worn",
    )  # fmt: skip
    client.app.state.clock = ManualClock(life.ended_at)  # type: ignore[attr-defined]
    with conn.transaction():
        service.record_life_end(conn, life, registration.asset_ids, "live", failures=reporter)
    assert reporter.flush() == 1 and not reporter.pending
    asset_id = registration.asset_ids["TRK-001-RLO"]
    reports = conn.execute(
        "SELECT missed, failed_at FROM failure_reports WHERE asset_id = %s", (asset_id,)
    ).fetchall()
    lives = conn.execute(
        "SELECT source, end_reason FROM asset_lives WHERE asset_id = %s", (asset_id,)
    ).fetchall()
    truth = conn.execute(
        "SELECT usage, rul_actual FROM sim_ground_truth WHERE asset_id = %s", (asset_id,)
    ).fetchall()
    assert reports == [(True, life.ended_at)]  # no order was open: a missed prediction
    assert lives == [("failure_report", "failure")]
    [(usage, rul_actual)] = truth
    assert rul_actual == pytest.approx(life.usage_at_end - usage)
