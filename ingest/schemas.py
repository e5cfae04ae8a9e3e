"""Records of ingest: devices, raw messages, limits, batch results, quarantine and health."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from fleet.schemas import DEVICE_REF, Strict
from fleetcare.inputs import Id, PatchRecord


class DeviceCreate(Strict):
    customer_id: Id | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    ref: str = Field(pattern=DEVICE_REF, description="globally unique; the MQTT user name")
    name: str = Field(default="", max_length=200)
    profile: str | None = Field(
        default=None, max_length=63, description="the payload profile it speaks; none: native v1"
    )


class DeviceUpdate(Strict, PatchRecord):
    name: str | None = Field(default=None, max_length=200)
    profile: str | None = Field(
        default=None, max_length=63, description='a payload profile; "" for native v1'
    )


class Device(BaseModel):
    id: int
    customer_id: int
    ref: str
    name: str
    created_at: datetime
    last_seen_at: datetime | None
    retired_at: datetime | None
    profile: str | None = None
    # when its Sparkplug B node or device last died (NDEATH/DDEATH); None once it speaks again
    offline_at: datetime | None = None


class NewDevice(Device):
    """Returned once at creation: the only time the secret is shown."""

    secret: str


# --- the telemetry path ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One MQTT message as received: what ingest stores or quarantines.

    ``ack_token`` is opaque to the pipeline; the MQTT consumer puts what it needs to
    acknowledge the message there (its packet id and connection generation).
    """

    topic: str
    payload: bytes
    received_at: datetime
    ack_token: Any = field(default=None, compare=False)
    # a Sparkplug B message as the ingestor's host session read it (ingest.sparkplug)
    sparkplug: Any = field(default=None, compare=False)
    # the ingestor's epoch when it arrived: a new one starts where messages may have been
    # lost (a CONNACK without our session, a broker restart; ingest.confirm_runs)
    epoch: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """What a message may carry; anything beyond is quarantined with a reason."""

    topic_root: str = "fleetcare/v1"
    max_payload_bytes: int = 256 * 1024
    max_readings_per_message: int = 1000
    max_future: timedelta = timedelta(minutes=10)
    max_past: timedelta = timedelta(days=30)
    # item-level rejections of one message beyond this are counted but summarised in one row
    max_quarantine_rows_per_message: int = 20
    # JSON nesting (a valid reading needs 4: batch, list, reading, metrics)
    max_json_depth: int = 32


class QuarantineReason(StrEnum):
    """Every reason ingest rejects a message or a part of it (documented in docs/telemetry.md)."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    RETIRED_DEVICE = "retired_device"
    OVERSIZED = "oversized"
    BAD_ENCODING = "bad_encoding"
    BAD_JSON = "bad_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEY = "duplicate_key"
    BAD_STRUCTURE = "bad_structure"
    TOO_MANY_READINGS = "too_many_readings"
    UNKNOWN_ASSET = "unknown_asset"
    RETIRED_ASSET = "retired_asset"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    UNKNOWN_METRIC = "unknown_metric"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    OUT_OF_BOUNDS = "out_of_bounds"
    INTERNAL_ERROR = "internal_error"
    BAD_PROTOBUF = "bad_protobuf"
    NO_BIRTH = "no_birth"
    # positions of carriers (ingest.positions)
    UNKNOWN_CARRIER = "unknown_carrier"
    UNKNOWN_STATION = "unknown_station"


@dataclass(slots=True)
class BatchResult:
    """What one call of ``store_messages`` did. Values are counted as telemetry rows."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    quarantined_by_device: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    assets_touched: int = 0
    # carriers' positions (ingest.positions): new rows, and positions already stored
    positions_stored: int = 0
    positions_duplicates: int = 0
    # (device reference, message number "seq", epoch) of the numbered messages handled, in
    # arrival order: what the ingestor confirms once the batch is committed
    # (ingest.confirm_runs)
    confirmed: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def merge(self, other: BatchResult) -> None:
        """Add ``other``'s counts to this result."""
        self.messages += other.messages
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.quarantined.update(other.quarantined)
        self.quarantined_by_device.update(other.quarantined_by_device)
        self.assets_touched += other.assets_touched
        self.positions_stored += other.positions_stored
        self.positions_duplicates += other.positions_duplicates
        self.confirmed.extend(other.confirmed)


class QuarantineItem(BaseModel):
    """One quarantined message or part of one, as the API shows it."""

    id: int
    received_at: datetime
    topic: str
    device_ref: str | None
    reason: str
    detail: str
    payload_size: int
    payload_text: str = Field(description="the raw bytes decoded as UTF-8 (bad bytes replaced)")

    @field_validator("payload_text", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        """The stored bytes (or a prefix of them) as text; bytes that are not UTF-8 become
        U+FFFD rather than an error."""
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8", errors="replace")
        return value


class QuarantineCount(BaseModel):
    device_ref: str | None
    reason: str
    count: int
    last_at: datetime


class IngestorStatus(BaseModel):
    client_id: str
    started_at: datetime
    updated_at: datetime
    connected: bool
    messages_total: int
    stored_total: int
    duplicates_total: int
    quarantined_total: int
    readings_per_s: float
    lag_s: float
    queue_depth: int
    broker_dropped: int | None
    subscription: str = Field(
        default="session", description='"session" (its own persistent session) or "shared"'
    )
    sessions_lost: int = Field(
        default=0, description="reconnects where the broker had not kept this ingestor's session"
    )
    broker_restarts: int = Field(default=0, description="broker restarts seen across reconnects")
    unsubscribed_s: float = Field(
        default=0.0,
        description="after the last broker restart, seconds without the shared subscription",
    )
    alert: str | None = Field(default=None, description="the last subscription alert")
    alert_at: datetime | None = None


class IngestHealth(BaseModel):
    """Ingest health: live ingestors, and quarantine counts per device and reason."""

    since: datetime
    ingestors: list[IngestorStatus]
    quarantine: list[QuarantineCount]
    broker_dropped: int | None = Field(
        description=(
            "messages the broker dropped while the ingestors watched its "
            "$SYS/broker/publish/messages/dropped counter; null until one has read it"
        )
    )
    alerts: list[str] = Field(
        default_factory=list,
        description="subscription alerts of live ingestors since `since` (lost sessions, "
        "windows without a subscriber after a broker restart)",
    )


class QuarantinePage(BaseModel):
    """Newest first; pass ``next_before`` as ``before`` for the next page."""

    items: list[QuarantineItem]
    next_before: int | None = None
