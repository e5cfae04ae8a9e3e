"""Webhook records: endpoints (public and internal), deliveries, attempts, request bodies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from fleetcare.inputs import Id, Moment, PatchRecord, RequestRecord
from fleetcare.lifecycle import Lifecycle
from maintenance.webhooks.catalog import check_event_filter


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# from -> what it may become: a pending delivery is retried (stays pending), delivered, or
# fails for good (schedule exhausted, 410, endpoint disabled); a replay makes a delivered or
# failed one pending again.
DELIVERY_LIFECYCLE = Lifecycle(
    "delivery",
    {
        DeliveryStatus.PENDING: {
            DeliveryStatus.PENDING,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.FAILED,
        },
        DeliveryStatus.DELIVERED: {DeliveryStatus.PENDING},
        DeliveryStatus.FAILED: {DeliveryStatus.PENDING},
    },
)
AttemptOutcome = Literal["delivered", "failed", "gone", "throttled", "refused"]


class Strict(RequestRecord):
    """Request bodies: unknown fields are an error (``RequestRecord``)."""


class EndpointCreate(Strict):
    customer_id: Id | None = Field(
        default=None,
        description="the operator names the customer (or sets operator_events); a customer"
        " key uses its own",
    )
    operator_events: bool = Field(
        default=False,
        description="the operator's own endpoint: it receives the events that have no customer"
        " (the operator's and partners' people, stock, model drift, ...)",
    )
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL of the receiver")
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="types ('order.created') or families ('order.*'); empty: every type",
    )
    enabled: bool = True

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        return check_event_filter(value)


class EndpointUpdate(Strict, PatchRecord):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, max_length=100)
    enabled: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_event_filter(value)


class SecretRotation(Strict):
    overlap_hours: float = Field(
        default=24,
        ge=0,
        le=168,
        description="how long the old secret keeps signing too (both signatures are sent)",
    )


class Endpoint(BaseModel):
    """An endpoint as the API shows it: never its secret."""

    id: int
    customer_id: int | None = Field(
        description="None: the operator's own endpoint (events with no customer)"
    )
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    paused_until: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None


class NewEndpoint(Endpoint):
    """The answer to creation: the only time the secret is shown."""

    secret: str


class RotatedSecret(BaseModel):
    """The answer to a rotation: the new secret, shown once."""

    endpoint: Endpoint
    secret: str
    previous_secret_expires_at: datetime | None


class EndpointRecord(Endpoint):
    """An endpoint as the sender sees it; secrets are SecretStr so they never print."""

    secret: SecretStr
    previous_secret: SecretStr | None
    locked_until: datetime | None
    locked_by: str | None
    last_claimed_at: datetime | None

    def public(self) -> Endpoint:
        """The API's view of this record."""
        return Endpoint.model_validate(self.model_dump(include=set(Endpoint.model_fields)))


class Delivery(BaseModel):
    """One event for one endpoint, with the state of its delivery."""

    id: int
    endpoint_id: int
    event_id: int
    event_public_id: str
    event_type: str
    customer_id: int | None
    status: DeliveryStatus
    attempt_count: int
    schedule_step: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class Attempt(BaseModel):
    """One HTTP attempt of a delivery."""

    id: int
    delivery_id: int
    endpoint_id: int
    event_id: int
    attempt_number: int
    attempted_at: datetime
    webhook_timestamp: int
    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class DeliveryLog(Delivery):
    """A delivery with every attempt made for it."""

    attempts: list[Attempt]


class DueDelivery(BaseModel):
    """A delivery the sender is about to attempt, with its event."""

    delivery_id: int
    generation: int
    attempt_count: int
    schedule_step: int
    event_id: int
    event_public_id: str
    event_type: str
    event_version: int
    subject: str
    payload: dict[str, Any]
    occurred_at: datetime


class ReplayEvent(Strict):
    endpoint_id: Id | None = Field(
        default=None, description="one endpoint; omitted: every live endpoint that matches"
    )


class ReplayFailed(Strict):
    since: Moment = Field(description="re-send deliveries created at or after this time")


class ReplayResult(BaseModel):
    requeued: int
    delivery_ids: list[int]


class PingResult(BaseModel):
    event_public_id: str
    delivery_id: int
