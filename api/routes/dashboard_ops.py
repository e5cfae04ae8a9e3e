"""Operations pages of the dashboard: orders board, shipments, webhook deliveries, billing.

Every read and write goes through the maintenance services with the signed-in Principal, so a
customer sees and changes only its own objects (another customer's order answers 404).
Writes are POST forms (htmx) guarded against cross-site forgery: a same-origin Origin/Referer
when the browser sends one, and, for a session, the per-session token in a hidden field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api import sessions
from api.dashboard.rendering import (
    PageViewer,
    csrf_token,
    form_fields,
    is_fragment,
    not_found_page,
    render,
    request_clock,
    templates,
)
from api.deps import Conn, ReadConn
from api.permissions import ORDER_BOARD
from api.tenancy import rollback_keeping_caller
from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import FleetcareError, Forbidden, Invalid, NotFound
from fleetcare.inputs import INT8_MAX, Id
from maintenance.billing import service as billing
from maintenance.documents import service as documents
from maintenance.logistics import service as logistics
from maintenance.orders import service as orders
from maintenance.orders.schemas import CancelOrder, CompleteRequest, Order, ScheduleRequest
from maintenance.plans import service as plans_service
from maintenance.subscriptions import service as subscriptions
from maintenance.webhooks import service as webhooks
from maintenance.webhooks.schemas import Delivery, Endpoint, ReplayEvent

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)

BOARD_STATUSES = ("raised", "scheduled", "in_progress", "completed", "cancelled")
BoardStatus = Literal["raised", "scheduled", "in_progress", "completed", "cancelled"]
PAGE = 100
# keyset paging of the lists: ?after=<the last id shown> (the API's next_after), never an offset
After = Annotated[int | None, Query(ge=0, le=INT8_MAX, description="the next page's cursor")]
Form = Annotated[dict[str, str], Depends(form_fields)]
OrderAction = Literal["schedule", "start", "complete", "cancel"]


# --- forgery guard -----------------------------------------------------------------------------


def check_write(request: Request, form: dict[str, str]) -> None:
    """Refuse a write that another site could have forged (Forbidden)."""
    if not sessions.same_origin(request):
        raise Forbidden("cross-origin form posts are refused", code="csrf_failed")
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        return  # a key in a header is never sent by a browser on its own
    sessions.check_token(csrf_token(request), form.get("csrf_token"))


# --- orders board ------------------------------------------------------------------------------


def _board(
    conn: Conn, viewer: Principal, statuses: tuple[str, ...], after: int | None
) -> tuple[dict[str, list[Order]], dict[str, int | None]]:
    board: dict[str, list[Order]] = {}
    nexts: dict[str, int | None] = {}
    for status in statuses:
        rows, nexts[status] = orders.list_orders(
            conn, viewer, status=status, after=after, limit=PAGE
        )
        if status in ("raised", "scheduled", "in_progress"):
            rows.sort(key=lambda o: o.sla_deadline or o.due_at)
        board[status] = rows
    return board, nexts


def _render_board(
    request: Request,
    conn: Conn,
    viewer: Principal,
    message: str | None = None,
    status: int = 200,
    only: str | None = None,
    after: int | None = None,
) -> HTMLResponse:
    template = "_orders_board.html" if is_fragment(request) else "orders.html"
    statuses = (only,) if only else BOARD_STATUSES
    board, nexts = _board(conn, viewer, statuses, after)
    labels = fleet.asset_labels(conn, viewer, (o.asset_id for rows in board.values() for o in rows))
    return render(
        request,
        template,
        viewer,
        status_code=status,
        board=board,
        labels=labels,
        nexts=nexts,
        statuses=statuses,
        only=only,
        message=message,
    )


@router.get("/orders", response_class=HTMLResponse)
def orders_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    status: BoardStatus | None = None,
    after: After = None,
) -> HTMLResponse:
    """Open and closed orders by status, open ones by SLA deadline with a countdown; a
    column's next page is ``?status=S&after=<cursor>``."""
    return _render_board(request, conn, viewer, only=status, after=after)


