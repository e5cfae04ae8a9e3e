"""Users of an organisation: creation, invitations, sign-in with lockout, password resets and
web sessions. No SQL text, no HTTP.

Passwords are hashed with argon2id (``pwdlib``); invitation and reset tokens and session ids
are random, shown once, and stored as SHA-256 (like API keys: 32 random bytes need no slow
hash). Invitation and reset links reach people as events (``user.invited``,
``user.password_reset_requested``), so that a webhook or a mail relay sends them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import argon2
from psycopg import Connection
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from fleet import service as fleet
from fleet.access import ORG_ROLES, Access, Organisation
from fleet.schemas import Principal
from fleetcare.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from fleetcare.settings import Settings
from maintenance.events import service as events
from people import repository as repo
from people.schemas import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    USER_LIFECYCLE,
    Invitation,
    User,
    UserInvite,
    UserStatus,
    UserUpdate,
    check_role,
    email_domain,
)

Conn = Connection[Any]


@dataclass(frozen=True)
class PasswordCost:
    """argon2id's cost: passes, memory (KiB) and lanes; each unset one is the library's current
    parameter (pwdlib's, argon2-cffi's RFC 9106 low-memory profile: 3 passes, 64 MiB, 4 lanes),
    which is what the product hashes with unless ``FLEETCARE_PASSWORD_HASH_*`` says otherwise
    (the test suite lowers it: its passwords guard nothing)."""

    time_cost: int | None = None
    memory_kib: int | None = None
    parallelism: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordCost:
        return cls(
            settings.password_hash_time_cost,
            settings.password_hash_memory_kib,
            settings.password_hash_parallelism,
        )


LIBRARY_COST = PasswordCost()  # what the product hashes with by default


@lru_cache(maxsize=8)
def passwords(cost: PasswordCost = LIBRARY_COST) -> tuple[PasswordHash, str]:
    """The hasher of ``cost``, and a hash of a random password made with it (verified when an
    address is unknown, so that a miss takes as long as a wrong password)."""
    hasher = PasswordHash(
        (
            Argon2Hasher(  # pwdlib's own defaults are these argon2-cffi constants
                time_cost=cost.time_cost or argon2.DEFAULT_TIME_COST,
                memory_cost=cost.memory_kib or argon2.DEFAULT_MEMORY_COST,
                parallelism=cost.parallelism or argon2.DEFAULT_PARALLELISM,
            ),
        )
    )
    return hasher, hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class SignInPolicy:
    """How sign-in guards accounts and how long links live (from the settings)."""

    lockout_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    invitation_ttl: timedelta = timedelta(hours=72)
    reset_ttl: timedelta = timedelta(hours=1)
    public_url: str = "http://127.0.0.1:8000"
    password_cost: PasswordCost = LIBRARY_COST


class AccountLocked(TooManyRequests):
    """Too many failed sign-ins for one account: 429 until ``retry_after_s`` passes."""

    code = "account_locked"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def token_hash(token: str) -> bytes:
    """The stored form of a token or session id."""
    return hashlib.sha256(token.encode()).digest()


def hash_password(password: str, cost: PasswordCost = LIBRARY_COST) -> str:
    """An argon2id hash of ``password`` at ``cost`` (checked for length first)."""
    check_password(password)
    return passwords(cost)[0].hash(password)


def check_password(password: str) -> None:
    """Invalid unless the password is long enough (and not absurdly long)."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(
            f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters", code="weak_password"
        )


# --- principals ------------------------------------------------------------------------------


def principal_for(conn: Conn, user: User) -> Principal:
    """The principal a signed-in user acts as."""
    access: Access = user.access  # type: ignore[assignment]
    return Principal(
        user_id=user.id,
        access=access,
        customer_id=user.customer_id,
        partner_id=user.partner_id,
        name=user.name,
        organisation_name=repo.organisation_name(conn, user.customer_id, user.partner_id)
        or "the operator",
    )


def live_user(conn: Conn, user_id: int) -> User | None:
    """The user when active and of a live organisation, else None."""
    user = repo.USERS.get(conn, user_id, scope=None)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    if not repo.organisation_live(conn, user.customer_id, user.partner_id):
        return None
    return user


# --- creating and managing users -------------------------------------------------------------


def _organisation_of(
    principal: Principal, customer_id: int | None
) -> tuple[Organisation, int | None]:
    """The organisation a new user joins: the caller's own, or a customer the operator names."""
    if principal.role == "operator":
        return ("customer", customer_id) if customer_id is not None else ("operator", None)
    if principal.role == "partner":
        raise Forbidden("a partner cannot invite users")
    return "customer", fleet.owner_for(principal, customer_id)


