"""The wear models as the API sees them: scoped reads, operator-only registry changes."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import NotFound
from kinds.service import get_kind, require_kind
from models import drift, registry, retraining
from models import repository as repo
from models.schemas import (
    DriftCheck,
    ModelVersion,
    Prediction,
    PromotionResult,
    RetrainDecision,
    RetrainTrigger,
)

# Lists of asset ids name other customers' assets: only the operator sees them.
_OPERATOR_ONLY_METRICS = ("holdout_asset_ids", "training_asset_ids")


def _for_caller(version: ModelVersion, principal: Principal) -> ModelVersion:
    if principal.organisation == "operator":
        return version
    metrics = {k: v for k, v in version.metrics.items() if k not in _OPERATOR_ONLY_METRICS}
    return version.model_copy(update={"metrics": metrics})


def list_versions(
    conn: repo.Conn,
    principal: Principal,
    *,
    kind: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[ModelVersion]:
    """Versions with their metrics, newest first."""
    if kind is not None:
        require_kind(conn, kind)
    rows = repo.list_versions(conn, kind=kind, status=status, limit=limit)
    return [_for_caller(v, principal) for v in rows]


def get_version(conn: repo.Conn, principal: Principal, version_id: int) -> ModelVersion:
    """One version with its metrics."""
    return _for_caller(registry.get_version(conn, version_id), principal)


def promote(
    conn: repo.Conn, principal: Principal, version_id: int, clock: Clock
) -> PromotionResult:
    """Promote a candidate (operator); a model that is not better is refused with 409."""
    principal.require("models:write")
    return registry.promote(conn, version_id, clock)


def rollback(conn: repo.Conn, principal: Principal, kind: str, clock: Clock) -> ModelVersion:
    """Return a kind to the version its active one replaced (operator)."""
    principal.require("models:write")
    get_kind(conn, kind)  # NotFound (asset_kind_not_found) naming the known kinds
    return registry.rollback(conn, kind, clock)


def get_prediction(
    conn: repo.Conn, asset_id: int, component: str, time: datetime
) -> Prediction | None:
    """One prediction by its key (for other domains: the policy reads each new one)."""
    return repo.get_prediction(conn, asset_id, component, time)


def asset_predictions(
    conn: repo.Conn,
    principal: Principal,
    asset_id: int,
    *,
    component: str | None = None,
    limit: int = 50,
) -> list[Prediction]:
    """An asset's predictions, newest first; another customer's asset is NotFound."""
    owner = repo.asset_customer(conn, asset_id)
    if owner is None or (principal.scope is not None and owner != principal.scope):
        raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
    return repo.list_predictions(conn, asset_id, component=component, limit=limit)


def drift_checks(
    conn: repo.Conn, principal: Principal, kind: str, *, limit: int = 50
) -> list[DriftCheck]:
    """A kind's drift checks (population stability per signal), newest first."""
    get_kind(conn, kind)  # NotFound (asset_kind_not_found) naming the known kinds
    return repo.list_drift_checks(conn, kind=kind, limit=limit)


def retrain_decisions(
    conn: repo.Conn, principal: Principal, kind: str, *, limit: int = 50
) -> list[RetrainDecision]:
    """A kind's retraining decisions with their figures, newest first."""
    get_kind(conn, kind)
    return repo.list_retrain_decisions(conn, kind=kind, limit=limit)


# --- monitoring, for the model watch (maintenance.modelwatch) ---------------------------------


def kinds_with_active_model(conn: repo.Conn) -> list[str]:
    """Kinds that have an active model, sorted."""
    return sorted(repo.active_version_ids(conn))


def latest_drift_check(conn: repo.Conn, kind: str) -> DriftCheck | None:
    """The newest drift check of ``kind``."""
    found = repo.list_drift_checks(conn, kind=kind, limit=1)
    return found[0] if found else None


def run_drift_check(
    conn: repo.Conn, kind: str, now: datetime, *, threshold: float, lookback: timedelta
) -> DriftCheck | None:
    """Compare the live fleet of ``kind`` with its model's training data and record it."""
    return drift.check_drift(conn, kind, now, threshold=threshold, lookback=lookback)


def last_trained_at(conn: repo.Conn, kind: str) -> datetime | None:
    """When ``kind`` was last retrained, or its active version promoted, whichever is later."""
    active = repo.active_version(conn, kind)
    promoted = active and (active.promoted_at or active.created_at)
    times = [t for t in (repo.last_retrain_at(conn, kind), promoted) if t]
    return max(times) if times else None


def retrain(
    conn: repo.Conn,
    kind: str,
    clock: Clock,
    *,
    trigger: RetrainTrigger,
    drift_check_id: int | None = None,
) -> retraining.RetrainOutcome:
    """Train a challenger and promote it only if it beats the champion (recorded)."""
    return retraining.retrain(conn, kind, clock, trigger=trigger, drift_check_id=drift_check_id)


def monitoring_overview(
    conn: repo.Conn, *, decisions: int = 20
) -> tuple[list[DriftCheck], list[RetrainDecision]]:
    """(the newest drift check of each kind, the newest retraining decisions) for the
    dashboard's model page."""
    latest: dict[str, DriftCheck] = {}
    for check in repo.list_drift_checks(conn, limit=500):
        latest.setdefault(check.kind, check)
    return sorted(latest.values(), key=lambda c: c.kind), repo.list_retrain_decisions(
        conn, limit=decisions
    )
