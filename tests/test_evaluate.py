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
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

# the kind's coverage setting (as the product), with a small validation sweep of two
# coverages reported beside it (the target logic runs on small fleets end to end)
SMALL = ["--kinds", "engine", "--assets", "6", "--days", "30", "--sweep", "0.8,0.9"]
SMALL += ["--jobs", "1"]
SMALL_TRAINING_LIVES = 8


@dataclass
class SmallRun:
    figures: dict[str, Any]
    policy_calls: list[tuple[str, str]]
    predictions: list[Any]
    model: Any  # the wear model the evaluation trained


@pytest.fixture(scope="module")
def small_run() -> SmallRun:
    """A small evaluation, with a spy on the product's policy decision (the calls of the
    last predictive run: the evaluation fleet's, after the validation sweep's)."""
    real, real_run, real_train = policy.next_due_state, ev.run_strategy, ev.train_wear_model
    calls: list[tuple[str, str]] = []
    predictions: list[Any] = []
    models: list[Any] = []

    def train_spy(*args: Any, **kwargs: Any) -> Any:
        models.append(real_train(*args, **kwargs))
        return models[-1]

    def spy(state: str, prediction: Any, *args: Any) -> policy.DueStep:
        step = real(state, prediction, *args)
        calls.append((state, step.state))
        predictions.append(prediction)
        return step

    def run_spy(world: Any, strategy: str, *args: Any, **kwargs: Any) -> Any:
        if strategy == "predictive":
            calls.clear()
            predictions.clear()
        return real_run(world, strategy, *args, **kwargs)

    config = ev.EvaluationConfig(
        seed=3, assets=6, days=30.0, kinds=("engine",), sweep=(0.8, 0.9), coverage=None, jobs=1,
        training_lives=SMALL_TRAINING_LIVES,
    )  # fmt: skip
    policy.next_due_state = spy  # type: ignore[assignment]
    ev.run_strategy = run_spy
    ev.train_wear_model = train_spy
    try:
        figures = ev.evaluate(config)
    finally:
        policy.next_due_state = real
        ev.run_strategy = real_run
        ev.train_wear_model = real_train
    return SmallRun(figures, calls, predictions, models[0])