def add_user(
    conn: Conn,
    *,
    organisation: Organisation,
    email: str,
    name: str,
    role: str,
    customer_id: int | None = None,
    partner_id: int | None = None,
    password: str | None = None,
    password_cost: PasswordCost = LIBRARY_COST,
) -> User:
    """Create a user (the operator's CLI, the demo): active with ``password``, else invited."""
    try:
        check_role(organisation, role)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_role") from exc
    if (organisation == "customer") != (customer_id is not None) or (organisation == "partner") != (
        partner_id is not None
    ):
        raise Invalid(f"a {organisation} user needs exactly its organisation's id")
    if repo.email_taken(conn, email):
        raise Conflict(f"a user with the address {email!r} exists", code="already_exists")
    values: dict[str, Any] = {
        "organisation": organisation,
        "customer_id": customer_id,
        "partner_id": partner_id,
        "email": email,
        "name": name,
        "role": role,
        "status": "active" if password else "invited",
        "password_hash": hash_password(password, password_cost) if password else None,
    }
    with fleet.translate_integrity_errors(f"user {email!r}"), conn.transaction():
        return repo.USERS.insert(conn, values)


def add_user_from_cli(
    conn: Conn,
    *,
    email: str,
    name: str,
    role: str,
    customer_slug: str | None,
    partner_code: str | None,
    password: str | None,
    public_url: str,
    password_cost: PasswordCost = LIBRARY_COST,
) -> tuple[User, str | None]:
    """``fleetcare users add``: the user, and its invitation link when it has no password."""
    customer_id = partner_id = None
    organisation: Organisation = "operator"
    if customer_slug is not None or partner_code is not None:
        found = repo.organisation_id(conn, customer_slug=customer_slug, partner_code=partner_code)
        what = f"customer {customer_slug!r}" if customer_slug else f"partner {partner_code!r}"
        if found is None:
            raise NotFound(f"no live {what}", code="organisation_not_found")
        if customer_slug is not None:
            organisation, customer_id = "customer", found
        else:
            organisation, partner_id = "partner", found
    user = add_user(
        conn,
        organisation=organisation,
        email=email,
        name=name,
        role=role,
        customer_id=customer_id,
        partner_id=partner_id,
        password=password,
        password_cost=password_cost,
    )
    if password:
        return user, None
    link = _send_link(conn, user, "invitation", _utcnow(), SignInPolicy(public_url=public_url))
    return user, link


def _utcnow() -> datetime:
    return datetime.now(UTC)


def invite_user(
    conn: Conn, principal: Principal, body: UserInvite, now: datetime, policy: SignInPolicy
) -> Invitation:
    """Invite a person into the caller's organisation (or a customer the operator names): the
    link goes out as a ``user.invited`` event."""
    organisation, customer_id = _organisation_of(principal, body.customer_id)
    if customer_id is not None and principal.scope is None:
        fleet.get_customer(conn, principal, customer_id)
    principal.require("users:write", _Owned(customer_id, None) if customer_id else None)
    user = add_user(
        conn,
        organisation=organisation,
        email=body.email,
        name=body.name,
        role=body.role,
        customer_id=customer_id,
    )
    _send_link(conn, user, "invitation", now, policy)
    return Invitation(user=user, expires_at=now + policy.invitation_ttl)


@dataclass(frozen=True)
class _Owned:
    customer_id: int | None
    partner_id: int | None


def _send_link(conn: Conn, user: User, purpose: str, now: datetime, policy: SignInPolicy) -> str:
    token = secrets.token_urlsafe(32)
    ttl = policy.invitation_ttl if purpose == "invitation" else policy.reset_ttl
    expires_at = now + ttl
    repo.insert_token(
        conn, token_hash=token_hash(token), user_id=user.id, purpose=purpose, expires_at=expires_at
    )
    page = "invitation" if purpose == "invitation" else "reset"
    link = f"{policy.public_url.rstrip('/')}/dashboard/{page}?{urlencode({'token': token})}"
    events.emit(
        conn,
        "user.invited" if purpose == "invitation" else "user.password_reset_requested",
        {
            "user_id": user.id,
            "email": user.email,
            "name": user.name,
            "organisation": user.organisation,
            "role": user.role,
            "link": link,
            "token": token,
            "expires_at": expires_at.isoformat(),
        },
        customer_id=user.customer_id,
        subject=f"user:{user.id}",
    )
    return link


def get_user(conn: Conn, principal: Principal, user_id: int) -> User:
    """A user of the caller's organisation (the operator: any)."""
    principal.require("users:read")
    user = repo.USERS.get(conn, user_id, scope=principal.scope)
    if user is None or not principal.owns(user):
        raise NotFound(f"user {user_id} not found", code="user_not_found")
    return user


