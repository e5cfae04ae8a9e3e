"""Records of the fleet registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fleetcare.inputs import Id, Moment, PatchRecord, RequestRecord
from kinds.schemas import KindName

Role = Literal["operator", "customer", "technician", "partner"]

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEVICE_REF = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

T = TypeVar("T")


class Strict(RequestRecord):
    """Request bodies: unknown fields are an error, not silently dropped (``RequestRecord``)."""


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_after`` as ``after`` to get the next."""

    items: list[T]
    next_after: int | None = None


class CursorPage(BaseModel, Generic[T]):
    """One page of a list ordered by more than an id; pass ``next_after`` (opaque) as
    ``after`` to get the next."""

    items: list[T]
    next_after: str | None = None


# A partner key belongs to no customer: its customer scope matches no row (identities start
# at 1), so the fleet routes show it nothing; maintenance routes scope it by partner_id.
NO_CUSTOMER = 0


class Principal(BaseModel):
    """Who is calling: the role and, except for the operator, the customer (or partner)."""

    model_config = ConfigDict(frozen=True)

    key_id: int
    role: Role
    customer_id: int | None = None
    partner_id: int | None = None

    @property
    def scope(self) -> int | None:
        """The customer the caller is confined to; None for the operator (sees all)."""
        if self.role == "operator":
            return None
        if self.role == "partner":
            return NO_CUSTOMER
        return self.customer_id


class CustomerCreate(Strict):
    slug: str = Field(pattern=SLUG, description="lowercase identifier, unique")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class CustomerUpdate(Strict, PatchRecord):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class Customer(BaseModel):
    id: int
    slug: str
    name: str
    currency: str
    created_at: datetime
    retired_at: datetime | None


class SiteCreate(Strict):
    customer_id: Id | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    ref: str = Field(pattern=REF)
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(default="", max_length=100)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SiteUpdate(Strict, PatchRecord):
    nullable = frozenset({"latitude", "longitude"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class Site(BaseModel):
    id: int
    customer_id: int
    ref: str
    name: str
    region: str
    latitude: float | None
    longitude: float | None
    created_at: datetime
    retired_at: datetime | None


class AssetCreate(Strict):
    customer_id: Id | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    site_id: Id | None = None
    kind: KindName
    ref: str = Field(pattern=REF, description="the customer's own reference, e.g. TRK-17-FL")
    installed_at: Moment | None = Field(default=None, description="not in the future")
    attributes: dict[str, Any] = Field(default_factory=dict)


class AssetUpdate(Strict, PatchRecord):
    nullable = frozenset({"site_id"})  # null: the asset leaves its site

    site_id: Id | None = None
    attributes: dict[str, Any] | None = None


class Asset(BaseModel):
    id: int
    customer_id: int
    site_id: int | None
    kind: str
    ref: str
    installed_at: datetime
    renewed_at: datetime
    attributes: dict[str, Any]
    usage_counter: float | None
    usage_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime
    retired_at: datetime | None


class AssetContext(Asset):
    """An asset with its site's position: what orders and the policy plan the work with."""

    latitude: float | None
    longitude: float | None


class ApiKeyCreate(Strict):
    role: Role = "customer"
    customer_id: Id | None = None
    name: str = Field(default="", max_length=100)


class ApiKey(BaseModel):
    id: int
    prefix: str
    role: Role
    customer_id: int | None
    partner_id: int | None = None
    name: str
    created_at: datetime
    revoked_at: datetime | None


class NewApiKey(ApiKey):
    """Returned once at creation: the only time the whole key is shown."""

    key: str


class MetricRecord(BaseModel):
    id: int
    kind: str
    name: str
    unit: str
    low: float
    high: float
    cumulative: bool
