"""The operations dashboard: server-rendered pages (Jinja2 + htmx), chart data, live feed.

People sign in with their email and password (``api.routes.dashboard_people``; machines and
tests may paste an API key, or send it as ``Authorization: Bearer`` / ``X-API-Key`` like the
JSON API). Each page declares its permission in ``api/permissions.py``. A customer sees only
its own fleet; another customer's asset answers 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from api.dashboard import service
from api.dashboard.live import LiveHub, resync_message
from api.dashboard.rendering import (
    HERE,
    DataViewer,
    PageForbidden,
    PageViewer,
    SignInRequired,
    forbidden_page,
    is_fragment,
    not_found_page,
    render,
    request_clock,
    request_settings,
    script_json,
    to_sign_in,
    viewer_principal,
)
from api.dashboard.schemas import HEALTHS, UNDATED_REASON, Health, SortKey
from api.deps import ReadConn, get_pool
from api.headers import SecurityHeadersMiddleware
from fleet.schemas import Principal
from fleetcare.errors import NotFound, Unauthorized
from fleetcare.inputs import INT8_MAX, Id
from fleetcare.settings import Settings
from kinds.schemas import KindName
from maintenance.logistics import service as logistics
from maintenance.orders import service as orders
from maintenance.outcomes import service as outcomes
from models.service import monitoring_overview as model_monitoring

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)

SESSION_COOKIE = "fleetcare_session"
KEEPALIVE_S = 15.0
ASSET_ORDERS = 20  # orders (with their parts) shown on an asset page, newest first


# --- setup -----------------------------------------------------------------------------------


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on ``app``: sessions, static files, routes, the live feed."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.session_https_only,
    )
    app.add_middleware(SecurityHeadersMiddleware, session_cookie=SESSION_COOKIE)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    from api.routes import (  # the other dashboard pages
        dashboard_audit,
        dashboard_documents,
        dashboard_mobile,
        dashboard_ops,
        dashboard_people,
        dashboard_sso,
    )

    app.include_router(router)
    app.include_router(dashboard_ops.router)
    app.include_router(dashboard_documents.router)
    app.include_router(dashboard_audit.router)
    app.include_router(dashboard_mobile.router)
    app.include_router(dashboard_people.router)
    app.include_router(dashboard_sso.router)
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(PageForbidden, forbidden_page)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        app_.state.dashboard_live = LiveHub(app_.state.database_url)
        async with inner(app_) as state:
            try:
                yield state
            finally:
                app_.state.dashboard_live.stop()

    app.router.lifespan_context = lifespan


# --- fleet overview --------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    customer_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    site_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    kind: KindName | None = None,
    health: Health | None = None,
    sort: SortKey = "due",
    desc: bool = False,
    after: Annotated[
        str | None, Query(max_length=1000, description="the next page's cursor (opaque)")
    ] = None,
) -> HTMLResponse:
    """Assets by health per customer and site, and the asset list sorted by due date."""
    filters = service.OverviewFilters(
        customer_id=customer_id,
        site_id=site_id,
        kind=kind,
        health=health,
        sort=sort,
        descending=desc,
        after=after,
    )
    windows = service.health_windows(request_settings(request), request_clock(request).now())
    counts, page = service.fleet_overview(conn, viewer, windows, filters)
    params = {
        k: v
        for k, v in {
            "customer_id": customer_id,
            "site_id": site_id,
            "kind": kind,
            "health": health,
            "sort": sort,
            "desc": "true" if desc else None,
        }.items()
        if v is not None
    }

    def link(**changes: Any) -> str:
        merged = {k: v for k, v in (params | changes).items() if v is not None}
        return "/dashboard" + ("?" + urlencode(merged) if merged else "")

    template = "_overview.html" if is_fragment(request) else "overview.html"
    return render(
        request,
        template,
        viewer,
        counts=counts,
        by_site=service.counts_by_site(viewer, filters),
        page=page,
        filters=filters,
        healths=HEALTHS,
        undated_reason=UNDATED_REASON,
        link=link,
        self_url=link(after=after),
        windows=windows,
    )


# --- asset -----------------------------------------------------------------------------------


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
def asset_page(request: Request, asset_id: Id, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """One asset: predictions, telemetry charts and RUL over time (data embedded)."""
    now = request_clock(request).now()
    windows = service.health_windows(request_settings(request), now)
    try:
        detail = service.asset_detail(conn, viewer, windows, asset_id)
    except NotFound as exc:
        return not_found_page(request, viewer, exc)
    t_start, t_stop = service.resolve_range(now, None, None, None, service.DEFAULT_TELEMETRY_RANGE)
    r_start, r_stop = service.resolve_range(now, None, None, None, service.DEFAULT_RUL_RANGE)
    telemetry = service.telemetry_series(conn, viewer, asset_id, t_start, t_stop)
    rul = service.rul_series(conn, viewer, asset_id, r_start, r_stop)
    history, after = orders.list_orders(conn, viewer, asset_id=asset_id, limit=ASSET_ORDERS)
    while after is not None:  # the service pages oldest first; keep the newest ones
        more, after = orders.list_orders(
            conn, viewer, asset_id=asset_id, after=after, limit=ASSET_ORDERS
        )
        history = (history + more)[-ASSET_ORDERS:]
    order_history = [orders.order_detail(conn, viewer, o.id) for o in reversed(history)]
    part_ids = {p.part_id for o in order_history for p in o.parts_used}
    part_ids |= {s.part_id for o in order_history for s in o.shipments}
    parts = {pid: logistics.get_part(conn, pid) for pid in sorted(part_ids)}
    return render(
        request,
        "asset.html",
        viewer,
        detail=detail,
        ranges=list(service.RANGES),
        telemetry_range=service.DEFAULT_TELEMETRY_RANGE,
        rul_range=service.DEFAULT_RUL_RANGE,
        telemetry_json=script_json(telemetry.model_dump_json()),
        rul_json=script_json(rul.model_dump_json()),
        order_history=order_history,
        parts=parts,
    )


@router.get("/assets/{asset_id}/predictions", response_class=HTMLResponse)
def asset_predictions(
    request: Request, asset_id: Id, conn: ReadConn, viewer: PageViewer
) -> HTMLResponse:
    """The latest-predictions panel of an asset (refreshed live)."""
    try:
        detail = service.asset_detail(
            conn,
            viewer,
            service.health_windows(request_settings(request), request_clock(request).now()),
            asset_id,
        )
    except NotFound as exc:
        return not_found_page(request, viewer, exc)
    return render(request, "_predictions.html", viewer, detail=detail)


ChartRange = Annotated[str | None, Query(alias="range", description="6h, 24h, 7d, 30d, ...")]


@router.get("/assets/{asset_id}/telemetry.json")
def asset_telemetry(
    request: Request,
    asset_id: Id,
    conn: ReadConn,
    viewer: DataViewer,
    range_name: ChartRange = None,
    start: datetime | None = None,
    stop: datetime | None = None,
    metric_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
) -> Response:
    """Telemetry of an asset, downsampled to at most 1,000 points per metric."""
    begin, end = service.resolve_range(
        request_clock(request).now(), range_name, start, stop, service.DEFAULT_TELEMETRY_RANGE
    )
    data = service.telemetry_series(conn, viewer, asset_id, begin, end, metric_id)
    return Response(data.model_dump_json(), media_type="application/json")


@router.get("/assets/{asset_id}/rul.json")
def asset_rul(
    request: Request,
    asset_id: Id,
    conn: ReadConn,
    viewer: DataViewer,
    range_name: ChartRange = None,
    start: datetime | None = None,
    stop: datetime | None = None,
) -> Response:
    """Predicted RUL of an asset's components with their intervals, downsampled."""
    begin, end = service.resolve_range(
        request_clock(request).now(), range_name, start, stop, service.DEFAULT_RUL_RANGE
    )
    data = service.rul_series(conn, viewer, asset_id, begin, end)
    return Response(data.model_dump_json(), media_type="application/json")


