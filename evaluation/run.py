"""`fleetcare evaluate`: run-to-failure, fixed-interval preventive and fleetcare's predictive
policy on the same seeded simulated fleet, offline and in-process (no MQTT, no database).

Per kind:

1. **Training fleet** (its own seed): new assets run to failure and are repaired after the
   failure downtime, until every component has failed at least once and enough lives are
   recorded. Its lives train the wear model as the product's training does: one
   ``WindowFeatures`` fitted on all training rows, one ``RULRegressor`` per component on
   the usage left until failure (the rows of a life form one group).
2. **Tuning fleet** (its own seed, ``TUNING_FLEET_FACTOR`` times larger, mixed ages) run to
   failure for ``days``: the preventive interval of a component is the
   ``PREVENTIVE_QUANTILE`` (5%) quantile of the usage at failure of the lives that ended,
   so that about 95% of the failures such a fleet sees are prevented.
3. **Validation fleet** (its own seed, mixed ages), with ``--sweep``: the predictive
   strategy runs at each interval coverage of the sweep (the reported trade-off). The
   coverage the evaluation fleet is scored at is chosen by :mod:`evaluation.choice` on the
   stored sweeps of several validation fleets (seeds 101-104), never on the evaluation fleet.
4. **Evaluation fleet** (another seed): new assets are warmed up with random renewals so
   that ages are mixed (as the simulators' fleet does), then copied three times and run for
   ``days`` under each strategy.

The predictive strategy scores every live component once a day as the scoring worker does
(the product's model bundle, :class:`models.bundle.WearModel`, on the features of the last
row from the first ``baseline_window`` and the last rows of the life: RUL with its interval
at ``coverage``, failure probability, anomaly score; due dates from the usage rate of the
last 7 days, none before a day of history) and hands each prediction to the product's
policy decision (:func:`maintenance.policy.service.next_due_state`, the same function
``handle_prediction`` calls) under the kind's full-service plan (due-window and
failure-risk triggers; no anomaly threshold, as every seeded plan). Entering the due state
raises one order with :func:`~maintenance.policy.service.order_due_at`; the part arrives
after the shipping days and the technician replaces the component when the order is due
and the part is on site.

Waste is the remaining life thrown away at a planned replacement: the physics' expected
remaining life at that moment (ground truth), in life units and as a share of the life.
A failure wastes nothing but costs downtime. Costs use the kind files' part prices and
labour hours with the assumptions in :data:`ECONOMICS`. Everything is seeded and
single-process, so the same seed gives the same figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation.choice import TARGET_PREVENTED, TARGET_WASTE_RATIO, choose_robust, stored_choice
from evaluation.costs import ECONOMICS
from evaluation.fleets import (
    PREVENTIVE_QUANTILE,
    World,
    new_world,
    preventive_intervals,
    run_training_fleet,
    run_tuning_fleet,
    warm_up,
)
from evaluation.strategies import (
    RESCHEDULED,
    STRATEGIES,
    FailureSeen,
    StrategyResult,
    run_strategy,
)
from evaluation.wear_model import WearModel, train_wear_model
from kinds.loader import builtin_kinds
from simulators.schemas import PHYSICS_KINDS

Progress = Callable[[str], None]

SWEEP_COVERAGES = (0.8, 0.85, 0.9, 0.95)
# What the verdict counts: failures a model can foresee (random faults reported apart)
TARGET_JUDGED_ON = "foreseeable_failures"
VALIDATION_FLEET_FACTOR = 2  # the validation fleet is this many times larger


# --- figures ---------------------------------------------------------------------------------


def summarise(kind: str, result: StrategyResult, days: float) -> dict[str, Any]:
    """Failures, replacements, waste and costs of one strategy on one kind."""
    spec, econ = builtin_kinds()[kind], ECONOMICS[kind]
    failures = [life for life in result.lives if life.reason != "planned"]
    planned = [life for life in result.lives if life.reason == "planned"]
    parts_eur = labour_eur = 0.0
    for life in result.lives:
        part = next(c for c in spec.components if c.name == life.component).parts[0]
        parts_eur += part.price_minor / 100.0
        labour_eur += part.labour_hours * econ.labour_eur_per_hour
    downtime_eur = len(failures) * econ.failure_downtime_h * econ.downtime_eur_per_hour
    wasted = sum(life.wasted for life in planned)
    life_total = sum(life.usage + life.wasted for life in result.lives)
    return {
        "failures": len(failures),
        "failures_by_mode": dict(sorted(Counter(life.reason for life in failures).items())),
        "failures_random_fault": sum(1 for life in failures if life.random_fault),
        "failures_foreseeable": sum(1 for life in failures if not life.random_fault),
        # lives that began before fleetcare's first reading (a fleet joined mid-life)
        "failures_joined_foreseeable": sum(
            1 for life in failures if life.joined and not life.random_fault
        ),
        "lives_joined_ended": sum(1 for life in result.lives if life.joined),
        "planned_replacements": len(planned),
        "orders_raised": result.orders_raised,
        "orders_late": result.orders_late,
        "orders_by_trigger": {k: v for k, v in sorted(result.triggers.items()) if k != RESCHEDULED},
        "orders_rescheduled": result.triggers[RESCHEDULED],
        "mean_wasted_life": round(wasted / len(planned), 3) if planned else 0.0,
        "mean_wasted_share": round(
            float(np.mean([life.wasted / max(life.usage + life.wasted, 1e-9) for life in planned])),
            4,
        )
        if planned
        else 0.0,
        "wasted_share_of_life": round(wasted / life_total, 4) if life_total else 0.0,
        "life_unit": spec.life_unit,
        "by_component": {
            c.name: _component_figures([life for life in result.lives if life.component == c.name])
            for c in spec.components
        },
        "parts_eur": round(parts_eur, 2),
        "labour_eur": round(labour_eur, 2),
        "downtime_eur": round(downtime_eur, 2),
        "total_eur": round(parts_eur + labour_eur + downtime_eur, 2),
        **(
            {"last_prediction_at_failure": last_predictions(result.at_failure)}
            if result.at_failure
            else {}
        ),
    }


def last_predictions(seen: list[FailureSeen]) -> dict[str, Any]:
    """What the last prediction before each foreseeable failure said, for lives that began
    before fleetcare's first reading (``joined``) and for the others: how many, how many
    were never scored, the median remaining life (and its low end) and failure probability."""
    out: dict[str, Any] = {}
    for name, joined in (("joined", True), ("fitted_after", False)):
        mine = [f for f in seen if f.joined == joined and not f.random_fault]
        scored = [f for f in mine if f.rul is not None]

        def median(values: list[float | None]) -> float | None:
            vals = [v for v in values if v is not None]
            return round(float(np.median(vals)), 3) if vals else None

        out[name] = {
            "failures": len(mine),
            "never_scored": len(mine) - len(scored),
            "rul_median": median([f.rul for f in scored]),
            "rul_low_median": median([f.rul_low for f in scored]),
            "failure_probability_median": median([f.failure_probability for f in scored]),
        }
    return out


def _component_figures(lives: list[Any]) -> dict[str, Any]:
    """One component's lives: failures (random faults apart), planned replacements, life
    units wasted and lived (used + wasted) in all; what a per-component coverage is chosen on."""
    failures = [life for life in lives if life.reason != "planned"]
    return {
        "failures": len(failures),
        "failures_random_fault": sum(1 for life in failures if life.random_fault),
        "planned_replacements": len(lives) - len(failures),
        "wasted_life": round(sum(life.wasted for life in lives if life.reason == "planned"), 3),
        "life": round(sum(life.usage + life.wasted for life in lives), 3),
    }


def compare(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The target: predictive prevents >= 95% of failures, wastes <= 1/3 of preventive's.

    The verdict (``target_met_foreseeable``, ``target_judged_on``) counts the failures a
    model can foresee: every failure but those the physics says a random fault caused (a
    fault drawn at random per trip, with no precursor in any signal; only elevators have
    them). Those are reported apart, for every strategy (``random_fault_failures``), and the
    same target on every failure, random faults included, is ``target_met_all_failures``.
    """
    rtf, prev, pred = (figures[s] for s in STRATEGIES)

    def prevented(key: str, s: dict[str, Any]) -> float | None:
        return round(1 - s[key] / rtf[key], 4) if rtf[key] else None

    ratio = (
        round(pred["wasted_share_of_life"] / prev["wasted_share_of_life"], 4)
        if prev["wasted_share_of_life"]
        else None
    )
    waste_met = ratio is not None and ratio <= TARGET_WASTE_RATIO
    every = prevented("failures", pred)
    foreseeable = prevented("failures_foreseeable", pred)
    return {
        "preventive_prevented_share": prevented("failures", prev),
        "predictive_prevented_share_all_failures": every,
        "predictive_prevented_share_foreseeable": foreseeable,
        "predictive_waste_vs_preventive": ratio,
        "target_judged_on": TARGET_JUDGED_ON,
        # the verdict: no foreseeable failure in run to failure leaves nothing to prevent
        "target_met_foreseeable": bool(
            (foreseeable is None or foreseeable >= TARGET_PREVENTED) and waste_met
        ),
        "target_met_all_failures": bool(
            every is not None and every >= TARGET_PREVENTED and waste_met
        ),
        "random_fault_failures": {s: figures[s]["failures_random_fault"] for s in STRATEGIES},
    }


