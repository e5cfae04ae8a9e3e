"""Wear models: the registry (versions, metrics, promote, roll back) and asset predictions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from api.deps import Caller, Conn, ReadConn
from fleetcare.clock import Clock, SystemClock
from fleetcare.inputs import Id, ShortText
from kinds.schemas import KindName
from models import service as models
from models.schemas import (
    DriftCheck,
    ModelVersion,
    Prediction,
    PromotionResult,
    RetrainDecision,
)

router = APIRouter(prefix="/v1")


def get_clock(request: Request) -> Clock:
    """The app's clock (tests set ``app.state.clock``), else the system clock."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    return clock or SystemClock()


AppClock = Annotated[Clock, Depends(get_clock)]


@router.get("/models/versions", tags=["models"])
def list_model_versions(
    conn: ReadConn,
    caller: Caller,
    kind: KindName | None = None,
    status: Literal["candidate", "active", "retired"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ModelVersion]:
    """Model versions with their held-out metrics, newest first."""
    return models.list_versions(conn, caller, kind=kind, status=status, limit=limit)


@router.get("/models/versions/{version_id}", tags=["models"])
def get_model_version(version_id: Id, conn: ReadConn, caller: Caller) -> ModelVersion:
    """One model version."""
    return models.get_version(conn, caller, version_id)


@router.post("/models/versions/{version_id}/promote", tags=["models"])
def promote_model_version(
    version_id: Id, conn: Conn, caller: Caller, clock: AppClock
) -> PromotionResult:
    """Make a candidate active (operator). 409 when it does not beat the active version on
    the same held-out assets; the detail gives both errors."""
    return models.promote(conn, caller, version_id, clock)


@router.post("/models/{kind}/rollback", tags=["models"])
def roll_back_model(kind: KindName, conn: Conn, caller: Caller, clock: AppClock) -> ModelVersion:
    """Retire the active version of a kind and reactivate the one it replaced (operator)."""
    return models.rollback(conn, caller, kind, clock)


@router.get("/assets/{asset_id}/predictions", tags=["models"])
def list_asset_predictions(
    asset_id: Id,
    conn: ReadConn,
    caller: Caller,
    component: ShortText | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Prediction]:
    """An asset's predictions (RUL with interval, risk, anomaly, due dates), newest first."""
    return models.asset_predictions(conn, caller, asset_id, component=component, limit=limit)


@router.get("/models/{kind}/drift-checks", tags=["models"])
def list_drift_checks(
    kind: KindName,
    conn: ReadConn,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DriftCheck]:
    """The kind's drift checks, newest first: the population stability index of each signal
    of the live fleet against the active model's training data, and which passed the
    threshold (``model.drift_detected``)."""
    return models.drift_checks(conn, caller, kind, limit=limit)


@router.get("/models/{kind}/retrain-decisions", tags=["models"])
def list_retrain_decisions(
    kind: KindName,
    conn: ReadConn,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RetrainDecision]:
    """Every retraining of the kind, newest first: what triggered it, challenger and champion
    RMSE on the same held-out lifetimes, and whether the challenger was promoted."""
    return models.retrain_decisions(conn, caller, kind, limit=limit)
