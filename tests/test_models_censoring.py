"""A life another fault ended (``asset_lives.outcome`` ``other_fault`` without a measured
remaining life: a failure reported with that cause, an order closed with that finding; in the
evaluation a random fault, which the simulators report so) is censored at its end by training,
the product's and the evaluation's alike (``models.lifetimes.censored_fit_rows``): the RUL
regressor leaves it out, the failure-risk classifier learns from it only while it was more
than the horizon from its end, so that a random door fault, which no signal foretells, is not
learnt as wear risk (docs/evaluate.md, "Elevator seed 76")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from psycopg import Connection

from evaluation import wear_model
from evaluation.fleets import Life as SimulatedLife
from evaluation.fleets import World, run_training_fleet
from fleet import service as fleet
from fleet.causes import life_outcome
from fleetcare.clock import ManualClock
from models import lifetimes
from models.estimators import FailureRiskClassifier, RULRegressor
from tests.fixtures.wear import make_fleet, set_model_setting, train_fast


def test_the_rule_censors_another_faults_life_at_its_end() -> None:
    y = np.array([50_000.0, 30_000.0, 20_000.0, 5_000.0, 0.0, 5_000.0])
    censored = np.array([True, True, True, True, True, False])
    regressor, classifier = lifetimes.censored_fit_rows(y, censored, 20_000.0)
    # the regressor never sees a censored life; the classifier sees it while it was more
    # than the horizon from its end (it lived through the horizon), not within it
    assert regressor.tolist() == [False] * 5 + [True]
    assert classifier.tolist() == [True, True, False, False, False, True]
    assert lifetimes.censored_at_end("other_fault")
    assert not lifetimes.censored_at_end("other_fault", 1_000.0)  # measured: the end is known
    assert not lifetimes.censored_at_end(None) and not lifetimes.censored_at_end("false_alarm")
    # what a failure report's cause labels its life (fleet.causes), read by the same rule
    assert lifetimes.censored_at_end(life_outcome("other_fault"))
    assert not lifetimes.censored_at_end("failure")  # what unknown and confirmed_wear give
    assert life_outcome("unknown") is None and life_outcome("confirmed_wear") is None


def _fits(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[np.ndarray]]:
    """The targets every RUL regressor and failure-risk classifier is fitted on."""
    seen: dict[str, list[np.ndarray]] = {"rul": [], "risk": []}
    real_rul, real_risk = RULRegressor.fit, FailureRiskClassifier.fit

    def rul(self: RULRegressor, X: Any, y: Any, **kw: Any) -> Any:
        seen["rul"].append(np.asarray(y))
        return real_rul(self, X, y, **kw)

    def risk(self: FailureRiskClassifier, X: Any, y: Any, **kw: Any) -> Any:
        seen["risk"].append(np.asarray(y))
        return real_risk(self, X, y, **kw)

    monkeypatch.setattr(RULRegressor, "fit", rul)
    monkeypatch.setattr(FailureRiskClassifier, "fit", risk)
    return seen


def test_the_products_training_censors_a_life_another_fault_ended(
    conn: Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    # one regressor and classifier per training (no joined pair)
    set_model_setting(conn, "tire", "joined_model", False)
    seen = _fits(monkeypatch)
    before = train_fast(conn, clock)
    horizon = before.version.params["horizon"]
    with conn.transaction():  # the first life of every asset: ended by another fault
        conn.execute(
            "UPDATE asset_lives SET outcome = 'other_fault' WHERE id IN"
            " (SELECT min(id) FROM asset_lives GROUP BY asset_id)"
        )
    after = train_fast(conn, clock)
    [rul_before, rul_after], [risk_before, risk_after] = seen["rul"], seen["risk"]
    assert rul_after.shape[0] < rul_before.shape[0]  # those lives left out
    # the classifier: the same rows that lived through the horizon, fewer that failed in it
    assert (risk_after > horizon).sum() == (risk_before > horizon).sum()
    assert 0 < (risk_after <= horizon).sum() < (risk_before <= horizon).sum()
    assert after.version.metrics["censored_lives"] == 10


class _Fitted(Exception):
    """Raised once both estimators of a component saw their rows (no need to fit them)."""


def test_the_evaluation_censors_a_random_fault_as_the_product_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = run_training_fleet("tire", 1_011, 6, lives=6)
    failed = [n for n, life in enumerate(world.lives) if life.reason != "planned"]
    assert wear_model.censored_lives(world) == []  # tires have no random faults
    faulted = World(world.kind, world.population, world.log, lives=list(world.lives))
    first: SimulatedLife = faulted.lives[failed[0]]
    faulted.lives[failed[0]] = SimulatedLife(**{**vars(first), "random_fault": True})
    assert wear_model.censored_lives(faulted) == [float(failed[0])]
    seen: dict[str, list[np.ndarray]] = {"rul": [], "risk": []}

    def rul(self: RULRegressor, X: Any, y: Any, **kw: Any) -> RULRegressor:
        seen["rul"].append(np.asarray(y))
        return self

    def risk(self: FailureRiskClassifier, X: Any, y: Any, **kw: Any) -> Any:
        seen["risk"].append(np.asarray(y))
        raise _Fitted

    monkeypatch.setattr(RULRegressor, "fit", rul)
    monkeypatch.setattr(FailureRiskClassifier, "fit", risk)
    for fleet_ in (world, faulted):
        with pytest.raises(_Fitted):
            wear_model.train_wear_model("tire", fleet_)
    [rul_before, rul_after], [risk_before, risk_after] = seen["rul"], seen["risk"]
    horizon = wear_model.builtin_kinds()["tire"].model.horizon
    assert rul_after.shape[0] < rul_before.shape[0]
    assert (risk_after > horizon).sum() == (risk_before > horizon).sum()
    assert (risk_after <= horizon).sum() < (risk_before <= horizon).sum()
