"""Training a kind's wear model from the lifetimes recorded in the database.

A life ends when an order renews the asset's component or it fails (``asset_lives``). Each
life becomes a group of the readings matrix (all its rows on the usage grid); the target of
a row is the usage left until the life's end. Assets are split into training and held-out
sets by a fixed function of their id (never by row), the features are fitted on training
rows only, and the held-out metrics are stored with the version. The first version of a
kind becomes active; later ones only when they beat the active version on the same
held-out assets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid
from kinds.service import get_kind
from models import registry
from models import repository as repo
from models.bundle import DEFAULT_COVERAGE, JoinedModels, WearModel
from models.drift import constant_window_counts, reference_distribution
from models.estimators import (
    CONDITIONS_RUL_PARAMS,
    AnomalyScorer,
    FailureRiskClassifier,
    RULRegressor,
)
from models.features import (
    WindowFeatures,
    fit_conditions_features,
    group_bounds,
)
from models.lifetimes import (
    JOINED_AFTER_SHARE,
    censored_at_end,
    censored_fit_rows,
    lifetime_matrices,
    stretch_keys,
    usage_since_renewal,
    with_late_starts,
)
from models.schemas import ModelVersion

FloatArray = NDArray[np.float64]
Progress = Callable[[str], None]
ALGORITHM = "window-features + rul(hgb, binned conformal) + risk(hgb) + mahalanobis"
HEALTHY_SHARE = 0.3  # the first 30% of a life's usage counts as healthy for the anomaly scorer
MAX_TRAINING_ROWS = 20_000  # per component, after balancing the lives (see balanced_rows)


class NoTrainingData(Invalid):
    """No recorded lifetimes (or none with readings) to train on."""


@dataclass
class TrainingResult:
    """The stored version, whether it became active, and why not."""

    version: ModelVersion
    model: WearModel
    promoted: bool
    reason: str
    seconds: float
    cpu_seconds: float = 0.0  # of this process, all its threads
    metrics: dict[str, Any] = field(default_factory=dict)


def _first_of_group(groups: FloatArray, values: FloatArray) -> FloatArray:
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    lengths = np.diff(np.append(starts, groups.shape[0])).astype(np.intp)
    return np.repeat(values[starts], lengths)


def balanced_rows(groups: FloatArray, max_rows: int = MAX_TRAINING_ROWS) -> NDArray[np.intp]:
    """Row indices that give every life (contiguous group) the same number of rows.

    Each life gets ``min(median life length, max_rows // lives)`` rows picked evenly over
    its span: a long life is thinned, a short one has rows repeated. Fitting on these rows
    without weights counts every life equally, as weights of 1/rows-of-the-life would, but
    avoids weighted fitting (scikit-learn's weighted histogram binning is ~20x slower) and
    bounds the rows per fit.
    """
    starts, ends = group_bounds(groups)
    if starts.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    lengths = ends - starts
    per_life = max(1, min(int(np.ceil(np.median(lengths))), max_rows // starts.shape[0]))
    offsets = (np.arange(per_life) + 0.5) / per_life  # evenly over [0, 1)
    picks = starts[:, None] + np.floor(offsets[None, :] * lengths[:, None]).astype(np.intp)
    return picks.ravel()


def train(
    conn: repo.Conn,
    kind: str,
    clock: Clock,
    *,
    rul_params: dict[str, Any] | None = None,
    risk_params: dict[str, Any] | None = None,
    feature_params: dict[str, Any] | None = None,
    max_rul: float | None = None,
    horizon: float | None = None,
    coverage: float | None = None,
    auto_promote: bool = True,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train, store and (when better or first) promote a wear model of ``kind``.

    ``coverage`` sets every component's interval coverage; by default each component takes
    the kind's ``model.coverage`` setting (``DEFAULT_COVERAGE`` when it names none), as
    ``fleetcare evaluate`` scores."""
    started, cpu_started = time.perf_counter(), time.process_time()
    step = progress or (lambda _msg: None)
    spec = get_kind(conn, kind)
    # the kind's definition holds its defaults, in its life unit
    settings = spec.model
    max_rul = float(max_rul if max_rul is not None else settings.max_rul)
    horizon = float(horizon if horizon is not None else settings.horizon)
    if max_rul <= 0 or horizon < 0:
        raise Invalid("max_rul must be > 0 and horizon >= 0")
    if coverage is not None and not 0 < coverage < 1:
        raise Invalid(f"coverage must be between 0 and 1 (exclusive), got {coverage}")
    component_coverage = {} if coverage is not None else dict(settings.coverage)
    setting_names = list(spec.regime_metrics)
    sensor_names = list(spec.sensor_names)
    columns = [*setting_names, *sensor_names]

    step("reading lifetimes")
    lives = repo.fetch_lives(conn, kind)
    if not lives:
        raise NoTrainingData(f"no recorded {kind} lifetimes to train on (asset_lives is empty)")
    data = lifetime_matrices(conn, kind, columns)
    if not data:
        raise NoTrainingData(f"the {len(lives)} recorded {kind} lifetime(s) have no readings")
    life_asset = {life.id: life.asset_id for life in lives}
    # lives a technician found ended by another fault: censored at their end (not a wear end)
    censored_ids = [
        life.id for life in lives if censored_at_end(life.outcome, life.remaining_at_end)
    ]
    all_assets = sorted({life_asset[int(g)] for m, _ in data.values() for g in np.unique(m[:, 0])})
    train_assets, holdout_assets = registry.split_assets(all_assets)
    if not train_assets:
        raise NoTrainingData(f"{kind}: need lifetimes of at least one asset to train on")
    train_set = set(train_assets)

    def split(matrix: FloatArray) -> NDArray[np.bool_]:
        assets = np.array([life_asset[int(g)] for g in matrix[:, 0]])
        return np.isin(assets, list(train_set))

    step("fitting features")
    train_parts = {c: (m[split(m)], y[split(m)]) for c, (m, y) in data.items()}
    train_parts = {c: v for c, v in train_parts.items() if v[0].shape[0]}
    if not train_parts:
        raise NoTrainingData(f"{kind}: no readings in the training lifetimes")
    all_train = np.concatenate([m for m, _ in train_parts.values()])
    if settings.features == "by_operating_conditions" and not feature_params:
        features = fit_conditions_features(all_train, len(setting_names))
    else:
        features = WindowFeatures(n_settings=len(setting_names), **(feature_params or {})).fit(
            all_train
        )

    rul_models: dict[str, RULRegressor] = {}
    risk_models: dict[str, FailureRiskClassifier] = {}
    healthy: list[FloatArray] = []
    rows = 0
    fit_rows: dict[str, int] = {}
    constant = np.zeros((len(sensor_names), 2))
    # a by_operating_conditions kind fits the RUL model as `fleetcare models cmapss` does;
    # --param values still win
    conditions = settings.features == "by_operating_conditions"
    params = {**(CONDITIONS_RUL_PARAMS if conditions else {}), **(rul_params or {})}
    joined_rul: dict[str, RULRegressor] = {}
    joined_risk: dict[str, FailureRiskClassifier] = {}

    def fit_pair(
        lives_matrix: FloatArray,
        matrix: FloatArray,
        y: FloatArray,
        source: FloatArray,
        X: FloatArray,
    ) -> tuple[RULRegressor, FailureRiskClassifier, int]:
        """A RUL regressor and a failure-risk classifier on ``matrix`` (the lives, and their
        late-start copies when it holds them: ``source`` is each row's life)."""
        keep = (
            np.arange(matrix.shape[0])
            if settings.training_rows == "all"
            else balanced_rows(matrix[:, 0])
        )
        # a life ended by another fault is censored at its end (models.lifetimes)
        by_rul, by_risk = censored_fit_rows(y, np.isin(source, censored_ids), horizon)
        rul_keep = keep[by_rul[keep]]
        groups = np.array([life_asset[int(g)] for g in source[rul_keep]])
        regressor = RULRegressor(max_rul=max_rul, **params).fit(
            X[rul_keep], y[rul_keep], groups=groups
        )
        # the failure-risk classifier: every life the same ("life": the rows above), or once
        # per stretch of the horizon's length (rows balanced over the stretches; the same as
        # models.lifetimes.risk_weights without weighted fitting, ~8x slower to bin)
        risk_keep = (
            keep
            if settings.risk_weights == "life"
            else balanced_rows(
                stretch_keys(
                    matrix[:, 0], usage_since_renewal(lives_matrix, matrix, source), horizon
                )
            )
        )
        risk_keep = risk_keep[by_risk[risk_keep]]
        classifier = FailureRiskClassifier(horizon=horizon, **(risk_params or {})).fit(
            X[risk_keep], y[risk_keep]
        )
        return regressor, classifier, int(rul_keep.shape[0])

    for component, (lives_matrix, lives_y) in train_parts.items():
        step(f"fitting {component}")
        # every life from new, and (the kind's late_starts) once more from a late start:
        # what a part connected to fleetcare mid-life shows (models.lifetimes.with_late_starts);
        # with the kind's joined_model, the late starts train the estimators of such parts
        late = (
            with_late_starts(lives_matrix, lives_y)
            if settings.late_starts or settings.joined_model
            else None
        )
        matrix, y, source = (
            late
            if settings.late_starts and late is not None
            else (lives_matrix, lives_y, lives_matrix[:, 0])
        )
        # on every row: a row's features need its past
        X = features.transform(matrix if late is None else late[0])
        n_lives = lives_matrix.shape[0]
        constant += constant_window_counts(features, len(sensor_names), lives_matrix, X[:n_lives])
        rul_models[component], risk_models[component], fit_rows[component] = fit_pair(
            lives_matrix, matrix, y, source, X[: matrix.shape[0]]
        )
        if settings.joined_model and late is not None:
            joined_rul[component], joined_risk[component], _ = fit_pair(lives_matrix, *late, X)
        first = lives_matrix[:, :2]
        used = first[:, 1] - _first_of_group(first[:, 0], first[:, 1])
        early = used <= HEALTHY_SHARE * np.maximum(used + lives_y, 1e-9)
        healthy.append(X[:n_lives][early] if early.sum() >= 2 else X[:n_lives])
        rows += n_lives
    step("fitting anomaly scorer")
    anomaly = AnomalyScorer().fit(np.concatenate(healthy))
    model = WearModel(
        kind=kind,
        usage_metric=spec.usage_metric,
        setting_names=setting_names,
        sensor_names=sensor_names,
        features=features,
        rul=rul_models,
        risk=risk_models,
        anomaly=anomaly,
        horizon=horizon,
        coverage=DEFAULT_COVERAGE if coverage is None else coverage,
        component_coverage=component_coverage,
        joined=JoinedModels(joined_rul, joined_risk, JOINED_AFTER_SHARE * spec.life.typical)
        if settings.joined_model
        else None,
    )

    step("evaluating on held-out assets")
    per_component: dict[str, Any] = {}
    for component, (matrix, y) in data.items():
        held = ~split(matrix)
        ev = registry.evaluate(model, component, matrix[held], y[held])
        if ev is not None:
            per_component[component] = ev.as_dict()
    rmse_values = [v["rmse"] for v in per_component.values()]
    train_lives = [life for life in lives if life.asset_id in train_set]
    metrics: dict[str, Any] = {
        "holdout_rmse": float(np.mean(rmse_values)) if rmse_values else None,
        "components": per_component,
        "holdout_asset_ids": holdout_assets,
        "training_asset_ids": train_assets,
        "lives": len(lives),
        "failures": sum(1 for life in lives if life.end_reason == "failure"),
        "censored_lives": len(censored_ids),  # ended by another fault: not a wear end
        "fit_rows": fit_rows,
    }
    all_params = {
        "features": _jsonable(features.get_params()),
        "rul": _jsonable(next(iter(rul_models.values())).get_params()),
        "risk": _jsonable(next(iter(risk_models.values())).get_params()),
        "anomaly": _jsonable(anomaly.get_params()),
        "max_rul": max_rul,
        "horizon": horizon,
        "coverage": {c: model.coverage_of(c) for c in model.components},
        "holdout_share": registry.HOLDOUT_SHARE,
    }
    step("registering")
    reference = reference_distribution(model, all_train, constant)
    version = registry.register(
        conn,
        model,
        algorithm=ALGORITHM,
        params=all_params,
        metrics=metrics,
        trained_from=min(life.started_at for life in train_lives),
        trained_to=max(life.ended_at for life in train_lives),
        training_assets=len(train_assets),
        training_rows=rows,
        reference=reference,
    )
    promoted, reason = False, "auto-promotion off"
    if auto_promote:
        try:
            with conn.transaction():  # a refusal rolls back only the comparison note
                result = registry.promote(conn, version.id, clock)
            promoted = True
            reason = (
                "first version of the kind"
                if result.replaced_version_id is None
                else f"beats version {result.replaced_version_id} on held-out assets"
            )
        except Conflict as exc:
            reason = exc.detail
    version = registry.get_version(conn, version.id)
    return TrainingResult(
        version=version,
        model=model,
        promoted=promoted,
        reason=reason,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        metrics=metrics,
    )


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = list(v)
        else:
            out[k] = repr(v)
    return out
