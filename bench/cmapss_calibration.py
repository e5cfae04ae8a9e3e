"""C-MAPSS interval calibration: `cmapss-cv`'s figures for several numbers of calibration folds.

    python -m bench.cmapss_calibration --train ../shared/data/cmapss/train_FD001.txt
    python -m bench.cmapss_calibration --train ... --max-features 0.3 --calibration-folds 3,2

The folds of held-out units and the random cuts are ``fleetcare models cmapss-cv``'s (the same
random stream, seeded by ``--seed``; 5 folds, 10 cuts per held-out unit): with the shipped
calibration folds the figures equal ``cmapss-cv --folds 5 --truncations 10``'s. In each fold the
point model is fitted once and shared; only the calibration refits differ between the numbers of
calibration folds (K refits on (K-1)/K of the training units each), so the RMSE is the same for
every K and only the interval coverage moves. The fits run on two processes (one thread each,
like ``fleetcare models cmapss``). After each fold it prints the running figures and the CPU
seconds of the fits (the point model, and the refits of each K); the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold

from models import cmapss
from models.estimators import CONDITIONS_RUL_PARAMS, RULRegressor

FloatArray = NDArray[np.float64]
FOLDS = 5
CUTS = 10


def _fit(regressor: RULRegressor, X: FloatArray, y: FloatArray) -> tuple[Any, float]:
    started = time.process_time()
    model = regressor._fit_model(X, y, None)
    return model, time.process_time() - started


def _key(X: FloatArray, y: FloatArray) -> tuple[int, float, float]:
    """Which rows a fit got (the calibration split is GroupKFold's: deterministic)."""
    return X.shape[0], float(X.sum(axis=0) @ np.arange(1, X.shape[1] + 1)), float(y.sum())


class _Prefitted(RULRegressor):
    """A RUL regressor whose fits were made beforehand (RULRegressor.fit, minus the fitting)."""

    fitted: dict[tuple[int, float, float], HistGradientBoostingRegressor]

    def _fit_model(
        self, X: FloatArray, y: FloatArray, w: FloatArray | None
    ) -> HistGradientBoostingRegressor:
        return self.fitted[_key(X, y)]


def run(
    data: FloatArray, seed: int, calibration_folds: list[int], params: dict[str, Any]
) -> dict[str, Any]:
    """The cross-validation; ``params`` are the RUL regressor's (C-MAPSS path's by default)."""
    rng = np.random.default_rng(seed)  # as models.cmapss.crossvalidate_cmapss
    units = np.unique(data[:, 0])
    relabel = dict(zip(units, rng.permutation(units.shape[0]), strict=True))
    groups = np.array([relabel[u] for u in data[:, 0]])
    scores: dict[int, list[dict[str, float]]] = {k: [] for k in calibration_folds}
    cpu: dict[str, float] = {"point": 0.0, **{str(k): 0.0 for k in calibration_folds}}
    with Parallel(n_jobs=2) as parallel:
        for fold, (train_idx, test_idx) in enumerate(
            GroupKFold(n_splits=FOLDS).split(data, groups=groups), start=1
        ):
            train = data[train_idx]
            X = cmapss.readings_matrix(train)
            featurizer = cmapss.fit_conditions_features(X, cmapss.N_SETTINGS)
            F = featurizer.transform(X)
            rul = cmapss.rul_to_failure(train)
            y = np.minimum(rul, cmapss.DEFAULT_MAX_RUL)
            base = RULRegressor(max_rul=cmapss.DEFAULT_MAX_RUL, random_state=seed, **params)
            jobs: list[tuple[str, NDArray[np.intp]]] = [("point", np.arange(F.shape[0]))]
            for k in calibration_folds:
                split = GroupKFold(n_splits=k).split(F, y, train[:, 0])
                jobs += [(str(k), rows) for rows, _ in split]
            fitted = parallel(delayed(_fit)(base, F[rows], y[rows]) for _, rows in jobs)
            models = {}
            for (name, rows), (model, seconds) in zip(jobs, fitted, strict=True):
                models[_key(F[rows], y[rows])] = model
                cpu[name] += seconds
            regressors = {}
            for k in calibration_folds:
                regressor = _Prefitted(**{**base.get_params(), "calibration_folds": k})
                regressor.fitted = models
                regressors[k] = regressor.fit(F, rul, groups=train[:, 0])
            held_out = data[test_idx]
            for _ in range(CUTS):
                test, true = cmapss.truncate_units(held_out, rng)
                for k, regressor in regressors.items():
                    _, point, low, high = cmapss.predict_last(featurizer, regressor, test)
                    scores[k].append(
                        cmapss.score_rul(point, low, high, true, cmapss.DEFAULT_MAX_RUL)
                    )
            running = {
                k: (_mean(v, "rmse_capped125"), _mean(v, "interval_coverage"))
                for k, v in scores.items()
            }
            print(f"fold {fold}: RMSE, coverage so far {running}; fit CPU-s {cpu}", flush=True)
    return {
        "dataset": None,
        "seed": seed,
        "params": params,
        **{
            f"calibration_folds_{k}": {
                "rmse_capped125": round(_mean(v, "rmse_capped125"), 4),
                "phm08_score_capped125": round(_mean(v, "phm08_score_capped125"), 2),
                "interval_coverage": round(_mean(v, "interval_coverage"), 4),
                "fit_cpu_s": round(cpu[str(k)], 1),
            }
            for k, v in scores.items()
        },
        "point_fit_cpu_s": round(cpu["point"], 1),
    }


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def main(argv: list[str] | None = None) -> None:
    """Run the cross-validation and print its figures; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="train_FD00x.txt")
    parser.add_argument("--seed", type=int, default=0, help="cmapss-cv's --seed")
    parser.add_argument("--calibration-folds", default="5,3", help="comma-separated, each >= 2")
    parser.add_argument(
        "--max-features", type=float, default=None, help="instead of the C-MAPSS path's"
    )
    args = parser.parse_args(argv)
    try:
        ks = [int(k) for k in args.calibration_folds.split(",")]
        data = cmapss.load_cmapss(args.train)
    except ValueError as exc:  # CMAPSSDataError too
        parser.error(str(exc))
    if any(k < 2 for k in ks):
        parser.error("--calibration-folds must each be >= 2")
    params = {k: v for k, v in CONDITIONS_RUL_PARAMS.items() if k != "calibration_folds"}
    if args.max_features is not None:
        params["max_features"] = args.max_features
    started, load = time.time(), os.getloadavg()[0]
    result = run(data, args.seed, ks, params)
    result["dataset"] = cmapss.dataset_name(args.train)
    result["wall_s"] = round(time.time() - started)
    result["load_average"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
