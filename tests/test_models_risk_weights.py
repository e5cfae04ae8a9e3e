"""The failure-risk classifier's row weights are a kind setting (``model.risk_weights``): every
life once ("life"), or once per stretch of usage as long as the horizon ("life_per_horizon",
the built-in tires), so that a life that failed early does not weigh a whole life among new
parts (docs/evaluate.md, "Tire seed 56"). The mechanism itself:
tests/test_models_core.py::test_an_early_failure_does_not_make_every_new_part_look_risky."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from kinds.loader import builtin_kinds
from models import lifetimes, training
from models.estimators import FailureRiskClassifier
from tests.fixtures.wear import make_fleet, set_model_setting, train_fast


def test_the_built_in_tires_weigh_each_life_once_per_stretch_of_the_horizon() -> None:
    kinds = builtin_kinds()
    assert kinds["tire"].model.risk_weights == "life_per_horizon"
    assert kinds["engine"].model.risk_weights == "life"
    assert kinds["elevator"].model.risk_weights == "life"


def test_the_product_weighs_risk_rows_per_stretch_only_when_the_kind_says_so(
    conn: Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    # one classifier per training (no joined pair: model.joined_model)
    set_model_setting(conn, "tire", "joined_model", False)
    fitted: list[tuple[int, Any]] = []  # rows and weights of every classifier fit
    asked: list[tuple[np.ndarray, np.ndarray, float]] = []
    keys: list[np.ndarray] = []
    real_fit = FailureRiskClassifier.fit
    real_keys = lifetimes.stretch_keys

    def fit(self: FailureRiskClassifier, X: Any, y: Any, sample_weight: Any = None) -> Any:
        fitted.append((np.shape(X)[0], sample_weight))
        return real_fit(self, X, y, sample_weight=sample_weight)

    def stretches(lives: Any, usage: Any, horizon: float) -> Any:
        asked.append((np.asarray(lives), np.asarray(usage), horizon))
        keys.append(real_keys(lives, usage, horizon))
        return keys[-1]

    monkeypatch.setattr(FailureRiskClassifier, "fit", fit)
    monkeypatch.setattr(training, "stretch_keys", stretches)
    on = train_fast(conn, clock)  # the built-in tire: per stretch
    assert len(asked) == 1
    lives, usage, horizon = asked[0]
    assert horizon == builtin_kinds()["tire"].model.horizon
    # usage since each life's renewal: every life's first row is at 0
    for life in np.unique(lives).tolist():
        assert usage[lives == life].min() == pytest.approx(0.0)
    # several stretches per life, and the classifier fitted on rows balanced over them
    assert np.unique(keys[0]).shape[0] > 2 * np.unique(lives).shape[0]
    assert fitted == [(training.balanced_rows(keys[0]).shape[0], None)]
    set_model_setting(conn, "tire", "risk_weights", "life")
    asked.clear()
    fitted.clear()
    off = train_fast(conn, clock)
    # every life once: the regressor's balanced rows, unweighted
    assert not asked
    assert fitted == [(off.version.metrics["fit_rows"]["tire"], None)]
    assert on.version.metrics["fit_rows"] == off.version.metrics["fit_rows"]