def _run_action(
    conn: Conn,
    viewer: Principal,
    order_id: Id,
    action: OrderAction,
    form: dict[str, str],
    clock: Clock,
) -> Order:
    orders.get_order(conn, viewer, order_id)  # another customer's order: 404 before any refusal
    viewer.require(ORDER_BOARD[action])
    if action == "schedule":
        raw = form.get("scheduled_for", "").strip()
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise Invalid(f"scheduled_for {raw!r} is not a date and time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return orders.schedule_order(
            conn, viewer, order_id, ScheduleRequest(scheduled_for=when), clock
        )
    if action == "start":
        return orders.start_order(conn, viewer, order_id, clock)
    if action == "complete":
        return orders.complete_order(conn, viewer, order_id, CompleteRequest(), clock)
    reason = form.get("reason", "")[:1000]
    return orders.cancel_order(conn, viewer, order_id, CancelOrder(reason=reason), clock)


@router.post("/orders/{order_id}/{action}", response_model=None)
def order_action(
    request: Request,
    order_id: Id,
    action: OrderAction,
    conn: Conn,
    viewer: PageViewer,
    form: Form,
) -> Response:
    """Schedule, start, complete or cancel an order, then show the board again."""
    check_write(request, form)
    try:
        order = _run_action(conn, viewer, order_id, action, form, request_clock(request))
    except NotFound as exc:
        rollback_keeping_caller(request, conn)
        return not_found_page(request, viewer, exc)
    except (FleetcareError, ValidationError) as exc:
        rollback_keeping_caller(request, conn)
        detail = exc.detail if isinstance(exc, FleetcareError) else str(exc.errors()[0]["msg"])
        status = exc.status_code if isinstance(exc, FleetcareError) else 422
        # htmx swaps only 2xx answers: show the refusal on the board instead
        return _render_board(
            request,
            conn,
            viewer,
            message=f"order {order_id}: {detail}",
            status=200 if is_fragment(request) else status,
        )
    if not is_fragment(request):
        return RedirectResponse(f"/dashboard/orders#order-{order.id}", status_code=303)
    return _render_board(request, conn, viewer, message=f"order {order.id} is {order.status}")


# --- shipments ---------------------------------------------------------------------------------


@router.get("/shipments", response_class=HTMLResponse)
def shipments_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    status: Annotated[str | None, Query(max_length=20)] = None,
    after: After = None,
) -> HTMLResponse:
    """Shipments of parts: status, ETA and the order they serve (pages by ``after``)."""
    rows, nxt = logistics.list_shipments(
        conn, viewer, status=status, order_id=None, after=after, limit=PAGE
    )
    template = "_shipments.html" if is_fragment(request) else "shipments.html"
    return render(
        request, template, viewer, shipments=rows, status=status, after=after, next_after=nxt
    )


# --- webhook deliveries ------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointDeliveries:
    """An endpoint, one page of its deliveries, and the cursor of the next page."""

    endpoint: Endpoint
    deliveries: list[Delivery]
    next_after: int | None


def _deliveries(
    conn: Conn, viewer: Principal, endpoint_id: int | None, after: int | None
) -> tuple[list[EndpointDeliveries], int | None]:
    if endpoint_id is not None:  # one endpoint's deliveries, a page at a time
        endpoints, next_endpoints = [webhooks.get_endpoint(conn, viewer, endpoint_id)], None
    else:
        endpoints, next_endpoints = webhooks.list_endpoints(
            conn,
            viewer,
            customer_id=None,
            enabled=None,
            include_retired=False,
            after=after,
            limit=PAGE,
        )
    found = []
    for endpoint in endpoints:
        failed: list[Delivery] = []
        if endpoint_id is None:
            failed, _ = webhooks.endpoint_deliveries(
                conn, viewer, endpoint.id, status="failed", after=None, limit=PAGE
            )
        recent, nxt = webhooks.endpoint_deliveries(
            conn,
            viewer,
            endpoint.id,
            status=None,
            after=after if endpoint_id is not None else None,
            limit=PAGE,
        )
        shown = failed + [d for d in recent if d.status != "failed" or endpoint_id is not None]
        found.append(EndpointDeliveries(endpoint, shown, nxt))
    # endpoints with failures first
    found.sort(key=lambda e: (not any(d.status == "failed" for d in e.deliveries), e.endpoint.id))
    return found, next_endpoints


