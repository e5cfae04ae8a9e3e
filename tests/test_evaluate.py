"""`fleetcare evaluate`: run-to-failure vs preventive vs predictive, offline and seeded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from evaluation import run as ev
from evaluation import strategies
from evaluation.costs import ECONOMICS
from kinds.loader import builtin_kinds
from maintenance.policy import service as policy

runner = CliRunner()
# Two whole (small) evaluations, fixture and command, each training a wear model: several
# minutes when the shared 2-core machine is busy.
pytestmark = pytest.mark.timeout(900)

SMALL = ["--kinds", "engine", "--assets", "6", "--days", "30", "--sweep", "", "--jobs", "1"]
SMALL += ["--coverage", "0.9"]
SMALL_TRAINING_LIVES = 8


@dataclass
class SmallRun:
    figures: dict[str, Any]
    policy_calls: list[tuple[str, str]]
    predictions: list[Any]


@pytest.fixture(scope="module")
def small_run() -> SmallRun:
    """A small evaluation, with a spy on the product's policy decision."""
    real = policy.next_due_state
    calls: list[tuple[str, str]] = []
    predictions: list[Any] = []

    def spy(state: str, prediction: Any, *args: Any) -> policy.DueStep:
        step = real(state, prediction, *args)
        calls.append((state, step.state))
        predictions.append(prediction)
        return step

    config = ev.EvaluationConfig(
        seed=3, assets=6, days=30.0, kinds=("engine",), sweep=(), coverage=0.9, jobs=1,
        training_lives=SMALL_TRAINING_LIVES,
    )  # fmt: skip
    policy.next_due_state = spy  # type: ignore[assignment]
    try:
        figures = ev.evaluate(config)
    finally:
        policy.next_due_state = real
    return SmallRun(figures, calls, predictions)


def test_same_seed_same_figures_from_the_command(small_run: SmallRun, tmp_path: Path) -> None:
    chart = tmp_path / "out" / "evaluate.png"
    args = ["evaluate", "--seed", "3", *SMALL, "--training-lives", str(SMALL_TRAINING_LIVES)]
    result = runner.invoke(app, [*args, "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(b"\x89PNG")
    lines = result.stdout.strip().splitlines()
    assert "run_to_failure" in result.stdout and lines[-2] == f"chart: {chart}"
    # the command's last line is the same JSON as another run with the same seed
    assert lines[-1] == json.dumps(small_run.figures, sort_keys=True)
    figures = json.loads(lines[-1])
    assert figures["seed"] == 3 and set(figures["kinds"]) == {"engine"}
    assert set(figures["kinds"]["engine"]["strategies"]) == set(strategies.STRATEGIES)


def test_run_to_failure_fails_most_and_preventive_wastes_life(small_run: SmallRun) -> None:
    s = small_run.figures["kinds"]["engine"]["strategies"]
    rtf, prev, pred = s["run_to_failure"], s["preventive"], s["predictive"]
    assert rtf["failures"] > 0
    assert rtf["failures"] >= prev["failures"] and rtf["failures"] >= pred["failures"]
    assert rtf["failures"] > min(prev["failures"], pred["failures"])
    # run-to-failure throws no life away; the fixed interval throws some away
    assert rtf["wasted_share_of_life"] == 0.0 and rtf["planned_replacements"] == 0
    assert prev["planned_replacements"] > 0
    assert prev["wasted_share_of_life"] > rtf["wasted_share_of_life"]
    # every failure costs downtime; planned work does not
    engine = ECONOMICS["engine"]
    per_failure = engine.failure_downtime_h * engine.downtime_eur_per_hour
    assert rtf["downtime_eur"] == pytest.approx(rtf["failures"] * per_failure)
    assert pred["orders_raised"] >= pred["planned_replacements"] > 0


def test_predictive_strategy_decides_with_the_products_policy_function(
    small_run: SmallRun,
) -> None:
    # the product's policy decides through the same function (no database needed to see it)
    assert "next_due_state" in policy.handle_prediction.__code__.co_names
    assert "order_due_at" in policy._act_while_due.__code__.co_names
    assert strategies.policy is policy
    calls = small_run.policy_calls
    assert calls, "the predictive strategy never asked the policy"
    entered = sum(1 for before, after in calls if before == "clear" and after == "due")
    predictive = small_run.figures["kinds"]["engine"]["strategies"]["predictive"]
    raised = predictive["orders_raised"]
    assert raised == entered > 0
    assert sum(predictive["orders_by_trigger"].values()) >= raised
    assert set(predictive["orders_by_trigger"]) <= {"due_window", "risk", "anomaly"}


def test_predictions_carry_the_models_risk_and_anomaly_scores(small_run: SmallRun) -> None:
    # the policy sees what the scoring worker writes: the bundle's failure probability
    # (at the kind's training horizon) and anomaly score, the kind's full-service plan
    preds = small_run.predictions
    assert {p.horizon for p in preds} == {builtin_kinds()["engine"].model.horizon}
    risk = np.array([p.failure_probability for p in preds])
    assert risk.min() >= 0.0 and risk.max() <= 1.0 and risk.max() > risk.min()
    assert np.ptp([p.anomaly_score for p in preds]) > 0
    assert strategies.entitlements("engine").risk_threshold == ECONOMICS["engine"].risk_threshold
    # no due date before a day of history since renewal (as the scoring worker)
    assert all((p.due_at is None) == (p.usage_rate_per_day is None) for p in preds)


def test_coverage_is_the_largest_that_meets_the_whole_target_on_validation() -> None:
    def sweep(*points: tuple[float, float, float]) -> list[dict[str, Any]]:
        return [
            {"coverage": c, "prevented_share": p, "waste_vs_preventive": w} for c, p, w in points
        ]

    points = ((0.8, 0.96, 0.2), (0.85, 0.94, 0.25), (0.9, 0.98, 0.3), (0.95, 0.99, 0.45))
    assert ev.choose_coverage(sweep(*points)) == 0.9
    # none meets both: the failure criterion alone decides (below)
    assert ev.choose_coverage(sweep((0.8, 0.9, 0.1), (0.9, 0.96, 0.5), (0.95, 0.99, 0.6))) == 0.9


def test_coverage_is_the_smallest_from_which_on_the_target_holds() -> None:
    def sweep(*points: tuple[float, float | None]) -> list[dict[str, Any]]:
        return [{"coverage": c, "prevented_share": p} for c, p in points]

    # one lucky low coverage (0.7) does not count when 0.8 misses the target
    assert ev.choose_coverage(sweep((0.7, 0.97), (0.8, 0.93), (0.9, 0.96), (0.95, 0.99))) == 0.9
    assert ev.choose_coverage(sweep((0.7, 0.95), (0.9, 0.99))) == 0.7
    # nothing reaches it: the most conservative one
    assert ev.choose_coverage(sweep((0.7, 0.5), (0.9, None))) == 0.9


def test_the_commands_default_sweep_is_the_modules() -> None:
    import inspect

    from evaluation.cli import evaluate

    default = inspect.signature(evaluate).parameters["sweep"].default
    assert tuple(float(c) for c in default.split(",")) == ev.SWEEP_COVERAGES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "boat"], "unknown kind"),
        (["--assets", "0"], "--assets"),
        (["--days", "0"], "--days"),
        (["--coverage", "1.5"], "coverage"),
        (["--sweep", "0.5,x"], "--sweep"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
