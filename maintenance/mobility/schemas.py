"""Records of assets that move: carriers, mounts, legs, stations, lanes and order visits."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet.schemas import REF, Strict
from fleetcare.inputs import Id, Moment, Money

CarrierType = Literal["aircraft", "truck", "train", "vessel"]
LEG_REF = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"
KIND_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class CarrierCreate(Strict):
    customer_id: Id | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    ref: str = Field(pattern=REF, description="the tail number or fleet number, e.g. D-AIBA")
    name: str = Field(default="", max_length=200)
    carrier_type: CarrierType
    home_site_id: Id | None = Field(default=None, description="the home base (a site)")


class Carrier(BaseModel):
    id: int
    customer_id: int
    ref: str
    name: str
    carrier_type: str
    home_site_id: int | None
    latitude: float | None
    longitude: float | None
    at_site_id: int | None
    position_at: datetime | None
    created_at: datetime
    retired_at: datetime | None
    position_source: str | None = Field(
        default=None, description="where the latest position came from: api or telemetry"
    )


class CarrierPosition(BaseModel):
    """One recorded position of a carrier (docs/mobile-assets.md)."""

    ts: datetime
    latitude: float | None
    longitude: float | None
    station: str | None = Field(description="the site ref it was at")
    source: str = Field(description="api, or telemetry (a device)")
    device_ref: str | None = Field(description="the device that reported it")
    received_at: datetime


class PositionSet(Strict):
    """Where the carrier is now: coordinates, the station it is at, or both."""

    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    station: str | None = Field(default=None, pattern=REF, description="the site ref it is at")
    at: Moment | None = Field(default=None, description="when; default now")

    @model_validator(mode="after")
    def _something(self) -> PositionSet:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude come together")
        if self.latitude is None and self.station is None:
            raise ValueError("give latitude and longitude, a station, or both")
        return self


class MountSet(Strict):
    position: str = Field(default="", max_length=64, description="e.g. ENG1, FL")


class Mount(BaseModel):
    asset_id: int
    customer_id: int
    carrier_id: int
    position: str
    mounted_at: datetime


class LegIn(Strict):
    """One planned leg as the customer's systems send it (stations by site ref)."""

    leg_id: str = Field(pattern=LEG_REF, description="the customer's own leg id (idempotency)")
    carrier: str | None = Field(
        default=None,
        pattern=REF,
        description="the carrier ref (bulk upload; defaults to the URL's)",
    )
    from_station: str = Field(pattern=REF, alias="from")
    to_station: str = Field(pattern=REF, alias="to")
    scheduled_departure: Moment
    scheduled_arrival: Moment
    estimated_departure: Moment | None = None
    estimated_arrival: Moment | None = None
    stand: str = Field(default="", max_length=32, description="arrival stand or bay, if known")

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> LegIn:
        if self.scheduled_arrival <= self.scheduled_departure:
            raise ValueError("scheduled_arrival must be after scheduled_departure")
        dep = self.estimated_departure or self.scheduled_departure
        arr = self.estimated_arrival or self.scheduled_arrival
        if arr <= dep:
            raise ValueError("the estimated arrival must be after the estimated departure")
        if self.from_station == self.to_station:
            raise ValueError("from and to are the same station")
        return self


class ItineraryPut(Strict):
    """A carrier's plan from its first leg on: legs not listed after that point are dropped."""

    legs: list[LegIn] = Field(max_length=2000)


class Leg(BaseModel):
    id: int
    customer_id: int
    leg_ref: str
    carrier_id: int
    from_site_id: int
    to_site_id: int
    scheduled_departure: datetime
    scheduled_arrival: datetime
    estimated_departure: datetime | None
    estimated_arrival: datetime | None
    arrival_stand: str
    status: str
    updated_at: datetime

    @property
    def departs(self) -> datetime:
        return self.estimated_departure or self.scheduled_departure

    @property
    def arrives(self) -> datetime:
        return self.estimated_arrival or self.scheduled_arrival


class LegView(Leg):
    """A leg with its stations' refs, for reading."""

    carrier_ref: str
    from_station: str
    to_station: str


class ItineraryResult(BaseModel):
    """What an itinerary upload changed."""

    carriers: list[str]
    created: int
    updated: int
    unchanged: int
    cancelled: int
    tail_swaps: int
    orders_replanned: list[int]


class StationSet(Strict):
    utc_offset_minutes: int = Field(default=0, ge=-840, le=840)
    opens_at: time | None = Field(default=None, description="local time; none: always open")
    closes_at: time | None = None
    kinds: list[str] = Field(default_factory=list, max_length=50)
    components: list[str] = Field(
        default_factory=list, max_length=200, description="kind/component; empty: all of kinds"
    )
    technicians: int = Field(default=1, ge=1, le=1000)
    turnaround_hours: float = Field(default=0.0, ge=0, le=240)

    @model_validator(mode="after")
    def _hours(self) -> StationSet:
        if (self.opens_at is None) != (self.closes_at is None):
            raise ValueError("opens_at and closes_at come together")
        if self.opens_at is not None and self.opens_at == self.closes_at:
            raise ValueError("opens_at equals closes_at; leave both out for always open")
        for t in (self.opens_at, self.closes_at):
            if t is not None and t.tzinfo is not None:
                raise ValueError("opening hours are local times without a zone")
        return self


class Station(BaseModel):
    site_id: int
    customer_id: int
    utc_offset_minutes: int
    opens_at: time | None
    closes_at: time | None
    kinds: list[str]
    components: list[str]
    technicians: int
    turnaround_hours: float
    updated_at: datetime

    def services(self, kind: str, component: str) -> bool:
        """Whether the station can do work on this kind's component."""
        if kind not in self.kinds:
            return False
        mine = [c for c in self.components if c.startswith(f"{kind}/")]
        return not mine or f"{kind}/{component}" in mine


class LaneCreate(Strict):
    depot_id: Id
    site_id: Id = Field(description="the station")
    lead_hours: float = Field(ge=0, le=8760)
    cost_minor: Money = 0
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class Lane(BaseModel):
    id: int
    customer_id: int
    depot_id: int
    site_id: int
    lead_hours: float
    cost_minor: int
    currency: str
    created_at: datetime
    retired_at: datetime | None


class LaneOption(BaseModel):
    """A lane to a station from a depot, with the depot's available stock of one part."""

    lane_id: int
    depot_id: int
    depot_code: str
    site_id: int
    lead_hours: float
    cost_minor: int
    available: int


class OrderVisit(BaseModel):
    order_id: int
    customer_id: int
    carrier_id: int
    site_id: int | None
    leg_id: int | None
    arrives_at: datetime | None
    departs_at: datetime | None
    work_hours: float | None
    aog_risk: bool
    reason: str
    planned_at: datetime


class PartStatus(BaseModel):
    shipment_id: int
    sku: str
    status: str
    eta: datetime
    delivered_at: datetime | None
    at_station: bool
    redirects: int


class CrewView(BaseModel):
    """What the crew at the station needs: which carrier arrives when, where, for what."""

    order_id: int
    order_status: str
    due_at: datetime
    carrier_id: int
    carrier_ref: str
    station_site_id: int | None
    station: str | None
    arrives_at: datetime | None
    departs_at: datetime | None
    ground_hours: float | None
    work_hours: float | None
    stand: str
    asset_id: int
    asset_ref: str
    asset_position: str
    component: str
    parts: list[PartStatus]
    aog_risk: bool
    reason: str
