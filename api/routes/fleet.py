"""Customers, sites, assets, API keys and the metric catalogue."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import After, AppClock, Caller, Conn, IncludeRetired, Limit, ReadConn
from fleet import repository as fleet_repo
from fleet import service as fleet
from fleet.schemas import (
    ApiKey,
    ApiKeyCreate,
    Asset,
    AssetCreate,
    AssetUpdate,
    Customer,
    CustomerCreate,
    CustomerUpdate,
    MetricRecord,
    NewApiKey,
    Page,
    Site,
    SiteCreate,
    SiteUpdate,
)
from fleetcare.inputs import Id, ShortText
from kinds.schemas import KindName

router = APIRouter(prefix="/v1")


# --- customers -----------------------------------------------------------------------------


@router.post("/customers", status_code=status.HTTP_201_CREATED, tags=["customers"])
def create_customer(body: CustomerCreate, conn: Conn, caller: Caller) -> Customer:
    """Create a customer (operator)."""
    return fleet.create_customer(conn, caller, body)


@router.get("/customers", tags=["customers"])
def list_customers(
    conn: ReadConn,
    caller: Caller,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Customer]:
    """Customers the caller may see (a customer key: only itself)."""
    items, nxt = fleet.list_customers(
        conn, caller, after=after, limit=limit, include_retired=include_retired
    )
    return Page(items=items, next_after=nxt)


@router.get("/customers/{customer_id}", tags=["customers"])
def get_customer(customer_id: Id, conn: ReadConn, caller: Caller) -> Customer:
    """One customer."""
    return fleet.get_customer(conn, caller, customer_id)


@router.patch("/customers/{customer_id}", tags=["customers"])
def update_customer(customer_id: Id, body: CustomerUpdate, conn: Conn, caller: Caller) -> Customer:
    """Change a customer (operator)."""
    return fleet.update_customer(conn, caller, customer_id, body)


@router.delete("/customers/{customer_id}", tags=["customers"])
def retire_customer(customer_id: Id, conn: Conn, caller: Caller) -> Customer:
    """Retire a customer (operator): its keys stop working, its history stays."""
    return fleet.retire_customer(conn, caller, customer_id)


# --- sites -----------------------------------------------------------------------------------


@router.post("/sites", status_code=status.HTTP_201_CREATED, tags=["sites"])
def create_site(body: SiteCreate, conn: Conn, caller: Caller) -> Site:
    """Create a site."""
    return fleet.create_site(conn, caller, body)


@router.get("/sites", tags=["sites"])
def list_sites(
    conn: ReadConn,
    caller: Caller,
    customer_id: Id | None = None,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Site]:
    """Sites the caller may see."""
    items, nxt = fleet.list_sites(
        conn,
        caller,
        customer_id=customer_id,
        after=after,
        limit=limit,
        include_retired=include_retired,
    )
    return Page(items=items, next_after=nxt)


@router.get("/sites/{site_id}", tags=["sites"])
def get_site(site_id: Id, conn: ReadConn, caller: Caller) -> Site:
    """One site."""
    return fleet.get_site(conn, caller, site_id)


@router.patch("/sites/{site_id}", tags=["sites"])
def update_site(site_id: Id, body: SiteUpdate, conn: Conn, caller: Caller) -> Site:
    """Change a site."""
    return fleet.update_site(conn, caller, site_id, body)


@router.delete("/sites/{site_id}", tags=["sites"])
def retire_site(site_id: Id, conn: Conn, caller: Caller) -> Site:
    """Retire a site."""
    return fleet.retire_site(conn, caller, site_id)


# --- assets ----------------------------------------------------------------------------------


@router.post("/assets", status_code=status.HTTP_201_CREATED, tags=["assets"])
def create_asset(body: AssetCreate, conn: Conn, caller: Caller, clock: AppClock) -> Asset:
    """Register an asset (installed_at, when given, is not in the future)."""
    return fleet.create_asset(conn, caller, body, now=clock.now())


@router.get("/assets", tags=["assets"])
def list_assets(
    conn: ReadConn,
    caller: Caller,
    customer_id: Id | None = None,
    site_id: Id | None = None,
    kind: KindName | None = None,
    ref: ShortText | None = None,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Asset]:
    """Assets the caller may see, filtered by customer, site, kind or reference."""
    items, nxt = fleet.list_assets(
        conn,
        caller,
        customer_id=customer_id,
        site_id=site_id,
        kind=kind,
        ref=ref,
        after=after,
        limit=limit,
        include_retired=include_retired,
    )
    return Page(items=items, next_after=nxt)


@router.get("/assets/{asset_id}", tags=["assets"])
def get_asset(asset_id: Id, conn: ReadConn, caller: Caller) -> Asset:
    """One asset."""
    return fleet.get_asset(conn, caller, asset_id)


@router.patch("/assets/{asset_id}", tags=["assets"])
def update_asset(asset_id: Id, body: AssetUpdate, conn: Conn, caller: Caller) -> Asset:
    """Move an asset to another site or change its attributes."""
    return fleet.update_asset(conn, caller, asset_id, body)


@router.delete("/assets/{asset_id}", tags=["assets"])
def retire_asset(asset_id: Id, conn: Conn, caller: Caller) -> Asset:
    """Retire an asset."""
    return fleet.retire_asset(conn, caller, asset_id)


# --- API keys --------------------------------------------------------------------------------


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, tags=["api keys"])
def create_api_key(body: ApiKeyCreate, conn: Conn, caller: Caller, clock: AppClock) -> NewApiKey:
    """Create a key, optionally narrowed by scopes and with an expiry; the response is the only
    time the whole key is shown."""
    return fleet.create_api_key(conn, caller, body, now=clock.now())


@router.get("/api-keys", tags=["api keys"])
def list_api_keys(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[ApiKey]:
    """Keys the caller may see (prefixes only)."""
    items, nxt = fleet.list_api_keys(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/api-keys/{key_id}", tags=["api keys"])
def get_api_key(key_id: Id, conn: ReadConn, caller: Caller) -> ApiKey:
    """One key (its prefix, never the secret)."""
    return fleet.get_api_key(conn, caller, key_id)


@router.delete("/api-keys/{key_id}", tags=["api keys"])
def revoke_api_key(key_id: Id, conn: Conn, caller: Caller) -> ApiKey:
    """Revoke a key."""
    return fleet.revoke_api_key(conn, caller, key_id)


# --- catalogue -------------------------------------------------------------------------------


@router.get("/metrics-catalogue", tags=["catalogue"])
def metrics_catalogue(
    conn: ReadConn, caller: Caller, kind: KindName | None = None
) -> list[MetricRecord]:
    """Every metric of every asset kind, with its unit and physical bounds."""
    return fleet_repo.list_metrics(conn, kind)
