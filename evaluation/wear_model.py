"""The wear model of the predictive strategy: the product's model bundle, fitted on the
training fleet's lives as the product's training does."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from evaluation.costs import ECONOMICS
from evaluation.fleets import FloatArray, World
from kinds.loader import builtin_kinds
from models.bundle import DEFAULT_COVERAGE, JoinedModels
from models.bundle import WearModel as ModelBundle
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures
from models.lifetimes import (
    JOINED_AFTER_SHARE,
    censored_at_end,
    censored_fit_rows,
    risk_weights,
    with_late_starts,
)
from models.training import HEALTHY_SHARE
from simulators.physics.base import RANDOM_FAULT, WEAR_OUT, reported_cause

MAX_TRAINING_ROWS = 20_000  # per component; rows of long lives are thinned evenly
CALIBRATION_BINS = 10


@dataclass
class WearModel:
    """The product's model bundle (features, RUL and failure risk per component, anomaly
    scorer: :class:`models.bundle.WearModel`) and the rows scoring reads per life."""

    bundle: ModelBundle
    head: int
    tail: int

    def at_coverage(self, coverage: float | Mapping[str, float]) -> WearModel:
        """The same fitted model with its intervals at ``coverage``: one for every component,
        or one per component (a component not named keeps the bundle's)."""
        bundle = copy.copy(self.bundle)
        if not isinstance(coverage, Mapping):
            bundle.coverage, bundle.component_coverage = float(coverage), {}
            return WearModel(bundle, self.head, self.tail)
        unknown = set(coverage) - set(self.bundle.components)
        if unknown:
            raise ValueError(f"coverage for unknown component(s) {sorted(unknown)}")
        bundle.component_coverage = {
            **self.bundle.component_coverage,
            **{c: float(v) for c, v in coverage.items()},
        }
        return WearModel(bundle, self.head, self.tail)


def training_matrices(world: World) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per component: the readings matrix of every failed life (group = life) and the usage
    left until the failure at each row."""
    parts: dict[str, tuple[list[FloatArray], list[FloatArray]]] = {}
    for n, life in enumerate(world.lives):
        if life.reason == "planned" or life.end_row <= life.start_row:
            continue
        rows = world.log.rows[life.asset][life.start_row : life.end_row].copy()
        first = np.array([_first_value(rows[:, j]) for j in range(rows.shape[1])])
        rows = np.where(np.isnan(rows), first, rows)
        if np.isnan(rows).any():
            continue
        rows[:, 0] -= life.offset
        matrix = np.column_stack([np.full(rows.shape[0], float(n)), rows])
        ms, ys = parts.setdefault(life.component, ([], []))
        ms.append(matrix)
        ys.append(np.maximum(life.usage - rows[:, 0], 0.0))
    return {c: (np.concatenate(m), np.concatenate(y)) for c, (m, y) in parts.items()}


def censored_lives(world: World) -> list[float]:
    """The group ids (:func:`training_matrices`) of the lives whose end the product would
    record as censored: a failure the simulators report as another fault (a random fault),
    read as the product's training reads its failure reports
    (:func:`models.lifetimes.censored_at_end`)."""
    return [
        float(n)
        for n, life in enumerate(world.lives)
        if life.reason != "planned"
        and censored_at_end(reported_cause(RANDOM_FAULT if life.random_fault else WEAR_OUT))
    ]


def _first_value(column: FloatArray) -> float:
    ok = np.flatnonzero(~np.isnan(column))
    return float(column[ok[0]]) if ok.size else math.nan


def train_wear_model(
    kind: str,
    world: World,
    n_jobs: int = 1,
    late_starts: bool | None = None,
    risk_weighting: str | None = None,
    joined_model: bool | None = None,
) -> WearModel:
    """Fit the product's model bundle on the training lives as ``models.training.train``
    does: one feature transformer on all rows; per component a RUL regressor (groups =
    lives) and a failure-risk classifier at the kind's default horizon, its rows weighted
    by ``risk_weighting`` (default: the kind's ``risk_weights``, as the product;
    :func:`models.lifetimes.risk_weights`); an anomaly scorer on the healthy first part of
    every life. With ``late_starts`` (default: the kind's setting, as the product) every
    life is also fitted from a late start (:func:`models.lifetimes.with_late_starts`), a
    copy counted as a life of its own by the classifier's weights and as part of its life
    in the regressor's groups. With ``joined_model`` (default: the kind's setting) a second
    regressor and classifier per component, fitted with the late starts, score the parts
    first seen mid-life (:class:`models.bundle.JoinedModels`); the first pair is fitted as
    without it. A life a random fault ended is censored at the fault, as the product's
    training censors a failure reported as another fault
    (:func:`models.lifetimes.censored_fit_rows`)."""
    data = training_matrices(world)
    censored_ids = censored_lives(world)
    if not data:
        raise ValueError(f"the {kind} training fleet recorded no failed lives")
    spec = builtin_kinds()[kind]
    late_starts = spec.model.late_starts if late_starts is None else late_starts
    joined_model = spec.model.joined_model if joined_model is None else joined_model
    weighting = spec.model.risk_weights if risk_weighting is None else risk_weighting
    features = WindowFeatures(n_settings=len(spec.regime_metrics)).fit(
        np.concatenate([m for m, _ in data.values()])
    )
    horizon = spec.model.horizon  # as the product trains it: the kind file's setting
    rul: dict[str, RULRegressor] = {}
    risk: dict[str, FailureRiskClassifier] = {}
    joined_rul: dict[str, RULRegressor] = {}
    joined_risk: dict[str, FailureRiskClassifier] = {}
    healthy: list[FloatArray] = []

    def fit_pair(
        matrix: FloatArray, y: FloatArray, source: FloatArray, X: FloatArray
    ) -> tuple[RULRegressor, FailureRiskClassifier]:
        keep = np.arange(0, X.shape[0], max(1, -(-X.shape[0] // MAX_TRAINING_ROWS)))
        X, y, source, lives = X[keep], y[keep], source[keep], matrix[keep]
        by_rul, by_risk = censored_fit_rows(y, np.isin(source, censored_ids), horizon)
        regressor = RULRegressor(
            max_rul=ECONOMICS[kind].max_rul, calibration_bins=CALIBRATION_BINS, n_jobs=n_jobs
        ).fit(X[by_rul], y[by_rul], groups=source[by_rul])
        weights = risk_weights(lives[:, 0], lives[:, 1], horizon, weighting)[by_risk]
        classifier = FailureRiskClassifier(horizon=horizon).fit(
            X[by_risk], y[by_risk], sample_weight=weights
        )
        return regressor, classifier

    for component, (lives, life_y) in sorted(data.items()):
        # every life from new, and once more from a late start (a fleet joined mid-life)
        late = with_late_starts(lives, life_y) if late_starts or joined_model else None
        matrix, y, source = late if late_starts and late is not None else (
            lives, life_y, lives[:, 0]
        )  # fmt: skip
        X = features.transform(matrix if late is None else late[0])
        n_lives = lives.shape[0]
        keep = np.arange(0, n_lives, max(1, -(-matrix.shape[0] // MAX_TRAINING_ROWS)))
        usage = lives[keep, 1]
        early = usage <= HEALTHY_SHARE * np.maximum(usage + life_y[keep], 1e-9)  # since renewal
        healthy.append(X[keep[early]] if early.sum() >= 2 else X[keep])
        rul[component], risk[component] = fit_pair(matrix, y, source, X[: matrix.shape[0]])
        if joined_model and late is not None:
            joined_rul[component], joined_risk[component] = fit_pair(*late, X)
    joined = (
        JoinedModels(joined_rul, joined_risk, JOINED_AFTER_SHARE * spec.life.typical)
        if joined_model
        else None
    )
    bundle = ModelBundle(
        kind=kind, usage_metric=spec.usage_metric, setting_names=list(spec.regime_metrics),
        sensor_names=list(spec.sensor_names), features=features, rul=rul, risk=risk,
        anomaly=AnomalyScorer().fit(np.concatenate(healthy)), horizon=horizon,
        coverage=DEFAULT_COVERAGE, component_coverage=spec.model.coverage, joined=joined,
    )  # fmt: skip
    head, tail = bundle.history_rows()
    return WearModel(bundle, head, tail)
