"""The registry of event types a customer can receive, with their versioned payloads.

Each payload model lists the fields a receiver can rely on for that (type, version); producers
may add fields (receivers must ignore unknown ones), but never remove or retype one without
raising the version. docs/events.md documents the same types for humans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """Base of every event payload: extra fields are allowed (additive changes stay v1)."""

    model_config = ConfigDict(extra="allow")


class RemainingLife(BaseModel):
    """A remaining-useful-life estimate with its prediction interval, in the kind's life unit."""

    value: float
    low: float
    high: float
    unit: str


class PredictionAlertV1(Payload):
    prediction_id: int
    asset_id: int
    asset_ref: str
    kind: str
    component: str
    rul: RemainingLife
    due_date: date | None = None
    failure_probability: float | None = None
    horizon_days: int | None = None
    model_version: str | None = None


class OrderV1(Payload):
    order_id: int
    asset_id: int
    asset_ref: str
    component: str
    status: str
    due_date: date | None = None
    site_id: int | None = None


class OrderCreatedV1(OrderV1):
    reason: str = ""
    prediction_id: int | None = None
    part_sku: str | None = None


class OrderScheduledV1(OrderV1):
    scheduled_for: datetime


class OrderCompletedV1(OrderV1):
    completed_at: datetime
    notes: str = ""


class OrderCancelledV1(OrderV1):
    cancelled_at: datetime
    reason: str = ""


class ShipmentV1(Payload):
    shipment_id: int
    order_id: int | None
    part_sku: str
    quantity: int
    depot: str
    site_id: int | None = None
    expected_arrival: datetime | None = None


class ShipmentShippedV1(ShipmentV1):
    shipped_at: datetime
    carrier: str = ""
    tracking_number: str = ""


class ShipmentDeliveredV1(ShipmentV1):
    delivered_at: datetime


class SubscriptionV1(Payload):
    subscription_id: int
    plan: str
    status: str
    asset_id: int | None = None
    site_id: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class InvoiceIssuedV1(Payload):
    invoice_id: int
    number: str
    period_start: date
    period_end: date
    currency: str
    total: str
    due_date: date | None = None


class DeviceOfflineV1(Payload):
    device_id: int
    device_ref: str
    last_seen_at: datetime | None


class QuarantineSpikeV1(Payload):
    window_start: datetime
    window_end: datetime
    quarantined: int
    reasons: dict[str, int]


class WebhookPingV1(Payload):
    endpoint_id: int
    message: str


class EndpointDisabledV1(Payload):
    endpoint_id: int
    reason: str
    failing_since: datetime | None


@dataclass(frozen=True)
class EventType:
    """One deliverable event type at its current version."""

    name: str
    version: int
    description: str
    payload: type[Payload]

    @property
    def family(self) -> str:
        """The part before the first dot: ``order`` for ``order.created``."""
        return self.name.split(".", 1)[0]


def _types(*items: EventType) -> dict[str, EventType]:
    return {item.name: item for item in items}


EVENT_TYPES: dict[str, EventType] = _types(
    EventType(
        "prediction.alert",
        1,
        "A covered asset is predicted to need service within its plan's horizon.",
        PredictionAlertV1,
    ),
    EventType("order.created", 1, "A maintenance order was raised.", OrderCreatedV1),
    EventType("order.scheduled", 1, "A maintenance order got a date.", OrderScheduledV1),
    EventType("order.completed", 1, "The work was done; the asset is renewed.", OrderCompletedV1),
    EventType("order.cancelled", 1, "A maintenance order was cancelled.", OrderCancelledV1),
    EventType("shipment.created", 1, "Parts were reserved at a depot for an order.", ShipmentV1),
    EventType("shipment.shipped", 1, "Parts left the depot.", ShipmentShippedV1),
    EventType("shipment.delivered", 1, "Parts arrived at the site.", ShipmentDeliveredV1),
    EventType("subscription.created", 1, "A subscription was created.", SubscriptionV1),
    EventType("subscription.activated", 1, "A subscription became active.", SubscriptionV1),
    EventType("subscription.changed", 1, "A subscription's plan or scope changed.", SubscriptionV1),
    EventType("subscription.cancelled", 1, "A subscription was cancelled.", SubscriptionV1),
    EventType("invoice.issued", 1, "An invoice was issued.", InvoiceIssuedV1),
    EventType("device.offline", 1, "A device stopped reporting.", DeviceOfflineV1),
    EventType(
        "ingest.quarantine_spike",
        1,
        "Unusually many readings were quarantined in a short window.",
        QuarantineSpikeV1,
    ),
    EventType("webhook.ping", 1, "A test message sent on request to one endpoint.", WebhookPingV1),
    EventType(
        "webhook.endpoint_disabled",
        1,
        "An endpoint was disabled (410 Gone, or failing for five days).",
        EndpointDisabledV1,
    ),
)

FAMILIES = frozenset(t.family for t in EVENT_TYPES.values())


def check_event_filter(entries: list[str]) -> list[str]:
    """Validate an endpoint's event-type filter; return it deduplicated and sorted.

    Entries are exact types (``order.created``) or whole families (``order.*``).
    """
    unknown = [
        e for e in entries if e not in EVENT_TYPES and not (e.endswith(".*") and e[:-2] in FAMILIES)
    ]
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {known}, or family.*")
    return sorted(set(entries))


def validate_payload(type_name: str, payload: dict[str, Any]) -> Payload:
    """Check ``payload`` against the registered model of ``type_name`` (KeyError if unknown)."""
    return EVENT_TYPES[type_name].payload.model_validate(payload)
