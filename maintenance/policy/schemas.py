"""Records of the policy: predictions as it reads them, its state, its queue, its decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel


class Prediction(BaseModel):
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


class QueuedPrediction(BaseModel):
    id: int
    asset_id: int
    component: str
    prediction_time: datetime
    attempts: int


@dataclass(frozen=True)
class Decision:
    """What the policy did with one prediction, for logs and tests."""

    action: str  # ignored | no_subscription | stale | clear | held | alert | order | exists
    detail: str = ""
    order_id: int | None = None