def test_same_seed_same_figures_from_the_command(small_run: SmallRun, tmp_path: Path) -> None:
    chart = tmp_path / "out" / "evaluate.png"
    args = ["evaluate", "--seed", "3", *SMALL, "--training-lives", str(SMALL_TRAINING_LIVES)]
    args += ["--carriers", "2"]  # the engines' airline: two aircraft
    result = runner.invoke(app, [*args, "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(b"\x89PNG")
    lines = result.stdout.strip().splitlines()
    assert "run_to_failure" in result.stdout and lines[-2] == f"chart: {chart}"
    # engines are mobile: first their airline, scored by the same trained model
    assert "parts at station before arrival" in result.stdout
    mobile = json.loads(next(line for line in lines if line.startswith('{"mobile"')))["mobile"]
    assert set(mobile) == {"engine"} and mobile["engine"]["network"] == "airline"
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


def _sweep(
    preventive: float, **components: tuple[tuple[float, int, float], ...]
) -> list[dict[str, Any]]:
    """A validation sweep: per component, (coverage, failures, wasted share of its life)
    at each coverage; every component lives 100 life units in all; preventive wastes
    ``preventive`` of the life."""
    coverages = sorted({c for points in components.values() for c, _, _ in points})
    out = []
    for cov in coverages:
        by = {}
        for name, points in components.items():
            _, failures, wasted = next(p for p in points if p[0] == cov)
            by[name] = {"failures": failures, "failures_random_fault": 0,
                        "wasted_life": 100 * wasted, "life": 100.0,
                        "failures_run_to_failure": 60}  # fmt: skip
        out.append({"coverage": cov, "by_component": by, "failures_run_to_failure": 120,
                    "preventive_wasted_share_of_life": preventive})  # fmt: skip
    return out


def test_validation_figures_sum_each_components_figures_at_its_coverage() -> None:
    door = ((0.8, 6, 0.06), (0.9, 4, 0.09), (0.95, 1, 0.14))
    brake = ((0.8, 1, 0.03), (0.9, 0, 0.06), (0.95, 0, 0.10))
    sweep = _sweep(0.40, door_operator=door, brake=brake)
    figures = ev.validation_figures(sweep, {"door_operator": 0.95, "brake": 0.9})
    assert figures is not None
    # door 0.95 + brake 0.9: 1 + 0 failures, ratio (0.14 + 0.06) / 2 / 0.40 = 0.25
    assert figures["failures"] == 1 and figures["waste_vs_preventive"] == pytest.approx(0.25)
    # a coverage the sweep did not run has no validation figures
    assert ev.validation_figures(_sweep(0.40, brake=brake), {"brake": 0.99}) is None


def test_the_wear_model_scores_each_component_at_its_own_coverage(small_run: SmallRun) -> None:
    from evaluation.wear_model import WearModel

    bundle = small_run.model.bundle
    (component,) = bundle.components
    before = bundle.coverage_of(component)
    one = small_run.model.at_coverage({component: 0.6})
    assert one.bundle.coverage_of(component) == 0.6
    assert bundle.coverage_of(component) == before  # the shared bundle is not changed
    uniform = small_run.model.at_coverage(0.6)
    assert isinstance(uniform, WearModel) and uniform.bundle.coverage_of(component) == 0.6
    with pytest.raises(ValueError, match="unknown component"):
        small_run.model.at_coverage({"wheel": 0.9})


def test_the_coverage_is_the_rules_choice_on_the_validation_fleets_unless_fixed_or_chosen(
    small_run: SmallRun,
) -> None:
    import copy

    from evaluation import choice
    from evaluation.wear_model import WearModel
    from models.bundle import DEFAULT_COVERAGE

    k = small_run.figures["kinds"]["engine"]
    # engines have stored validation fleets: the evaluation fleet is scored at the rule's
    # choice on them, which the kind's setting (what the product's training gives its
    # versions) equals
    stored = choice.stored_choice("engine")
    assert stored is not None
    setting = builtin_kinds()["engine"].model.coverage
    expected = {c: setting.get(c, DEFAULT_COVERAGE) for c in small_run.model.bundle.components}
    assert k["coverage"] == stored["coverage"] == expected == k["coverage_kind_setting"]
    assert k["coverage_chosen_on"] == "validation fleets 101, 102, 103, 104 (evaluation.choice)"
    assert {p.coverage for p in small_run.predictions} == set(expected.values())
    # a kind without stored validation fleets is scored at the kind's setting
    assert choice.stored_choice("no-such-kind") is None
    assert ev.scoring_coverage(ev.EvaluationConfig(), [], small_run.model, "no-such-kind") == (
        expected,
        "kind settings (as the product)",
    )
    # so do elevators: the rule's choice on validation fleets 101-104 is what the fleet is
    # scored at (a bundle for the elevator's components, the engine's estimators)
    stored = choice.stored_choice("elevator")
    assert stored is not None
    bundle = copy.copy(small_run.model.bundle)
    (estimator,) = bundle.rul.values()
    bundle.rul = {"door_operator": estimator, "brake": estimator}
    elevator = WearModel(bundle, small_run.model.head, small_run.model.tail)
    assert ev.scoring_coverage(ev.EvaluationConfig(), [], elevator, "elevator") == (
        stored["coverage"],
        "validation fleets 101, 102, 103, 104 (evaluation.choice)",
    )
    sweep = k["validation_sweep"]
    config = ev.EvaluationConfig(kinds=("engine",), sweep=(0.8, 0.9), choose=True)
    assert ev.scoring_coverage(config, sweep, small_run.model, "engine") == (
        choice.choose_robust([sweep])["coverage"],
        "this run's validation fleet",
    )
    config = ev.EvaluationConfig(kinds=("engine",), coverage=0.7)
    assert ev.scoring_coverage(config, sweep, small_run.model, "engine") == (
        dict.fromkeys(expected, 0.7),
        "fixed",
    )
    with pytest.raises(ValueError, match="needs a validation sweep"):
        ev.scoring_coverage(ev.EvaluationConfig(choose=True), [], small_run.model)


def _figures(rtf: tuple[int, int], pred: tuple[int, int], wasted: tuple[float, float]) -> Any:
    """Strategy figures: (foreseeable, random-fault) failures of run-to-failure and
    predictive, and the wasted share of life of preventive and predictive."""

    def one(foreseeable: int, faults: int, share: float) -> dict[str, Any]:
        return {
            "failures": foreseeable + faults,
            "failures_foreseeable": foreseeable,
            "failures_random_fault": faults,
            "wasted_share_of_life": share,
        }

    return {
        "run_to_failure": one(*rtf, 0.0),
        "preventive": one(3, 1, wasted[0]),
        "predictive": one(*pred, wasted[1]),
    }


def test_the_verdict_counts_foreseeable_failures_and_reports_random_faults_apart() -> None:
    # 60 failures run to failure (57 foreseeable, 3 random faults); predictive leaves 1
    # foreseeable and 3 random faults: 93.3% of all failures, 98.2% of foreseeable ones;
    # waste 0.10 / 0.40 = 0.25
    c = ev.compare(_figures((57, 3), (1, 3), (0.40, 0.10)))
    assert c["predictive_prevented_share_all_failures"] == pytest.approx(1 - 4 / 60, abs=1e-4)
    assert c["predictive_prevented_share_foreseeable"] == pytest.approx(1 - 1 / 57, abs=1e-4)
    assert c["predictive_waste_vs_preventive"] == pytest.approx(0.25)
    assert c["target_judged_on"] == "foreseeable_failures"
    assert c["target_met_foreseeable"] is True and c["target_met_all_failures"] is False
    assert c["random_fault_failures"] == {"run_to_failure": 3, "preventive": 1, "predictive": 3}
    # no field that could be read as the verdict without saying what it counts
    assert "target_met" not in c and "predictive_prevented_share" not in c
    # both met
    c = ev.compare(_figures((57, 3), (1, 1), (0.40, 0.10)))
    assert c["target_met_foreseeable"] is True and c["target_met_all_failures"] is True
    # 3 foreseeable failures of 57 left (94.7%) and no random fault: the verdict is not met,
    # though 3 of all 60 failures (95.0%) meets the target on every failure
    c = ev.compare(_figures((57, 3), (3, 0), (0.40, 0.10)))
    assert c["target_met_foreseeable"] is False and c["target_met_all_failures"] is True
    # waste over a third of preventive's: neither is met, whatever the failures
    c = ev.compare(_figures((57, 3), (0, 0), (0.30, 0.11)))
    assert c["predictive_waste_vs_preventive"] > 1 / 3
    assert c["target_met_foreseeable"] is False and c["target_met_all_failures"] is False
    # no random faults (tires, engines): both verdicts are the same target
    c = ev.compare(_figures((60, 0), (2, 0), (0.40, 0.10)))
    assert c["target_met_foreseeable"] is c["target_met_all_failures"] is True
    assert (
        c["predictive_prevented_share_foreseeable"] == c["predictive_prevented_share_all_failures"]
    )


def test_on_a_small_fleet_the_validation_sweep_is_reported_and_the_target_is_judged(
    small_run: SmallRun,
) -> None:
    k = small_run.figures["kinds"]["engine"]
    sweep = k["validation_sweep"]
    assert [p["coverage"] for p in sweep] == [0.8, 0.9]
    assert k["coverage_on_validation"] == ev.validation_figures(sweep, k["coverage"])
    for p in sweep:  # the per-component figures the choice reads add up to the fleet's
        assert sum(v["failures"] for v in p["by_component"].values()) == p["failures"]
    for p in sweep:  # foreseeable failures and random faults apart at every coverage
        assert p["failures"] == p["failures_foreseeable"] + p["failures_random_fault"]
        assert p["failures_run_to_failure"] >= p["failures_run_to_failure_foreseeable"]
    # the verdict is the target's, on the evaluation fleet's own figures
    assert {key: k[key] for key in ev.compare(k["strategies"])} == ev.compare(k["strategies"])
    s = k["strategies"]
    met = (
        1 - s["predictive"]["failures"] / s["run_to_failure"]["failures"] >= ev.TARGET_PREVENTED
        and s["predictive"]["wasted_share_of_life"]
        <= ev.TARGET_WASTE_RATIO * s["preventive"]["wasted_share_of_life"]
    )
    # engines have no random faults: the verdict is the target on every failure
    assert k["random_fault_failures"] == dict.fromkeys(strategies.STRATEGIES, 0)
    assert k["target_met_foreseeable"] is met and k["target_met_all_failures"] is met


def test_the_table_says_what_the_verdict_counts(small_run: SmallRun) -> None:
    from evaluation import report

    k = small_run.figures["kinds"]["engine"]
    table = report.format_table(small_run.figures)
    met = "met" if k["target_met_foreseeable"] else "NOT met"
    assert f"on foreseeable failures: {met}" in table
    assert "random faults, apart (no precursor, no model can time them): predictive 0" in table


def test_the_command_runs_no_validation_sweep_by_default() -> None:
    import inspect

    from evaluation.cli import evaluate

    # the product's coverage setting needs none; a sweep is asked for (and then reported)
    assert inspect.signature(evaluate).parameters["sweep"].default == ""
    assert ev.EvaluationConfig().sweep == () and not ev.EvaluationConfig().choose


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "boat"], "unknown kind"),
        (["--assets", "0"], "--assets"),
        (["--days", "0"], "--days"),
        (["--coverage", "1.5"], "coverage"),
        (["--sweep", "0.5,x"], "--sweep"),
        (["--choose"], "--choose needs a validation sweep"),
        (["--choose", "--sweep", "0.8", "--coverage", "0.9"], "give one"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
