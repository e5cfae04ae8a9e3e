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
3. **Validation fleet** (its own seed, mixed ages): the predictive strategy runs at each
   interval coverage of the sweep; :func:`choose_coverage` picks the one used on the
   evaluation fleet (the largest that meets the whole target there).
   This is the safety margin, chosen without looking at the evaluation fleet; the sweep is
   the reported trade-off.
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation.costs import ECONOMICS
from evaluation.fleets import (
    PREVENTIVE_QUANTILE,
    new_world,
    preventive_intervals,
    run_training_fleet,
    run_tuning_fleet,
    warm_up,
)
from evaluation.strategies import RESCHEDULED, STRATEGIES, StrategyResult, run_strategy
from evaluation.wear_model import DEFAULT_COVERAGE, WearModel, train_wear_model
from kinds.loader import builtin_kinds

Progress = Callable[[str], None]

SWEEP_COVERAGES = (0.8, 0.85, 0.9, 0.95)
TARGET_PREVENTED = 0.95
TARGET_WASTE_RATIO = 1 / 3
VALIDATION_FLEET_FACTOR = 2  # the coverage is chosen on a fleet this many times larger


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
        "failures_sudden": sum(1 for life in failures if life.sudden),
        "failures_gradual": sum(1 for life in failures if not life.sudden),
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
        "parts_eur": round(parts_eur, 2),
        "labour_eur": round(labour_eur, 2),
        "downtime_eur": round(downtime_eur, 2),
        "total_eur": round(parts_eur + labour_eur + downtime_eur, 2),
    }


def compare(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The target: predictive prevents >= 95% of failures, wastes <= 1/3 of preventive's."""
    rtf, prev, pred = (figures[s] for s in STRATEGIES)

    def prevented(key: str, s: dict[str, Any]) -> float | None:
        return round(1 - s[key] / rtf[key], 4) if rtf[key] else None

    ratio = (
        round(pred["wasted_share_of_life"] / prev["wasted_share_of_life"], 4)
        if prev["wasted_share_of_life"]
        else None
    )
    share = prevented("failures", pred)
    return {
        "preventive_prevented_share": prevented("failures", prev),
        "predictive_prevented_share": share,
        "predictive_prevented_share_gradual": prevented("failures_gradual", pred),
        "predictive_waste_vs_preventive": ratio,
        "target_met": bool(
            share is not None
            and share >= TARGET_PREVENTED
            and ratio is not None
            and ratio <= TARGET_WASTE_RATIO
        ),
    }


@dataclass
class EvaluationConfig:
    seed: int = 1
    assets: int = 48
    days: float = 365.0
    kinds: tuple[str, ...] = ("tire", "elevator", "engine")
    coverage: float | None = None  # None: chosen per kind on the validation fleet
    sweep: tuple[float, ...] = SWEEP_COVERAGES
    threads: int = 1  # BLAS/OpenMP threads in this process
    jobs: int = 2  # processes for the independent fits of a RUL regressor
    training_assets: int | None = None  # size of the training fleet (default: ``assets``)
    training_lives: int | None = None  # at least this many lives (default: per kind)


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
        sweep.append(
            {
                "coverage": cov,
                "failures": pred["failures"],
                "failures_run_to_failure": base["run_to_failure"]["failures"],
                "wasted_share_of_life": pred["wasted_share_of_life"],
                "prevented_share": c["predictive_prevented_share"],
                "waste_vs_preventive": c["predictive_waste_vs_preventive"],
                "total_eur": pred["total_eur"],
                "preventive_prevented_share": c["preventive_prevented_share"],
                "preventive_wasted_share_of_life": base["preventive"]["wasted_share_of_life"],
            }
        )
    return sweep


def choose_coverage(
    sweep: list[dict[str, Any]],
    target: float = TARGET_PREVENTED,
    waste_ratio: float = TARGET_WASTE_RATIO,
) -> float:
    """The coverage for the evaluation fleet, from the validation fleet's sweep.

    When some coverages meet the whole target there (prevent ``target`` of the failures
    and waste at most ``waste_ratio`` of the preventive schedule's waste), the largest of
    them: the most margin against failures that the waste budget allows. Otherwise the
    smallest coverage from which on every coverage of the sweep prevents ``target`` (one
    lucky low coverage is not enough: failure counts are small and noisy), and the largest
    one when none does."""
    ordered = sorted(sweep, key=lambda p: p["coverage"])
    meets = [
        p
        for p in ordered
        if (p["prevented_share"] or 0.0) >= target
        and p.get("waste_vs_preventive") is not None
        and p["waste_vs_preventive"] <= waste_ratio
    ]
    if meets:
        return float(meets[-1]["coverage"])
    chosen = ordered[-1]["coverage"]
    for p in reversed(ordered):
        if (p["prevented_share"] or 0.0) < target:
            break
        chosen = p["coverage"]
    return float(chosen)


def evaluate(config: EvaluationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the three strategies per kind; every figure, as plain JSON-able data."""
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {
        "seed": config.seed,
        "assets_per_kind": config.assets,
        "days": config.days,
        "preventive_quantile": PREVENTIVE_QUANTILE,
        "assumptions": {k: asdict(ECONOMICS[k]) for k in config.kinds},
        "kinds": {},
    }
    with threadpool_limits(limits=config.threads):
        for kind in config.kinds:
            say(f"{kind}: training fleet")
            training = run_training_fleet(
                kind, config.seed + 1_000, config.training_assets or config.assets,
                config.training_lives,
            )  # fmt: skip
            say(f"{kind}: tuning fleet for the preventive interval")
            tuning = run_tuning_fleet(kind, config.seed + 2_000, config.assets, config.days)
            intervals = preventive_intervals(tuning)
            say(f"{kind}: training the wear model on {len(training.lives)} lives")
            model = train_wear_model(kind, training, n_jobs=config.jobs)
            sweep: list[dict[str, Any]] = []
            coverage = config.coverage
            if config.sweep:
                sweep = validation_sweep(kind, config, intervals, model, say)
                if coverage is None:
                    coverage = choose_coverage(sweep)
            if coverage is None:
                coverage = DEFAULT_COVERAGE
            say(f"{kind}: warming up the evaluation fleet")
            world = new_world(kind, config.seed, config.assets, purpose=0)
            warm_up(world, config.seed)
            figures: dict[str, Any] = {}
            for strategy in STRATEGIES:
                say(
                    f"{kind}: {strategy}"
                    + (f" (coverage {coverage})" if strategy == "predictive" else "")
                )
                result = run_strategy(
                    world, strategy, config.days, intervals=intervals, model=model,
                    coverage=coverage,
                )  # fmt: skip
                figures[strategy] = summarise(kind, result, config.days)
            out["kinds"][kind] = {
                "assets": world.population.size,
                "training_lives": len(training.lives),
                "tuning_lives": len(tuning.lives),
                "preventive_interval": {
                    c: round(v, 3) if math.isfinite(v) else None for c, v in intervals.items()
                },
                "coverage": coverage,
                "coverage_chosen_on": "validation fleet" if config.coverage is None else "fixed",
                "strategies": figures,
                **compare(figures),
                "validation_sweep": sweep,
            }
    return out
