"""Single sign-on: an organisation's people sign in through its own OpenID Connect provider.
No SQL text, no HTTP serving.

The flow is the authorization code flow with PKCE, run by ``authlib``: discovery from
``<issuer>/.well-known/openid-configuration`` (its ``issuer`` must be the one configured), an
authorization request with ``state``, ``nonce`` and an S256 ``code_challenge``; at the callback
the ``state`` must be the one this browser was given, the code is exchanged with the
``code_verifier``, and the ID token's signature (the provider's JWKS), ``iss``, ``aud``,
``exp``, ``iat`` and ``nonce`` are checked by authlib's ``CodeIDToken``.

A person is found by (issuer, subject). The first time, an existing user of the provider's
organisation with the same address is linked only when the provider says ``email_verified``;
otherwise a user is created (just in time) with the organisation's default role — when the
address is verified, or (only if the organisation sets ``trust_unverified_email``) of a domain
it claims. An organisation that sets ``required`` signs its people in here only: password
sign-in and password resets refuse them (``people.service.SsoRequired``). A disabled user, a
user of another organisation, an identity without an address: each is refused with a sentence
that says why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from authlib.integrations.base_client import BaseApp, FrameworkIntegration, OAuthError
from authlib.integrations.base_client.sync_app import OAuth2Mixin
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session
from joserfc.errors import JoseError
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.errors import Conflict, FleetcareError, Forbidden, Invalid, NotFound
from people import repository as repo
from people import service as people
from people.schemas import (
    DEFAULT_SSO_ROLE,
    SsoConfigIn,
    SsoProvider,
    SsoProviderRecord,
    User,
    UserAuth,
    UserStatus,
    check_role,
    email_domain,
)

Conn = Connection[Any]

SCOPES = "openid email profile"
CALLBACK_PATH = "/dashboard/sso/callback"


@dataclass(frozen=True)
class SsoPolicy:
    """How single sign-on reaches providers (from the settings)."""

    public_url: str = "http://127.0.0.1:8000"
    timeout_s: float = 10.0
    pending_ttl_s: float = 600.0  # a sign-in started and not finished within this is refused

    @property
    def redirect_uri(self) -> str:
        """The callback address every provider must have registered for fleetcare."""
        return self.public_url.rstrip("/") + CALLBACK_PATH


class SsoFailed(FleetcareError):
    """A single sign-on step failed: the sign-in page says which and why."""

    status_code = 401
    code = "sso_failed"


class SsoProviderUnreachable(SsoFailed):
    """The provider did not answer, or answered nonsense: 502."""

    status_code = 502
    code = "sso_provider_unreachable"


# --- an organisation's provider ----------------------------------------------------------------


def _target(
    conn: Conn, principal: Principal, customer_id: int | None, partner_id: int | None
) -> tuple[str, int | None, int | None]:
    """The organisation whose single sign-on is set: the caller's own, or (the operator) the
    customer or partner it names."""
    if customer_id is not None and partner_id is not None:
        raise Invalid("name a customer_id or a partner_id, not both")
    if principal.organisation == "operator":
        if customer_id is not None or partner_id is not None:
            if not repo.organisation_live(conn, customer_id, partner_id):
                what = f"customer {customer_id}" if customer_id else f"partner {partner_id}"
                raise NotFound(f"{what} not found", code="organisation_not_found")
            return ("customer", customer_id, None) if customer_id else ("partner", None, partner_id)
        return "operator", None, None
    if principal.organisation == "partner":
        raise Forbidden("a partner's single sign-on is set by the operator")
    if partner_id is not None:
        raise NotFound(f"partner {partner_id} not found", code="organisation_not_found")
    return "customer", fleet.owner_for(principal, customer_id), None


def _shown(conn: Conn, record: SsoProviderRecord, policy: SsoPolicy) -> SsoProvider:
    return SsoProvider(
        **record.model_dump(exclude={"client_secret"}),
        client_secret_set=bool(record.client_secret),
        domains=repo.provider_domains(conn, record.id),
        redirect_uri=policy.redirect_uri,
    )


def get_config(
    conn: Conn,
    principal: Principal,
    policy: SsoPolicy,
    *,
    customer_id: int | None = None,
    partner_id: int | None = None,
) -> SsoProvider:
    """The organisation's single sign-on (never its secret)."""
    principal.require("users:read")
    organisation, c, p = _target(conn, principal, customer_id, partner_id)
    record = repo.find_provider(conn, organisation, c, p)
    if record is None:
        raise NotFound("this organisation has no single sign-on", code="sso_not_configured")
    return _shown(conn, record, policy)


