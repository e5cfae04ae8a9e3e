"""Records of the fleet registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet.access import (
    ACCESS_ROLES,
    KEY_ROLES,
    Access,
    KeyRole,
    Organisation,
    key_role_of,
    role_allows,
    scope_allows,
    valid_scope,
)
from fleetcare.errors import Forbidden
from fleetcare.inputs import Id, Moment, PatchRecord, RequestRecord
from kinds.schemas import KindName

Role = KeyRole  # the first version's four key roles (fleet.access maps each to a role)

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
    """Who is calling: an API key or a signed-in user, its role and its organisation.

    ``access`` is the role (``customer:viewer``, ``operator:dispatcher``, ...); ``role`` is the
    first version's key role that stands closest to it (operator, customer, technician,
    partner) and decides nothing but the tenant wall (``scope``). A principal made with only
    ``role`` (the CLI, workers, the first version's keys) gets that role's ``access``. What the
    caller may do is asked with :meth:`can`, never by comparing roles.
    """

    model_config = ConfigDict(frozen=True)

    key_id: int | None = None
    user_id: int | None = None
    role: Role = "customer"
    access: Access = "customer:admin"
    customer_id: int | None = None
    partner_id: int | None = None
    # a key's scopes (None: everything its role may do)
    scopes: frozenset[str] | None = None
    name: str = ""
    organisation_name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _access_and_role_agree(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("access") is None:
            data["access"] = KEY_ROLES.get(data.get("role", "customer"), data.get("role"))
        elif isinstance(data["access"], str) and ":" in data["access"]:
            data["role"] = key_role_of(data["access"])
        return data

    @property
    def scope(self) -> int | None:
        """The customer the caller is confined to; None for the operator (sees all)."""
        if self.role == "operator":
            return None
        if self.role == "partner":
            return NO_CUSTOMER
        return self.customer_id

    @property
    def partner_scope(self) -> int | None:
        """The partner the caller works for (orders assigned to it), else None."""
        return self.partner_id if self.role == "partner" else None

    @property
    def organisation(self) -> Organisation:
        """The kind of organisation the caller belongs to."""
        return (
            "operator"
            if self.role == "operator"
            else "partner"
            if self.role == "partner"
            else "customer"
        )

    @property
    def who(self) -> str:
        """``user 5`` or ``key 3``: who acts, for logs and the audit trail."""
        return f"user {self.user_id}" if self.user_id is not None else f"key {self.key_id}"

    def can(self, action: str, resource: object | None = None) -> bool:
        """Whether the caller may do ``action`` (``assets:read``, ``orders:work``, ...) — to
        ``resource`` when given (an object with ``customer_id`` / ``partner_id``: it must be
        within the caller's organisation)."""
        if not role_allows(self.access, action):
            return False
        if self.scopes is not None and not scope_allows(self.scopes, action):
            return False
        return resource is None or self.owns(resource)

    def owns(self, resource: object) -> bool:
        """Whether ``resource`` lies within the caller's organisation (the operator: all)."""
        if self.role == "operator":
            return True
        if self.role == "partner":
            return getattr(resource, "partner_id", None) == self.partner_id
        return getattr(resource, "customer_id", None) == self.customer_id

    def require(self, action: str, resource: object | None = None) -> None:
        """Forbidden (``not_permitted``) unless :meth:`can`."""
        if not self.can(action, resource):
            code = (
                "scope_not_permitted" if role_allows(self.access, action) else "role_not_permitted"
            )
            raise Forbidden(self.refusal(action), code=code)

    def refusal(self, action: str) -> str:
        """Why :meth:`can` says no to ``action``, in a sentence."""
        who = f"a {self.access} {'user' if self.user_id is not None else 'key'}"
        if role_allows(self.access, action):
            return f"{who} may not {action}: outside the key's scopes"
        holders = [a for a in ACCESS_ROLES if role_allows(a, action)]
        return f"{who} may not {action} (only {', '.join(holders) or 'nobody'})"


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
    internal: bool = False
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
    scopes: list[str] | None = Field(
        default=None,
        max_length=40,
        description="what the key may do within its role: `read`, `write`, `<area>:read` or"
        " `<area>:write` (docs/access.md lists the areas); omitted: everything its role may",
    )
    expires_at: Moment | None = Field(default=None, description="the key stops working then")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [s for s in value if not valid_scope(s)]
        if unknown:
            raise ValueError(
                f"unknown scopes {unknown}: use read, write, <area>:read or <area>:write"
            )
        return sorted(set(value))


class ApiKey(BaseModel):
    id: int
    prefix: str
    role: Role
    customer_id: int | None
    partner_id: int | None = None
    name: str
    scopes: list[str] | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyAuth(ApiKey):
    """A live key as authentication reads it: ``use_is_stale`` when its last use is more than
    a minute old (the only time authentication writes ``last_used_at``)."""

    use_is_stale: bool = False
    organisation_name: str = ""


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