# --- ingest health, models -------------------------------------------------------------------


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Readings per second, freshness, and quarantine by reason with samples."""
    now = request_clock(request).now()
    health = service.ingest_health(conn, viewer, now)
    return render(request, "ingest.html", viewer, ingest=health, window=service.QUARANTINE_WINDOW)


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[
        int | None, Query(ge=1, le=INT8_MAX, description="the next page's cursor")
    ] = None,
) -> HTMLResponse:
    """Every quarantined item of the caller's scope, newest first, a keyset page at a time
    (``?before=<cursor>``), optionally of one reason."""
    items, next_before = service.quarantine_page(conn, viewer, reason=reason, before=before)
    return render(
        request,
        "quarantine.html",
        viewer,
        items=items,
        reason=reason,
        before=before,
        next_before=next_before,
    )


@router.get("/ingest/hourly", response_class=HTMLResponse)
def ingest_hourly(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Readings per hour over the last day (loaded after the page: it sums the rollup)."""
    hourly = service.readings_per_hour(conn, viewer, request_clock(request).now())
    return render(request, "_ingest_hourly.html", viewer, hourly=hourly)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, conn: ReadConn, viewer: PageViewer) -> HTMLResponse:
    """Registered wear-model versions and their held-out metrics; drift and retraining."""
    drift, decisions = model_monitoring(conn)
    return render(
        request,
        "models.html",
        viewer,
        versions=service.model_versions(conn),
        drift=drift,
        decisions=decisions,
    )


@router.get("/models/outcomes", response_class=HTMLResponse)
def model_outcomes_page(
    request: Request, conn: ReadConn, viewer: PageViewer, kind: KindName | None = None
) -> HTMLResponse:
    """Predictions against what was found, per kind and model version (the viewer's fleet)."""
    page = outcomes.model_page(conn, viewer, kind=kind, limit=100)
    return render(request, "model_outcomes.html", viewer, page=page, kind=kind)


# --- live ------------------------------------------------------------------------------------


def _stream_principal(request: Request) -> Principal | None:
    # A short connection of its own: the stream must not hold a pooled connection for hours.
    with get_pool(request).connection() as conn:
        return viewer_principal(request, conn)


@router.get("/live")
async def live(request: Request) -> StreamingResponse:
    """Server-sent events: ``prediction`` and ``event`` messages of the caller's scope."""
    principal = await run_in_threadpool(_stream_principal, request)
    if principal is None:
        raise Unauthorized("sign in at /dashboard/login or send an API key")
    hub: LiveHub = request.app.state.dashboard_live
    sub = hub.subscribe(principal.scope)
    await run_in_threadpool(hub.listening.wait, 5.0)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 3000\n: connected\n\n"
            yield "event: ready\ndata: {}\n\n"
            while True:
                if sub.dropped:
                    dropped, sub.dropped = sub.dropped, 0
                    yield resync_message(dropped).encode()
                try:
                    message = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                yield message.encode()
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
