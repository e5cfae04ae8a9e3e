"""Single sign-on in the dashboard: the sign-in page sends an address of a claimed domain to
its organisation's OpenID Connect provider and takes the person back at the callback; an
organisation's admin sets its provider on the single sign-on page.

Between leaving for the provider and coming back, the browser's signed session cookie keeps
the sign-in's state, nonce and PKCE verifier (``people.sso.PendingSignIn``); the callback
spends them once. Every failure — the provider down, a forged or stale state, consent denied,
a token for another client, an unverified address — is the sign-in page with a sentence that
says what went wrong, never a 500.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api import sessions
from api.auth_limit import source_of
from api.dashboard.rendering import PageViewer, form_fields, render, request_clock
from api.deps import Conn
from api.routes.dashboard_ops import check_write
from api.routes.dashboard_people import _form_error, _login_page, _safe_next
from api.tenancy import rollback_keeping_caller
from fleet.access import ORG_ROLES
from fleet.schemas import Principal
from fleetcare.errors import FleetcareError, NotFound
from fleetcare.inputs import INT8_MAX
from fleetcare.tenancy import TenantContext, apply_context, operator_lookup
from people import sso
from people.schemas import SsoConfigIn, SsoProvider

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
Form = Annotated[dict[str, str], Depends(form_fields)]
PENDING_KEY = "sso_pending"
OrgId = Annotated[int | None, Query(ge=1, le=INT8_MAX)]


# --- signing in through a provider -------------------------------------------------------------


@router.post("/sso/start", response_model=None)
def start(request: Request, conn: Conn, form: Form) -> Response:
    """Send the person on to their organisation's provider (chosen by the address's domain)."""
    sessions.check_login_form(request, form)
    email = form.get("email", "").strip()[:254]
    target = _safe_next(form.get("next"))
    try:
        with operator_lookup(conn):  # the domain's organisation, before anyone is signed in
            url, pending = sso.begin_sign_in(conn, email, sessions.sso_policy(request), next=target)
    except FleetcareError as exc:
        conn.rollback()
        return _login_page(
            request, status_code=exc.status_code, next=target, error=exc.detail, sso_email=email
        )
    request.session[PENDING_KEY] = pending.as_dict()
    # a page that moves on by itself, not a redirect: the sign-in page's Content-Security-Policy
    # (form-action 'self') would stop a form post redirected to another site
    return render(request, "sso_redirect.html", None, url=url, issuer=urlsplit(url).netloc)


@router.get("/sso/callback", response_model=None)
def callback(request: Request, conn: Conn) -> Response:
    """The provider sends the person back here: check everything, then sign them in."""
    pending = sso.PendingSignIn.from_dict(request.session.pop(PENDING_KEY, None))
    params = {k: v[:4000] for k, v in request.query_params.items()}
    apply_context(
        conn,
        TenantContext(
            actor="sso:sign-in",
            channel="dashboard",
            source=source_of(request),
            request="GET /dashboard/sso/callback",
        ),
    )
    try:
        with operator_lookup(conn):  # the identity's user, before anyone is signed in
            principal = sso.complete_sign_in(
                conn, pending, params, request_clock(request).now(), sessions.sso_policy(request)
            )
    except FleetcareError as exc:
        conn.rollback()
        return _login_page(
            request,
            status_code=exc.status_code,
            next=pending.next if pending else "/dashboard",
            error=exc.detail,
        )
    sessions.begin(request, conn, principal)
    return RedirectResponse(_safe_next(pending.next if pending else None), status_code=303)


# --- an organisation's provider ----------------------------------------------------------------


def _sso_page(
    request: Request,
    conn: Conn,
    viewer: Principal,
    *,
    customer_id: int | None,
    partner_id: int | None,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    policy = sessions.sso_policy(request)
    config: SsoProvider | None = None
    try:
        config = sso.get_config(
            conn, viewer, policy, customer_id=customer_id, partner_id=partner_id
        )
    except NotFound as exc:
        if exc.code != "sso_not_configured":
            raise
    organisation = (
        "customer"
        if customer_id is not None or viewer.organisation == "customer"
        else "partner"
        if partner_id is not None
        else viewer.organisation
    )
    return render(
        request,
        "sso.html",
        viewer,
        status_code=status_code,
        config=config,
        typed=typed or {},
        roles=ORG_ROLES[organisation],
        redirect_uri=policy.redirect_uri,
        can_write=viewer.can("users:write"),
        customer_id=customer_id,
        partner_id=partner_id,
        message=message,
        error=error,
    )


@router.get("/sso", response_class=HTMLResponse)
def sso_page(
    request: Request,
    conn: Conn,
    viewer: PageViewer,
    customer_id: OrgId = None,
    partner_id: OrgId = None,
) -> HTMLResponse:
    """The organisation's single sign-on: its provider, default role and claimed domains."""
    try:
        return _sso_page(request, conn, viewer, customer_id=customer_id, partner_id=partner_id)
    except FleetcareError as exc:
        return render(
            request, "not_found.html", viewer, status_code=exc.status_code, detail=exc.detail
        )


