"""The wear-model registry: per-kind model bundles, safe serialisation, promotion and rollback.

Artifacts are skops files (no pickle). Loading refuses any type outside
:data:`TRUSTED_TYPES` — an explicit list, never "whatever the file says".
A candidate becomes active only when it beats the active version on the same held-out
lifetimes: both are evaluated, now, on the candidate's held-out assets (the split is a
deterministic function of the asset id, so no version has trained on them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import skops.io as sio
from numpy.typing import NDArray

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from kinds.service import get_kind
from models import repository as repo
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures
from models.schemas import ModelVersion, PromotionResult

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
ARTIFACT_FORMAT = "skops"
DEFAULT_COVERAGE = 0.8
HOLDOUT_SHARE = 0.2

# Every type a wear-model artifact may contain beyond what skops trusts by default.
TRUSTED_TYPES: tuple[str, ...] = (
    "models.registry.WearModel",
    "models.features.WindowFeatures",
    "models.estimators.RULRegressor",
    "models.estimators.FailureRiskClassifier",
    "models.estimators.AnomalyScorer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
    "builtins.float",
    "builtins.int",
    "builtins.str",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.intp",
    "numpy.random.mtrand.RandomState",
)


class WearModel:
    """Everything needed to score one kind: features, per-component RUL and failure risk,
    an asset-level anomaly scorer, and the column layout the features expect.

    ``predict`` takes the features of each asset's last row; all estimators are fitted.
    """

    def __init__(
        self,
        kind: str,
        usage_metric: str,
        setting_names: Sequence[str],
        sensor_names: Sequence[str],
        features: WindowFeatures,
        rul: dict[str, RULRegressor],
        risk: dict[str, FailureRiskClassifier],
        anomaly: AnomalyScorer,
        horizon: float,
        coverage: float = DEFAULT_COVERAGE,
    ) -> None:
        self.kind = kind
        self.usage_metric = usage_metric
        self.setting_names = list(setting_names)
        self.sensor_names = list(sensor_names)
        self.features = features
        self.rul = rul
        self.risk = risk
        self.anomaly = anomaly
        self.horizon = float(horizon)
        self.coverage = float(coverage)

    @property
    def components(self) -> list[str]:
        """Components this model predicts, in a stable order."""
        return sorted(self.rul)

    @property
    def column_names(self) -> list[str]:
        """Metric names of the readings-matrix columns after the usage column."""
        return [*self.setting_names, *self.sensor_names]

    def history_rows(self, tolerance: float = 1e-9) -> tuple[int, int]:
        """(head, tail) rows of an asset's history that scoring reads.

        The head is the baseline the drift features compare with; the tail covers the
        longest window and the rows whose weight in the smoothed level is above
        ``tolerance`` (older rows change the features by less than that, relatively).
        """
        f = self.features
        return int(f.baseline_window), max(max(f.windows), f.ewm_rows(tolerance))

    def predict(self, features: FloatArray) -> dict[str, dict[str, FloatArray]]:
        """Per component: rul, rul_low, rul_high, failure_probability; plus anomaly_score."""
        out: dict[str, dict[str, FloatArray]] = {}
        anomaly = self.anomaly.anomaly_score(features)
        for component in self.components:
            regressor = self.rul[component]
            point = regressor.predict(features)
            low, high = regressor.predict_interval(features, coverage=self.coverage)
            proba = self.risk[component].predict_proba(features)[:, 1]
            out[component] = {
                "rul": point,
                "rul_low": np.minimum(low, point),
                "rul_high": np.maximum(high, point),
                "failure_probability": np.clip(proba, 0.0, 1.0),
                "anomaly_score": anomaly,
            }
        return out


def dump_model(model: WearModel) -> bytes:
    """Serialise a wear model with skops."""
    return sio.dumps(model)


def load_model(data: bytes) -> WearModel:
    """Load a skops artifact, refusing any type outside :data:`TRUSTED_TYPES`."""
    untrusted = set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES)
    if untrusted:
        raise Invalid(f"artifact holds types that are not trusted: {', '.join(sorted(untrusted))}")
    model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(model, WearModel):
        raise Invalid(f"artifact is a {type(model).__name__}, not a WearModel")
    return model


# --- held-out split ---------------------------------------------------------------------------


def is_holdout_asset(asset_id: int, share: float = HOLDOUT_SHARE) -> bool:
    """Whether an asset is held out from training: a fixed function of its id, so every
    version of every kind holds out the same assets."""
    digest = hashlib.sha256(f"fleetcare-holdout:{asset_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_assets(asset_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(training, held-out) assets; with few assets at least one of each when possible."""
    unique = sorted(set(asset_ids))
    held = [a for a in unique if is_holdout_asset(a)]
    if not held and len(unique) >= 2:
        # too few assets for the share to pick one: hold out the one with the smallest hash
        held = [
            min(unique, key=lambda a: hashlib.sha256(f"fleetcare-holdout:{a}".encode()).digest())
        ]
    if len(held) == len(unique) and len(unique) >= 2:
        held = held[:-1]
    train = [a for a in unique if a not in set(held)]
    return train, held


