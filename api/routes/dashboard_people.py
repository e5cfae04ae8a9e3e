"""The dashboard's people pages: sign in and out, accept an invitation, reset a password, and
(for an organisation's admin) manage its users and API keys.

Every form carries an anti-forgery token: the session's once signed in, the sign-in page's
before (``api.sessions``). A failed sign-in counts against the address and that account's
e-mail address from it (``api.auth_limit``, the same limiter as API keys) and against the
account (``people.service``: locked for a while after repeated failures); the answer is the
same for an unknown address and a wrong password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api import sessions
from api.auth_limit import AuthFailureLimiter, authenticate_limited, source_of
from api.dashboard.rendering import (
    PageViewer,
    form_fields,
    render,
    request_clock,
)
from api.deps import Conn, commit_or_raise
from api.routes.dashboard_ops import check_write
from api.tenancy import rollback_keeping_caller
from fleet import service as fleet
from fleet.access import ORG_ROLES
from fleet.schemas import ApiKeyCreate, Principal
from fleetcare.errors import FleetcareError, TooManyRequests, Unauthorized
from fleetcare.inputs import Id
from fleetcare.tenancy import operator_lookup
from people import service as people
from people.schemas import PASSWORD_MIN, UserInvite, UserUpdate

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
Form = Annotated[dict[str, str], Depends(form_fields)]
PAGE = 200


def _safe_next(target: str | None) -> str:
    # only our own pages: no scheme, no host, no protocol-relative //evil
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return "/dashboard"


def _now(request: Request) -> datetime:
    return request_clock(request).now()


def _login_page(
    request: Request, *, status_code: int = 200, next: str = "/dashboard", **context: Any
) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("notice", None)
    return render(
        request,
        "login.html",
        None,
        status_code=status_code,
        next=next,
        login_csrf=sessions.login_csrf(request),
        **context,
    )


# --- sign in and out ---------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in form: email and password; an API key for machines."""
    return _login_page(request, next=_safe_next(next))


def _limiter(request: Request) -> AuthFailureLimiter | None:
    return getattr(request.app.state, "auth_limiter", None)


@router.post("/login", response_model=None)
def login(request: Request, conn: Conn, form: Form) -> Response:
    """Sign in with email and password (or an API key); a new session id on success."""
    target = _safe_next(form.get("next"))
    sessions.check_login_form(request, form)
    email = form.get("email", "").strip()[:254]
    try:
        if email:
            principal = _password_sign_in(request, conn, email, form.get("password", ""))
        else:
            principal = authenticate_limited(request, conn, form.get("api_key", "").strip())
    except Unauthorized as exc:
        commit_or_raise(conn)  # the failure count of the account stays counted
        return _login_page(request, status_code=401, next=target, error=exc.detail, email=email)
    except people.SsoRequired as exc:  # before the password: nothing was counted
        conn.rollback()
        return _login_page(
            request, status_code=403, next=target, error=exc.detail, email=email, sso_email=email
        )
    except TooManyRequests as exc:
        commit_or_raise(conn)
        page = _login_page(request, status_code=429, next=target, error=exc.detail, email=email)
        retry = getattr(exc, "retry_after_s", None)
        if retry:
            page.headers["retry-after"] = str(retry)
        return page
    sessions.begin(request, conn, principal)
    return RedirectResponse(target, status_code=303)


def _password_sign_in(request: Request, conn: Conn, email: str, password: str) -> Principal:
    limiter = _limiter(request)
    source = source_of(request)
    account = "user:" + email.lower()  # counted per address and account (api.auth_limit)
    if limiter is not None:
        limiter.check(source, account, account)
    try:
        with operator_lookup(conn):  # the account, before its organisation is known
            principal = people.sign_in(
                conn, email, password[:200], _now(request), sessions.policy(request)
            )
    except Unauthorized:
        if limiter is not None:
            limiter.failed(source, account)
        raise
    if limiter is not None:
        limiter.succeeded(source, account)
    return principal


@router.post("/logout")
def logout(request: Request, conn: Conn, form: Form) -> RedirectResponse:
    """End the session for good (its id no longer signs anyone in)."""
    found = sessions.session_principal(request, conn)
    if found is not None and (request.headers.get("origin") or form.get("csrf_token")):
        sessions.check_token(found[1], form.get("csrf_token"))
    sessions.end(request, conn)
    return RedirectResponse("/dashboard/login", status_code=303)


