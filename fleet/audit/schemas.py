"""Records of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

AuditAction = Literal["insert", "update", "delete"]


class AuditRecord(BaseModel):
    """One change: who (actor, role), from where (source, channel, request), what (resource,
    id, action) and the changed fields' values before and after."""

    id: int
    at: datetime
    customer_id: int | None
    actor: str
    actor_role: str | None
    source: str
    channel: str
    request: str | None
    resource: str
    resource_id: str | None
    action: AuditAction
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditFilters(BaseModel):
    """Which part of the trail to read (every field optional)."""

    model_config = ConfigDict(frozen=True)

    customer_id: int | None = None
    resource: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    action: AuditAction | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditPage(BaseModel):
    """Newest first; ``next_before``: pass it as ``before`` for the next (older) page."""

    items: list[AuditRecord]
    next_before: int | None
