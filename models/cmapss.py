"""NASA C-MAPSS turbofan data: loader, training, evaluation and held-out-unit cross-validation.

File format (Saxena et al., PHM08): whitespace-separated, 26 columns per row — unit,
cycle, three operating settings, sensors s1..s21; a training unit runs to failure at
its last cycle. An RUL file holds one integer per line: the true remaining cycles
after the last cycle of each test unit, in unit order.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import GroupKFold

from models.estimators import CONDITIONS_RUL_PARAMS, RULRegressor
from models.features import (
    MULTI_CONDITION_FEATURES,
    SINGLE_CONDITION_FEATURES,
    WindowFeatures,
    conditions_features,
    count_operating_regimes,
    fit_conditions_features,
    group_bounds,
)

FloatArray = NDArray[np.float64]

N_COLUMNS = 26
N_SETTINGS = 3
# Sensors that carry degradation signal (1-based s-numbers); the other seven are constant
# or nearly so in every condition.
INFORMATIVE_SENSORS: tuple[int, ...] = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)
DEFAULT_MAX_RUL = 125.0
# The official test sets' shortest unit has 31 cycles; pseudo-test truncation starts there.
MIN_TRUNCATION_CYCLES = 31

# the feature choice by operating conditions, shared with online training (models.features)
FEATURES_BY_CONDITIONS = {1: SINGLE_CONDITION_FEATURES, 6: MULTI_CONDITION_FEATURES}

RESULT_KEYS = (
    "dataset",
    "rmse",
    "rmse_capped125",
    "phm08_score",
    "phm08_score_capped125",
    "interval_coverage",
    "train_seconds",
)


class CMAPSSDataError(ValueError):
    """A C-MAPSS file is missing or not in the expected format."""


# -- loading ---------------------------------------------------------------------------------


def _read_lines(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise CMAPSSDataError(f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CMAPSSDataError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig").splitlines()  # a byte order mark is no data
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CMAPSSDataError(
            f"{p}:{line}: not UTF-8 text (byte 0x{data[exc.start : exc.start + 1].hex()})"
        ) from None


def load_cmapss(path: str | Path) -> FloatArray:
    """Load and validate a C-MAPSS readings file into an array of shape (n_rows, 26).

    Raises :class:`CMAPSSDataError` naming the file and line when the file is missing,
    empty, has a row without 26 columns or a non-numeric/non-finite value, or when a
    unit's cycles are not consecutive from 1 or its rows are not contiguous.
    """
    rows: list[list[float]] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != N_COLUMNS:
            raise CMAPSSDataError(
                f"{path}:{lineno}: expected {N_COLUMNS} columns "
                f"(unit, cycle, 3 settings, 21 sensors), found {len(fields)}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise CMAPSSDataError(f"{path}:{lineno}: non-numeric value {bad!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise CMAPSSDataError(f"{path}:{lineno}: non-finite value")
        rows.append(values)
    if not rows:
        raise CMAPSSDataError(f"{path}: no data rows")
    data = np.asarray(rows, dtype=np.float64)
    unit, cycle = data[:, 0], data[:, 1]
    if np.any(unit != np.round(unit)) or np.any(cycle != np.round(cycle)) or np.any(cycle < 1):
        raise CMAPSSDataError(f"{path}: unit and cycle must be positive integers")
    try:
        starts, ends = group_bounds(unit)
    except ValueError:
        raise CMAPSSDataError(f"{path}: rows of a unit are not contiguous") from None
    expected = np.arange(data.shape[0]) - np.repeat(starts, ends - starts) + 1
    bad_rows = np.flatnonzero(cycle != expected)
    if bad_rows.size:
        raise CMAPSSDataError(
            f"{path}: unit {int(unit[bad_rows[0]])} cycles are not consecutive from 1 "
            f"(row {bad_rows[0] + 1})"
        )
    return data


def load_rul(path: str | Path) -> FloatArray:
    """Load a C-MAPSS RUL file (one non-negative number per line) into a 1-D array."""
    values: list[float] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 or not _is_float(fields[0]):
            raise CMAPSSDataError(f"{path}:{lineno}: expected one number, found {line.strip()!r}")
        v = float(fields[0])
        if not math.isfinite(v) or v < 0:
            raise CMAPSSDataError(f"{path}:{lineno}: RUL must be finite and >= 0, found {v}")
        values.append(v)
    if not values:
        raise CMAPSSDataError(f"{path}: no RUL values")
    return np.asarray(values, dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def readings_matrix(data: FloatArray, sensors: tuple[int, ...] = INFORMATIVE_SENSORS) -> FloatArray:
    """Turn raw C-MAPSS rows into the readings layout of :class:`WindowFeatures`.

    Columns: unit, cycle (usage since renewal), the 3 settings, then the chosen sensors
    (1-based s-numbers).
    """
    sensor_cols = [4 + s for s in sensors]
    return np.ascontiguousarray(data[:, [0, 1, 2, 3, 4, *sensor_cols]])


def rul_to_failure(data: FloatArray) -> FloatArray:
    """Remaining cycles of each row of a run-to-failure file (0 at a unit's last cycle)."""
    starts, ends = group_bounds(data[:, 0])
    last_cycle = np.repeat(data[ends - 1, 1], ends - starts)
    return last_cycle - data[:, 1]


def unit_weights(units: FloatArray) -> FloatArray:
    """Row weights 1/len(unit): every unit counts once, like one random truncation of it."""
    starts, ends = group_bounds(units)
    lengths = (ends - starts).astype(np.float64)
    return np.repeat(1.0 / lengths, ends - starts)


# -- training and scoring --------------------------------------------------------------------


def operating_conditions(data: FloatArray) -> int:
    """Number of operating conditions in raw C-MAPSS rows (1 for FD001/FD003, 6 for FD002/FD004)."""
    return count_operating_regimes(data[:, 2 : 2 + N_SETTINGS])


def make_featurizer(n_conditions: int = 1) -> WindowFeatures:
    """The feature transformer used for C-MAPSS units with ``n_conditions`` conditions."""
    return conditions_features(N_SETTINGS, n_conditions)


def make_rul_regressor(random_state: int = 0) -> RULRegressor:
    """The RUL regressor used for C-MAPSS units (target capped at 125 cycles), with the
    parameters online training gives a kind with ``features: by_operating_conditions``."""
    return RULRegressor(
        max_rul=DEFAULT_MAX_RUL, random_state=random_state, n_jobs=-1, **CONDITIONS_RUL_PARAMS
    )


def fit_rul_model(data: FloatArray, random_state: int = 0) -> tuple[WindowFeatures, RULRegressor]:
    """Fit the featurizer and RUL regressor on run-to-failure rows (raw 26-column array)."""
    X = readings_matrix(data)
    featurizer = fit_conditions_features(X, N_SETTINGS)  # as `fleetcare models train`
    features = featurizer.transform(X)
    regressor = make_rul_regressor(random_state).fit(
        features, rul_to_failure(data), groups=data[:, 0]
    )
    return featurizer, regressor


def predict_last(
    featurizer: WindowFeatures, regressor: RULRegressor, data: FloatArray, coverage: float = 0.8
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Predict RUL and its interval at the last cycle of each unit: (units, point, low, high)."""
    units, features = featurizer.transform_last(readings_matrix(data))
    low, high = regressor.predict_interval(features, coverage=coverage)
    return units, regressor.predict(features), low, high


def phm08_score(predicted: FloatArray, true: FloatArray) -> float:
    """PHM08 score: sum of exp(-d/13)-1 for d<0 and exp(d/10)-1 for d>=0, d = predicted - true."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


def score_rul(
    predicted: FloatArray, low: FloatArray, high: FloatArray, true: FloatArray, cap: float
) -> dict[str, float]:
    """RMSE and PHM08 against raw and capped truth, and interval coverage of the capped truth."""
    capped = np.minimum(true, cap)
    return {
        "rmse": float(np.sqrt(np.mean((predicted - true) ** 2))),
        "rmse_capped125": float(np.sqrt(np.mean((predicted - capped) ** 2))),
        "phm08_score": phm08_score(predicted, true),
        "phm08_score_capped125": phm08_score(predicted, capped),
        "interval_coverage": float(np.mean((low <= capped) & (capped <= high))),
    }


def load_unit_predictions(path: str | Path) -> dict[int, tuple[float, float, float]]:
    """Each unit's (rul, rul_low, rul_high) from JSON lines: ``fleetcare predictions export``'s
    (the unit in ``external_id``) or ``fleetcare models cmapss --predictions``' (``unit``)."""
    out: dict[int, tuple[float, float, float]] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            unit = row["unit"] if "unit" in row else row["external_id"]
            if isinstance(unit, bool) or not str(unit).strip().isdigit():
                raise ValueError(f"unit {unit!r} is not a C-MAPSS unit number")
            values = (float(row["rul"]), float(row["rul_low"]), float(row["rul_high"]))
        except (ValueError, KeyError, TypeError) as exc:
            what = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CMAPSSDataError(f"{path}:{lineno}: not a unit's prediction: {what}") from None
        if int(unit) in out:
            raise CMAPSSDataError(f"{path}:{lineno}: unit {int(unit)} predicted twice")
        out[int(unit)] = values
    if not out:
        raise CMAPSSDataError(f"{path}: no predictions")
    return out


def score_predictions(predictions_path: str | Path, rul_path: str | Path) -> dict[str, Any]:
    """Score each unit's predicted RUL against an RUL file, whose line k is the true RUL of
    unit k (the official test files number their units 1..N): keys as :func:`score_rul`
    plus ``units`` and ``dataset``. Every unit of the RUL file must have a prediction."""
    predicted = load_unit_predictions(predictions_path)
    true = load_rul(rul_path)
    n = true.shape[0]
    missing = [u for u in range(1, n + 1) if u not in predicted]
    extra = sorted(u for u in predicted if not 1 <= u <= n)
    if missing or extra:
        said = []
        if missing:
            said.append(f"no prediction for unit(s) {_some(missing)}")
        if extra:
            said.append(f"unit(s) {_some(extra)} beyond the {n} lines of {rul_path}")
        raise CMAPSSDataError(f"{predictions_path}: {'; '.join(said)}")
    point, low, high = (np.array([predicted[u][i] for u in range(1, n + 1)]) for i in range(3))
    return {
        "dataset": dataset_name(rul_path),
        "units": n,
        **score_rul(point, low, high, true, DEFAULT_MAX_RUL),
    }


def _some(units: list[int]) -> str:
    return ", ".join(map(str, units[:10])) + (
        f" and {len(units) - 10} more" if len(units) > 10 else ""
    )


def dataset_name(path: str | Path) -> str:
    """``FD001`` from ``train_FD001.txt``; the file stem otherwise."""
    match = re.search(r"FD\d{3}", Path(path).name)
    return match.group(0) if match else Path(path).stem


def evaluate_cmapss(
    train_path: str | Path, test_path: str | Path, rul_path: str | Path | None
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Train on ``train_path``, predict each test unit's RUL at its last cycle, score it.

    Returns the scores — ``dataset``, ``rmse``, ``rmse_capped125``, ``phm08_score``,
    ``phm08_score_capped125``, ``interval_coverage`` (of the 80 % interval, against the
    truth capped at 125) and ``train_seconds``; only ``dataset`` and ``train_seconds``
    without ``rul_path`` — and each test unit's prediction (unit, rul, rul_low, rul_high).
    """
    train = load_cmapss(train_path)
    test = load_cmapss(test_path)
    true = load_rul(rul_path) if rul_path is not None else None
    n_units = group_bounds(test[:, 0])[0].shape[0]
    if true is not None and true.shape[0] != n_units:
        raise CMAPSSDataError(
            f"{rul_path}: {true.shape[0]} RUL values for {n_units} test units in {test_path}"
        )
    t0 = time.perf_counter()
    featurizer, regressor = fit_rul_model(train)
    train_seconds = time.perf_counter() - t0
    units, point, low, high = predict_last(featurizer, regressor, test)
    per_unit = [
        {"unit": int(u), "rul": float(p), "rul_low": float(lo), "rul_high": float(hi)}
        for u, p, lo, hi in zip(units, point, low, high, strict=True)
    ]
    scores = score_rul(point, low, high, true, DEFAULT_MAX_RUL) if true is not None else {}
    return {
        "dataset": dataset_name(train_path),
        **scores,
        "train_seconds": train_seconds,
    }, per_unit


def truncate_units(
    data: FloatArray, rng: np.random.Generator, min_cycles: int = MIN_TRUNCATION_CYCLES
) -> tuple[FloatArray, FloatArray]:
    """Cut each run-to-failure unit at a random cycle, like the official test sets.

    The kept length is uniform on ``[min(min_cycles, n), n]`` for a unit of ``n`` cycles.
    Returns the truncated rows and each unit's true RUL after its last kept cycle.
    """
    starts, ends = group_bounds(data[:, 0])
    keep_rows: list[NDArray[np.intp]] = []
    true = np.empty(starts.shape[0])
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        n = int(b - a)
        kept = int(rng.integers(min(min_cycles, n), n + 1))
        keep_rows.append(np.arange(a, a + kept))
        true[i] = n - kept
    return data[np.concatenate(keep_rows)], true


def crossvalidate_cmapss(
    train_path: str | Path, folds: int = 5, seed: int = 0, truncations: int = 1
) -> dict[str, Any]:
    """Held-out-unit cross-validation on a training file; keys as :func:`evaluate_cmapss`.

    Units are split into ``folds`` groups (GroupKFold over shuffled unit ids, fixed by
    ``seed``). For each fold the model trains on the other units; each held-out unit is
    truncated at a random cycle (:func:`truncate_units`), ``truncations`` times with
    different draws, and scored at its last kept cycle. Metrics are averaged over folds
    (PHM08 scores are summed per fold, like the official test sets, then averaged).
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    data = load_cmapss(train_path)
    rng = np.random.default_rng(seed)
    units = np.unique(data[:, 0])
    if units.shape[0] < folds:
        raise CMAPSSDataError(f"{train_path}: {units.shape[0]} units, fewer than {folds} folds")
    # GroupKFold is deterministic; shuffle unit labels so that folds are not id blocks.
    relabel = dict(zip(units, rng.permutation(units.shape[0]), strict=True))
    groups = np.array([relabel[u] for u in data[:, 0]])
    results: list[dict[str, float]] = []
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(data, groups=groups):
        t0 = time.perf_counter()
        featurizer, regressor = fit_rul_model(data[train_idx], random_state=seed)
        train_seconds = time.perf_counter() - t0
        held_out = data[test_idx]
        for _ in range(truncations):
            test, true = truncate_units(held_out, rng)
            _, point, low, high = predict_last(featurizer, regressor, test)
            scores = score_rul(point, low, high, true, DEFAULT_MAX_RUL)
            results.append({**scores, "train_seconds": train_seconds})
    return {
        "dataset": dataset_name(train_path),
        **{k: float(np.mean([r[k] for r in results])) for k in RESULT_KEYS[1:]},
    }
