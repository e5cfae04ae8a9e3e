"""Webhook endpoints, the delivery log, replay and test pings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from api.deps import After, Caller, Conn, IncludeRetired, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.clock import SystemClock
from fleetcare.inputs import Id, ShortText
from fleetcare.settings import Settings
from maintenance.webhooks import service as webhooks
from maintenance.webhooks.schemas import (
    Delivery,
    DeliveryLog,
    DeliveryStatus,
    Endpoint,
    EndpointCreate,
    EndpointUpdate,
    NewEndpoint,
    PingResult,
    ReplayEvent,
    ReplayFailed,
    ReplayResult,
    RotatedSecret,
    SecretRotation,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _allow_private(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.webhooks_allow_private


@router.post("/endpoints", status_code=status.HTTP_201_CREATED)
def create_endpoint(
    body: EndpointCreate, request: Request, conn: Conn, caller: Caller
) -> NewEndpoint:
    """Register an endpoint; the response is the only time its signing secret is shown."""
    return webhooks.create_endpoint(conn, caller, body, allow_private=_allow_private(request))


@router.get("/endpoints")
def list_endpoints(
    conn: ReadConn,
    caller: Caller,
    customer_id: Id | None = None,
    enabled: bool | None = None,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Endpoint]:
    """Endpoints the caller may see (``enabled=false``: the disabled ones, with the reason)."""
    items, nxt = webhooks.list_endpoints(
        conn,
        caller,
        customer_id=customer_id,
        enabled=enabled,
        include_retired=include_retired,
        after=after,
        limit=limit,
    )
    return Page(items=items, next_after=nxt)


@router.get("/endpoints/{endpoint_id}")
def get_endpoint(endpoint_id: Id, conn: ReadConn, caller: Caller) -> Endpoint:
    """One endpoint (never its secret)."""
    return webhooks.get_endpoint(conn, caller, endpoint_id)


@router.patch("/endpoints/{endpoint_id}")
def update_endpoint(
    endpoint_id: Id, body: EndpointUpdate, request: Request, conn: Conn, caller: Caller
) -> Endpoint:
    """Change the URL, description, event filter, or enable/disable the endpoint."""
    return webhooks.update_endpoint(
        conn,
        caller,
        endpoint_id,
        body,
        allow_private=_allow_private(request),
        now=SystemClock().now(),
    )


@router.delete("/endpoints/{endpoint_id}")
def delete_endpoint(endpoint_id: Id, conn: Conn, caller: Caller) -> Endpoint:
    """Delete an endpoint; its delivery log is kept."""
    return webhooks.delete_endpoint(conn, caller, endpoint_id, now=SystemClock().now())


@router.post("/endpoints/{endpoint_id}/rotate-secret")
def rotate_secret(
    endpoint_id: Id, conn: Conn, caller: Caller, body: SecretRotation | None = None
) -> RotatedSecret:
    """New signing secret (shown once); the old one also signs during the overlap."""
    return webhooks.rotate_secret(
        conn, caller, endpoint_id, body or SecretRotation(), now=SystemClock().now()
    )


@router.post("/endpoints/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED)
def send_test_ping(endpoint_id: Id, conn: Conn, caller: Caller) -> PingResult:
    """Queue a ``webhook.ping`` for this endpoint."""
    return webhooks.send_test_ping(conn, caller, endpoint_id)


@router.get("/endpoints/{endpoint_id}/deliveries")
def endpoint_deliveries(
    endpoint_id: Id,
    conn: ReadConn,
    caller: Caller,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    after: After = None,
    limit: Limit = 50,
) -> Page[Delivery]:
    """The endpoint's deliveries, oldest first."""
    items, nxt = webhooks.endpoint_deliveries(
        conn, caller, endpoint_id, status=status, after=after, limit=limit
    )
    return Page(items=items, next_after=nxt)


@router.post("/endpoints/{endpoint_id}/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_failed(endpoint_id: Id, body: ReplayFailed, conn: Conn, caller: Caller) -> ReplayResult:
    """Send again every failed delivery of the endpoint since a time (same webhook-ids)."""
    return webhooks.replay_failed(conn, caller, endpoint_id, body)


@router.get("/deliveries/{delivery_id}")
def delivery_log(delivery_id: Id, conn: ReadConn, caller: Caller) -> DeliveryLog:
    """One delivery with every attempt (status code, latency, error, response excerpt)."""
    return webhooks.delivery_log(conn, caller, delivery_id)


@router.get("/events/{public_id}/deliveries")
def event_deliveries(public_id: ShortText, conn: ReadConn, caller: Caller) -> list[DeliveryLog]:
    """Every delivery of one event, with their attempts."""
    return webhooks.event_deliveries(conn, caller, public_id)


@router.post("/events/{public_id}/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_event(
    public_id: ShortText, conn: Conn, caller: Caller, body: ReplayEvent | None = None
) -> ReplayResult:
    """Send one event again, with the same webhook-id."""
    return webhooks.replay_event(conn, caller, public_id, body or ReplayEvent())
