"""Records of the wear-model registry and of predictions."""

from __future__ import annotations

from dataclasses import dataclass
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


class ExplanationSignal(BaseModel):
    """One signal that moved a prediction: its metric, what it says in the kind's words, and
    its signed contribution to the RUL in the kind's life unit (negative shortens the life)."""

    signal: str
    text: str
    contribution: float


class FailureMode(BaseModel):
    """Which component wears, and which way its strongest life-shortening signal moves."""

    component: str
    signal: str
    direction: str  # rising | falling | high | low | unsteady
    text: str


class Explanation(BaseModel):
    """Why a prediction says what it says (``models.explain``)."""

    method: str
    base_rul: float  # the model's expected RUL before any signal is known
    signals: list[ExplanationSignal]
    failure_mode: FailureMode | None = None
    action: str
    data_quality: list[str] = []  # the data-quality gate's findings; any makes it low-confidence


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
    explanation: Explanation | None = None
    # the data-quality gate found broken sensors: shown, but never acted on automatically
    low_confidence: bool = False


@dataclass(frozen=True, slots=True)
class ChangedAsset:
    """An asset whose telemetry moved since the scoring worker last consumed it (a plain
    record: a scoring pass reads 10,000 of them, and a validating model cost ~4 µs each)."""

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


class DriftCheck(BaseModel):
    """One comparison of a kind's live fleet with its active model's training data
    (``models.drift``): the population stability index of every signal."""

    id: int
    kind: str
    model_version_id: int
    checked_at: datetime
    assets: int
    rows: int
    psi: dict[str, float]
    max_psi: float | None
    threshold: float
    drifted: bool
    drifted_signals: list[str]


RetrainTrigger = Literal["manual", "schedule", "drift"]


class RetrainDecision(BaseModel):
    """What a retraining decided, with the figures it decided on: challenger and champion
    evaluated on the same held-out lifetimes (``models.retraining``)."""

    id: int
    kind: str
    trigger: RetrainTrigger
    drift_check_id: int | None
    champion_version_id: int | None
    challenger_version_id: int | None
    decision: Literal["promoted", "refused", "first"]
    champion_rmse: float | None
    challenger_rmse: float | None
    holdout_assets: int
    lives: int
    reason: str
    decided_at: datetime
