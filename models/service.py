"""The wear models as the API sees them: scoped reads, operator-only registry changes."""

from __future__ import annotations

from datetime import datetime

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import NotFound
from kinds.service import get_kind, require_kind
from models import registry
from models import repository as repo
from models.schemas import ModelVersion, Prediction, PromotionResult

# Lists of asset ids name other customers' assets: only the operator sees them.
_OPERATOR_ONLY_METRICS = ("holdout_asset_ids", "training_asset_ids")


def _for_caller(version: ModelVersion, principal: Principal) -> ModelVersion:
    if principal.role == "operator":
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
    fleet.require_operator(principal)
    return registry.promote(conn, version_id, clock)


def rollback(conn: repo.Conn, principal: Principal, kind: str, clock: Clock) -> ModelVersion:
    """Return a kind to the version its active one replaced (operator)."""
    fleet.require_operator(principal)
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