@dataclass
class EvaluationConfig:
    seed: int = 1
    assets: int = 48
    days: float = 365.0
    kinds: tuple[str, ...] = PHYSICS_KINDS  # the kinds the simulators have physics for
    coverage: float | None = None  # None: the kind's model.coverage setting, as the product
    # coverages run on a validation fleet (reported); () for none
    sweep: tuple[float, ...] = ()
    # choose the coverage per component by evaluation.choice's rule on this run's one
    # validation sweep instead of on the stored validation fleets: a study, not the default
    choose: bool = False
    threads: int = 1  # BLAS/OpenMP threads in this process
    jobs: int = 2  # processes for the independent fits of a RUL regressor
    training_assets: int | None = None  # size of the training fleet (default: ``assets``)
    training_lives: int | None = None  # at least this many lives (default: per kind)
    # also run the evaluation fleet at every coverage of the sweep: the held-out trade-off,
    # reported beside the figures, never used to choose
    evaluation_sweep: bool = False
    # the evaluation fleet joins fleetcare mid-life: its parts' readings before the first
    # day are not seen (usage counters still count since fitted), as a real fleet connected
    # to fleetcare with parts already in use (fleets.ReadingsLog.connect)
    joined_mid_life: bool = False


def validation_sweep(
    kind: str,
    config: EvaluationConfig,
    intervals: dict[str, float],
    model: WearModel,
    say: Progress,
) -> list[dict[str, Any]]:
    """The coverage trade-off on a validation fleet (its own seed, ``VALIDATION_FLEET_FACTOR``
    times the evaluation fleet): failures prevented and life wasted at each coverage."""
    say(f"{kind}: validation fleet for the coverage")
    size = config.assets * VALIDATION_FLEET_FACTOR
    world = new_world(kind, config.seed + 3_000, size, purpose=3)
    warm_up(world, config.seed + 3_000)
    base = {
        s: summarise(kind, run_strategy(world, s, config.days, intervals=intervals), config.days)
        for s in ("run_to_failure", "preventive")
    }
    sweep = []
    for cov in config.sweep:
        say(f"{kind}: validation, predictive at coverage {cov}")
        res = run_strategy(world, "predictive", config.days, model=model, coverage=cov)
        pred = summarise(kind, res, config.days)
        c = compare({**base, "predictive": pred})
        sweep.append(sweep_point(cov, base, pred, c))
    return sweep