def list_users(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[User], int | None]:
    """The users of the caller's organisation, one page (the operator: everyone)."""
    principal.require("users:read")
    if principal.role == "operator":
        return repo.list_users(
            conn, customer_id=None, partner_id=None, organisation=None, after=after, limit=limit
        )
    return repo.list_users(
        conn,
        customer_id=principal.customer_id,
        partner_id=None,
        organisation="customer",
        after=after,
        limit=limit,
    )


def update_user(conn: Conn, principal: Principal, user_id: int, body: UserUpdate) -> User:
    """Change a user's role, name or status (disable / enable) within the caller's organisation."""
    current = get_user(conn, principal, user_id)
    principal.require("users:write", current)
    values: dict[str, Any] = {}
    if body.role is not None and body.role != current.role:
        try:
            check_role(current.organisation, body.role)
        except ValueError as exc:
            raise Invalid(str(exc), code="invalid_role") from exc
        if current.id == principal.user_id:
            raise Conflict("you cannot change your own role", code="own_role")
        values["role"] = body.role
    if body.name is not None:
        values["name"] = body.name
    if body.status is not None and body.status != current.status:
        target = UserStatus(body.status)
        USER_LIFECYCLE.check(current.id, current.status, target)
        if target == UserStatus.DISABLED and current.id == principal.user_id:
            raise Conflict("you cannot disable yourself", code="own_account")
        if target == UserStatus.ACTIVE and current.status == UserStatus.DISABLED:
            auth = repo.user_auth(conn, current.id)
            if auth is None or auth.password_hash is None:
                target = UserStatus.INVITED  # never set a password: back to invited
        values["status"] = target.value
        if target == UserStatus.DISABLED:
            repo.end_user_sessions(conn, current.id)
    if not values:
        return current
    updated = repo.update_user(conn, current.id, values)
    assert updated is not None
    return updated


def disable_user(conn: Conn, user_id: int) -> User:
    """Disable a user (the operator's CLI): every session ends, sign-in is refused."""
    current = repo.USERS.get(conn, user_id, scope=None)
    if current is None:
        raise NotFound(f"user {user_id} not found", code="user_not_found")
    if current.status == UserStatus.DISABLED:
        return current
    repo.end_user_sessions(conn, current.id)
    updated = repo.update_user(conn, current.id, {"status": UserStatus.DISABLED.value})
    assert updated is not None
    return updated


def set_password(
    conn: Conn, user_id: int, password: str, cost: PasswordCost = LIBRARY_COST
) -> None:
    """Give a user a new password (the demo, the operator's console)."""
    repo.set_password(conn, user_id, hash_password(password, cost))


def find_user(conn: Conn, email: str) -> User | None:
    """The user with this address (any case)."""
    return repo.find_user_auth(conn, email)


# --- signing in ------------------------------------------------------------------------------


class SsoRequired(Forbidden):
    """The address's organisation signs its people in through its provider only."""

    code = "sso_required"


def _refuse_if_sso_required(conn: Conn, email: str, user: User | None, doing: str) -> None:
    """SsoRequired when the address's domain, or its user's organisation, requires single
    sign-on (checked before the password: nothing is counted toward the lockout)."""
    provider = repo.required_provider(conn, email_domain(email), user)
    if provider is not None:
        raise SsoRequired(
            f"this organisation signs in with single sign-on only ({provider.issuer}): {doing};"
            " use 'Continue with single sign-on' with your work email"
        )


def sign_in(
    conn: Conn, email: str, password: str, now: datetime, policy: SignInPolicy
) -> Principal:
    """The principal of a user whose password matches. Unauthorized otherwise, with the same
    words whether the address is unknown or the password wrong; AccountLocked after
    ``policy.lockout_failures`` failures in a row, until ``policy.lockout`` has passed."""
    hasher, missing_hash = passwords(policy.password_cost)
    user = repo.find_user_auth(conn, email.strip())
    _refuse_if_sso_required(conn, email, user, "no password sign-in")
    if user is None or user.password_hash is None:
        hasher.verify(password, missing_hash)  # the same time as a wrong password
        raise Unauthorized("unknown address or wrong password", code="sign_in_failed")
    if user.locked_until is not None and user.locked_until > now:
        retry = max(1, int((user.locked_until - now).total_seconds()) + 1)
        raise AccountLocked(
            f"too many failed sign-ins for this account; retry in {retry} s",
            retry_after_s=retry,
        )
    valid, new_hash = hasher.verify_and_update(password, user.password_hash)
    if not valid:
        failures = user.failed_sign_ins + 1
        locked_until = now + policy.lockout if failures % policy.lockout_failures == 0 else None
        repo.record_failed_sign_in(conn, user.id, locked_until)
        raise Unauthorized("unknown address or wrong password", code="sign_in_failed")
    if user.status != UserStatus.ACTIVE or not repo.organisation_live(
        conn, user.customer_id, user.partner_id
    ):
        raise Unauthorized(f"this account is {user.status}", code="account_not_active")
    if new_hash is not None:  # the parameters moved on (library or settings): store its hash
        repo.set_password(conn, user.id, new_hash)
    repo.record_sign_in(conn, user.id)
    return principal_for(conn, user)


