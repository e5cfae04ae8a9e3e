"""What every dashboard page shares: who is looking (session or API key), the templates and
their filters, rendering a page, the anti-forgery token and small forms. The page modules
(``api.routes.dashboard``, ``api.routes.dashboard_ops``) import this; it imports neither."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth_limit import authenticate_limited
from api.dashboard import service
from api.deps import Conn, _bearer
from api.permissions import allowed_roles
from api.tenancy import bind_principal
from fleet.schemas import Principal
from fleetcare.clock import Clock, SystemClock
from fleetcare.errors import NotFound, Unauthorized
from fleetcare.settings import Settings
from fleetcare.tenancy import operator_lookup

HERE = Path(__file__).resolve().parent.parent  # api/
templates = Jinja2Templates(directory=str(HERE / "templates"))


MAX_FORM_BYTES = 4096

# The pages in the navigation bar.
NAV: list[tuple[str, str]] = [
    ("/dashboard", "Fleet"),
    ("/dashboard/orders", "Orders"),
    ("/dashboard/shipments", "Shipments"),
    ("/dashboard/carriers", "Carriers"),
    ("/dashboard/webhooks", "Webhooks"),
    ("/dashboard/billing", "Billing"),
    ("/dashboard/service-credits", "Credits"),
    ("/dashboard/value-report", "Value"),
    ("/dashboard/ingest", "Ingest"),
    ("/dashboard/models", "Models"),
    ("/dashboard/audit", "Audit"),
]
# pages that show what only some roles may read: linked for those roles only
NAV_READS: dict[str, str] = {"/dashboard/audit": "/v1/audit"}


def nav_for(principal: Principal | None) -> list[tuple[str, str]]:
    """The navigation bar's pages that ``principal`` may open."""

    def may_open(href: str) -> bool:
        route = NAV_READS.get(href)
        roles = allowed_roles("GET", route) if route else None
        return principal is None or roles is None or principal.role in roles

    return [(href, label) for href, label in NAV if may_open(href)]


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
    key = _bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if key:
        return authenticate_limited(request, conn, key)
    key_id = request.session.get("key_id")
    if isinstance(key_id, int):
        try:
            return service.principal_for_session(conn, key_id)
        except Unauthorized:
            request.session.clear()
    return None


async def to_sign_in(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login_url = "/dashboard/login?" + urlencode({"next": target})
    if is_fragment(request):
        # htmx swaps fragments; a redirect would put the sign-in page inside a panel
        return Response(status_code=401, headers={"HX-Redirect": login_url})
    return RedirectResponse(login_url, status_code=303)


def page_viewer(request: Request, conn: Conn) -> Principal:
    """The signed-in caller of a page; without one, a redirect to the sign-in page."""
    principal = viewer_principal(request, conn)
    if principal is None:
        raise SignInRequired()
    return principal


def data_viewer(request: Request, conn: Conn) -> Principal:
    """The signed-in caller of a data endpoint; without one, 401."""
    principal = viewer_principal(request, conn)
    if principal is None:
        raise Unauthorized("sign in at /dashboard/login or send an API key")
    return principal


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
    """The session's anti-forgery token (made on first use); empty without a session."""
    if not isinstance(request.session.get("key_id"), int):
        return ""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


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


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
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


templates.env.filters["when"] = when
templates.env.filters["relative"] = relative
templates.env.filters["number"] = number
