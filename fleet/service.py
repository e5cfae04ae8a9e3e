"""Logic of the fleet registry: scoping, keys, creation rules. No SQL text, no HTTP."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import Connection

from fleet import repository as repo
from fleet.access import scope_allows
from fleet.schemas import (
    ApiKey,
    ApiKeyAuth,
    ApiKeyCreate,
    Asset,
    AssetContext,
    AssetCreate,
    AssetUpdate,
    Customer,
    CustomerCreate,
    CustomerUpdate,
    MetricRecord,
    NewApiKey,
    Principal,
    Site,
    SiteCreate,
    SiteUpdate,
)
from fleetcare.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from fleetcare.repository import ScopedTable
from kinds.service import require_kind

Conn = Connection[Any]
R = TypeVar("R")

KEY_PREFIX = "fc_"


@contextmanager
def translate_integrity_errors(what: str) -> Iterator[None]:
    """Turn unique and foreign-key violations into domain errors (inside a savepoint)."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"{what} already exists{_same(exc)}", code="already_exists") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise Invalid(
            f"{what} refers to something that does not exist{_same(exc, 'no such')}",
            code="reference_not_found",
        ) from exc
    except psycopg.errors.CheckViolation as exc:
        raise Invalid(f"{what} has a value out of its allowed range", code="out_of_range") from exc


_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\)")


def _same(exc: psycopg.Error, prefix: str = "same") -> str:
    """`` (same customer_id, ref: 3, YARD)`` from the violation's detail; never its name."""
    match = _KEY.search(exc.diag.message_detail or "")
    if match is None:
        return ""
    return f" ({prefix} {match['columns']}: {match['values']})"


def hash_api_key(key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).digest()


def authenticate(conn: Conn, key: str | None) -> Principal:
    """The principal an API key stands for; Unauthorized when it is missing or not live
    (unknown, revoked, expired, or of a retired customer or partner)."""
    if not key:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        raise Unauthorized("that is not a fleetcare API key")
    record = repo.find_api_key(conn, hash_api_key(key))
    if record is None:
        raise Unauthorized("unknown or revoked API key, or expired")
    return _key_principal(conn, record)


def principal_for_key_id(conn: Conn, key_id: int, now: datetime | None = None) -> Principal | None:
    """The principal of a live key by id (a dashboard session signed in with it), else None."""
    record = repo.find_live_api_key(conn, key_id)
    return _key_principal(conn, record) if record is not None else None


def _key_principal(conn: Conn, record: ApiKeyAuth) -> Principal:
    if record.use_is_stale:  # at most one write a minute per key
        repo.touch_api_key(conn, record.id)
    return Principal(
        key_id=record.id,
        role=record.role,
        customer_id=record.customer_id,
        partner_id=record.partner_id,
        scopes=frozenset(record.scopes) if record.scopes is not None else None,
        name=record.name or f"key {record.prefix}…",
        organisation_name=record.organisation_name or "the operator",
    )


def owner_for(principal: Principal, requested: int | None) -> int:
    """The customer a new object belongs to: the caller's own, or the operator's choice."""
    if principal.organisation == "partner":
        raise Forbidden("a partner key cannot create customer objects")
    if principal.scope is not None:
        if requested is not None and requested != principal.scope:
            # Naming another customer is the same as naming one that does not exist.
            raise NotFound(f"customer {requested} not found", code="customer_not_found")
        return principal.scope
    if requested is None:
        raise Invalid("customer_id is required for operator keys")
    return requested


def _get(
    conn: Conn,
    principal: Principal,
    table: ScopedTable[R],
    row_id: int,
    label: str,
    *,
    for_update: bool = False,
) -> R:
    row = table.get(conn, row_id, scope=principal.scope, for_update=for_update)
    if row is None:
        raise NotFound(f"{label} {row_id} not found", code=f"{label.replace(' ', '_')}_not_found")
    return row


def retire_scoped(
    conn: Conn, principal: Principal, table: ScopedTable[R], row_id: int, label: str
) -> R:
    """Mark a row the caller may see as retired (once); its history stays."""
    current = _get(conn, principal, table, row_id, label, for_update=True)
    if getattr(current, "retired_at", None) is not None:
        return current
    return table.retire(conn, row_id)


# --- customers -----------------------------------------------------------------------------


