"""What every dashboard page shares: who is looking (session or API key), the templates and
their filters, rendering a page, the anti-forgery token and small forms. The page modules
(``api.routes.dashboard``, ``api.routes.dashboard_ops``) import this; it imports neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api import sessions
from api.auth_limit import authenticate_limited
from api.dashboard.schemas import ESTIMATED_DUE
from api.deps import Conn, _bearer
from api.permissions import ORDER_BOARD, require_permission
from api.tenancy import bind_principal
from fleet.schemas import Principal
from fleetcare.clock import Clock, SystemClock
from fleetcare.errors import Forbidden, NotFound, Unauthorized
from fleetcare.settings import Settings
from fleetcare.tenancy import operator_lookup

HERE = Path(__file__).resolve().parent.parent  # api/
templates = Jinja2Templates(directory=str(HERE / "templates"))


MAX_FORM_BYTES = 4096

# The pages in the navigation bar.
NAV: list[tuple[str, str, str]] = [
    ("/dashboard", "Fleet", "dashboard:read"),
    ("/dashboard/orders", "Orders", "orders:read"),
    ("/dashboard/shipments", "Shipments", "shipments:read"),
    ("/dashboard/carriers", "Carriers", "assets:read"),
    ("/dashboard/webhooks", "Webhooks", "webhooks:read"),
    ("/dashboard/billing", "Billing", "billing:read"),
    ("/dashboard/service-credits", "Credits", "billing:read"),
    ("/dashboard/value-report", "Value", "billing:read"),
    ("/dashboard/metrics", "Metrics", "revenue:read"),
    ("/dashboard/ingest", "Ingest", "ingest:read"),
    ("/dashboard/models", "Models", "models:read"),
    ("/dashboard/audit", "Audit", "audit:read"),
    ("/dashboard/people", "People", "users:read"),
    ("/dashboard/keys", "Keys", "keys:read"),
]

# --- who is looking ----------------------------------------------------------------------------


class SignInRequired(Exception):
    """A page was asked for without a valid session or key: go to the sign-in page."""


def viewer_principal(request: Request, conn: Any) -> Principal | None:
    """The caller of a dashboard request (key or session), its context bound to ``conn``."""
    with operator_lookup(conn):  # who is calling decides which rows the rest may see
        principal = _viewer(request, conn)
    if principal is not None:
        bind_principal(request, conn, principal)
    return principal


def _viewer(request: Request, conn: Any) -> Principal | None:
    """An API key in a header, else the session's user or key."""
    key = _bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if key:
        return authenticate_limited(request, conn, key)
    found = sessions.session_principal(request, conn)
    return found[0] if found is not None else None


async def to_sign_in(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login_url = "/dashboard/login?" + urlencode({"next": target})
    if is_fragment(request):
        # htmx swaps fragments; a redirect would put the sign-in page inside a panel
        return Response(status_code=401, headers={"HX-Redirect": login_url})
    return RedirectResponse(login_url, status_code=303)


class PageForbidden(Forbidden):
    """A signed-in viewer asked for a page its role may not see: a page that says so."""


def _permitted(request: Request, principal: Principal, *, page: bool) -> Principal:
    route = request.scope.get("route")
    try:
        require_permission(principal, request.method, getattr(route, "path", request.url.path))
    except Forbidden as exc:
        if not page:
            raise
        request.state.viewer = principal
        raise PageForbidden(exc.detail, code=exc.code) from exc
    return principal


async def forbidden_page(request: Request, exc: Exception) -> Response:
    """The page a viewer sees when its role may not open it (403)."""
    assert isinstance(exc, PageForbidden)
    viewer = getattr(request.state, "viewer", None)
    return render(
        request, "forbidden.html", viewer, status_code=403, detail=exc.detail, code=exc.code
    )


def page_viewer(request: Request, conn: Conn) -> Principal:
    """The signed-in caller of a page, allowed by the page's permission; without one, a
    redirect to the sign-in page."""
    principal = viewer_principal(request, conn)
    if principal is None:
        raise SignInRequired()
    return _permitted(request, principal, page=True)


def data_viewer(request: Request, conn: Conn) -> Principal:
    """The signed-in caller of a data endpoint; without one, 401."""
    principal = viewer_principal(request, conn)
    if principal is None:
        raise Unauthorized("sign in at /dashboard/login or send an API key")
    return _permitted(request, principal, page=False)


PageViewer = Annotated[Principal, Depends(page_viewer)]
DataViewer = Annotated[Principal, Depends(data_viewer)]


def request_clock(request: Request) -> Clock:
    """The app's clock (tests pin one), else the system's."""
    clock: Clock = getattr(request.app.state, "clock", None) or SystemClock()
    return clock


def request_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context |= {
        "csrf_token": csrf_token(request) if principal is not None else "",
        "viewer": principal,
        "nav": nav_for(principal),
        "now": request_clock(request).now(),
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def csrf_token(request: Request) -> str:
    """The session's anti-forgery token; empty without a session (a key in a header)."""
    found = getattr(request.state, "session_principal", None)
    return found[1] if found is not None else ""


def nav_for(principal: Principal | None) -> list[tuple[str, str]]:
    """The navigation bar's pages the viewer may open."""
    if principal is None:
        return []
    return [(href, label) for href, label, action in NAV if principal.can(action)]


def not_found_page(request: Request, principal: Principal, exc: NotFound) -> HTMLResponse:
    return render(request, "not_found.html", principal, status_code=404, detail=exc.detail)


def is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def form_fields(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (small forms only)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


# --- template helpers ------------------------------------------------------------------------


def script_json(text: str) -> str:
    """JSON that is safe inside <script type="application/json"> (no closing tag)."""
    return text.replace("</", "<\\/")


def when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):  # JSON-ready page data (the carrier map) carries ISO text
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    delta = value - now
    seconds = abs(delta.total_seconds())
    if seconds < 90:
        text = f"{int(seconds)} s"
    elif seconds < 90 * 60:
        text = f"{int(seconds // 60)} min"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} d"
    return f"in {text}" if delta > timedelta(0) else f"{text} ago"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


templates.env.globals["board_actions"] = ORDER_BOARD
templates.env.globals["estimated_due"] = ESTIMATED_DUE
templates.env.filters["when"] = when
templates.env.filters["relative"] = relative
templates.env.filters["number"] = number
