"""Records of service partners and their commissions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleet.schemas import Strict
from fleetcare.inputs import Id


class PartnerCreate(Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = Field(min_length=1, max_length=200)
    regions: list[str] = Field(
        default_factory=list, max_length=100, description="sites.region values served"
    )
    commission_bps: int = Field(default=1000, ge=0, le=10000, description="1000 = 10 %")


class Partner(BaseModel):
    id: int
    code: str
    name: str
    regions: list[str]
    commission_bps: int
    created_at: datetime
    retired_at: datetime | None


class SiteList(Strict):
    site_ids: list[Id] = Field(min_length=1, max_length=1000)


class PartnerKeyCreate(Strict):
    name: str = Field(default="", max_length=100)


class Commission(BaseModel):
    id: int
    partner_id: int
    order_id: int
    customer_id: int
    basis_minor: int
    rate_bps: int
    amount_minor: int
    currency: str
    created_at: datetime
