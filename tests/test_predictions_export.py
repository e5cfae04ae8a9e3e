"""fleetcare predictions export: each asset's latest prediction as JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import AssetCreate
from fleetcare.db import connect
from tests.fixtures.maintenance import insert_prediction
from tests.ingest_helpers import OPERATOR

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_export_latest_prediction_per_asset(
    conn: Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    a = fleet.ensure_customer(conn, "acme", "Acme")
    b = fleet.ensure_customer(conn, "beta", "Beta")
    ids = {}
    for cust, ref in ((a, "T-2"), (a, "T-10"), (b, "T-1")):
        asset = fleet.create_asset(conn, OPERATOR, AssetCreate(customer_id=cust.id, kind="tire",
                                                                ref=ref))  # fmt: skip
        ids[ref] = asset.id
    conn.commit()
    insert_prediction(conn, ids["T-2"], time=T0, due_in_days=9)
    insert_prediction(conn, ids["T-2"], time=T0 + timedelta(hours=1), due_in_days=5)
    insert_prediction(conn, ids["T-1"], time=T0, due_in_days=None)
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    runner = CliRunner()
    got = runner.invoke(app, ["predictions", "export", "--kind", "tire", "--customer", "acme"])
    assert got.exit_code == 0, got.output
    lines = [json.loads(x) for x in got.stdout.splitlines()]
    assert len(lines) == 1  # T-10 has no prediction yet; beta's asset is not acme's
    row = lines[0]
    assert (row["external_id"], row["customer"], row["life_unit"]) == ("T-2", "acme", "km")
    assert (row["rul"], row["rul_low"], row["rul_high"]) == (1000.0, 800.0, 1200.0)
    assert row["failure_probability"] == 0.1
    assert datetime.fromisoformat(row["due_at"]) == T0 + timedelta(hours=1, days=5)
    everyone = runner.invoke(app, ["predictions", "export", "--kind", "tire", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(everyone.stdout)))
    assert [(r["customer"], r["external_id"], r["due_at"]) for r in rows] == [
        ("acme", "T-2", (T0 + timedelta(hours=1, days=5)).isoformat().replace("+00:00", "Z")),
        ("beta", "T-1", ""),
    ]
    bad = runner.invoke(app, ["predictions", "export", "--kind", "nope"])
    assert bad.exit_code == 2 and "no kind 'nope'" in bad.output
    fmt = runner.invoke(app, ["predictions", "export", "--kind", "tire", "--format", "xml"])
    assert fmt.exit_code == 2 and "--format is jsonl or csv" in fmt.output
    with connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM latest_predictions").fetchone() == (2,)
