"""The registry of event types a customer can receive, with their versioned payloads.

Each payload model lists the fields a receiver can rely on for that (type, version); producers
may add fields (receivers must ignore unknown ones), but never remove or retype one without
raising the version. docs/events.md documents the same types for humans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from maintenance.webhooks.billing_payloads import (
    CreditNoteIssuedV1,
    InvoiceIssuedV1,
    InvoicePaidV1,
    InvoicePaymentRecordedV1,
    InvoicePaymentReminderV1,
    InvoiceVoidedV1,
    ServiceCreditEarnedV1,
    ValueReportReadyV1,
)
from maintenance.webhooks.records import Payload, Record

__all__ = ["EVENT_TYPES", "EventType", "Payload", "Record", "validate_payload"]


# --- predictions (producer: maintenance/policy) ----------------------------------------------


class PredictionRecord(Record):
    time: datetime
    asset_id: int
    component: str
    rul: float
    rul_low: float
    rul_high: float
    failure_probability: float
    due_at: datetime | None = None
    due_at_conservative: datetime | None = None
    # why it says so (models.schemas.Explanation: signals, failure_mode, action, data_quality)
    explanation: dict[str, Any] | None = None
    low_confidence: bool = False


class PredictionAlertV1(Payload):
    asset_id: int
    asset_ref: str
    component: str
    subscription_id: int
    plan: str
    triggers: list[str]
    window_days: float
    prediction: PredictionRecord


class PredictionMissedV1(Payload):
    missed: dict[str, Any]
    asset_ref: str


# --- wear models (producer: maintenance/modelwatch) -------------------------------------------


class ModelDriftDetectedV1(Payload):
    kind: str
    model_version_id: int
    check_id: int
    checked_at: datetime
    threshold: float
    max_psi: float | None
    signals: dict[str, float]  # the signals above the threshold: name -> PSI
    new_signals: list[str]  # those that were not drifting at the previous check
    assets: int
    rows: int


# --- orders (producer: maintenance/orders) ---------------------------------------------------


class OrderRecord(Record):
    id: int
    customer_id: int
    asset_id: int
    component: str
    status: str
    due_at: datetime
    scheduled_for: datetime | None = None
    at_risk: bool = False
    at_risk_reason: str | None = None
    explanation: dict[str, Any] | None = None  # why the policy raised it (None: by hand)


class OrderEventV1(Payload):
    order: OrderRecord
    previous_status: str | None = None


class OrderCreatedV1(OrderEventV1):
    asset_ref: str
    sku: str | None = None


class OrderCancelledV1(OrderEventV1):
    reservations_released: int = 0


class OrderRescheduledV1(OrderEventV1):
    previous_due_at: str


class CrewRecord(Record):
    """The visit of a carried asset's order, as the crew at the station sees it."""

    order_id: int
    carrier_id: int
    carrier_ref: str
    station: str | None = None
    arrives_at: datetime | None = None
    departs_at: datetime | None = None
    ground_hours: float | None = None
    stand: str = ""
    asset_id: int
    asset_ref: str
    component: str
    parts: list[dict[str, Any]] = Field(default_factory=list)
    aog_risk: bool = False


class OrderVisitPlannedV1(OrderEventV1):
    crew: CrewRecord
    reason: str


class OrderAogRiskV1(OrderEventV1):
    crew: CrewRecord
    carrier_ref: str
    reason: str


class OrderCompletedV1(OrderEventV1):
    parts_used: list[dict[str, Any]] = Field(default_factory=list)
    life_id: int | None = None


class AssetRenewedV1(Payload):
    asset_id: int
    asset_ref: str
    component: str
    renewed_at: datetime
    order_id: int


class FailureReportedV1(Payload):
    failure: dict[str, Any]
    asset_ref: str
    life_id: int | None = None


# --- parts and shipments (producer: maintenance/logistics) -----------------------------------


class ShipmentRecord(Record):
    id: int
    customer_id: int
    order_id: int
    part_id: int
    quantity: int
    site_id: int | None = None
    status: str
    eta: datetime
    carrier: str = ""
    tracking_ref: str = ""
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None


class ShipmentEventV1(Payload):
    shipment: ShipmentRecord


class ShipmentCreatedV1(ShipmentEventV1):
    sku: str
    depot: str


class ShipmentRedirectedV1(ShipmentEventV1):
    previous_site_id: int | None = None
    previous_eta: datetime
    reason: str


