"""The wear-model registry: training from recorded lifetimes, safe artifacts, promotion only
when better on the same held-out assets, rollback, and the API over it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from psycopg import Connection
from typer.testing import CliRunner

from cli.main import app
from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.errors import Conflict, Invalid
from kinds.loader import builtin_kinds
from models import registry
from models import repository as repo
from models.bundle import DEFAULT_COVERAGE
from models.training import NoTrainingData, train
from tests.conftest import Tenant
from tests.fixtures.wear import (
    POOR_RUL,
    install_model,
    make_fleet,
    train_fast,
    trained_tire_model,
    trained_tire_models,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class NotAModelPart:
    """A type no registry artifact may hold."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_training_stores_metrics_and_the_saved_model_predicts_identically(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=10)
    result = train_fast(conn, ManualClock(NOW))
    v = result.version
    assert result.promoted and v.status == "active" and v.kind == "tire"
    assert result.reason == "first version of the kind"
    held = v.metrics["holdout_asset_ids"]
    trained = v.metrics["training_asset_ids"]
    assert held and trained and not set(held) & set(trained)  # split by asset, never by row
    assert set(held) | set(trained) == set(tires.asset_ids)
    assert held == [a for a in tires.asset_ids if registry.is_holdout_asset(a)] or len(held) == 1
    assert v.metrics["holdout_rmse"] > 0
    tire = v.metrics["components"]["tire"]
    assert 0 <= tire["interval_coverage"] <= 1 and tire["lives"] == 2 * len(held)
    assert v.params["max_rul"] == 80_000.0 and v.params["rul"]["max_iter"] == 15
    # every component's interval coverage: the kind's model.coverage setting (as evaluate's)
    setting = builtin_kinds()["tire"].model.coverage
    assert v.params["coverage"] == {"tire": setting.get("tire", DEFAULT_COVERAGE)}
    assert result.model.coverage_of("tire") == v.params["coverage"]["tire"]
    assert v.training_assets == len(trained) and v.training_rows == 2 * 30 * len(trained)
    assert v.trained_from is not None and v.trained_to is not None

    # the model read back from the registry predicts exactly what it predicted before
    before = result.model
    after = registry.load_version(conn, v.id)
    layout = repo.metric_layout(conn, "tire", before.usage_metric, before.column_names)
    readings = repo.fetch_readings(conn, layout, repo.scoring_windows(conn, tires.asset_ids))
    ids_a, feats_a = before.features.transform_last(readings.matrix)
    ids_b, feats_b = after.features.transform_last(readings.matrix)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(feats_a, feats_b)
    pa, pb = before.predict(feats_a), after.predict(feats_b)
    assert pa.keys() == pb.keys() == {"tire"}
    for name in ("rul", "rul_low", "rul_high", "failure_probability", "anomaly_score"):
        np.testing.assert_array_equal(pa["tire"][name], pb["tire"][name])
    assert after.history_rows() == before.history_rows()


def test_loading_refuses_untrusted_types() -> None:
    data = sio.dumps({"model": NotAModelPart()})
    with pytest.raises(Invalid, match="not trusted"):
        registry.load_model(data)
    with pytest.raises(Invalid, match="not a WearModel"):
        registry.load_model(sio.dumps({"a": 1}))


def test_artifacts_stored_before_the_bundle_moved_still_load() -> None:
    # artifacts written while the bundle lived in models.registry name that class path
    model = trained_tire_model()
    assert type(model).__module__ == "models.bundle"
    type(model).__module__ = "models.registry"
    try:
        old = sio.dumps(model)
    finally:
        type(model).__module__ = "models.bundle"
    assert "models.registry.WearModel" in sio.get_untrusted_types(data=old)
    loaded = registry.load_model(old)
    assert isinstance(loaded, type(model)) and loaded.components == model.components


def test_a_components_coverage_survives_the_artifact_and_old_artifacts_fall_back() -> None:
    import copy

    model = copy.copy(trained_tire_model())
    model.component_coverage = {"tire": 0.95}
    loaded = registry.load_model(registry.dump_model(model))
    assert loaded.coverage_of("tire") == 0.95 and loaded.coverage == model.coverage
    # artifacts stored before per-component coverages have none: the bundle's coverage
    del model.component_coverage
    old = registry.load_model(registry.dump_model(model))
    assert old.coverage_of("tire") == old.coverage


