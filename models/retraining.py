"""Retraining: a challenger meets the champion on the same held-out lifetimes.

``fleetcare models retrain KIND`` (by hand, on the model watch's weekly schedule, or when the
drift check finds the live fleet has moved) trains a challenger on every lifetime recorded so
far, evaluates challenger and champion now on the challenger's held-out assets — a fixed
function of the asset id, so no version trained on them — and promotes the challenger only
when its RMSE is lower. Every decision is recorded with its figures
(``model_retrain_decisions``), promoted or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetcare.clock import Clock
from models import registry
from models import repository as repo
from models.schemas import RetrainDecision, RetrainTrigger
from models.training import Progress, TrainingResult, train


@dataclass(frozen=True)
class RetrainOutcome:
    """The recorded decision and the training behind it."""

    decision: RetrainDecision
    training: TrainingResult


def retrain(
    conn: repo.Conn,
    kind: str,
    clock: Clock,
    *,
    trigger: RetrainTrigger = "manual",
    drift_check_id: int | None = None,
    rul_params: dict[str, Any] | None = None,
    risk_params: dict[str, Any] | None = None,
    feature_params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RetrainOutcome:
    """Train a challenger of ``kind``, promote it only if it beats the champion on the same
    held-out lifetimes, and record the decision; the caller owns the transaction."""
    champion = repo.active_version(conn, kind)
    result = train(
        conn,
        kind,
        clock,
        rul_params=rul_params,
        risk_params=risk_params,
        feature_params=feature_params,
        auto_promote=False,
        progress=progress,
    )
    challenger = result.version
    holdout = [int(a) for a in challenger.metrics.get("holdout_asset_ids", [])]
    challenger_rmse: float | None = challenger.metrics.get("holdout_rmse")
    champion_rmse: float | None = None
    if champion is None:
        registry.promote(conn, challenger.id, clock, force=True)
        decision, reason = "first", f"no {kind} model was active: version {challenger.id} is"
    else:
        champion_model = registry.load_version(conn, champion.id)
        challenger_rmse, champion_rmse = registry.compare_on_holdout(
            conn, result.model, champion_model, holdout
        )
        if challenger_rmse is None or champion_rmse is None:
            decision = "refused"
            reason = (
                f"no held-out lifetimes on which both challenger {challenger.id} and champion"
                f" {champion.id} predict; the champion stays"
            )
        elif challenger_rmse < champion_rmse:
            registry.promote(conn, challenger.id, clock, force=True)  # compared just above
            decision = "promoted"
            reason = (
                f"challenger {challenger.id} beats champion {champion.id} on the same"
                f" {len(holdout)} held-out asset(s): RMSE {challenger_rmse:.4g} vs"
                f" {champion_rmse:.4g}"
            )
        else:
            decision = "refused"
            reason = (
                f"challenger {challenger.id} does not beat champion {champion.id} on the same"
                f" {len(holdout)} held-out asset(s): RMSE {challenger_rmse:.4g} vs"
                f" {champion_rmse:.4g}; the champion stays"
            )
    record = repo.insert_retrain_decision(
        conn,
        {
            "kind": kind,
            "trigger": trigger,
            "drift_check_id": drift_check_id,
            "champion_version_id": champion.id if champion else None,
            "challenger_version_id": challenger.id,
            "decision": decision,
            "champion_rmse": champion_rmse,
            "challenger_rmse": challenger_rmse,
            "holdout_assets": len(holdout),
            "lives": int(challenger.metrics.get("lives", 0)),
            "reason": reason,
            "decided_at": clock.now(),
        },
    )
    return RetrainOutcome(decision=record, training=result)
