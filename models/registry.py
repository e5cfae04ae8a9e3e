"""The wear-model registry: per-kind model bundles, safe serialisation, promotion and rollback.

The artifact itself (the bundle and its safe serialisation) is :mod:`models.bundle`.
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
from numpy.typing import NDArray

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from kinds.service import get_kind
from models import repository as repo

# WearModel stays importable here: artifacts stored before models.bundle name it so
from models.bundle import (
    ARTIFACT_FORMAT,
    WearModel,
    dump_model,
    load_model,
)
from models.lifetimes import lifetime_matrices
from models.schemas import ModelVersion, PromotionResult

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
HOLDOUT_SHARE = 0.2

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
    low, high = regressor.predict_interval(features, coverage=model.coverage_of(component))
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
    reference: dict[str, Any] | None = None,
) -> ModelVersion:
    """Store a model as a candidate version (``reference``: its training data's distribution
    per signal, :func:`models.drift.reference_distribution`)."""
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
        reference=reference,
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
