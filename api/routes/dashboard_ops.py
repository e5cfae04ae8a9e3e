"""Operations pages of the dashboard: orders board, shipments, webhook deliveries, billing.

Every read and write goes through the maintenance services with the signed-in Principal, so a
customer sees and changes only its own objects (another customer's order answers 404).
Writes are POST forms (htmx) guarded against cross-site forgery: a same-origin Origin/Referer
when the browser sends one, and, for a session, the per-session token in a hidden field.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.dashboard.rendering import (
    PageViewer,
    form_fields,
    is_fragment,
    not_found_page,
    render,
    request_clock,
    templates,
)
from api.deps import Conn, ReadConn
from api.tenancy import rollback_keeping_caller
from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import FleetcareError, Forbidden, Invalid, NotFound
from fleetcare.inputs import Id
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
PAGE = 100
Form = Annotated[dict[str, str], Depends(form_fields)]
OrderAction = Literal["schedule", "start", "complete", "cancel"]


# --- forgery guard -----------------------------------------------------------------------------


def _same_origin(request: Request) -> bool:
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            return urlsplit(value).netloc == host
    return True  # neither sent (not a browser form): the token below still applies


def check_write(request: Request, form: dict[str, str]) -> None:
    """Refuse a write that another site could have forged (Forbidden)."""
    if not _same_origin(request):
        raise Forbidden("cross-origin form posts are refused")
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        return  # a key in a header is never sent by a browser on its own
    expected = request.session.get("csrf")
    given = form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        raise Forbidden("the form is stale or forged: reload the page and try again")


# --- orders board ------------------------------------------------------------------------------


def _board(conn: Conn, viewer: Principal) -> dict[str, list[Order]]:
    board: dict[str, list[Order]] = {}
    for status in BOARD_STATUSES:
        rows, _ = orders.list_orders(conn, viewer, status=status, limit=PAGE)
        if status in ("raised", "scheduled", "in_progress"):
            rows.sort(key=lambda o: o.sla_deadline or o.due_at)
        board[status] = rows
    return board


def _render_board(
    request: Request, conn: Conn, viewer: Principal, message: str | None = None, status: int = 200
) -> HTMLResponse:
    template = "_orders_board.html" if is_fragment(request) else "orders.html"
    return render(
        request,
        template,
        viewer,
        status_code=status,
        board=_board(conn, viewer),
        statuses=BOARD_STATUSES,
        message=message,
    )


@router.get("/orders", response_class=HTMLResponse)
def orders_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Open and closed orders by status, open ones by SLA deadline with a countdown."""
    return _render_board(request, conn, viewer)


def _run_action(
    conn: Conn,
    viewer: Principal,
    order_id: Id,
    action: OrderAction,
    form: dict[str, str],
    clock: Clock,
) -> Order:
    orders.get_order(conn, viewer, order_id)  # another customer's order: 404 before any refusal
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
) -> HTMLResponse:
    """Shipments of parts: status, ETA and the order they serve."""
    rows, _ = logistics.list_shipments(
        conn, viewer, status=status, order_id=None, after=None, limit=PAGE
    )
    template = "_shipments.html" if is_fragment(request) else "shipments.html"
    return render(request, template, viewer, shipments=rows, status=status)


# --- webhook deliveries ------------------------------------------------------------------------


def _deliveries(conn: Conn, viewer: Principal) -> list[tuple[Endpoint, list[Delivery]]]:
    endpoints, _ = webhooks.list_endpoints(
        conn,
        viewer,
        customer_id=None,
        enabled=None,
        include_retired=False,
        after=None,
        limit=PAGE,
    )
    found = []
    for endpoint in endpoints:
        failed, _ = webhooks.endpoint_deliveries(
            conn, viewer, endpoint.id, status="failed", after=None, limit=PAGE
        )
        recent, _ = webhooks.endpoint_deliveries(
            conn, viewer, endpoint.id, status=None, after=None, limit=PAGE
        )
        found.append((endpoint, failed + [d for d in recent if d.status != "failed"]))
    # endpoints with failures first
    found.sort(key=lambda pair: (not any(d.status == "failed" for d in pair[1]), pair[0].id))
    return found


def _render_webhooks(
    request: Request, conn: Conn, viewer: Principal, message: str | None = None, status: int = 200
) -> HTMLResponse:
    template = "_webhooks.html" if is_fragment(request) else "webhooks.html"
    return render(
        request,
        template,
        viewer,
        status_code=status,
        endpoints=_deliveries(conn, viewer),
        message=message,
    )


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Webhook deliveries per endpoint, failed ones first, with replay buttons."""
    return _render_webhooks(request, conn, viewer)


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
def billing_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Subscriptions and invoices of the caller's scope."""
    subs, _ = subscriptions.list_subscriptions(
        conn, viewer, request_clock(request), customer_id=None, status=None, after=None, limit=PAGE
    )
    try:
        invoices, _ = billing.list_invoices(
            conn, viewer, customer_id=None, period=None, status=None, after=None, limit=PAGE
        )
    except Forbidden:
        invoices = []  # technician and partner keys see no invoices
    plan_ids = {s.plan_id for s in subs} | {s.pending_plan_id for s in subs if s.pending_plan_id}
    plans = {pid: plans_service.get_plan(conn, pid) for pid in sorted(plan_ids)}
    return render(
        request, "billing.html", viewer, subscriptions=subs, invoices=invoices, plans=plans
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