def create_customer(conn: Conn, principal: Principal, body: CustomerCreate) -> Customer:
    """Create a customer (operator only)."""
    principal.require("customers:write")
    with translate_integrity_errors(f"customer {body.slug!r}"), conn.transaction():
        return repo.CUSTOMERS.insert(conn, body.model_dump())


def get_customer(conn: Conn, principal: Principal, customer_id: int) -> Customer:
    """A customer the caller may see: the operator any, a customer key only its own."""
    return _get(conn, principal, repo.CUSTOMERS, customer_id, "customer")


def list_customers(
    conn: Conn,
    principal: Principal,
    *,
    after: int | None,
    limit: int,
    include_retired: bool = False,
) -> tuple[list[Customer], int | None]:
    """Customers visible to the caller, one page."""
    return repo.CUSTOMERS.page(
        conn,
        scope=principal.scope,
        include_retired=include_retired,
        after=after,
        limit=limit,
    )


def update_customer(
    conn: Conn, principal: Principal, customer_id: int, body: CustomerUpdate
) -> Customer:
    """Change a customer's name or currency (operator only)."""
    principal.require("customers:write")
    current = _get(conn, principal, repo.CUSTOMERS, customer_id, "customer", for_update=True)
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    return repo.CUSTOMERS.update(conn, current.id, values) or current


def retire_customer(conn: Conn, principal: Principal, customer_id: int) -> Customer:
    """Retire a customer: its keys stop working; its history stays."""
    principal.require("customers:write")
    return retire_scoped(conn, principal, repo.CUSTOMERS, customer_id, "customer")


# --- sites -----------------------------------------------------------------------------------


def create_site(conn: Conn, principal: Principal, body: SiteCreate) -> Site:
    """Create a site for the caller's customer (or the operator's choice)."""
    owner = owner_for(principal, body.customer_id)
    get_customer(conn, principal, owner) if principal.scope is None else None
    values = body.model_dump(exclude={"customer_id"}) | {"customer_id": owner}
    with translate_integrity_errors(f"site {body.ref!r}"), conn.transaction():
        return repo.SITES.insert(conn, values)


def get_site(conn: Conn, principal: Principal, site_id: int) -> Site:
    """A site the caller may see."""
    return _get(conn, principal, repo.SITES, site_id, "site")


def site_of(conn: Conn, site_id: int) -> Site | None:
    """Any customer's site by id (for the domains that plan work; callers scope it)."""
    return repo.SITES.get(conn, site_id, scope=None)


def site_by_ref(conn: Conn, customer_id: int, ref: str) -> Site | None:
    """The customer's site with this reference (retired ones included)."""
    return repo.find_site_by_ref(conn, customer_id, ref)


def list_sites(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    after: int | None,
    limit: int,
    include_retired: bool = False,
) -> tuple[list[Site], int | None]:
    """Sites visible to the caller, one page."""
    return repo.SITES.page(
        conn,
        scope=principal.scope,
        filters={"customer_id": customer_id},
        include_retired=include_retired,
        after=after,
        limit=limit,
    )


def update_site(conn: Conn, principal: Principal, site_id: int, body: SiteUpdate) -> Site:
    """Change a site's name, region or position."""
    current = _get(conn, principal, repo.SITES, site_id, "site", for_update=True)
    values = body.model_dump(exclude_unset=True)
    if "name" in values and values["name"] is None:
        raise Invalid("name cannot be null")
    return repo.SITES.update(conn, current.id, values) or current


def retire_site(conn: Conn, principal: Principal, site_id: int) -> Site:
    """Retire a site; its assets keep their history."""
    return retire_scoped(conn, principal, repo.SITES, site_id, "site")


# --- assets ----------------------------------------------------------------------------------


def _check_site(conn: Conn, principal: Principal, owner: int, site_id: int | None) -> None:
    if site_id is None:
        return
    site = repo.SITES.get(conn, site_id, scope=principal.scope)
    if site is None or site.customer_id != owner:
        raise NotFound(f"site {site_id} not found", code="site_not_found")
    if site.retired_at is not None:
        raise Invalid(f"site {site_id} is retired")


# A device clock or a time zone slip may put an installation a little ahead of ours.
INSTALL_CLOCK_SKEW = timedelta(minutes=5)