def set_config(
    conn: Conn,
    principal: Principal,
    body: SsoConfigIn,
    policy: SsoPolicy,
    *,
    customer_id: int | None = None,
    partner_id: int | None = None,
) -> SsoProvider:
    """Set (or replace) the organisation's provider and the domains it claims."""
    principal.require("users:write")
    organisation, c, p = _target(conn, principal, customer_id, partner_id)
    role = body.default_role or DEFAULT_SSO_ROLE[organisation]  # type: ignore[index]
    if role is None:
        raise Invalid(
            f"default_role: name the role of a {organisation} user created at first sign-in",
            code="invalid_role",
        )
    try:
        check_role(organisation, role)  # type: ignore[arg-type]
    except ValueError as exc:
        raise Invalid(f"default_role: {exc}", code="invalid_role") from exc
    values: dict[str, Any] = {
        "issuer": body.issuer,
        "client_id": body.client_id,
        "default_role": role,
        "enabled": body.enabled,
        "required": body.required,
        "trust_unverified_email": body.trust_unverified_email,
    }
    if body.required and not (body.enabled and body.domains):
        raise Invalid(
            "required: single sign-on can be required only with the provider on and at least"
            " one claimed domain, or nobody of this organisation could sign in",
            code="sso_required_incomplete",
        )
    if body.client_secret is not None:
        values["client_secret"] = body.client_secret
    current = repo.find_provider(conn, organisation, c, p)
    if current is None:
        if body.client_secret is None:
            raise Invalid(
                "client_secret: the provider's client secret is needed the first time",
                code="sso_secret_missing",
            )
        values |= {"organisation": organisation, "customer_id": c, "partner_id": p}
        record = repo.insert_provider(conn, values)
    else:
        record = repo.update_provider(conn, current.id, values)
    taken = repo.replace_domains(conn, record.id, c, body.domains)
    if taken:
        raise Conflict(
            f"domains: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} claimed by"
            " another organisation",
            code="sso_domain_taken",
        )
    if body.required and organisation == "operator":
        # the operator's own people (its admins among them) would be shut out by a provider
        # that does not answer: it must answer its discovery now
        try:
            _discover(_client(record, policy), record)
        except SsoProviderUnreachable as exc:
            raise Invalid(
                f"required: the operator's single sign-on cannot be required while its provider"
                f" does not work ({exc.detail})",
                code="sso_required_incomplete",
            ) from exc
    return _shown(conn, record, policy)


def delete_config(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None = None,
    partner_id: int | None = None,
) -> None:
    """Remove the organisation's single sign-on (its users stay; they sign in no more through
    it until it is set again)."""
    principal.require("users:write")
    organisation, c, p = _target(conn, principal, customer_id, partner_id)
    record = repo.find_provider(conn, organisation, c, p)
    if record is None:
        raise NotFound("this organisation has no single sign-on", code="sso_not_configured")
    repo.delete_provider(conn, record.id)


# --- the sign-in flow --------------------------------------------------------------------------


class _OidcClient(OAuth2Mixin, OpenIDMixin, BaseApp):
    """authlib's framework-neutral OpenID Connect client over ``requests`` (synchronous, as
    every route of the app)."""

    client_cls = OAuth2Session


def _client(provider: SsoProviderRecord, policy: SsoPolicy) -> _OidcClient:
    return _OidcClient(
        FrameworkIntegration(f"sso-{provider.id}"),
        name=f"sso-{provider.id}",
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        server_metadata_url=provider.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPES,
            "code_challenge_method": "S256",
            "default_timeout": policy.timeout_s,
        },
    )


def _discover(client: _OidcClient, provider: SsoProviderRecord) -> dict[str, Any]:
    """The provider's discovery document; SsoProviderUnreachable when it cannot be had."""
    try:
        metadata: dict[str, Any] = client.load_server_metadata()
    except ValueError as exc:  # requests' JSON error is a ValueError too
        raise SsoProviderUnreachable(
            f"the sign-in provider {provider.issuer} answered its discovery with no JSON document"
        ) from exc
    except requests.RequestException as exc:
        raise SsoProviderUnreachable(
            f"the sign-in provider {provider.issuer} cannot be reached"
            f" ({type(exc).__name__}); try again later or ask your administrator"
        ) from exc
    if metadata.get("issuer") != provider.issuer:
        raise SsoProviderUnreachable(
            f"the discovery document of {provider.issuer} names another issuer"
            f" ({str(metadata.get('issuer'))[:200]!r}): the issuer set for this organisation"
            " must be exactly the provider's"
        )
    missing = [
        k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not metadata.get(k)
    ]
    if missing:
        raise SsoProviderUnreachable(
            f"the discovery document of {provider.issuer} has no {', '.join(missing)}"
        )
    return metadata