def accept_invitation(
    conn: Conn, token: str, password: str, now: datetime, cost: PasswordCost = LIBRARY_COST
) -> Principal:
    """Spend an invitation: set the password, activate the user, return its principal."""
    return _spend(conn, token, "invitation", password, now, cost)


def request_password_reset(conn: Conn, email: str, now: datetime, policy: SignInPolicy) -> None:
    """Send a reset link (as a ``user.password_reset_requested`` event) to an active user.

    Says nothing about whether the address exists: the caller answers the same either way;
    SsoRequired when the address's organisation requires single sign-on.
    """
    user = repo.find_user_auth(conn, email.strip())
    _refuse_if_sso_required(conn, email, user, "no password to reset")
    if user is None or user.status != UserStatus.ACTIVE or user.sign_in_method != "password":
        return
    _send_link(conn, user, "password_reset", now, policy)


def complete_password_reset(
    conn: Conn, token: str, password: str, now: datetime, cost: PasswordCost = LIBRARY_COST
) -> Principal:
    """Spend a reset token: set the new password; every other session of the user ends."""
    return _spend(conn, token, "password_reset", password, now, cost)


def _spend(
    conn: Conn, token: str, purpose: str, password: str, now: datetime, cost: PasswordCost
) -> Principal:
    new_hash = hash_password(password, cost)
    user_id = repo.use_token(conn, token_hash(token), purpose, now)
    what = "invitation" if purpose == "invitation" else "reset link"
    if user_id is None:
        raise Invalid(f"this {what} is unknown, used or expired", code="token_invalid")
    user = repo.user_auth(conn, user_id)
    if user is None or user.status == UserStatus.DISABLED:
        raise Invalid(f"this {what} is for a disabled account", code="token_invalid")
    if purpose == "password_reset":  # a link sent before the organisation required sign-on
        _refuse_if_sso_required(conn, user.email, user, "no password to reset")
    repo.set_password(conn, user.id, new_hash)
    repo.end_user_sessions(conn, user.id)
    repo.record_sign_in(conn, user.id)
    live = live_user(conn, user.id)
    if live is None:
        raise Invalid(f"this {what} is for an account that cannot sign in", code="token_invalid")
    return principal_for(conn, live)


# --- web sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartedSession:
    """A new session: the id for the cookie (shown once) and its anti-forgery token."""

    session_id: str
    csrf_token: str


def start_session(
    conn: Conn, principal: Principal, now: datetime, max_age: timedelta
) -> StartedSession:
    """Start a session for a user or key principal (always a new id: sign-in rotates it)."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    repo.insert_session(
        conn,
        id_hash=token_hash(session_id),
        user_id=principal.user_id,
        key_id=principal.key_id if principal.user_id is None else None,
        csrf_token=csrf,
        expires_at=now + max_age,
    )
    return StartedSession(session_id, csrf)


def session_principal(conn: Conn, session_id: str, now: datetime) -> tuple[Principal, str] | None:
    """The principal and anti-forgery token of a live session; None when it ended, expired,
    or its user or key no longer signs in."""
    if not session_id or len(session_id) > 100:
        return None
    found = repo.find_session(conn, token_hash(session_id), now)
    if found is None:
        return None
    if found.user_id is not None:
        user = live_user(conn, found.user_id)
        if user is None:
            return None
        return principal_for(conn, user), found.csrf_token
    assert found.key_id is not None
    principal = fleet.principal_for_key_id(conn, found.key_id, now)
    return (principal, found.csrf_token) if principal is not None else None


def end_session(conn: Conn, session_id: str) -> None:
    """Sign out: the session ends for good."""
    if session_id and len(session_id) <= 100:
        repo.end_session(conn, token_hash(session_id))


def organisation_roles(organisation: Organisation) -> tuple[str, ...]:
    """The roles an organisation's users may hold."""
    return ORG_ROLES[organisation]
