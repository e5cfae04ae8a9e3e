"""What explaining costs the scoring pass: CPU seconds per 10,000 assets.

Fits a tire model of the default size (feature windows 5/10/20/30, 300 boosting iterations)
on synthetic lifetimes in memory, then times, on the last 40 readings of 2,000 live tires
(the best of ``--repeats``, in process CPU time so that a busy machine changes little): the
features, the prediction, the data-quality gate, shap's path attributions alone, and the whole
explanation with its JSON. No database. The last line is JSON.

    python -m bench.explain [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from kinds.loader import builtin_kinds
from models.bundle import WearModel
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.explain import Explainer, encode
from models.features import WindowFeatures
from models.quality import QualityGate

ASSETS = 2_000
PER = 10_000 / ASSETS


def _life(
    rng: np.random.Generator, group: int, rows: int, share: float, sensors: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """One tire life's readings matrix (as testkit.synthetic wears it) and the km left."""
    life_km = float(rng.uniform(40_000, 80_000))
    km = np.linspace(0.0, life_km * share, rows)
    wear = km / life_km
    values = {
        "tread_depth_mm": 16.0 - 14.4 * wear**1.2 + rng.normal(0, 0.15, rows),
        "pressure_kpa": 820.0 - 60.0 * wear + rng.normal(0, 4.0, rows),
        "temperature_c": 45.0 + 25.0 * wear**2 + rng.normal(0, 1.5, rows),
        "load_kg": 3000.0 + rng.normal(0, 150.0, rows),
        "speed_kmh": 80.0 + rng.normal(0, 5.0, rows),
    }
    matrix = np.column_stack([np.full(rows, group), km, *(values[s] for s in sensors)])
    return matrix, life_km - km


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    kind = builtin_kinds()["tire"]
    sensors = list(kind.sensor_names)
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):  # what the scoring worker runs with
        lives = [_life(rng, g, 60, 1.0, sensors) for g in range(150)]
        X = np.concatenate([m for m, _ in lives])
        y = np.concatenate([left for _, left in lives])
        features = WindowFeatures(n_settings=0).fit(X)
        F = features.transform(X)
        rul = RULRegressor(max_rul=kind.model.max_rul, calibration_folds=2)
        rul.fit(F, y, groups=X[:, 0])
        risk = FailureRiskClassifier(horizon=kind.model.horizon, max_iter=50).fit(F, y)
        model = WearModel(
            "tire", kind.usage_metric, [], sensors, features, {"tire": rul}, {"tire": risk},
            AnomalyScorer().fit(F), kind.model.horizon,
        )  # fmt: skip
        live = np.concatenate(
            [_life(rng, g, 40, float(rng.uniform(0.3, 0.9)), sensors)[0] for g in range(ASSETS)]
        )
        hour = 3_600_000_000
        times = np.tile(np.arange(40, dtype=np.int64) * hour, ASSETS)
        reference = {"signals": {s: {"constant_share": 0.0} for s in sensors}}
        explainer, gate = Explainer(model, kind), QualityGate.build(model, kind, reference)
        _, f = features.transform_last(live)
        trees = model.tree_arrays()  # as the scoring worker predicts (models.trees)
        predicted = model.predict(f, trees=trees)
        issues = gate.issues(live, times, f)
        steps: dict[str, Callable[[], Any]] = {
            "features": lambda: features.transform_last(live),
            "predict": lambda: model.predict(f, trees=trees),
            "gate": lambda: gate.issues(live, times, f),
            "shap": lambda: explainer.contributions("tire", f),
            "explain": lambda: encode(explainer.explain(live, f, predicted, issues)["tire"]),
        }
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, step in steps.items():
                started = time.process_time()
                step()
                spent = (time.process_time() - started) * PER
                best[name] = min(best.get(name, spent), spent)
    for name, seconds in best.items():
        print(f"{name:>9}: {seconds:.3f} CPU-s per 10,000 assets")
    added = best["gate"] + best["explain"]
    print(f"explanations and the gate add {added:.3f} CPU-s; predict costs {best['predict']:.3f}")
    print(
        json.dumps(
            {
                "bench": "explain",
                "features": int(f.shape[1]),
                "boosting_iterations": int(rul.n_iter_),
                **{f"{k}_cpu_s_per_10k": round(v, 4) for k, v in best.items()},
                "added_cpu_s_per_10k": round(added, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
