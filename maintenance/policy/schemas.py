"""Records of the policy: its queue and its decisions (predictions are
``models.schemas.Prediction``, the scoring's own record)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel


class QueuedPrediction(BaseModel):
    id: int
    asset_id: int
    component: str
    prediction_time: datetime
    attempts: int


@dataclass(frozen=True)
class Decision:
    """What the policy did with one prediction, for logs and tests."""

    # ignored | no_subscription | stale | low_confidence | clear | held | alert | order | exists
    action: str
    detail: str = ""
    order_id: int | None = None