def create_asset(
    conn: Conn, principal: Principal, body: AssetCreate, *, now: datetime | None = None
) -> Asset:
    """Register an asset of a known kind for the caller's customer; installed no later than now."""
    owner = owner_for(principal, body.customer_id)
    if principal.scope is None:
        get_customer(conn, principal, owner)
    _check_site(conn, principal, owner, body.site_id)
    require_kind(conn, body.kind)
    values: dict[str, Any] = {
        "customer_id": owner,
        "site_id": body.site_id,
        "kind": body.kind,
        "ref": body.ref,
        "attributes": repo.jsonb(body.attributes),
    }
    if body.installed_at is not None:
        if body.installed_at.tzinfo is None:
            raise Invalid("installed_at needs a time zone (e.g. 2026-11-26T10:00:00Z)")
        if body.installed_at > (now or datetime.now(UTC)) + INSTALL_CLOCK_SKEW:
            raise Invalid("installed_at is in the future", code="installed_in_future")
        values["installed_at"] = body.installed_at
        values["renewed_at"] = body.installed_at
    with translate_integrity_errors(f"asset {body.ref!r}"), conn.transaction():
        return repo.ASSETS.insert(conn, values)


def get_asset(conn: Conn, principal: Principal, asset_id: int) -> Asset:
    """An asset the caller may see."""
    return _get(conn, principal, repo.ASSETS, asset_id, "asset")


def asset_context(
    conn: Conn, asset_id: int, *, customer_id: int | None = None
) -> AssetContext | None:
    """An asset with its site's position (within ``customer_id`` when set); None if unknown."""
    return repo.asset_context(conn, asset_id, customer_id=customer_id)


def metric_catalogue(conn: Conn) -> tuple[list[MetricRecord], dict[str, str]]:
    """Every metric of every kind, and each kind's usage counter (metric name by kind)."""
    return repo.list_metrics(conn), repo.usage_metrics(conn)


def list_assets(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    site_id: int | None,
    kind: str | None,
    ref: str | None,
    after: int | None,
    limit: int,
    include_retired: bool = False,
) -> tuple[list[Asset], int | None]:
    """Assets visible to the caller, filtered, one page."""
    filters = {"customer_id": customer_id, "site_id": site_id, "kind": kind, "ref": ref}
    return repo.ASSETS.page(
        conn,
        scope=principal.scope,
        filters=filters,
        include_retired=include_retired,
        after=after,
        limit=limit,
    )


def update_asset(conn: Conn, principal: Principal, asset_id: int, body: AssetUpdate) -> Asset:
    """Move an asset to another site of its customer, or change its attributes."""
    current = _get(conn, principal, repo.ASSETS, asset_id, "asset", for_update=True)
    values: dict[str, Any] = {}
    if "site_id" in body.model_fields_set:
        _check_site(conn, principal, current.customer_id, body.site_id)
        values["site_id"] = body.site_id
    if body.attributes is not None:
        values["attributes"] = repo.jsonb(body.attributes)
    return repo.ASSETS.update(conn, current.id, values) or current


def retire_asset(conn: Conn, principal: Principal, asset_id: int) -> Asset:
    """Retire an asset: no more telemetry is accepted for it; history stays."""
    return retire_scoped(conn, principal, repo.ASSETS, asset_id, "asset")


# --- API keys --------------------------------------------------------------------------------


def issue_api_key(
    conn: Conn,
    *,
    role: str,
    customer_id: int | None,
    name: str = "",
    partner_id: int | None = None,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by_user_id: int | None = None,
) -> NewApiKey:
    """Create a key and return it whole, once; only its hash is stored."""
    if role == "partner":
        if partner_id is None or customer_id is not None:
            raise Invalid("partner keys belong to a partner, not to a customer")
    elif partner_id is not None:
        raise Invalid("only partner keys belong to a partner")
    elif (role == "operator") != (customer_id is None):
        raise Invalid("operator keys have no customer; customer and technician keys need one")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with translate_integrity_errors("API key"), conn.transaction():
        record = repo.insert_api_key(
            conn,
            key_hash=hash_api_key(key),
            prefix=key[:10],
            role=role,
            customer_id=customer_id,
            name=name,
            partner_id=partner_id,
            scopes=scopes,
            expires_at=expires_at,
            created_by_user_id=created_by_user_id,
        )
    return NewApiKey(**record.model_dump(), key=key)