class PartReservationV1(Payload):
    reservation: dict[str, Any]
    sku: str | None = None
    depot: str | None = None


# --- subscriptions (producer: maintenance/subscriptions) -------------------------------------


class SubscriptionRecord(Record):
    id: int
    customer_id: int
    status: str
    plan_id: int
    scope: str
    site_id: int | None = None
    starts_at: datetime
    current_term_ends_at: datetime
    ends_at: datetime | None = None
    asset_ids: list[int] = Field(default_factory=list)


class SubscriptionEventV1(Payload):
    subscription: SubscriptionRecord
    previous_status: str | None = None


class SubscriptionUpdatedV1(SubscriptionEventV1):
    changed: list[str]


class SubscriptionPlanChangedV1(SubscriptionEventV1):
    previous_plan_id: int
    plan_id: int
    effective_at: datetime


class SubscriptionAssetsAddedV1(SubscriptionEventV1):
    asset_ids: list[int]


class SubscriptionAssetRemovedV1(SubscriptionEventV1):
    asset_id: int


class SubscriptionCancellationScheduledV1(SubscriptionEventV1):
    ends_at: datetime
    notice_deadline: datetime | None = None
    notice_respected: bool | None = None


class SubscriptionRenewalUpcomingV1(SubscriptionEventV1):
    term_ends_at: datetime
    renews: bool
    next_term_ends_at: datetime | None = None
    notice_deadline: datetime
    days_left: int


class SubscriptionOrdersPausedV1(SubscriptionEventV1):
    invoice_id: int
    days_overdue: int
    orders_pause_after_days: int


class SubscriptionOrdersResumedV1(SubscriptionEventV1):
    reason: str


class SubscriptionRenewedV1(SubscriptionEventV1):
    previous_term_ends_at: datetime
    term_ends_at: datetime


# --- proposed for producers that do not emit yet (ingest) -----------------------------------


class DeviceOfflineV1(Payload):
    device_id: int
    device_ref: str
    last_seen_at: datetime | None


class UserLinkV1(Payload):
    """An invitation or a password reset link for one person (producer: people)."""

    user_id: int
    email: str
    name: str
    organisation: str
    role: str
    link: str
    token: str
    expires_at: datetime


class QuarantineSpikeV1(Payload):
    window_start: datetime
    window_end: datetime
    quarantined: int
    reasons: dict[str, int]


