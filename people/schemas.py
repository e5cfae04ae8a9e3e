"""Records of people: users, their invitations and sessions."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from authlib.common.security import is_secure_transport
from pydantic import BaseModel, Field, field_validator

from fleet.access import ORG_ROLES, Organisation
from fleet.schemas import Strict
from fleetcare.inputs import Id
from fleetcare.lifecycle import Lifecycle

UserRole = Literal["admin", "dispatcher", "billing", "fleet_manager", "viewer", "technician"]
SignInMethod = Literal["password", "oidc"]
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,189}$"
PASSWORD_MIN = 10
PASSWORD_MAX = 200


class UserStatus(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


USER_LIFECYCLE = Lifecycle(
    "user",
    {
        UserStatus.INVITED: {UserStatus.ACTIVE, UserStatus.DISABLED},
        UserStatus.ACTIVE: {UserStatus.DISABLED},
        UserStatus.DISABLED: {UserStatus.ACTIVE},
    },
)


def normalise_email(value: str) -> str:
    """An address as stored and compared: trimmed; case is kept but never decides."""
    return value.strip()


class User(BaseModel):
    id: int
    organisation: Organisation
    customer_id: int | None
    partner_id: int | None
    email: str
    name: str
    role: UserRole
    status: UserStatus
    sign_in_method: SignInMethod
    external_issuer: str | None = None
    external_subject: str | None = None
    created_at: datetime
    last_sign_in_at: datetime | None
    disabled_at: datetime | None

    @property
    def access(self) -> str:
        """The user's role as ``fleet.access`` names it (``customer:viewer``)."""
        return f"{self.organisation}:{self.role}"


class UserAuth(User):
    """A user with what sign-in checks (never leaves the service)."""

    password_hash: str | None
    failed_sign_ins: int
    locked_until: datetime | None


def check_role(organisation: Organisation, role: str) -> None:
    """ValueError unless ``role`` is one an ``organisation``'s user may hold."""
    if role not in ORG_ROLES[organisation]:
        allowed = ", ".join(ORG_ROLES[organisation])
        raise ValueError(f"a {organisation} user's role is one of {allowed}, not {role!r}")


class UserInvite(Strict):
    email: str = Field(pattern=EMAIL, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    role: UserRole = "viewer"
    customer_id: Id | None = Field(
        default=None, description="the operator inviting into a customer names it"
    )

    @field_validator("email")
    @classmethod
    def _trim(cls, value: str) -> str:
        return normalise_email(value)


class UserUpdate(Strict):
    role: UserRole | None = None
    status: Literal["active", "disabled"] | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)


class Invitation(BaseModel):
    """An invited user and where the invitation was sent (the token goes only in the event)."""

    user: User
    expires_at: datetime


class SignIn(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class AcceptInvitation(Strict):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class ResetRequest(Strict):
    email: str = Field(min_length=1, max_length=254)


class ResetComplete(Strict):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class WebSession(BaseModel):
    user_id: int | None
    key_id: int | None
    csrf_token: str
    expires_at: datetime


class Me(BaseModel):
    """Who the caller is (``GET /v1/me``)."""

    who: str
    user_id: int | None
    key_id: int | None
    name: str
    organisation: Organisation
    organisation_name: str
    customer_id: int | None
    partner_id: int | None
    access: str
    permissions: list[str]
    csrf_token: str | None = None


# --- single sign-on (OpenID Connect) -----------------------------------------------------------

DOMAIN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
# the role a person created at first sign-in gets when the admin names none
DEFAULT_SSO_ROLE: dict[Organisation, str | None] = {
    "operator": None,  # the operator names it: no role of its own is harmless enough
    "customer": "viewer",
    "partner": "technician",
}


def email_domain(email: str) -> str:
    """The domain of an address, lowercased ('' when it has none)."""
    _, at, domain = email.strip().rpartition("@")
    return domain.lower() if at else ""


class SsoConfigIn(Strict):
    """An organisation's OpenID Connect provider, as its admin sets it."""

    issuer: str = Field(
        min_length=8,
        max_length=500,
        description="the provider's issuer URL (https; http only on this machine's loopback);"
        " its discovery document is <issuer>/.well-known/openid-configuration",
    )
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="write-only: never returned; omit it to keep the stored one",
    )
    default_role: UserRole | None = Field(
        default=None,
        description="the role of a person created at first sign-in (customer: viewer,"
        " partner: technician; the operator names it)",
    )
    domains: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="email domains whose people the sign-in page sends to this provider; a"
        " domain another organisation claims is refused",
    )
    enabled: bool = True
    required: bool = Field(
        default=False,
        description="its people sign in through the provider only: no password sign-in and no"
        " password reset (API keys are unaffected); needs the provider on and a claimed domain",
    )
    trust_unverified_email: bool = Field(
        default=False,
        description="create a user at first sign-in even when the provider has not verified its"
        " address (email_verified), if the address is of a claimed domain",
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.query or parts.fragment or not parts.hostname:
            raise ValueError("an issuer is a URL with a host and no query or fragment")
        if not is_secure_transport(value):
            raise ValueError("an issuer is an https URL (http only on this machine's loopback)")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        cleaned: list[str] = []
        for value in values:
            domain = value.strip().lower().removeprefix("@")
            if len(domain) > 253 or not re.match(DOMAIN, domain):
                raise ValueError(f"{value[:60]!r} is not an email domain (example.com)")
            if domain not in cleaned:
                cleaned.append(domain)
        return cleaned


class SsoProviderRecord(BaseModel):
    """A stored provider, with its secret (never leaves the service)."""

    id: int
    organisation: Organisation
    customer_id: int | None
    partner_id: int | None
    issuer: str
    client_id: str
    client_secret: str
    default_role: UserRole
    enabled: bool
    required: bool = False
    trust_unverified_email: bool = False
    created_at: datetime
    updated_at: datetime


class SsoProvider(BaseModel):
    """An organisation's single sign-on, as the API shows it: no secret."""

    id: int
    organisation: Organisation
    customer_id: int | None
    partner_id: int | None
    issuer: str
    client_id: str
    client_secret_set: bool = Field(description="a secret is stored (it is never shown)")
    default_role: UserRole
    enabled: bool
    required: bool
    trust_unverified_email: bool
    domains: list[str]
    redirect_uri: str = Field(description="register this address at the provider")
    created_at: datetime
    updated_at: datetime


class SsoStart(Strict):
    email: str = Field(min_length=3, max_length=254)
