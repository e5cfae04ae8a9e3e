"""Records of parts, depots, inventory, reservations, shipments and replenishments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from fleet.schemas import REF, Strict
from fleetcare.inputs import Count, Moment, Positive
from fleetcare.lifecycle import Lifecycle


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


# from -> what it may become: a pending shipment leaves the depot or is called off (its order
# was cancelled or completed without it); a shipped one is delivered.
SHIPMENT_LIFECYCLE = Lifecycle(
    "shipment",
    {
        ShipmentStatus.PENDING: {ShipmentStatus.SHIPPED, ShipmentStatus.CANCELLED},
        ShipmentStatus.SHIPPED: {ShipmentStatus.DELIVERED},
        ShipmentStatus.DELIVERED: set(),
        ShipmentStatus.CANCELLED: set(),
    },
)


class Part(BaseModel):
    id: int
    sku: str
    name: str
    kind: str
    component: str
    price_minor: int
    currency: str
    labour_hours: float
    created_at: datetime
    retired_at: datetime | None


class DepotCreate(Strict):
    code: str = Field(pattern=REF)
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(default="", max_length=100)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Depot(BaseModel):
    id: int
    code: str
    name: str
    region: str
    latitude: float
    longitude: float
    created_at: datetime
    retired_at: datetime | None


class StockSet(Strict):
    """Set a depot's stock of one part (operator). Unset fields keep their value."""

    on_hand: Count | None = Field(default=None)
    receive: Positive | None = Field(default=None, description="add to on_hand")
    reorder_point: Count | None = Field(default=None)
    reorder_quantity: Positive | None = Field(default=None)
    shipping_days: int | None = Field(default=None, ge=0, le=365)


class InventoryItem(BaseModel):
    depot_id: int
    part_id: int
    on_hand: int
    reserved: int
    reorder_point: int
    reorder_quantity: int
    shipping_days: int
    updated_at: datetime

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class SupplyOption(BaseModel):
    """A depot that stocks a part, how far it is and how long shipping takes."""

    depot_id: int
    depot_code: str
    part_id: int
    shipping_days: int
    available: int
    distance_km: float | None


class Reservation(BaseModel):
    id: int
    order_id: int
    depot_id: int
    part_id: int
    quantity: int
    status: str
    created_at: datetime
    closed_at: datetime | None


class Shipment(BaseModel):
    id: int
    customer_id: int
    order_id: int
    reservation_id: int
    depot_id: int
    part_id: int
    quantity: int
    site_id: int | None
    status: ShipmentStatus
    eta: datetime
    carrier: str
    tracking_ref: str
    created_at: datetime
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    redirects: int = 0


class ShipRequest(Strict):
    carrier: str = Field(default="", max_length=100)
    tracking_ref: str = Field(default="", max_length=200)
    eta: Moment | None = Field(default=None, description="a corrected ETA, if the carrier gave one")


class Replenishment(BaseModel):
    id: int
    depot_id: int
    part_id: int
    quantity: int
    status: str
    reason: str
    created_at: datetime
    received_at: datetime | None