# --- registry service -------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Error of a model on held-out lifetimes (every life weighs the same)."""

    rmse: float
    mae: float
    interval_coverage: float
    rows: int
    lives: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rmse": self.rmse,
            "mae": self.mae,
            "interval_coverage": self.interval_coverage,
            "rows": self.rows,
            "lives": self.lives,
        }


def evaluate(
    model: WearModel, component: str, matrix: FloatArray, rul: FloatArray
) -> Evaluation | None:
    """Evaluate a model's RUL for ``component`` on a readings matrix with true RUL per row.

    The truth is capped at the model's own ``max_rul`` (what it is trained to predict).
    """
    if component not in model.rul or matrix.shape[0] == 0:
        return None
    regressor = model.rul[component]
    features = model.features.transform(matrix)
    point = regressor.predict(features)
    low, high = regressor.predict_interval(features, coverage=model.coverage)
    truth = np.minimum(rul, regressor.max_rul)
    groups = matrix[:, 0]
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    err = point - truth
    return Evaluation(
        rmse=float(np.sqrt(np.sum(w * err**2) / np.sum(w))),
        mae=float(np.sum(w * np.abs(err)) / np.sum(w)),
        interval_coverage=float(np.sum(w * ((truth >= low) & (truth <= high))) / np.sum(w)),
        rows=int(matrix.shape[0]),
        lives=int(counts.shape[0]),
    )


def register(
    conn: repo.Conn,
    model: WearModel,
    *,
    algorithm: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    trained_from: Any,
    trained_to: Any,
    training_assets: int,
    training_rows: int,
) -> ModelVersion:
    """Store a model as a candidate version."""
    return repo.insert_version(
        conn,
        kind=model.kind,
        algorithm=algorithm,
        params=params,
        metrics=metrics,
        trained_from=trained_from,
        trained_to=trained_to,
        training_assets=training_assets,
        training_rows=training_rows,
        artifact=dump_model(model),
        artifact_format=ARTIFACT_FORMAT,
    )


def load_version(conn: repo.Conn, version_id: int) -> WearModel:
    """Load the model of a version."""
    found = repo.get_artifact(conn, version_id)
    if found is None:
        raise NotFound(f"no model version {version_id}", code="model_version_not_found")
    fmt, data = found
    if fmt != ARTIFACT_FORMAT:
        raise Invalid(f"model version {version_id} is stored as {fmt!r}, not {ARTIFACT_FORMAT}")
    return load_model(data)


def get_version(conn: repo.Conn, version_id: int) -> ModelVersion:
    """One version or NotFound."""
    version = repo.get_version(conn, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id}", code="model_version_not_found")
    return version