def _org_ids(form: dict[str, str]) -> tuple[int | None, int | None]:
    ids = []
    for name in ("customer_id", "partner_id"):
        value = form.get(name, "").strip()
        ids.append(int(value) if value.isdigit() and len(value) <= 18 else None)
    return ids[0], ids[1]


@router.post("/sso", response_class=HTMLResponse)
def save_sso(request: Request, conn: Conn, viewer: PageViewer, form: Form) -> HTMLResponse:
    """Set the provider (an empty secret keeps the stored one)."""
    check_write(request, form)
    customer_id, partner_id = _org_ids(form)
    fields: dict[str, Any] = {
        "issuer": form.get("issuer", ""),
        "client_id": form.get("client_id", ""),
        "domains": [d for d in re.split(r"[\s,;]+", form.get("domains", "")) if d],
        "enabled": form.get("enabled") == "on",
        "required": form.get("required") == "on",
        "trust_unverified_email": form.get("trust_unverified_email") == "on",
    }
    if form.get("client_secret"):
        fields["client_secret"] = form["client_secret"]
    if form.get("default_role"):
        fields["default_role"] = form["default_role"]
    try:
        body = SsoConfigIn.model_validate(fields)
        saved = sso.set_config(
            conn,
            viewer,
            body,
            sessions.sso_policy(request),
            customer_id=customer_id,
            partner_id=partner_id,
        )
    except (FleetcareError, ValidationError) as exc:
        rollback_keeping_caller(request, conn)
        detail, status = _form_error(exc)
        typed = {k: v for k, v in form.items() if k != "client_secret"}
        return _sso_page(
            request,
            conn,
            viewer,
            customer_id=customer_id,
            partner_id=partner_id,
            error=detail,
            status_code=status,
            typed=typed,
        )
    return _sso_page(
        request,
        conn,
        viewer,
        customer_id=customer_id,
        partner_id=partner_id,
        message=f"single sign-on through {saved.issuer} is {'on' if saved.enabled else 'off'}"
        + (", and required" if saved.required else ""),
    )


@router.post("/sso/delete", response_class=HTMLResponse)
def delete_sso(request: Request, conn: Conn, viewer: PageViewer, form: Form) -> HTMLResponse:
    """Remove the organisation's single sign-on."""
    check_write(request, form)
    customer_id, partner_id = _org_ids(form)
    try:
        sso.delete_config(conn, viewer, customer_id=customer_id, partner_id=partner_id)
    except FleetcareError as exc:
        rollback_keeping_caller(request, conn)
        return _sso_page(
            request,
            conn,
            viewer,
            customer_id=customer_id,
            partner_id=partner_id,
            error=exc.detail,
            status_code=exc.status_code,
        )
    return _sso_page(
        request,
        conn,
        viewer,
        customer_id=customer_id,
        partner_id=partner_id,
        message="single sign-on removed",
    )
