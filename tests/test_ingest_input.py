"""Telemetry meets the API's input rules where it reaches the database: a NUL character or an
out-of-range number anywhere in a message is quarantined, never a database error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits
from tests.ingest_helpers import SmallFleet, make_fleet, raw

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
OK_TS = "2026-11-26T09:59:00Z"


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"asset": "TRK-0-FL\\u0000", "ts": "2026-11-26T09:59:00Z", "metrics": {"speed_kmh": 1}}',
        b'{"asset": "TRK-0-FL", "ts": "2026-11-26T09:59:00Z", "metrics": {"speed\\u0000": 1}}',
        b'{"asset": "TRK-0-FL", "ts": "2026-11-26T09:59:00\\u0000Z", "metrics": {"speed_kmh": 1}}',
        b'{"asset": "TRK-0-FL", "ts": 92233720368547758070, "metrics": {"speed_kmh": 1}}',
        b'{"asset": "TRK-0-FL", "ts": "2026-11-26T09:59:00Z", "metrics": {"speed_kmh": 1e400}}',
        b'{"asset": "TRK-0-FL", "ts": "2026-11-26T09:59:00Z", '
        b'"metrics": {"speed_kmh": 123456789012345678901234567890}}',
        b'{"asset": "TRK-0-FL", "ts": "2026-11-26T09:59:00Z", "metrics": {"speed_kmh": false}}',
        b'{"readings": [{"asset": "\\u0000", "ts": 1, "metrics": {}}], "x\\u0000": 1}',
    ],
)
def test_nul_and_out_of_range_numbers_are_quarantined_not_errors(
    conn: Connection[Any], small: SmallFleet, topic_root: str, payload: bytes
) -> None:
    limits = IngestLimits(topic_root=topic_root)
    message = raw(f"{topic_root}/{small.device_a}/telemetry", payload)
    result = store_messages(conn, [message], limits=limits, clock=ManualClock(NOW))
    assert result.stored == 0
    assert result.quarantined, result
    reasons = conn.execute("SELECT reason, detail FROM quarantine").fetchall()
    assert reasons and all("\x00" not in (detail or "") for _, detail in reasons)