def sweep_point(
    coverage: float, base: dict[str, dict[str, Any]], pred: dict[str, Any], c: dict[str, Any]
) -> dict[str, Any]:
    """One coverage of a sweep: failures (random faults apart), waste, cost."""
    rtf = base["run_to_failure"]
    return {
        "coverage": coverage,
        "failures": pred["failures"],
        "failures_foreseeable": pred["failures_foreseeable"],
        "failures_random_fault": pred["failures_random_fault"],
        "failures_run_to_failure": rtf["failures"],
        "failures_run_to_failure_foreseeable": rtf["failures_foreseeable"],
        "wasted_share_of_life": pred["wasted_share_of_life"],
        "prevented_share": c["predictive_prevented_share_all_failures"],
        "prevented_share_foreseeable": c["predictive_prevented_share_foreseeable"],
        "waste_vs_preventive": c["predictive_waste_vs_preventive"],
        "total_eur": pred["total_eur"],
        "preventive_prevented_share": c["preventive_prevented_share"],
        "preventive_wasted_share_of_life": base["preventive"]["wasted_share_of_life"],
        "by_component": {
            c: {**v, "failures_run_to_failure": rtf["by_component"][c]["failures"]}
            for c, v in pred["by_component"].items()
        },
    }


def scoring_coverage(
    config: EvaluationConfig, sweep: list[dict[str, Any]], model: WearModel, kind: str = ""
) -> tuple[dict[str, float], str]:
    """The coverage per component the evaluation fleet is scored at, and where it comes
    from: ``--coverage`` for every component; with ``--choose``, the rule of
    :func:`evaluation.choice.choose_robust` on this run's one validation sweep; by default
    the same rule on the stored sweeps of the validation fleets
    (:data:`evaluation.choice.VALIDATION_SEEDS`), which the kind's ``model.coverage``
    setting (what the product's training gives its versions) equals; the kind's setting
    when ``kind`` has no stored sweeps."""
    components = model.bundle.components
    if config.coverage is not None:
        return {c: config.coverage for c in components}, "fixed"
    if config.choose:
        if not sweep:
            raise ValueError("choosing the coverage needs a validation sweep")
        return choose_robust([sweep])["coverage"], "this run's validation fleet"
    stored = stored_choice(kind) if kind else None
    if stored is not None and set(stored["coverage"]) == set(components):
        seeds = ", ".join(str(s) for s in stored["seeds"])
        return dict(stored["coverage"]), f"validation fleets {seeds} (evaluation.choice)"
    return {c: model.bundle.coverage_of(c) for c in components}, "kind settings (as the product)"