# --- webhooks themselves ---------------------------------------------------------------------


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
        "A covered asset is predicted to need service within its plan's window.",
        PredictionAlertV1,
    ),
    EventType(
        "prediction.alert_cleared",
        1,
        "A newer prediction says the asset is no longer due.",
        PredictionAlertV1,
    ),
    EventType(
        "prediction.missed",
        1,
        "An asset failed with no order open: the prediction missed it.",
        PredictionMissedV1,
    ),
    EventType(
        "model.drift_detected",
        1,
        "The live fleet of a kind no longer looks like its model's training data.",
        ModelDriftDetectedV1,
    ),
    EventType("order.created", 1, "A maintenance order was raised.", OrderCreatedV1),
    EventType("order.scheduled", 1, "A maintenance order got a date.", OrderEventV1),
    EventType(
        "order.rescheduled",
        1,
        "Newer predictions brought the order's due date forward, or a carried asset's visit"
        " moved with its carrier's itinerary (then with crew, previous_visit and reason).",
        OrderRescheduledV1,
    ),
    EventType(
        "order.visit_planned",
        1,
        "A carried asset's order got its station and visit (crew view).",
        OrderVisitPlannedV1,
    ),
    EventType(
        "order.aog_risk",
        1,
        "No visit before the due date fits, or the part cannot be at the station before the"
        " carrier: it will wait on the ground unless someone acts.",
        OrderAogRiskV1,
    ),
    EventType("order.started", 1, "Work on the order began.", OrderEventV1),
    EventType("order.completed", 1, "The work was done; the asset is renewed.", OrderCompletedV1),
    EventType("order.cancelled", 1, "A maintenance order was cancelled.", OrderCancelledV1),
    EventType("order.at_risk", 1, "The part may not arrive before the due date.", OrderEventV1),
    EventType("order.risk_cleared", 1, "The order's supply risk is gone.", OrderEventV1),
    EventType("asset.renewed", 1, "A component was replaced; a new life starts.", AssetRenewedV1),
    EventType("failure.reported", 1, "A failure was reported on an asset.", FailureReportedV1),
    EventType(
        "part.reserved", 1, "A part was reserved at a depot for an order.", PartReservationV1
    ),
    EventType("part.released", 1, "A reservation was released.", PartReservationV1),
    EventType(
        "shipment.created", 1, "A shipment of parts was planned for an order.", ShipmentCreatedV1
    ),
    EventType("shipment.shipped", 1, "Parts left the depot.", ShipmentEventV1),
    EventType("shipment.delivered", 1, "Parts arrived at the site.", ShipmentEventV1),
    EventType("shipment.cancelled", 1, "A pending shipment was cancelled.", ShipmentEventV1),
    EventType(
        "shipment.redirected",
        1,
        "A shipment not yet delivered goes to another station (its carrier's plan changed).",
        ShipmentRedirectedV1,
    ),
    EventType("subscription.created", 1, "A subscription was created.", SubscriptionEventV1),
    EventType("subscription.activated", 1, "A subscription became active.", SubscriptionEventV1),
    EventType("subscription.past_due", 1, "A subscription's payment is late.", SubscriptionEventV1),
    EventType("subscription.paused", 1, "A subscription was paused.", SubscriptionEventV1),
    EventType("subscription.cancelled", 1, "A subscription ended.", SubscriptionEventV1),
    EventType(
        "subscription.cancellation_scheduled",
        1,
        "A subscription will end at the end of its term.",
        SubscriptionCancellationScheduledV1,
    ),
    EventType(
        "subscription.renewal_upcoming",
        1,
        "A subscription's term ends soon (its renewal_reminder_days before).",
        SubscriptionRenewalUpcomingV1,
    ),
    EventType("subscription.renewed", 1, "A subscription's term renewed.", SubscriptionRenewedV1),
    EventType(
        "subscription.updated", 1, "A subscription's settings changed.", SubscriptionUpdatedV1
    ),
    EventType(
        "subscription.plan_changed",
        1,
        "A subscription moves to another plan.",
        SubscriptionPlanChangedV1,
    ),
    EventType(
        "subscription.assets_added",
        1,
        "Assets were added to a subscription.",
        SubscriptionAssetsAddedV1,
    ),
    EventType(
        "subscription.asset_removed",
        1,
        "An asset was removed from a subscription.",
        SubscriptionAssetRemovedV1,
    ),
    EventType(
        "user.invited",
        1,
        "A person was invited: send them the single-use link.",
        UserLinkV1,
    ),
    EventType(
        "user.password_reset_requested",
        1,
        "A person asked to reset their password: send them the single-use link.",
        UserLinkV1,
    ),
    EventType(
        "subscription.orders_paused", 1, "Overdue: orders pause.", SubscriptionOrdersPausedV1
    ),
    EventType(
        "subscription.orders_resumed", 1, "Paid: orders resume.", SubscriptionOrdersResumedV1
    ),
    EventType("invoice.issued", 1, "An invoice was issued, with its lines.", InvoiceIssuedV1),
    EventType(
        "invoice.voided",
        1,
        "A draft or issued invoice was voided (an issued one with its credit note).",
        InvoiceVoidedV1,
    ),
    EventType(
        "credit_note.issued",
        1,
        "A credit note reversed all (a void) or part (a correction) of an issued invoice.",
        CreditNoteIssuedV1,
    ),
    EventType(
        "service_credit.earned",
        1,
        "A covered component failed before its predicted due date: the plan's promise earns"
        " a credit on the next invoice.",
        ServiceCreditEarnedV1,
    ),
    EventType(
        "value_report.ready",
        1,
        "The customer's value report of a month (failures prevented, money saved, ...).",
        ValueReportReadyV1,
    ),
    EventType("invoice.payment_reminder", 1, "An invoice is overdue.", InvoicePaymentReminderV1),
    EventType("invoice.payment_recorded", 1, "A payment was recorded.", InvoicePaymentRecordedV1),
    EventType("invoice.paid", 1, "An invoice was paid in full.", InvoicePaidV1),
    EventType("device.offline", 1, "A device stopped reporting (proposed).", DeviceOfflineV1),
    EventType(
        "ingest.quarantine_spike",
        1,
        "Unusually many readings were quarantined in a short window (proposed).",
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
