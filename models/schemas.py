"""Records of the wear-model registry and of predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

VersionStatus = Literal["candidate", "active", "retired"]


class ModelVersion(BaseModel):
    """A registered wear model (without its artifact bytes)."""

    id: int
    kind: str
    # the version of the kind's definition it was trained under (None: trained before kinds
    # were versioned)
    kind_version: int | None = None
    algorithm: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    trained_from: datetime | None
    trained_to: datetime | None
    training_assets: int
    training_rows: int
    artifact_format: str
    status: VersionStatus
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    replaced_version_id: int | None


class Prediction(BaseModel):
    """One scoring of an asset's component: a row of ``predictions``, as the scoring worker
    writes it and the policy, the API and the evaluation read it."""

    time: datetime
    asset_id: int
    component: str
    model_version_id: int | None
    rul: float
    rul_low: float
    rul_high: float
    coverage: float
    failure_probability: float
    horizon: float
    anomaly_score: float
    usage_rate_per_day: float | None
    due_at: datetime | None
    due_at_conservative: datetime | None
    data_until: datetime | None = None  # the newest reading scored (None: not recorded)


class ChangedAsset(BaseModel):
    """An asset whose telemetry moved since the scoring worker last consumed it."""

    asset_id: int
    kind: str
    renewed_at: datetime
    last_seen_at: datetime
    data_until: datetime | None


class PromotionResult(BaseModel):
    """What a promotion compared and decided."""

    version: ModelVersion
    replaced_version_id: int | None
    candidate_rmse: float | None
    active_rmse: float | None
    holdout_assets: int
