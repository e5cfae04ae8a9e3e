"""Records of ingest: devices (and, later, readings and quarantine)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleetcare.fleet.schemas import DEVICE_REF, Strict


class DeviceCreate(Strict):
    customer_id: int | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    ref: str = Field(pattern=DEVICE_REF, description="globally unique; the MQTT user name")
    name: str = Field(default="", max_length=200)


class DeviceUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)


class Device(BaseModel):
    id: int
    customer_id: int
    ref: str
    name: str
    created_at: datetime
    last_seen_at: datetime | None
    retired_at: datetime | None


class NewDevice(Device):
    """Returned once at creation: the only time the secret is shown."""

    secret: str
