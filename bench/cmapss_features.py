"""C-MAPSS feature benchmark: the shipped window features against the previous ones, paired.

    python -m bench.cmapss_features --train ../shared/data/cmapss/train_FD001.txt
    python -m bench.cmapss_features --train ... --seeds 0,1 --folds 5 --cuts 10

For each seed the units are split into ``--folds`` folds as ``fleetcare models cmapss-cv``
splits them (GroupKFold over unit labels shuffled by the seed). In each fold both feature sets
are fitted on the training units (per-regime normalisation included) and the same point model
(the RUL regressor's gradient boosting, without its calibration refits) is trained on each.
Every held-out unit is cut ``--cuts`` times at a random cycle (uniform between 31 and its
length, as ``models.cmapss.truncate_units``) and scored at its last kept cycle against the
truth capped at 125; the features being causal, a cut's features are the full unit's at that
row. Both models see the same folds and cuts. Prints the RMSE per seed of each, their ratio
(new / previous) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import GroupKFold

from models import cmapss
from models.features import WindowFeatures, group_bounds

FloatArray = NDArray[np.float64]

# the window features before the last change (models/features.py history): without the
# 600-row life window (before that: 5 windows without a std on all but the longest, and
# a 10-row baseline with six conditions)
PREVIOUS: dict[int, dict[str, Any]] = {
    1: {"smoothing": 0.3, "windows": (5, 10, 20, 30, 60), "std_windows": (60,)},
    6: {
        "smoothing": 0.15,
        "windows": (10, 20, 30, 50, 80),
        "std_windows": (80,),
        "baseline_window": 30,
    },
}


def _point_model(features: FloatArray, rul: FloatArray) -> Any:
    """The RUL regressor's point model (same parameters as the shipped one)."""
    regressor = cmapss.make_rul_regressor()
    return regressor._fit_model(features, np.minimum(rul, regressor.max_rul), None)


def paired_rmse(
    data: FloatArray, seed: int, folds: int, cuts: int
) -> tuple[dict[str, float], dict[str, float]]:
    """RMSE (capped truth) of the previous and the shipped features on one seed's folds,
    and the CPU seconds of their model fits."""
    X = cmapss.readings_matrix(data)
    rul = cmapss.rul_to_failure(data)
    conditions = 1 if cmapss.operating_conditions(data) <= 1 else 6
    makers = {
        "previous": lambda: WindowFeatures(n_settings=cmapss.N_SETTINGS, **PREVIOUS[conditions]),
        "new": lambda: cmapss.make_featurizer(conditions),
    }
    rng = np.random.default_rng(seed)
    units = np.unique(data[:, 0])
    relabel = dict(zip(units, rng.permutation(units.shape[0]), strict=True))
    groups = np.array([relabel[u] for u in data[:, 0]])
    squared: dict[str, list[float]] = {name: [] for name in makers}
    cpu = dict.fromkeys(makers, 0.0)
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(data, groups=groups):
        cut_rng = np.random.default_rng(1000 + seed)  # each fold's cuts: a stream of its own
        starts, ends = group_bounds(data[test_idx, 0])
        lengths = ends - starts
        shortest = np.minimum(cmapss.MIN_TRUNCATION_CYCLES, lengths)
        kept = [
            np.array([cut_rng.integers(lo, n + 1) for lo, n in zip(shortest, lengths, strict=True)])
            for _ in range(cuts)
        ]
        for name, make in makers.items():
            featurizer = make().fit(X[train_idx])
            started = time.process_time()
            model = _point_model(featurizer.transform(X[train_idx]), rul[train_idx])
            cpu[name] += time.process_time() - started
            predicted = np.clip(model.predict(featurizer.transform(X[test_idx])), 0, 125)
            for k in kept:
                true = np.minimum(lengths - k, cmapss.DEFAULT_MAX_RUL)
                squared[name].append(float(np.mean((predicted[starts + k - 1] - true) ** 2)))
    return {n: float(np.sqrt(np.mean(v))) for n, v in squared.items()}, cpu


def main(argv: list[str] | None = None) -> None:
    """Run the paired comparison and print its figures; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="train_FD00x.txt")
    parser.add_argument("--seeds", default="0,1", help="comma-separated fold seeds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cuts", type=int, default=10, help="random cuts per held-out unit")
    args = parser.parse_args(argv)
    if args.folds < 2 or args.cuts < 1:
        parser.error("--folds must be >= 2 and --cuts >= 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        data = cmapss.load_cmapss(args.train)
    except ValueError as exc:  # CMAPSSDataError too
        parser.error(str(exc))
    per_seed: dict[str, list[float]] = {"previous": [], "new": []}
    cpu = {"previous": 0.0, "new": 0.0}
    for seed in seeds:
        rmse, fit_cpu = paired_rmse(data, seed, args.folds, args.cuts)
        for name in per_seed:
            per_seed[name].append(rmse[name])
            cpu[name] += fit_cpu[name]
        print(f"seed {seed}: RMSE previous {rmse['previous']:.3f}, new {rmse['new']:.3f}")
    mean = {n: float(np.mean(v)) for n, v in per_seed.items()}
    result = {
        "dataset": cmapss.dataset_name(args.train),
        "seeds": seeds,
        "folds": args.folds,
        "cuts": args.cuts,
        "rmse_previous": [round(v, 3) for v in per_seed["previous"]],
        "rmse_new": [round(v, 3) for v in per_seed["new"]],
        "rmse_previous_mean": round(mean["previous"], 3),
        "rmse_new_mean": round(mean["new"], 3),
        "ratio_rmse_new_vs_previous": round(mean["new"] / mean["previous"], 4),
        "fit_cpu_s_previous": round(cpu["previous"], 1),
        "fit_cpu_s_new": round(cpu["new"], 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