def validation_figures(
    sweep: list[dict[str, Any]], coverage: dict[str, float]
) -> dict[str, Any] | None:
    """What the validation sweep says of a coverage per component: failures and waste
    ratio summed from each component's figures at its coverage (None when the sweep has
    no such coverage)."""
    parts = []
    for component, value in coverage.items():
        point = next((p for p in sweep if p["coverage"] == value), None)
        if point is None or component not in point["by_component"]:
            return None
        parts.append(point["by_component"][component])
    lived = sum(part["life"] for part in parts)
    preventive = sweep[0]["preventive_wasted_share_of_life"]
    return {
        "failures": sum(part["failures"] for part in parts),
        "failures_random_fault": sum(part["failures_random_fault"] for part in parts),
        "failures_run_to_failure": sweep[0]["failures_run_to_failure"],
        "waste_vs_preventive": round(
            sum(part["wasted_life"] for part in parts) / lived / preventive, 4
        )
        if lived and preventive
        else None,
    }


def _coverages(coverage: dict[str, float]) -> str:
    return ", ".join(f"{c} {v}" for c, v in coverage.items())


@dataclass
class KindSetup:
    """What the strategies of one kind start from: the training fleet and the wear model
    trained on it, the tuning fleet and the preventive intervals from it."""

    training: World
    tuning: World
    intervals: dict[str, float]
    model: WearModel


