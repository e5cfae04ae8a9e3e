"""Drift and retraining: the live fleet against the training data (PSI per signal) raises
model.drift_detected; a challenger replaces the champion only when better on the same
held-out lifetimes, and every decision is recorded with its figures."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from typer.testing import CliRunner

from cli.main import app
from fleet import service as fleet
from fleetcare.clock import ManualClock
from maintenance.modelwatch.service import WatchSettings, check_kind, retrain_trigger
from models import drift
from models import repository as repo
from models.retraining import retrain
from tests.fixtures.maintenance import event_types
from tests.fixtures.wear import (
    FAST_FEATURES,
    FAST_RISK,
    FAST_RUL,
    POOR_RUL,
    START,
    make_fleet,
    train_fast,
)

Conn = Connection[Any]


def test_psi_is_zero_on_the_training_data_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3000, 150, 5000)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, drift.BINS + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, values, side="right"), minlength=drift.BINS)
    reference = {"edges": edges.tolist(), "shares": (shares / values.size).tolist()}
    assert drift.psi(values, reference) == pytest.approx(0.0, abs=1e-12)
    assert drift.psi(rng.normal(3000, 150, 2000), reference) < 0.05
    assert drift.psi(rng.normal(4200, 150, 2000), reference) > 1.0


def _append(conn: Conn, tires: Any, hours: int, load_kg: float, seed: int) -> Any:
    """``hours`` more hourly readings on every live tire, all metrics, with this load; the
    rest as in the training lives (testkit.synthetic), at wear spread over the whole life."""
    rng = np.random.default_rng(seed)
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    last = conn.execute(
        "SELECT asset_id, max(value) FROM telemetry WHERE metric_id = %s GROUP BY 1",
        (ids["odometer_km"],),
    ).fetchall()
    odometer = {int(a): float(v) for a, v in last}
    found = conn.execute("SELECT max(time) FROM telemetry").fetchone()
    assert found is not None
    end = found[0]
    with conn.cursor() as cur:
        with cur.copy("COPY telemetry (time, asset_id, metric_id, value) FROM STDIN") as copy:
            for a in tires.asset_ids:
                for h in range(1, hours + 1):
                    t = end + timedelta(hours=h)
                    wear = rng.uniform(0, 1)
                    values = {
                        "odometer_km": odometer[a] + 400.0 * h,
                        "tread_depth_mm": 16.0 - 14.4 * wear**1.2 + rng.normal(0, 0.15),
                        "pressure_kpa": 820.0 - 60.0 * wear + rng.normal(0, 4.0),
                        "temperature_c": 45.0 + 25.0 * wear**2 + rng.normal(0, 1.5),
                        "load_kg": load_kg + rng.normal(0, 150),
                        "speed_kmh": 80 + rng.normal(0, 5),
                    }
                    for name, v in values.items():
                        copy.write_row((t, a, ids[name], float(v)))
        cur.execute(
            "INSERT INTO asset_seen (asset_id, last_seen_at) SELECT unnest(%s::bigint[]), %s"
            " ON CONFLICT (asset_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
            (tires.asset_ids, end + timedelta(hours=hours)),
        )
    conn.commit()
    return end + timedelta(hours=hours)


def test_a_drift_scenario_raises_the_event_once(conn: Conn, client: TestClient) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=10, seed=1)
    trained = train_fast(conn, ManualClock(START))
    reference = repo.get_reference(conn, trained.version.id)
    assert reference is not None and set(reference["signals"]) == {
        "pressure_kpa",
        "temperature_c",
        "load_kg",
        "speed_kmh",
        "tread_depth_mm",
    }
    settings = WatchSettings()

    # the same operation as in training: load is stable
    now = _append(conn, tires, hours=30, load_kg=3000.0, seed=2)
    with conn.transaction():
        before, raised = check_kind(conn, "tire", now, settings)
    assert before is not None and before.psi["load_kg"] < 0.1
    assert "load_kg" not in before.drifted_signals
    count = "SELECT count(*) FROM events WHERE type = 'model.drift_detected'"
    said_before = conn.execute(count).fetchone()

    # the fleet now runs 40% heavier: load drifts, and the event says so
    now = _append(conn, tires, hours=40, load_kg=4200.0, seed=3)
    with conn.transaction():
        after, raised = check_kind(conn, "tire", now, settings)
    conn.commit()
    assert after is not None and after.drifted and raised
    assert after.drifted_signals[0] == "load_kg" and after.psi["load_kg"] > 1.0
    assert after.model_version_id == trained.version.id
    events = conn.execute(
        "SELECT customer_id, payload FROM events WHERE type = 'model.drift_detected'"
        " AND (payload->>'check_id')::bigint = %s ORDER BY id",
        (after.id,),
    ).fetchall()
    assert [c for c, _ in events] == [None, customer.id]  # the operator and the customer
    payload = events[1][1]
    assert payload["kind"] == "tire" and "load_kg" in payload["new_signals"]
    assert payload["signals"]["load_kg"] == after.psi["load_kg"]
    assert "model.drift_detected" in event_types(conn, customer.id)

    # still drifting: recorded again, but said only once
    with conn.transaction():
        again, raised_again = check_kind(conn, "tire", now + timedelta(hours=1), settings)
    conn.commit()
    assert again is not None and again.drifted and not raised_again
    said = conn.execute(count).fetchone()
    assert said is not None and said_before is not None and said[0] == said_before[0] + 2
    assert len(repo.list_drift_checks(conn, kind="tire")) == 3
    # drift makes a retraining due (the weekly schedule did not yet)
    assert retrain_trigger(conn, "tire", now, True, settings) == "drift"
    assert retrain_trigger(conn, "tire", START + timedelta(days=1), False, settings) is None

    # the API lists the checks, newest first, with each signal's PSI
    key = fleet.issue_api_key(conn, role="customer", customer_id=customer.id).key
    conn.commit()
    listed = client.get("/v1/models/tire/drift-checks", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [again.id, after.id, before.id]
    missing = client.get("/v1/models/boat/drift-checks", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404
    # ... and the dashboard's model page says which kind drifts and on what
    page = client.get("/dashboard/models", headers={"Authorization": f"Bearer {key}"}).text
    assert 'data-kind="tire" data-drifted="true"' in page and "load_kg (" in page


def test_a_worse_challenger_is_refused_and_a_better_one_promoted(
    conn: Conn, client: TestClient, operator_headers: dict[str, str]
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10, seed=1)
    clock = ManualClock(START + timedelta(days=60))
    poor = train_fast(conn, clock, rul=POOR_RUL).version
    assert poor.status == "active"

    with conn.transaction():
        better = retrain(
            conn,
            "tire",
            clock,
            rul_params=FAST_RUL,
            risk_params=FAST_RISK,
            feature_params=FAST_FEATURES,
        ).decision
    assert better.decision == "promoted" and better.trigger == "manual"
    assert better.champion_version_id == poor.id
    assert better.challenger_rmse is not None and better.champion_rmse is not None
    assert better.challenger_rmse < better.champion_rmse
    assert better.holdout_assets >= 1 and better.lives == 20
    active = repo.active_version(conn, "tire")
    assert active is not None and active.id == better.challenger_version_id

    clock.advance(3600)
    with conn.transaction():
        worse = retrain(
            conn,
            "tire",
            clock,
            trigger="drift",
            rul_params=POOR_RUL,
            risk_params=FAST_RISK,
            feature_params=FAST_FEATURES,
        )
    refused = worse.decision
    assert refused.decision == "refused" and refused.trigger == "drift"
    assert refused.champion_version_id == better.challenger_version_id
    assert refused.challenger_rmse is not None and refused.champion_rmse is not None
    assert refused.challenger_rmse >= refused.champion_rmse
    assert "does not beat" in refused.reason and "the champion stays" in refused.reason
    still = repo.active_version(conn, "tire")
    assert still is not None and still.id == better.challenger_version_id
    assert repo.get_version(conn, worse.training.version.id).status == "candidate"  # type: ignore[union-attr]
    conn.commit()

    listed = client.get("/v1/models/tire/retrain-decisions", headers=operator_headers).json()
    assert [d["decision"] for d in listed] == ["refused", "promoted"]
    assert listed[0]["challenger_rmse"] == refused.challenger_rmse
    page = client.get("/dashboard/models", headers=operator_headers).text
    assert (
        page.count('data-decision="refused"') == 1 and page.count('data-decision="promoted"') == 1
    )


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    return db_url


def test_cli_retrain_prints_the_decision_and_its_figures(cli_env: str, conn: Conn) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10, seed=1)
    train_fast(conn, ManualClock(START))
    args = ["models", "retrain", "tire", "--windows", "5", "--param", "max_iter=1"]
    more = ["--param", "calibration_folds=2", "--risk-param", "max_iter=5"]
    result = CliRunner().invoke(app, [*args, *more])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    [said] = [line for line in lines if line.startswith("tire: ")]
    assert said.startswith("tire: refused: challenger ") and "RMSE" in said
    last = lines[-1]
    decision = json.loads(last)
    assert decision["decision"] == "refused" and decision["champion_rmse"] > 0
    for bad, message in (
        (["models", "retrain", "boat"], "error: unknown asset kind 'boat'"),
        (["models", "retrain", "tire", "--trigger", "whim"], "error: --trigger must be"),
        (["models", "drift", "boat"], "error: unknown asset kind 'boat'"),
    ):
        refused = CliRunner().invoke(app, bad)
        assert refused.exit_code == 2 and message in refused.output, refused.output