def test_registry_refuses_to_promote_a_worse_model(
    conn: Connection[Any], client: TestClient, operator_headers: dict[str, str]
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(NOW)
    good = install_model(conn, trained_tire_models()[0], clock)
    poor = train_fast(conn, clock, rul=POOR_RUL)
    assert not poor.promoted
    assert poor.version.status == "candidate" and "does not beat" in poor.reason
    with pytest.raises(Conflict, match="does not beat active version"), conn.transaction():
        registry.promote(conn, poor.version.id, clock)
    response = client.post(
        f"/v1/models/versions/{poor.version.id}/promote", headers=operator_headers
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict"
    assert "RMSE" in response.json()["detail"]
    active = repo.active_version(conn, "tire")
    assert active is not None and active.id == good.id


def test_a_better_model_is_promoted_and_rollback_restores_the_previous(
    conn: Connection[Any],
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(NOW)
    poor = install_model(conn, trained_tire_models()[1], clock)
    good = train_fast(conn, clock)
    assert good.promoted, good.reason
    assert good.version.replaced_version_id == poor.id
    comparison = good.version.metrics["last_comparison"]
    assert comparison["holdout_rmse"] < comparison["active_holdout_rmse"]

    tenant = make_tenant("acme-ops")
    assert client.post("/v1/models/tire/rollback", headers=tenant.headers).status_code == 403
    assert (
        client.post(
            f"/v1/models/versions/{good.version.id}/promote", headers=tenant.headers
        ).status_code
        == 403
    )
    back = client.post("/v1/models/tire/rollback", headers=operator_headers)
    assert back.status_code == 200, back.text
    assert back.json()["id"] == poor.id and back.json()["status"] == "active"
    statuses = {v.id: v.status for v in repo.list_versions(conn, kind="tire")}
    assert statuses == {poor.id: "active", good.version.id: "retired"}
    again = client.post("/v1/models/tire/rollback", headers=operator_headers)
    assert again.status_code == 409  # the first version replaced nothing


def test_versions_api_lists_metrics_and_hides_asset_ids_from_customers(
    conn: Connection[Any],
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    first = train_fast(conn, ManualClock(NOW)).version
    version = install_model(conn, trained_tire_model(), ManualClock(NOW))
    assert version.replaced_version_id == first.id
    listed = client.get("/v1/models/versions?kind=tire", headers=operator_headers)
    assert listed.status_code == 200
    assert [v["status"] for v in listed.json()] == ["active", "retired"]
    assert "holdout_rmse" in listed.json()[1]["metrics"]
    one = client.get(f"/v1/models/versions/{version.id}", headers=operator_headers)
    assert one.status_code == 200 and one.json()["kind"] == "tire"
    assert one.json()["kind_version"] >= 1  # the tire kind's version it was trained under
    tenant = make_tenant("viewer")
    seen = client.get("/v1/models/versions", headers=tenant.headers).json()
    assert all("holdout_asset_ids" not in v["metrics"] for v in seen)
    assert client.get("/v1/models/versions/99999", headers=operator_headers).status_code == 404
    unknown = client.get("/v1/models/versions?kind=boat", headers=operator_headers)
    assert unknown.status_code == 422 and "unknown asset kind 'boat'" in unknown.json()["detail"]
    missing = client.post("/v1/models/boat/rollback", headers=operator_headers)
    assert missing.status_code == 404 and missing.json()["code"] == "asset_kind_not_found"


def test_training_without_lifetimes_is_a_clear_error(conn: Connection[Any]) -> None:
    with pytest.raises(NoTrainingData, match="no recorded engine lifetimes"):
        train(conn, "engine", ManualClock(NOW))


def test_holdout_split_is_by_asset_and_stable() -> None:
    ids = list(range(1, 201))
    train_ids, held = registry.split_assets(ids)
    assert not set(train_ids) & set(held) and set(train_ids) | set(held) == set(ids)
    assert 20 <= len(held) <= 60
    assert registry.split_assets(list(reversed(ids))) == (train_ids, held)
    assert registry.split_assets([5, 9])[1] and registry.split_assets([5, 9])[0]
    assert registry.split_assets([7]) == ([7], [])


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    return db_url


@pytest.mark.parametrize(
    "args, message",
    [
        (["models", "train", "--kind", "tire"], "error: no recorded tire lifetimes"),
        (["models", "train", "tire"], "error: no recorded tire lifetimes"),
        (["models", "train", "boat"], "error: unknown asset kind 'boat'; known: "),
        (["models", "train", "--kind", "boat"], "error: unknown asset kind 'boat'; known: "),
        (["models", "train"], "error: give the asset kind to train"),
        (["models", "train", "tire", "--kind", "engine"], "differ: give one"),
        (["models", "train", "--kind", "tire", "--param", "oops"], "error: --param takes"),
        (["models", "train", "--kind", "tire", "--windows", "5,x"], "error: invalid literal"),
        (["score", "--once", "--shard", "3/2"], "error: bad --shard"),
        (["score", "--once", "--kind", "boat"], "error: unknown asset kind 'boat'; known: "),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(cli_env: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_trains_promotes_and_scores(cli_env: str, conn: Connection[Any]) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=10)
    args = ["models", "train", "tire", "--windows", "5", "--param", "max_iter=5"]
    more = ["--param", "calibration_folds=2", "--risk-param", "max_iter=5"]
    result = CliRunner().invoke(app, [*args, *more])
    assert result.exit_code == 0, result.output
    assert "active: first version of the kind" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["status"] == "active" and summary["metrics"]["holdout_rmse"] > 0
    # trained under the tire kind's current definition, shown in the output and the API
    current = conn.execute("SELECT version FROM asset_kinds WHERE name = 'tire'").fetchone()
    assert current is not None and summary["kind_version"] == current[0] >= 1
    assert f"kind version {current[0]}" in result.output
    scored = CliRunner().invoke(app, ["score", "--once"])
    assert scored.exit_code == 0, scored.output
    assert f"scored {len(tires.asset_ids)} asset(s)" in scored.output
    again = CliRunner().invoke(app, ["score", "--once"])
    assert "scored 0 asset(s)" in again.output