def prepare_kind(kind: str, config: EvaluationConfig, say: Progress) -> KindSetup:
    """Train the kind's wear model and tune its preventive interval (steps 1 and 2)."""
    say(f"{kind}: training fleet")
    training = run_training_fleet(
        kind, config.seed + 1_000, config.training_assets or config.assets, config.training_lives
    )
    say(f"{kind}: tuning fleet for the preventive interval")
    tuning = run_tuning_fleet(kind, config.seed + 2_000, config.assets, config.days)
    intervals = preventive_intervals(tuning)
    say(f"{kind}: training the wear model on {len(training.lives)} lives")
    with threadpool_limits(limits=config.threads):
        model = train_wear_model(kind, training, n_jobs=config.jobs)
    return KindSetup(training, tuning, intervals, model)


def evaluate(
    config: EvaluationConfig,
    progress: Progress | None = None,
    prepared: dict[str, KindSetup] | None = None,
) -> dict[str, Any]:
    """Run the three strategies per kind; every figure, as plain JSON-able data.
    ``prepared``: kinds already trained and tuned (:func:`prepare_kind`); the kinds this run
    prepares are added to it."""
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {
        "seed": config.seed,
        "assets_per_kind": config.assets,
        "joined_mid_life": config.joined_mid_life,
        "days": config.days,
        "preventive_quantile": PREVENTIVE_QUANTILE,
        "assumptions": {k: ECONOMICS[k].model_dump() for k in config.kinds},
        "kinds": {},
    }
    with threadpool_limits(limits=config.threads):
        for kind in config.kinds:
            setup = prepared.get(kind) if prepared is not None else None
            if setup is None:
                setup = prepare_kind(kind, config, say)
                if prepared is not None:
                    prepared[kind] = setup
            training, tuning = setup.training, setup.tuning
            intervals, model = setup.intervals, setup.model
            sweep: list[dict[str, Any]] = []
            if config.sweep:
                sweep = validation_sweep(kind, config, intervals, model, say)
            coverage, chosen_on = scoring_coverage(config, sweep, model, kind)
            say(f"{kind}: warming up the evaluation fleet")
            world = new_world(kind, config.seed, config.assets, purpose=0)
            warm_up(world, config.seed)
            if config.joined_mid_life:
                world.log.connect()
            figures: dict[str, Any] = {}
            for strategy in STRATEGIES:
                say(
                    f"{kind}: {strategy}"
                    + (f" (coverage {_coverages(coverage)})" if strategy == "predictive" else "")
                )
                result = run_strategy(
                    world, strategy, config.days, intervals=intervals, model=model,
                    coverage=coverage,
                )  # fmt: skip
                figures[strategy] = summarise(kind, result, config.days)
            heldout_sweep = []
            if config.evaluation_sweep:
                base = {s: figures[s] for s in ("run_to_failure", "preventive")}
                for cov in config.sweep:
                    if set(coverage.values()) == {cov}:
                        pred = figures["predictive"]
                    else:
                        say(f"{kind}: evaluation fleet at coverage {cov} (reported, not chosen)")
                        res = run_strategy(
                            world, "predictive", config.days, model=model, coverage=cov
                        )
                        pred = summarise(kind, res, config.days)
                    heldout_sweep.append(
                        sweep_point(cov, base, pred, compare({**base, "predictive": pred}))
                    )
            out["kinds"][kind] = {
                "assets": world.population.size,
                "training_lives": len(training.lives),
                "tuning_lives": len(tuning.lives),
                "preventive_interval": {
                    c: round(v, 3) if math.isfinite(v) else None for c, v in intervals.items()
                },
                "coverage": coverage,
                "coverage_chosen_on": chosen_on,
                "coverage_kind_setting": {c: model.bundle.coverage_of(c) for c in coverage},
                "coverage_on_validation": validation_figures(sweep, coverage) if sweep else None,
                "strategies": figures,
                **compare(figures),
                "validation_sweep": sweep,
                **({"evaluation_sweep": heldout_sweep} if config.evaluation_sweep else {}),
            }
    return out
