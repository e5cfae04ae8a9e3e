"""The request's tenant context: once the caller is known, its transaction (and the read
replica's, when one serves the request) is confined to the caller's organisation by the
database's row-level security, and its changes are audited as the caller's.

Authentication itself runs under :func:`fleetcare.tenancy.operator_lookup` (a key or a
session is looked up before anyone is known); everything else a request does runs in the
context :func:`bind_principal` sets, or in none (no tenant row visible).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from psycopg import Connection

from api.auth_limit import source_of
from fleet.schemas import Principal
from fleetcare.tenancy import TenantContext, apply_context, system_context


def context_of(
    principal: Principal, *, channel: str, source: str, request: str | None = None
) -> TenantContext:
    """The context of ``principal`` acting through ``channel`` from ``source``."""
    user_id = getattr(principal, "user_id", None)  # people, once the principal has one
    actor = f"user:{user_id}" if user_id is not None else f"key:{principal.key_id}"
    scope = principal.scope
    return TenantContext(
        actor=actor,
        channel=channel,
        source=source,
        operator=scope is None,
        customer_id=principal.customer_id if scope is not None else None,
        partner_id=principal.partner_id,
        actor_role=principal.role,
        request=request,
    )


def principal_context(request: Request, principal: Principal) -> TenantContext:
    """The context of ``principal`` calling ``request``."""
    path = request.url.path
    return context_of(
        principal,
        channel="dashboard" if path.startswith("/dashboard") else "api",
        source=source_of(request),
        request=f"{request.method} {path}",
    )


def _bind(request: Request, conn: Connection[Any], context: TenantContext) -> None:
    request.state.tenant_context = context
    apply_context(conn, context)
    read_conn: Connection[Any] | None = getattr(request.state, "read_conn", None)
    if read_conn is not None and read_conn is not conn:
        apply_context(read_conn, context)


def bind_principal(request: Request, conn: Connection[Any], principal: Principal) -> None:
    """Confine the request's transaction(s) to ``principal`` and make it the audited actor."""
    _bind(request, conn, principal_context(request, principal))


def bind_device(request: Request, conn: Connection[Any], device_ref: str) -> None:
    """A device posting its own readings: fleetcare's ingest acts for it (every customer's
    catalogue; the device's customer is checked by ingest as on MQTT)."""
    context = system_context(f"device:{device_ref}", channel="api", source=source_of(request))
    _bind(request, conn, context)


def rollback_keeping_caller(request: Request, conn: Connection[Any]) -> None:
    """Roll the request's transaction back and go on as the same caller (a page that shows
    a refusal after undoing the change)."""
    conn.rollback()
    context: TenantContext | None = getattr(request.state, "tenant_context", None)
    if context is not None:
        apply_context(conn, context)


def bind_read_conn(request: Request, conn: Connection[Any]) -> None:
    """A read connection opened for this request: the caller's context, once it is known."""
    request.state.read_conn = conn
    context: TenantContext | None = getattr(request.state, "tenant_context", None)
    if context is not None:
        apply_context(conn, context)