def _render_webhooks(
    request: Request,
    conn: Conn,
    viewer: Principal,
    message: str | None = None,
    status: int = 200,
    endpoint_id: int | None = None,
    after: int | None = None,
) -> HTMLResponse:
    template = "_webhooks.html" if is_fragment(request) else "webhooks.html"
    endpoints, next_endpoints = _deliveries(conn, viewer, endpoint_id, after)
    return render(
        request,
        template,
        viewer,
        status_code=status,
        endpoints=endpoints,
        endpoint_id=endpoint_id,
        next_endpoints=next_endpoints,
        message=message,
    )


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    endpoint_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    after: After = None,
) -> HTMLResponse:
    """Webhook deliveries per endpoint, failed ones first, with replay buttons; one
    endpoint's older deliveries with ``?endpoint_id=E&after=<cursor>``, more endpoints with
    ``?after=<cursor>``."""
    try:
        return _render_webhooks(request, conn, viewer, endpoint_id=endpoint_id, after=after)
    except NotFound as exc:
        return not_found_page(request, viewer, exc)


@router.post("/webhooks/deliveries/{delivery_id}/replay", response_model=None)
def replay_delivery(
    request: Request, delivery_id: Id, conn: Conn, viewer: PageViewer, form: Form
) -> Response:
    """Send a delivery's event again (same webhook-id) to the same endpoint."""
    check_write(request, form)
    try:
        delivery = webhooks.delivery_log(conn, viewer, delivery_id)
        result = webhooks.replay_event(
            conn, viewer, delivery.event_public_id, ReplayEvent(endpoint_id=delivery.endpoint_id)
        )
    except NotFound as exc:
        rollback_keeping_caller(request, conn)
        return not_found_page(request, viewer, exc)
    except FleetcareError as exc:
        rollback_keeping_caller(request, conn)
        return _render_webhooks(
            request,
            conn,
            viewer,
            message=f"delivery {delivery_id}: {exc.detail}",
            status=200 if is_fragment(request) else exc.status_code,
        )
    if not is_fragment(request):
        return RedirectResponse("/dashboard/webhooks", status_code=303)
    return _render_webhooks(
        request, conn, viewer, message=f"delivery {delivery_id}: {result.requeued} re-queued"
    )


# --- subscriptions and invoices ----------------------------------------------------------------


@router.get("/billing", response_class=HTMLResponse)
def billing_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    after: After = None,
    subscriptions_after: After = None,
) -> HTMLResponse:
    """Subscriptions and invoices of the caller's scope (invoices page by ``after``,
    subscriptions by ``subscriptions_after``)."""
    subs, next_subscriptions = subscriptions.list_subscriptions(
        conn,
        viewer,
        request_clock(request),
        customer_id=None,
        status=None,
        after=subscriptions_after,
        limit=PAGE,
    )
    next_invoices: int | None = None
    try:
        invoices, next_invoices = billing.list_invoices(
            conn, viewer, customer_id=None, period=None, status=None, after=after, limit=PAGE
        )
    except Forbidden:
        invoices = []  # technician and partner keys see no invoices
    plan_ids = {s.plan_id for s in subs} | {s.pending_plan_id for s in subs if s.pending_plan_id}
    plans = {pid: plans_service.get_plan(conn, pid) for pid in sorted(plan_ids)}
    return render(
        request,
        "billing.html",
        viewer,
        subscriptions=subs,
        invoices=invoices,
        plans=plans,
        next_invoices=next_invoices,
        next_subscriptions=next_subscriptions,
        paged=after is not None or subscriptions_after is not None,
    )


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
def invoice_page(
    request: Request, invoice_id: Id, conn: ReadConn, viewer: PageViewer
) -> HTMLResponse:
    """One invoice with its lines."""
    try:
        invoice = billing.get_invoice(conn, viewer, invoice_id)
    except (NotFound, Forbidden) as exc:
        return not_found_page(request, viewer, NotFound(exc.detail))
    notes, _ = documents.list_credit_notes(
        conn, viewer, invoice_id=invoice.id, after=None, limit=PAGE
    )
    return render(request, "invoice.html", viewer, invoice=invoice, credit_notes=notes)


# --- template helpers --------------------------------------------------------------------------


def money(minor: int, currency: str) -> str:
    """An amount in minor units as '1,234.56 EUR'."""
    return f"{minor / 100:,.2f} {currency}"


templates.env.filters["money"] = money