def _check_key_limits(principal: Principal, body: ApiKeyCreate, now: datetime) -> None:
    """A key is never more than its maker: a scoped maker makes keys within its own scopes."""
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise Invalid("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
        if body.expires_at <= now:
            raise Invalid("expires_at is in the past", code="expired_on_creation")
    if principal.scopes is None:
        return
    if body.scopes is None:
        raise Forbidden(
            "a key with scopes can only make keys with scopes within its own",
            code="scope_not_permitted",
        )
    wider = [s for s in body.scopes if not _scope_within(principal.scopes, s)]
    if wider:
        raise Forbidden(
            f"scopes {wider} go beyond the calling key's own", code="scope_not_permitted"
        )


def _scope_within(held: frozenset[str], scope: str) -> bool:
    if scope in ("read", "write"):
        return scope in held or (scope == "read" and "write" in held)
    area, _, level = scope.partition(":")
    return scope_allows(held, f"{area}:{'read' if level == 'read' else 'write'}")


def create_api_key(
    conn: Conn, principal: Principal, body: ApiKeyCreate, *, now: datetime | None = None
) -> NewApiKey:
    """Create a key through the API: the operator any; a customer's admin only for itself."""
    principal.require("keys:write")
    _check_key_limits(principal, body, now or datetime.now(UTC))
    extra: dict[str, Any] = {
        "name": body.name,
        "scopes": body.scopes,
        "expires_at": body.expires_at,
        "created_by_user_id": principal.user_id,
    }
    if body.role == "operator":
        if principal.organisation != "operator":
            raise Forbidden("only the operator makes operator keys", code="role_not_permitted")
        return issue_api_key(conn, role="operator", customer_id=None, **extra)
    if body.role == "partner":
        raise Invalid("partner keys are created with POST /v1/partners/{id}/api-keys")
    owner = owner_for(principal, body.customer_id)
    customer = get_customer(conn, principal, owner)
    if customer.retired_at is not None:
        raise Invalid(f"customer {owner} is retired")
    return issue_api_key(conn, role=body.role, customer_id=owner, **extra)


def list_api_keys(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[ApiKey], int | None]:
    """Keys visible to the caller (never their secrets)."""
    principal.require("keys:read")
    rows, nxt = repo.API_KEYS.page(
        conn,
        scope=principal.scope,
        include_retired=True,
        after=after,
        limit=limit,
    )
    return rows, nxt


def get_api_key(conn: Conn, principal: Principal, key_id: int) -> ApiKey:
    """A key the caller may see (never its secret)."""
    principal.require("keys:read")
    return _get(conn, principal, repo.API_KEYS, key_id, "API key")


def revoke_api_key(conn: Conn, principal: Principal, key_id: int) -> ApiKey:
    """Revoke a key; it stops working at once."""
    principal.require("keys:write")
    current = _get(conn, principal, repo.API_KEYS, key_id, "API key", for_update=True)
    if current.revoked_at is not None:
        return current
    return repo.API_KEYS.retire(conn, current.id)


def mark_internal(conn: Conn, slug: str) -> bool:
    """Mark a customer as fleetcare's own (a training fleet): the operator's overview leaves
    it out. False when no customer has ``slug``."""
    return repo.mark_internal(conn, slug)


def ensure_customer(conn: Conn, slug: str, name: str, currency: str = "EUR") -> Customer:
    """The customer with ``slug``, created when missing (seeding, simulators)."""
    existing = repo.find_customer_by_slug(conn, slug)
    if existing is not None:
        return existing
    return repo.CUSTOMERS.insert(conn, {"slug": slug, "name": name, "currency": currency})


def customers_with_assets_of_kind(conn: Conn, kind: str) -> list[int]:
    """Customers with at least one asset of ``kind`` in service (whom a kind-wide event
    concerns)."""
    return repo.customers_with_assets_of_kind(conn, kind)


def asset_labels(
    conn: Conn, principal: Principal, asset_ids: Iterable[int]
) -> dict[int, tuple[str, str]]:
    """(ref, customer name) of the assets the caller may see among ``asset_ids``: what a
    page shows for an asset instead of its id."""
    return repo.asset_labels(conn, sorted(set(asset_ids)), principal.scope)