def holdout_data(
    conn: repo.Conn, model: WearModel, holdout_assets: Sequence[int]
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Readings matrices and true RUL of the held-out assets' lives, per component."""
    from models.training import lifetime_matrices  # training reads lives; no cycle at import

    return lifetime_matrices(conn, model.kind, model.column_names, asset_ids=holdout_assets)


def compare_on_holdout(
    conn: repo.Conn, candidate: WearModel, active: WearModel, holdout_assets: Sequence[int]
) -> tuple[float | None, float | None]:
    """Mean RMSE over components of (candidate, active) on the same held-out lives."""
    data = holdout_data(conn, candidate, holdout_assets)
    cand: list[float] = []
    act: list[float] = []
    for component, (matrix, rul) in data.items():
        if component not in candidate.rul or component not in active.rul:
            continue
        if active.column_names != candidate.column_names:
            active_matrix, active_rul = holdout_data(conn, active, holdout_assets)[component]
        else:
            active_matrix, active_rul = matrix, rul
        c = evaluate(candidate, component, matrix, rul)
        a = evaluate(active, component, active_matrix, active_rul)
        if c is not None and a is not None:
            cand.append(c.rmse)
            act.append(a.rmse)
    if not cand:
        return None, None
    return float(np.mean(cand)), float(np.mean(act))


def promote(
    conn: repo.Conn, version_id: int, clock: Clock, *, force: bool = False
) -> PromotionResult:
    """Make a candidate the active version of its kind if it beats the active one.

    Both are evaluated on the candidate's held-out assets; a tie or a worse RMSE is a
    Conflict that says why. ``force`` skips the comparison (not offered over HTTP).
    """
    version = get_version(conn, version_id)
    repo.lock_kind(conn, version.kind)
    version = repo.get_version(conn, version_id, for_update=True) or version
    if version.status == "active":
        raise Conflict(f"model version {version_id} is already active")
    active = repo.active_version(conn, version.kind, for_update=True)
    holdout = [int(a) for a in version.metrics.get("holdout_asset_ids", [])]
    cand_rmse: float | None = None
    active_rmse: float | None = None
    if active is not None and not force:
        if not holdout:
            raise Conflict(
                f"model version {version_id} has no held-out assets to compare with active "
                f"version {active.id}; retrain with more lifetimes"
            )
        candidate_model = load_version(conn, version_id)
        active_model = load_version(conn, active.id)
        cand_rmse, active_rmse = compare_on_holdout(conn, candidate_model, active_model, holdout)
        if cand_rmse is None or active_rmse is None:
            raise Conflict(
                f"no held-out lifetimes on which both version {version_id} and active "
                f"version {active.id} predict; nothing shows the candidate is better"
            )
        comparison = {
            "compared_with": active.id,
            "holdout_rmse": cand_rmse,
            "active_holdout_rmse": active_rmse,
            "holdout_assets": len(holdout),
        }
        repo.update_metrics(conn, version_id, {"last_comparison": comparison})
        if not cand_rmse < active_rmse:
            raise Conflict(
                f"model version {version_id} does not beat active version {active.id} on the "
                f"same {len(holdout)} held-out asset(s): RMSE {cand_rmse:.4g} vs "
                f"{active_rmse:.4g} (lower is better)"
            )
    now = clock.now()
    if active is not None:
        repo.retire_version(conn, active.id, now)
    promoted = repo.activate_version(
        conn, version_id, now, active.id if active else None, keep=False
    )
    log.info("model version %s (%s) is active", version_id, version.kind)
    return PromotionResult(
        version=promoted,
        replaced_version_id=active.id if active else None,
        candidate_rmse=cand_rmse,
        active_rmse=active_rmse,
        holdout_assets=len(holdout),
    )


def rollback(conn: repo.Conn, kind: str, clock: Clock) -> ModelVersion:
    """Retire the active version of ``kind`` and make the one it replaced active again."""
    get_kind(conn, kind)
    repo.lock_kind(conn, kind)
    active = repo.active_version(conn, kind, for_update=True)
    if active is None:
        raise Conflict(f"no active {kind} model to roll back")
    if active.replaced_version_id is None:
        raise Conflict(f"active {kind} model version {active.id} replaced no earlier version")
    previous = repo.get_version(conn, active.replaced_version_id, for_update=True)
    if previous is None:
        raise Conflict(f"version {active.replaced_version_id} no longer exists")
    now = clock.now()
    repo.retire_version(conn, active.id, now)
    restored = repo.activate_version(conn, previous.id, now, None, keep=True)
    log.info("rolled %s back from version %s to %s", kind, active.id, previous.id)
    return restored
