"""Event records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Event(BaseModel):
    id: int
    public_id: str
    customer_id: int | None
    type: str
    version: int
    subject: str
    payload: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