# --- invitations and password resets -------------------------------------------------------


def _password_page(
    request: Request, *, kind: str, token: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    invitation = kind == "invitation"
    return render(
        request,
        "set_password.html",
        None,
        status_code=status_code,
        heading="Accept your invitation" if invitation else "Choose a new password",
        button="Set my password and sign in" if invitation else "Change my password",
        action="/dashboard/invitation" if invitation else "/dashboard/reset",
        token=token,
        error=error,
        min_length=PASSWORD_MIN,
        login_csrf=sessions.login_csrf(request),
    )


@router.get("/invitation", response_class=HTMLResponse)
def invitation_page(
    request: Request, token: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """The invitation link's page: choose a password."""
    return _password_page(request, kind="invitation", token=token)


@router.post("/invitation", response_model=None)
def accept_invitation(request: Request, conn: Conn, form: Form) -> Response:
    """Spend the invitation: the password is set, the user active and signed in."""
    return _spend(request, conn, form, "invitation")


@router.get("/reset", response_class=HTMLResponse)
def reset_page(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    """The reset link's page: choose a new password."""
    return _password_page(request, kind="reset", token=token)


@router.post("/reset", response_model=None)
def complete_reset(request: Request, conn: Conn, form: Form) -> Response:
    """Spend the reset token: the new password is set; other sessions end."""
    return _spend(request, conn, form, "reset")


def _spend(request: Request, conn: Conn, form: Form, kind: str) -> Response:
    sessions.check_login_form(request, form)
    token = form.get("token", "")[:200]
    password = form.get("password", "")
    try:
        spend = people.accept_invitation if kind == "invitation" else people.complete_password_reset
        with operator_lookup(conn):  # the token's user, before anyone is signed in
            principal = spend(
                conn, token, password, _now(request), sessions.policy(request).password_cost
            )
    except FleetcareError as exc:
        conn.rollback()
        return _password_page(
            request, kind=kind, token=token, error=exc.detail, status_code=exc.status_code
        )
    sessions.begin(request, conn, principal)
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/reset/request", response_class=HTMLResponse)
def reset_request_page(request: Request) -> HTMLResponse:
    """Ask for a reset link."""
    return render(
        request,
        "reset_request.html",
        None,
        sent=False,
        ttl_min=sessions.policy(request).reset_ttl.total_seconds() / 60,
        login_csrf=sessions.login_csrf(request),
    )


@router.post("/reset/request", response_class=HTMLResponse)
def request_reset(request: Request, conn: Conn, form: Form) -> HTMLResponse:
    """Send a reset link as an event; the answer is the same whether the address exists."""
    sessions.check_login_form(request, form)
    limiter = _limiter(request)
    if limiter is not None:  # each request counts: the form must not become an oracle or a spammer
        limiter.check(source_of(request), "reset")  # one count for every address asked
        limiter.failed(source_of(request), "reset")
    policy = sessions.policy(request)
    try:
        with operator_lookup(conn):  # the address's account, before anyone is signed in
            people.request_password_reset(conn, form.get("email", "")[:254], _now(request), policy)
    except people.SsoRequired as exc:
        conn.rollback()
        return render(
            request,
            "reset_request.html",
            None,
            status_code=exc.status_code,
            sent=False,
            error=exc.detail,
            ttl_min=policy.reset_ttl.total_seconds() / 60,
            login_csrf=sessions.login_csrf(request),
        )
    return render(
        request,
        "reset_request.html",
        None,
        sent=True,
        ttl_min=policy.reset_ttl.total_seconds() / 60,
        login_csrf=sessions.login_csrf(request),
    )


# --- people and keys of an organisation ------------------------------------------------------


def _people_page(
    request: Request,
    conn: Conn,
    viewer: Principal,
    *,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    users, _ = people.list_users(conn, viewer, after=None, limit=PAGE)
    roles = ORG_ROLES["operator" if viewer.organisation == "operator" else "customer"]
    return render(
        request,
        "people.html",
        viewer,
        status_code=status_code,
        users=users,
        roles=roles,
        customer_roles=ORG_ROLES["customer"],
        can_write=viewer.can("users:write"),
        message=message,
        error=error,
    )


@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, conn: Conn, viewer: PageViewer) -> HTMLResponse:
    """The organisation's users (the operator: everyone's)."""
    return _people_page(request, conn, viewer)


def _form_error(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, FleetcareError):
        return exc.detail, exc.status_code
    assert isinstance(exc, ValidationError)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}", 422


@router.post("/people/invite", response_class=HTMLResponse)
def invite(request: Request, conn: Conn, viewer: PageViewer, form: Form) -> HTMLResponse:
    """Invite a person: the link goes out as a ``user.invited`` event."""
    check_write(request, form)
    try:
        fields: dict[str, Any] = {k: form.get(k, "") for k in ("email", "name", "role")}
        if form.get("customer_id"):
            fields["customer_id"] = form["customer_id"]
        body = UserInvite.model_validate(fields)
        invitation = people.invite_user(conn, viewer, body, _now(request), sessions.policy(request))
    except (FleetcareError, ValidationError) as exc:
        rollback_keeping_caller(request, conn)
        detail, status = _form_error(exc)
        return _people_page(request, conn, viewer, error=detail, status_code=status)
    return _people_page(
        request,
        conn,
        viewer,
        message=f"invited {invitation.user.email}: the link is sent as a user.invited event",
    )


@router.post("/people/{user_id}", response_class=HTMLResponse)
def change_user(
    request: Request, user_id: Id, conn: Conn, viewer: PageViewer, form: Form
) -> HTMLResponse:
    """Change a user's role, or disable / enable them."""
    check_write(request, form)
    try:
        fields = {k: v for k, v in form.items() if k in ("role", "status") and v}
        user = people.update_user(conn, viewer, user_id, UserUpdate.model_validate(fields))
    except (FleetcareError, ValidationError) as exc:
        rollback_keeping_caller(request, conn)
        detail, status = _form_error(exc)
        return _people_page(request, conn, viewer, error=detail, status_code=status)
    return _people_page(
        request, conn, viewer, message=f"{user.email} is {user.status}, {user.role}"
    )


def _keys_page(
    request: Request,
    conn: Conn,
    viewer: Principal,
    *,
    new_key: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    keys, _ = fleet.list_api_keys(conn, viewer, after=None, limit=PAGE)
    return render(
        request,
        "keys.html",
        viewer,
        status_code=status_code,
        keys=keys,
        can_write=viewer.can("keys:write"),
        new_key=new_key,
        error=error,
        key_roles=("operator",)
        if viewer.organisation == "operator"
        else ("customer", "technician"),
    )


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, conn: Conn, viewer: PageViewer) -> HTMLResponse:
    """The organisation's API keys: scopes, expiry, last use."""
    return _keys_page(request, conn, viewer)


@router.post("/keys", response_class=HTMLResponse)
def create_key(request: Request, conn: Conn, viewer: PageViewer, form: Form) -> HTMLResponse:
    """Make a key (shown once on the page that answers)."""
    check_write(request, form)
    try:
        scopes = [s for s in form.get("scopes", "").replace(",", " ").split() if s]
        fields: dict[str, Any] = {
            "name": form.get("name", ""),
            "role": form.get("role") or "customer",
        }
        if scopes:
            fields["scopes"] = scopes
        if form.get("expires_at"):
            fields["expires_at"] = form["expires_at"]
        if form.get("customer_id"):
            fields["customer_id"] = form["customer_id"]
        body = ApiKeyCreate.model_validate(fields)
        key = fleet.create_api_key(conn, viewer, body, now=_now(request))
    except (FleetcareError, ValidationError) as exc:
        rollback_keeping_caller(request, conn)
        detail, status = _form_error(exc)
        return _keys_page(request, conn, viewer, error=detail, status_code=status)
    return _keys_page(request, conn, viewer, new_key=key.key)


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    request: Request, key_id: Id, conn: Conn, viewer: PageViewer, form: Form
) -> HTMLResponse:
    """Revoke a key: it stops working at once."""
    check_write(request, form)
    try:
        fleet.revoke_api_key(conn, viewer, key_id)
    except FleetcareError as exc:
        rollback_keeping_caller(request, conn)
        return _keys_page(request, conn, viewer, error=exc.detail, status_code=exc.status_code)
    return _keys_page(request, conn, viewer)
