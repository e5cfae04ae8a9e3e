"""Records of people: users, their invitations and sessions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

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