@dataclass(frozen=True)
class PendingSignIn:
    """What the browser keeps (in its signed session) between leaving and coming back."""

    provider_id: int
    state: str
    nonce: str
    code_verifier: str
    started_at: float
    next: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: object) -> PendingSignIn | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                provider_id=int(data["provider_id"]),
                state=str(data["state"]),
                nonce=str(data["nonce"]),
                code_verifier=str(data["code_verifier"]),
                started_at=float(data["started_at"]),
                next=str(data.get("next", "/dashboard")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def provider_for_email(conn: Conn, email: str) -> SsoProviderRecord | None:
    """The enabled provider whose organisation claims the address's domain."""
    domain = email_domain(email)
    return repo.provider_for_domain(conn, domain) if domain else None


def begin_sign_in(
    conn: Conn, email: str, policy: SsoPolicy, *, next: str = "/dashboard"
) -> tuple[str, PendingSignIn]:
    """The provider's authorization URL for ``email``'s organisation, and what the browser
    keeps until it comes back."""
    domain = email_domain(email)
    if not domain:
        raise Invalid(f"{email[:80]!r} is not an email address", code="sso_bad_email")
    provider = repo.provider_for_domain(conn, domain)
    if provider is None:
        raise NotFound(
            f"no organisation signs in addresses of {domain} with single sign-on;"
            " sign in with your password",
            code="sso_unknown_domain",
        )
    client = _client(provider, policy)
    _discover(client, provider)
    made = client.create_authorization_url(policy.redirect_uri, login_hint=email.strip())
    pending = PendingSignIn(
        provider_id=provider.id,
        state=made["state"],
        nonce=made["nonce"],
        code_verifier=made["code_verifier"],
        started_at=time.time(),
        next=next,
    )
    return str(made["url"]), pending


def complete_sign_in(
    conn: Conn,
    pending: PendingSignIn | None,
    params: Mapping[str, str],
    now: datetime,
    policy: SsoPolicy,
) -> Principal:
    """Finish a sign-in at the callback: check state, exchange the code, check the ID token,
    find, link or create the user; its principal."""
    if params.get("error"):
        description = params.get("error_description", "")[:300]
        error = params["error"][:100]
        reason = (
            "you declined to share your identity with fleetcare"
            if error == "access_denied"
            else f"{error}{': ' + description if description else ''}"
        )
        raise SsoFailed(f"the sign-in provider did not sign you in: {reason}", code="sso_denied")
    if pending is None or not params.get("state") or params["state"] != pending.state:
        raise SsoFailed(
            "this sign-in was not started in this browser, or was already used: start again",
            code="sso_bad_state",
        )
    if time.time() - pending.started_at > policy.pending_ttl_s:
        raise SsoFailed("this sign-in took too long: start again", code="sso_bad_state")
    code = params.get("code", "")
    if not code:
        raise SsoFailed("the provider came back without a code: start again", code="sso_no_code")
    provider = repo.get_provider(conn, pending.provider_id)
    if provider is None or not provider.enabled:
        raise SsoFailed(
            "single sign-on was turned off for this organisation meanwhile", code="sso_disabled"
        )
    client = _client(provider, policy)
    metadata = _discover(client, provider)
    try:
        token = client.fetch_access_token(
            policy.redirect_uri, code=code[:2000], code_verifier=pending.code_verifier
        )
    except requests.RequestException as exc:
        raise SsoProviderUnreachable(
            f"the sign-in provider {provider.issuer} did not answer the code exchange"
            f" ({type(exc).__name__})"
        ) from exc
    except OAuthError as exc:
        raise SsoFailed(
            f"the sign-in provider refused the code exchange: {exc.error}"
            f"{': ' + exc.description if exc.description else ''}",
            code="sso_code_refused",
        ) from exc
    claims = verify_id_token(client, provider, token, pending.nonce, metadata)
    user = _user_for(conn, provider, claims)
    repo.record_sign_in(conn, user.id)
    live = people.live_user(conn, user.id)
    if live is None:
        raise SsoFailed("this account cannot sign in (its organisation is retired)")
    return people.principal_for(conn, live)


def verify_id_token(
    client: _OidcClient,
    provider: SsoProviderRecord,
    token: Mapping[str, Any],
    nonce: str,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """The claims of the token response's ID token, once authlib has checked its signature
    (the provider's JWKS), issuer, audience, expiry, issue time, nonce and access-token hash."""
    if "id_token" not in token:
        raise SsoFailed("the sign-in provider sent no ID token", code="sso_bad_token")
    try:
        claims = client.parse_id_token(
            dict(token),
            nonce=nonce,
            # authlib's CodeIDToken checks aud only through azp: name the audience too
            claims_options={
                "iss": {"essential": True, "values": [provider.issuer]},
                "aud": {"essential": True, "values": [provider.client_id]},
            },
        )
    except requests.RequestException as exc:
        raise SsoProviderUnreachable(
            f"the signing keys of {provider.issuer} ({metadata.get('jwks_uri')}) cannot be had"
        ) from exc
    except (JoseError, ValueError) as exc:
        raise SsoFailed(
            f"the sign-in provider's ID token was refused: {exc}", code="sso_bad_token"
        ) from exc
    return dict(claims)


def _same_organisation(user: User, provider: SsoProviderRecord) -> bool:
    return (user.organisation, user.customer_id, user.partner_id) == (
        provider.organisation,
        provider.customer_id,
        provider.partner_id,
    )


def _user_for(conn: Conn, provider: SsoProviderRecord, claims: dict[str, Any]) -> UserAuth:
    """The user of ``provider``'s organisation for the ID token's identity: found by (issuer,
    subject), else linked by a verified address, else created."""
    subject = str(claims.get("sub") or "")[:255]
    if not subject:
        raise SsoFailed("the ID token names no subject", code="sso_bad_token")
    user = repo.find_user_by_identity(conn, provider.issuer, subject)
    if user is None:
        user = _link_or_create(conn, provider, subject, claims)
    elif not _same_organisation(user, provider):
        raise SsoFailed(
            "this identity is linked to a user of another organisation",
            code="sso_wrong_organisation",
        )
    if user.status == UserStatus.DISABLED:
        raise SsoFailed("this account is disabled", code="account_not_active")
    found = repo.user_auth(conn, user.id)
    assert found is not None
    return found


def _link_or_create(
    conn: Conn, provider: SsoProviderRecord, subject: str, claims: dict[str, Any]
) -> UserAuth:
    email = str(claims.get("email") or "").strip()
    if not email or len(email) > 254 or not email_domain(email):
        raise SsoFailed(
            "the sign-in provider shared no email address: ask its administrator to release"
            " the 'email' claim to fleetcare",
            code="sso_no_email",
        )
    verified = claims.get("email_verified") is True
    existing = repo.find_user_auth(conn, email)
    if existing is not None:
        if not _same_organisation(existing, provider):
            raise SsoFailed(
                f"{email} belongs to a user of another organisation", code="sso_email_taken"
            )
        if existing.external_subject is not None:
            raise SsoFailed(
                f"the account {email} is linked to another identity at a sign-in provider",
                code="sso_already_linked",
            )
        if existing.status == UserStatus.DISABLED:
            raise SsoFailed("this account is disabled", code="account_not_active")
        if not verified:
            raise SsoFailed(
                f"the sign-in provider has not verified {email}, so it cannot be linked to"
                " the existing account: verify the address at the provider, then sign in again",
                code="sso_email_unverified",
            )
        repo.link_identity(conn, existing.id, provider.issuer, subject)
        found = repo.user_auth(conn, existing.id)
        assert found is not None
        return found
    if not verified and not provider.trust_unverified_email:
        raise SsoFailed(
            f"the sign-in provider has not verified {email}: no account is made for it; verify"
            " the address at the provider, then sign in again",
            code="sso_email_unverified",
        )
    if not verified and email_domain(email) not in repo.provider_domains(conn, provider.id):
        raise SsoFailed(
            f"the sign-in provider has not verified {email}, and its domain is not one this"
            " organisation claims: no account is made for it",
            code="sso_email_unverified",
        )
    name = str(claims.get("name") or "").strip()[:200] or email.split("@")[0][:200]
    created = people.add_user(
        conn,
        organisation=provider.organisation,
        email=email,
        name=name,
        role=provider.default_role,
        customer_id=provider.customer_id,
        partner_id=provider.partner_id,
    )
    repo.link_identity(conn, created.id, provider.issuer, subject)
    found = repo.user_auth(conn, created.id)
    assert found is not None
    return found
