"""The record of the policy's due state."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class PolicyState(BaseModel):
    asset_id: int
    component: str
    state: str
    entered_at: datetime | None
    alerted_at: datetime | None
    order_id: int | None
    last_prediction_time: datetime | None
    updated_at: datetime
